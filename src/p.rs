//! `P`: a processor, the right to run goroutines. An M must hold a P to run
//! goroutines; there are exactly `procs` of them.
//!
//! Each P owns a 256-slot lock-free run queue plus `runnext` (Go's `runq`,
//! `runqhead`, `runqtail`, `runnext`): the owner pushes at the tail and pops
//! at the head; thieves take half of the queue at once by CAS on the head.
//!
//! # Ownership
//!
//! - `runq.tail`: written only by the owner M (the M whose `p` is this P).
//! - `runq.head`: advanced by CAS, by the owner or a thief.
//! - `runnext`: set by the owner; cleared by CAS by owner or thief.
//! - `gfree`, `stackcache`: only the owner M.
//! - `link`: under the sched lock, while the P is idle.

use crate::g::{GList, G};
use crate::m::M;
use crate::stack::Stack;
use std::cell::{Cell, UnsafeCell};
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering};

pub(crate) const P_IDLE: u32 = 0;
pub(crate) const P_RUNNING: u32 = 1;
/// Its M is in a system call; sysmon may take it (CAS to P_IDLE).
pub(crate) const P_SYSCALL: u32 = 2;

/// The status of a P that sysmon is about to take from M `m`, whose
/// goroutine sits in the kernel without having announced it
/// (`unannounced`): `P_RUNNING` → this → `P_IDLE` (sysmon) or back to
/// `P_RUNNING` (sysmon, or `m` itself by CAS). The M's id is part of the
/// value, so only that M can take it back (no ABA with a later owner).
pub(crate) fn p_blocked(m: &M) -> u32 {
    ((m.id as u32) << 2) | 3
}

pub(crate) const RUNQ_SIZE: u32 = 256;

pub(crate) struct P {
    pub(crate) id: usize,
    pub(crate) status: AtomicU32,
    /// Next idle P, while on the idle list (sched lock).
    pub(crate) link: Cell<*mut P>,
    /// The M holding this P (null while idle).
    pub(crate) m: AtomicPtr<M>,
    /// Incremented on every schedule of a fresh time slice.
    pub(crate) schedtick: AtomicU32,
    /// Incremented on every syscall entry (sysmon watches it).
    pub(crate) syscalltick: AtomicU32,
    /// When the current syscall began (nanotime), while `P_SYSCALL`.
    pub(crate) syscall_since: AtomicU64,
    /// Goroutines stolen by this P from others (stats).
    pub(crate) steals: AtomicU64,
    pub(crate) runq: RunQueue,
    /// Timers created on this P.
    pub(crate) timers: crate::timer::PTimers,
    /// Free Gs for reuse (owner).
    pub(crate) gfree: UnsafeCell<Vec<*mut G>>,
    /// Free stacks for reuse (owner).
    pub(crate) stackcache: UnsafeCell<Vec<Stack>>,
}

// SAFETY: cross-thread fields are atomics; the rest follow the ownership
// rules in the module docs (owner M only, or under the sched lock).
unsafe impl Sync for P {}
// SAFETY: as above.
unsafe impl Send for P {}

impl P {
    pub(crate) fn new(id: usize) -> P {
        P {
            id,
            status: AtomicU32::new(P_IDLE),
            link: Cell::new(std::ptr::null_mut()),
            m: AtomicPtr::new(std::ptr::null_mut()),
            schedtick: AtomicU32::new(0),
            syscalltick: AtomicU32::new(0),
            syscall_since: AtomicU64::new(0),
            steals: AtomicU64::new(0),
            runq: RunQueue::new(),
            timers: crate::timer::PTimers::new(),
            gfree: UnsafeCell::new(Vec::new()),
            stackcache: UnsafeCell::new(Vec::new()),
        }
    }
}

pub(crate) struct RunQueue {
    head: AtomicU32,
    tail: AtomicU32,
    slots: [AtomicPtr<G>; RUNQ_SIZE as usize],
    runnext: AtomicPtr<G>,
}

/// The outcome of `RunQueue::put` when the ring is full: the caller moves
/// `batch` (half the ring plus the new G) to the global queue.
pub(crate) struct Overflow {
    pub(crate) batch: GList,
}

