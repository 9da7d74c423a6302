//! [`Once`]: a state byte and an internal mutex.
//!
//! Part of `gort::sync`; the algorithms are described in that module's docs.

use super::mutex::*;
use crate::g::WaitReason;
use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};

const ONCE_INCOMPLETE: u8 = 0;
const ONCE_DONE: u8 = 1;
const ONCE_POISONED: u8 = 2;

/// Runs a closure exactly once (Go's `sync.Once`). Callers that arrive
/// while the first one runs it park until it has finished, so when
/// `call_once` returns the closure has completed and its effects are
/// visible.
///
/// **A panic in the closure poisons the `Once`** (as `std::sync::Once`,
/// unlike Go, which marks it done): the panic propagates to the caller that
/// ran it, and every later or waiting `call_once` panics too, since the
/// initialisation they rely on never finished. `is_completed` stays false.
pub struct Once {
    state: AtomicU8,
    m: RawMutex,
}

/// The caller that runs the closure; its drop records the outcome and
/// unlocks.
struct OnceRunner<'a> {
    once: &'a Once,
    /// Still true when dropped by unwinding out of the closure.
    poison: bool,
}

impl Drop for OnceRunner<'_> {
    fn drop(&mut self) {
        let s = if self.poison {
            ONCE_POISONED
        } else {
            ONCE_DONE
        };
        self.once.state.store(s, Ordering::Release);
        self.once.m.unlock();
    }
}

impl Once {
    /// A new `Once` that has not run.
    pub const fn new() -> Once {
        Once {
            state: AtomicU8::new(ONCE_INCOMPLETE),
            m: RawMutex::new(),
        }
    }

    /// Runs `f` if no call of this `Once` has run it yet; otherwise waits
    /// for the call that runs it to finish (parking the goroutine).
    ///
    /// # Panics
    /// If `f` panics (the panic propagates), and in every call after the
    /// `Once` was poisoned by such a panic.
    // `f` is called from this (inlined) function, so that the frames under
    // it are the caller's: a long `f` stays preemptible.
    #[inline(always)]
    pub fn call_once<F: FnOnce()>(&self, f: F) {
        if self.state.load(Ordering::Acquire) == ONCE_DONE {
            return;
        }
        if let Some(mut runner) = self.begin() {
            f();
            runner.poison = false;
        }
    }

    /// The slow path: `Some` if the caller must run the closure (holding
    /// the internal mutex), `None` if it has been run.
    #[cold]
    #[inline(never)]
    fn begin(&self) -> Option<OnceRunner<'_>> {
        self.m.lock(WaitReason::SyncOnce);
        match self.state.load(Ordering::Acquire) {
            ONCE_INCOMPLETE => Some(OnceRunner {
                once: self,
                poison: true,
            }),
            ONCE_DONE => {
                self.m.unlock();
                None
            }
            _ => {
                self.m.unlock();
                panic!("gort::sync::Once instance has previously been poisoned");
            }
        }
    }

    /// Whether a `call_once` has completed (without panicking).
    pub fn is_completed(&self) -> bool {
        self.state.load(Ordering::Acquire) == ONCE_DONE
    }
}

impl Default for Once {
    fn default() -> Once {
        Once::new()
    }
}

impl fmt::Debug for Once {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Once")
            .field("completed", &self.is_completed())
            .finish()
    }
}
