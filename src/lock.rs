//! Runtime-internal locks. They block the M (the OS thread), so they guard
//! only short critical sections of the scheduler and never user code.
//!
//! `std::sync::Mutex` is futex-based on Linux and allocation-free, which is
//! what the scheduler needs; this wrapper drops poisoning, since a panic
//! inside the runtime's own critical sections is a bug that aborts anyway.
//!
//! A goroutine waiting for a runtime lock (a channel's, say) is in runtime
//! code, not blocked in user code: when the lock is contended the wait
//! raises `m.locks`, so sysmon's unannounced-blocking check never hands
//! the P of an M sitting in `futex_wait` on one of our own locks to
//! another M. Without this, 10,000 goroutines woken at once by a channel
//! close each went to a new M in turn (every waiter on the channel lock
//! looked blocked in the kernel), and the process grew thousands of
//! threads all queued on that one lock.

use std::sync::{MutexGuard, TryLockError};

pub(crate) struct Mutex<T>(std::sync::Mutex<T>);

impl<T> Mutex<T> {
    pub(crate) const fn new(v: T) -> Self {
        Mutex(std::sync::Mutex::new(v))
    }

    #[inline]
    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        match self.0.try_lock() {
            Ok(g) => g,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => self.lock_contended(),
        }
    }

    /// The contended path: waits with `m.locks` raised (see module docs).
    /// The count goes back to what it was; whether the M still owns its P
    /// is unchanged by the wait, since sysmon takes nothing while `locks`
    /// is raised, so no `check_p` is needed on the way out.
    #[cold]
    #[inline(never)]
    fn lock_contended(&self) -> MutexGuard<'_, T> {
        let mp = crate::m::getm();
        if let Some(mp) = mp {
            mp.locks.set(mp.locks.get() + 1);
        }
        let g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(mp) = mp {
            mp.locks.set(mp.locks.get() - 1);
        }
        g
    }
}