impl RunQueue {
    fn new() -> RunQueue {
        RunQueue {
            head: AtomicU32::new(0),
            tail: AtomicU32::new(0),
            slots: std::array::from_fn(|_| AtomicPtr::new(std::ptr::null_mut())),
            runnext: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    fn slot(&self, i: u32) -> &AtomicPtr<G> {
        &self.slots[(i % RUNQ_SIZE) as usize]
    }

    /// Number of Gs queued (racy when read by non-owners), runnext included.
    pub(crate) fn len(&self) -> u32 {
        let h = self.head.load(Ordering::Acquire);
        let t = self.tail.load(Ordering::Acquire);
        let next = !self.runnext.load(Ordering::Acquire).is_null() as u32;
        t.wrapping_sub(h).min(RUNQ_SIZE) + next
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Owner only. Queues `gp`; with `next`, into `runnext` (the displaced
    /// runnext goes to the tail). Returns an overflow batch when the ring is
    /// full.
    pub(crate) fn put(&self, mut gp: *mut G, next: bool) -> Result<(), Overflow> {
        if next {
            let old = self.runnext.swap(gp, Ordering::AcqRel);
            if old.is_null() {
                return Ok(());
            }
            gp = old;
        }
        loop {
            let h = self.head.load(Ordering::Acquire);
            let t = self.tail.load(Ordering::Relaxed);
            if t.wrapping_sub(h) < RUNQ_SIZE {
                self.slot(t).store(gp, Ordering::Relaxed);
                self.tail.store(t.wrapping_add(1), Ordering::Release);
                return Ok(());
            }
            if let Some(batch) = self.take_half_for_overflow(gp, h, t) {
                return Err(Overflow { batch });
            }
            // A thief moved the head: the ring has room now, retry.
        }
    }

    fn take_half_for_overflow(&self, gp: *mut G, h: u32, t: u32) -> Option<GList> {
        let n = t.wrapping_sub(h) / 2;
        debug_assert_eq!(n, RUNQ_SIZE / 2);
        let mut taken = [std::ptr::null_mut(); (RUNQ_SIZE / 2) as usize];
        for (i, slot) in taken.iter_mut().enumerate().take(n as usize) {
            *slot = self.slot(h.wrapping_add(i as u32)).load(Ordering::Relaxed);
        }
        if self
            .head
            .compare_exchange(h, h.wrapping_add(n), Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return None;
        }
        // The CAS made the taken Gs ours: only now may we link them.
        let mut batch = GList::new();
        for &g in &taken[..n as usize] {
            batch.push_back(g);
        }
        batch.push_back(gp);
        Some(batch)
    }

    /// Owner only. Takes the next G: runnext first (then `true`: it inherits
    /// the current time slice), else the head of the ring.
    pub(crate) fn get(&self) -> Option<(*mut G, bool)> {
        let next = self.runnext.load(Ordering::Acquire);
        if !next.is_null()
            && self
                .runnext
                .compare_exchange(
                    next,
                    std::ptr::null_mut(),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            return Some((next, true));
        }
        loop {
            let h = self.head.load(Ordering::Acquire);
            let t = self.tail.load(Ordering::Relaxed);
            if t == h {
                return None;
            }
            let gp = self.slot(h).load(Ordering::Relaxed);
            if self
                .head
                .compare_exchange(h, h.wrapping_add(1), Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                return Some((gp, false));
            }
        }
    }

    /// Any thread. Copies half of this queue into `dst` starting at
    /// `dst_tail` and commits by CAS; returns how many were taken. With
    /// `steal_next`, takes `runnext` when the ring is empty.
    fn grab(&self, dst: &RunQueue, dst_tail: u32, steal_next: bool) -> u32 {
        loop {
            let h = self.head.load(Ordering::Acquire);
            let t = self.tail.load(Ordering::Acquire);
            let len = t.wrapping_sub(h);
            let n = len - len / 2;
            if n == 0 {
                if steal_next && !self.runnext.load(Ordering::Acquire).is_null() {
                    // Go's runqgrab: the victim just readied this G (a
                    // channel hand-off) and is likely about to block and
                    // run it itself; give it ~3us before taking it.
                    std::thread::sleep(std::time::Duration::from_micros(3));
                }
                if steal_next {
                    let next = self.runnext.load(Ordering::Acquire);
                    if !next.is_null() {
                        if self
                            .runnext
                            .compare_exchange(
                                next,
                                std::ptr::null_mut(),
                                Ordering::AcqRel,
                                Ordering::Relaxed,
                            )
                            .is_err()
                        {
                            continue;
                        }
                        dst.slot(dst_tail).store(next, Ordering::Relaxed);
                        return 1;
                    }
                }
                return 0;
            }
            if n > RUNQ_SIZE / 2 {
                // h and t were read at different times: inconsistent, retry.
                continue;
            }
            for i in 0..n {
                let gp = self.slot(h.wrapping_add(i)).load(Ordering::Relaxed);
                dst.slot(dst_tail.wrapping_add(i))
                    .store(gp, Ordering::Relaxed);
            }
            if self
                .head
                .compare_exchange(h, h.wrapping_add(n), Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                return n;
            }
        }
    }

    /// Owner of `self` only. Steals half of `victim`'s queue into this one
    /// and returns one of the stolen Gs to run.
    pub(crate) fn steal_from(&self, victim: &RunQueue, steal_next: bool) -> Option<*mut G> {
        let t = self.tail.load(Ordering::Relaxed);
        let n = victim.grab(self, t, steal_next);
        if n == 0 {
            return None;
        }
        let n = n - 1;
        let gp = self.slot(t.wrapping_add(n)).load(Ordering::Relaxed);
        if n > 0 {
            self.tail.store(t.wrapping_add(n), Ordering::Release);
        }
        Some(gp)
    }
}
