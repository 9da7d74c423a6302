//! [`Mutex`]: one atomic word, Go's algorithm (normal and starvation modes).
//!
//! Part of `gort::sync`; the algorithms are described in that module's docs.

use super::sema::*;
use crate::g::WaitReason;
use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub(super) const LOCKED: u32 = 1;
pub(super) const WOKEN: u32 = 2;
pub(super) const STARVING: u32 = 4;
pub(super) const WAITER_SHIFT: u32 = 3;
pub(super) const ONE_WAITER: u32 = 1 << WAITER_SHIFT;

/// A waiter that waited longer than this switches the mutex to starvation
/// mode (Go's `starvationThresholdNs`).
pub(super) const STARVATION_THRESHOLD: Duration = Duration::from_millis(1);

/// Spin rounds before parking, and `pause`s per round (Go's `active_spin`
/// and `active_spin_cnt`).
pub(super) const ACTIVE_SPIN: u32 = 4;
pub(super) const ACTIVE_SPIN_CNT: u32 = 30;

pub(super) fn ncpu() -> usize {
    pub(super) static NCPU: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *NCPU.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Whether spinning round `iter` can help (Go's `sync_runtime_canSpin`):
/// several CPUs, and for a goroutine another P running (the owner may be
/// on it) and no work queued on its own P.
pub(super) fn can_spin(iter: u32) -> bool {
    if iter >= ACTIVE_SPIN || ncpu() <= 1 {
        return false;
    }
    let Some(mp) = crate::m::getm() else {
        return true; // a plain thread
    };
    let pp = mp.p();
    let Some(s) = crate::sched::try_sched() else {
        return false;
    };
    if pp.is_null() {
        return false;
    }
    let busy = s.idle_ps() + s.spinning_ms() + 1;
    if s.procs() <= busy {
        return false;
    }
    // SAFETY: Ps live as long as the runtime (the leaked `allp`); a stale
    // `pp` (we may have moved since) only makes the answer approximate.
    unsafe { (*pp).runq.is_empty() }
}

pub(super) fn do_spin() {
    for _ in 0..ACTIVE_SPIN_CNT {
        std::hint::spin_loop();
    }
}

/// The lock of [`Mutex`] without the data (see the module docs).
pub(super) struct RawMutex {
    state: AtomicU32,
    sema: Sema,
}

impl RawMutex {
    pub(super) const fn new() -> RawMutex {
        RawMutex {
            state: AtomicU32::new(0),
            sema: Sema::new(),
        }
    }

    #[inline]
    pub(super) fn lock(&self, reason: WaitReason) {
        if self
            .state
            .compare_exchange_weak(0, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_slow(reason);
        }
    }

    #[inline]
    pub(super) fn try_lock(&self) -> bool {
        let old = self.state.load(Ordering::Relaxed);
        old & (LOCKED | STARVING) == 0
            && self
                .state
                .compare_exchange(old, old | LOCKED, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
    }

    #[cold]
    #[inline(never)]
    pub(super) fn lock_slow(&self, reason: WaitReason) {
        let mut wait_start: Option<Instant> = None;
        let mut starving = false;
        let mut awoke = false;
        let mut iter = 0;
        let mut old = self.state.load(Ordering::Relaxed);
        loop {
            // Spin while the mutex is held in normal mode, if that can help.
            if old & (LOCKED | STARVING) == LOCKED && can_spin(iter) {
                // Tell unlock not to wake a sleeper: we are awake.
                if !awoke
                    && old & WOKEN == 0
                    && old >> WAITER_SHIFT != 0
                    && self
                        .state
                        .compare_exchange_weak(
                            old,
                            old | WOKEN,
                            Ordering::Relaxed,
                            Ordering::Relaxed,
                        )
                        .is_ok()
                {
                    awoke = true;
                }
                do_spin();
                iter += 1;
                old = self.state.load(Ordering::Relaxed);
                continue;
            }
            let mut new = old;
            // A starving mutex is not ours to take: it goes to the queue.
            if old & STARVING == 0 {
                new |= LOCKED;
            }
            if old & (LOCKED | STARVING) != 0 {
                new += ONE_WAITER;
            }
            // Switch to starvation mode, unless it was unlocked meanwhile
            // (then unlock would find STARVING with no owner to hand over
            // from).
            if starving && old & LOCKED != 0 {
                new |= STARVING;
            }
            if awoke {
                if new & WOKEN == 0 {
                    crate::fatal("sync: inconsistent mutex state (woken bit lost)");
                }
                new &= !WOKEN;
            }
            match self
                .state
                .compare_exchange_weak(old, new, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => {
                    if old & (LOCKED | STARVING) == 0 {
                        return; // took it
                    }
                    let lifo = wait_start.is_some();
                    let start = *wait_start.get_or_insert_with(Instant::now);
                    self.sema.acquire(lifo, reason);
                    starving = starving || start.elapsed() > STARVATION_THRESHOLD;
                    old = self.state.load(Ordering::Acquire);
                    if old & STARVING != 0 {
                        // Handed to us: LOCKED is clear and we still count
                        // as a waiter. Take it and leave the count at once.
                        if old & (LOCKED | WOKEN) != 0 || old >> WAITER_SHIFT == 0 {
                            crate::fatal("sync: inconsistent mutex state (starvation hand-off)");
                        }
                        let mut delta = LOCKED.wrapping_sub(ONE_WAITER);
                        if !starving || old >> WAITER_SHIFT == 1 {
                            // Back to normal mode: we did not wait long, or
                            // nobody is left behind us.
                            delta = delta.wrapping_sub(STARVING);
                        }
                        self.state.fetch_add(delta, Ordering::Acquire);
                        return;
                    }
                    awoke = true;
                    iter = 0;
                }
                Err(cur) => old = cur,
            }
        }
    }

    #[inline]
    pub(super) fn unlock(&self) {
        let new = self
            .state
            .fetch_sub(LOCKED, Ordering::Release)
            .wrapping_sub(LOCKED);
        if new != 0 {
            self.unlock_slow(new);
        }
    }

    #[cold]
    #[inline(never)]
    pub(super) fn unlock_slow(&self, new: u32) {
        if new.wrapping_add(LOCKED) & LOCKED == 0 {
            crate::fatal("sync: unlock of unlocked mutex");
        }
        if new & STARVING != 0 {
            // Hand ownership to the first waiter; LOCKED stays clear, it
            // sets it itself. New arrivals see STARVING and queue.
            self.sema.release(true);
            return;
        }
        let mut old = new;
        loop {
            // Nobody to wake, or somebody already took the mutex, is awake,
            // or switched it to starvation mode: they will take care.
            if old >> WAITER_SHIFT == 0 || old & (LOCKED | WOKEN | STARVING) != 0 {
                return;
            }
            let new = (old - ONE_WAITER) | WOKEN;
            match self
                .state
                .compare_exchange_weak(old, new, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => {
                    self.sema.release(false);
                    return;
                }
                Err(cur) => old = cur,
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Mutex<T>.

/// A mutual-exclusion lock whose waiters park: a goroutine waiting for it
/// frees its thread for other goroutines (a plain thread blocks). Go's
/// `sync.Mutex`, with its two modes: normal mode favours throughput (a
/// running locker may overtake parked ones); once a waiter has waited
/// 1ms the mutex switches to starvation mode and is handed over in FIFO
/// order. See the module docs.
///
/// Unlike `std::sync::Mutex` there is **no poisoning**: a panic while the
/// lock is held just unlocks it (the guard is dropped during unwinding),
/// and the next locker sees the data as the panicking code left it. As in
/// Go, a guard may be dropped on another goroutine or thread than the one
/// that locked (it is `Send` when `T: Send`).
///
/// ```no_run
/// use std::sync::Arc;
/// let total = gort::run(|| {
///     let m = Arc::new(gort::sync::Mutex::new(0u64));
///     let hs: Vec<_> = (0..100)
///         .map(|_| {
///             let m = m.clone();
///             gort::spawn(move || *m.lock() += 1)
///         })
///         .collect();
///     hs.into_iter().for_each(|h| h.join().unwrap());
///     let v = *m.lock();
///     v
/// });
/// assert_eq!(total, 100);
/// ```
pub struct Mutex<T: ?Sized> {
    pub(super) raw: RawMutex,
    data: UnsafeCell<T>,
}

// SAFETY: the mutex hands out access to `T` to one party at a time, so it
// may be shared (and moved) between threads when `T` may be moved.
unsafe impl<T: ?Sized + Send> Send for Mutex<T> {}
// SAFETY: shared `&Mutex<T>` only gives `&mut T` to the lock holder, one party
// at a time, so `T: Send` suffices (as for std's Mutex).
unsafe impl<T: ?Sized + Send> Sync for Mutex<T> {}

/// Access to the data of a locked [`Mutex`]; unlocks when dropped.
#[must_use = "if unused the Mutex will immediately unlock"]
pub struct MutexGuard<'a, T: ?Sized> {
    pub(super) lock: &'a Mutex<T>,
    /// Opts out of the auto traits; the right ones are implemented below.
    pub(super) _not_auto: PhantomData<*const ()>,
}

// SAFETY: the guard is a `&mut T` with an unlock attached; the mutex does
// not care which party unlocks it.
unsafe impl<T: ?Sized + Send> Send for MutexGuard<'_, T> {}
// SAFETY: sharing the guard shares `&T`.
unsafe impl<T: ?Sized + Sync> Sync for MutexGuard<'_, T> {}

impl<T> Mutex<T> {
    /// A new unlocked mutex holding `value`.
    pub const fn new(value: T) -> Mutex<T> {
        Mutex {
            raw: RawMutex::new(),
            data: UnsafeCell::new(value),
        }
    }

    /// Consumes the mutex and returns its data.
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: ?Sized> Mutex<T> {
    /// Locks the mutex, parking the goroutine (or blocking the thread)
    /// until it is free.
    ///
    /// Locking a mutex the caller already holds deadlocks, as in Go.
    /// Inside `gort::syscall::blocking` a goroutine has no P to give up, so
    /// there it waits like a plain thread (this holds for every wait in
    /// this module).
    #[inline]
    pub fn lock(&self) -> MutexGuard<'_, T> {
        self.raw.lock(WaitReason::SyncMutexLock);
        MutexGuard {
            lock: self,
            _not_auto: PhantomData,
        }
    }

    /// Locks the mutex if it is free right now (and not being handed to a
    /// starving waiter).
    #[inline]
    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        self.raw.try_lock().then(|| MutexGuard {
            lock: self,
            _not_auto: PhantomData,
        })
    }

    /// The data, through an exclusive borrow (no locking needed).
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }
}

impl<T: Default> Default for Mutex<T> {
    fn default() -> Mutex<T> {
        Mutex::new(T::default())
    }
}

impl<T> From<T> for Mutex<T> {
    fn from(value: T) -> Mutex<T> {
        Mutex::new(value)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Mutex");
        match self.try_lock() {
            Some(g) => d.field("data", &&*g),
            None => d.field("data", &format_args!("<locked>")),
        };
        d.finish_non_exhaustive()
    }
}

impl<T: ?Sized> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard proves we hold the lock.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard proves we hold the lock, exclusively.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for MutexGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        self.lock.raw.unlock();
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Display> fmt::Display for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_constants_are_disjoint() {
        assert_eq!(LOCKED | WOKEN | STARVING, 0b111);
        assert_eq!(ONE_WAITER, 8);
    }

    #[test]
    fn small_mutex() {
        // Go's is 8 bytes; the waiters live in the shared table.
        assert_eq!(std::mem::size_of::<Mutex<()>>(), 8);
        assert_eq!(std::mem::align_of::<SemaRoot>(), 128);
    }
}
