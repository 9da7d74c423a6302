//! Runtime-internal locks. They block the M (the OS thread), so they guard
//! only short critical sections of the scheduler and never user code.
//!
//! `std::sync::Mutex` is futex-based on Linux and allocation-free, which is
//! what the scheduler needs; this wrapper only drops poisoning, since a panic
//! inside the runtime's own critical sections is a bug that aborts anyway.

pub(crate) struct Mutex<T>(std::sync::Mutex<T>);

impl<T> Mutex<T> {
    pub(crate) const fn new(v: T) -> Self {
        Mutex(std::sync::Mutex::new(v))
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
