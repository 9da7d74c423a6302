//! [`WaitGroup`]: one 64-bit word (counter and waiters) and a semaphore.
//!
//! Part of `gort::sync`; the algorithms are described in that module's docs.

use super::sema::*;
use crate::g::WaitReason;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

struct WgInner {
    /// Counter (high 32 bits, signed) and number of waiters (low 32).
    state: AtomicU64,
    sema: Sema,
}

/// Waits for a collection of goroutines (or threads) to finish (Go's
/// `sync.WaitGroup`): `add` the number of tasks, each calls `done`, and
/// `wait` parks until the counter is zero.
///
/// The handle is cheap to clone (an `Arc` inside); clones share one
/// counter, so give each task its own clone. As in Go, calls to `add`
/// with a positive delta that start when the counter is zero must happen
/// before `wait`, and a group may be reused only after every `wait` of the
/// previous round has returned.
///
/// ```no_run
/// gort::run(|| {
///     let wg = gort::sync::WaitGroup::new();
///     for _ in 0..10 {
///         wg.add(1);
///         let wg = wg.clone();
///         gort::spawn(move || wg.done());
///     }
///     wg.wait();
/// });
/// ```
#[derive(Clone)]
pub struct WaitGroup {
    inner: Arc<WgInner>,
}

impl WaitGroup {
    /// A new group with counter zero.
    pub fn new() -> WaitGroup {
        WaitGroup {
            inner: Arc::new(WgInner {
                state: AtomicU64::new(0),
                sema: Sema::new(),
            }),
        }
    }

    /// Adds `delta` (which may be negative) to the counter; when it reaches
    /// zero, every `wait` returns.
    ///
    /// # Panics
    /// If the counter goes negative (`sync: negative WaitGroup counter`),
    /// if `delta` does not fit the 32-bit counter, or on misuse Go also
    /// detects (`add` racing with the `wait` of a finishing round).
    pub fn add(&self, delta: isize) {
        let Ok(d) = i32::try_from(delta) else {
            panic!("sync: WaitGroup delta {delta} out of range");
        };
        let inner = &*self.inner;
        let inc = ((d as i64) << 32) as u64;
        let state = inner
            .state
            .fetch_add(inc, Ordering::SeqCst)
            .wrapping_add(inc);
        let v = (state >> 32) as i32;
        let w = state as u32;
        if v < 0 {
            panic!("sync: negative WaitGroup counter");
        }
        if w != 0 && d > 0 && v == d {
            panic!("sync: WaitGroup misuse: add called concurrently with wait");
        }
        if v > 0 || w == 0 {
            return;
        }
        // Counter zero with waiters: nobody may change the state now but
        // us (adds and waits at zero are misuse).
        if inner.state.load(Ordering::SeqCst) != state {
            panic!("sync: WaitGroup misuse: add called concurrently with wait");
        }
        inner.state.store(0, Ordering::SeqCst);
        for _ in 0..w {
            inner.sema.release(false);
        }
    }

    /// Decrements the counter by one.
    ///
    /// # Panics
    /// If the counter goes negative.
    pub fn done(&self) {
        self.add(-1);
    }

    /// Parks until the counter is zero (returns at once if it is).
    ///
    /// # Panics
    /// If the group was reused before this wait returned.
    pub fn wait(&self) {
        let inner = &*self.inner;
        let mut state = inner.state.load(Ordering::SeqCst);
        loop {
            if (state >> 32) as i32 == 0 {
                return;
            }
            match inner.state.compare_exchange_weak(
                state,
                state + 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => {
                    inner.sema.acquire(false, WaitReason::SyncWaitGroupWait);
                    if inner.state.load(Ordering::SeqCst) != 0 {
                        panic!("sync: WaitGroup is reused before previous wait has returned");
                    }
                    return;
                }
                Err(cur) => state = cur,
            }
        }
    }

    /// The counter now (racy: for diagnostics).
    pub fn count(&self) -> usize {
        ((self.inner.state.load(Ordering::SeqCst) >> 32) as i32).max(0) as usize
    }
}

impl Default for WaitGroup {
    fn default() -> WaitGroup {
        WaitGroup::new()
    }
}

impl fmt::Debug for WaitGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitGroup")
            .field("count", &self.count())
            .finish()
    }
}
