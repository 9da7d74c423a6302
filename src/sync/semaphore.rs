//! [`Semaphore`] and [`Barrier`].
//!
//! Part of `gort::sync`; the algorithms are described in that module's docs.

use super::condvar::Condvar;
use super::mutex::*;
use super::sema::*;
use crate::g::WaitReason;
use std::sync::atomic::Ordering;

/// A counting semaphore (tokio's and Go's `x/sync/semaphore` idea): up to
/// `permits` holders at once; `acquire` parks the goroutine (or blocks a
/// plain thread) until a permit is free. Waiters are served in FIFO
/// order. Built on the same semaphore table as [`Mutex`].
///
/// ```no_run
/// gort::run(|| {
///     static LIMIT: gort::sync::Semaphore = gort::sync::Semaphore::new(4);
///     let hs: Vec<_> = (0..100)
///         .map(|_| gort::spawn(|| {
///             let _permit = LIMIT.acquire(); // at most 4 inside at once
///         }))
///         .collect();
///     hs.into_iter().for_each(|h| h.join().unwrap());
/// });
/// ```
pub struct Semaphore {
    sema: Sema,
}

impl Semaphore {
    /// A semaphore with `permits` free permits.
    pub const fn new(permits: u32) -> Semaphore {
        Semaphore {
            sema: Sema::with_count(permits),
        }
    }

    /// Takes a permit, waiting for one if none is free. The permit goes
    /// back when the returned guard drops.
    pub fn acquire(&self) -> SemaphorePermit<'_> {
        self.sema.acquire(false, WaitReason::SyncSemacquire);
        SemaphorePermit { sem: self }
    }

    /// Takes a permit if one is free now.
    pub fn try_acquire(&self) -> Option<SemaphorePermit<'_>> {
        // `then`, not `then_some`: a permit made and dropped on failure
        // would release a token nobody took.
        self.sema
            .try_acquire()
            .then(|| SemaphorePermit { sem: self })
    }

    /// Adds `n` permits (waking as many waiters).
    pub fn add_permits(&self, n: u32) {
        for _ in 0..n {
            self.sema.release(false);
        }
    }

    /// Free permits now (racy: for diagnostics).
    pub fn available_permits(&self) -> usize {
        self.sema.count.load(Ordering::SeqCst) as usize
    }
}

impl std::fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Semaphore")
            .field("available", &self.available_permits())
            .finish()
    }
}

/// A permit of a [`Semaphore`], given back on drop.
#[must_use = "the permit is given back at once if it is not kept"]
pub struct SemaphorePermit<'a> {
    sem: &'a Semaphore,
}

impl SemaphorePermit<'_> {
    /// Keeps the permit taken for good (the semaphore has one less).
    pub fn forget(self) {
        std::mem::forget(self)
    }
}

impl Drop for SemaphorePermit<'_> {
    fn drop(&mut self) {
        self.sem.sema.release(false);
    }
}

impl std::fmt::Debug for SemaphorePermit<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SemaphorePermit").finish_non_exhaustive()
    }
}

/// Lets `n` parties wait until all of them have arrived, like
/// `std::sync::Barrier`, parking goroutines (plain threads block). Reusable:
/// after all `n` arrive, the next `n` waits form a new round.
pub struct Barrier {
    n: usize,
    state: Mutex<(usize, u64)>,
    cv: Condvar,
}

/// What [`Barrier::wait`] returns: one party per round is the leader.
#[derive(Debug, Clone, Copy)]
pub struct BarrierWaitResult(bool);

impl BarrierWaitResult {
    /// Whether this party was the last to arrive (one per round).
    pub fn is_leader(&self) -> bool {
        self.0
    }
}

impl Barrier {
    /// A barrier for `n` parties (`0` behaves as `1`).
    pub fn new(n: usize) -> Barrier {
        Barrier {
            n,
            state: Mutex::new((0, 0)),
            cv: Condvar::new(),
        }
    }

    /// Waits until `n` parties (this one included) have called `wait`.
    pub fn wait(&self) -> BarrierWaitResult {
        let mut st = self.state.lock();
        st.0 += 1;
        if st.0 < self.n {
            let round = st.1;
            while st.1 == round {
                st = self.cv.wait(st);
            }
            return BarrierWaitResult(false);
        }
        *st = (0, st.1.wrapping_add(1));
        self.cv.notify_all();
        BarrierWaitResult(true)
    }
}

impl std::fmt::Debug for Barrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Barrier").field("n", &self.n).finish()
    }
}
