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
use std::marker::PhantomData;
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

/// Slots of a P's ring (4 in the loom model, so that it fills and
/// overflows within a few steps).
pub(crate) const RUNQ_SIZE: u32 = if cfg!(gort_loom) { 4 } else { 256 };

// The ring's atomics: loom's in the model check (`cfg(gort_loom)`), std's
// otherwise.
#[cfg(gort_loom)]
use loom::sync::atomic::{AtomicPtr as RingPtr, AtomicU32 as RingU32};
#[cfg(not(gort_loom))]
use std::sync::atomic::{AtomicPtr as RingPtr, AtomicU32 as RingU32};

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
// SAFETY: a P lives forever in `allp`; moving a reference to it between threads
// shares only what `Sync` (above) allows.
unsafe impl Send for P {}

impl P {
    /// The M holding this P, if any (Ms are never freed).
    pub(crate) fn m_ref(&self) -> Option<&'static M> {
        // SAFETY: `m` is null or points at an M, and Ms live forever.
        unsafe { self.m.load(Ordering::Acquire).as_ref() }
    }

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

/// A P's run queue: a 256-slot ring plus `runnext`. Shared storage; who
/// may do what is in the types: any thread may measure it (`len`) or, as
/// a thief, take half of it (through the thief's own `Owner`), and only
/// the M holding the P gets an `Owner` (`owner`, unsafe: the caller
/// promises it holds the P) to push, pop and steal into it.
///
/// # Indices and orderings
///
/// `head` and `tail` count forever (wrapping u32); the Gs queued are the
/// slots `head..tail`. Only the owner writes `tail` and the slots at or
/// past it; `head` moves by CAS, by the owner (taking one G, or half on
/// overflow) or by a thief (taking half). The ordering of every step is
/// explained where it happens; in short: the owner's `Release` store of
/// `tail` publishes a slot (and the G behind it) to thieves, who read
/// `tail` with `Acquire`; a CAS on `head` is the single commit point of a
/// take, and the owner reads `head` with `Acquire` before reusing a slot,
/// so a thief's copy of a slot happens before the owner overwrites it.
pub(crate) struct RunQueue {
    head: RingU32,
    tail: RingU32,
    slots: [RingPtr<G>; RUNQ_SIZE as usize],
    runnext: RingPtr<G>,
}

/// The outcome of `Owner::put` when the ring is full: the caller moves
/// `batch` (half the ring plus the new G) to the global queue.
pub(crate) struct Overflow {
    pub(crate) batch: GList,
}

/// The owner's handle on a run queue: the only way to push, pop or steal
/// into it. Neither `Send` nor `Sync`: it stays on the M that made it,
/// while that M holds the P (see `RunQueue::owner`).
pub(crate) struct Owner<'a> {
    q: &'a RunQueue,
    _on_this_thread: PhantomData<*const ()>,
}

impl RunQueue {
    fn new() -> RunQueue {
        RunQueue {
            head: RingU32::new(0),
            tail: RingU32::new(0),
            slots: std::array::from_fn(|_| RingPtr::new(std::ptr::null_mut())),
            runnext: RingPtr::new(std::ptr::null_mut()),
        }
    }

    /// The owner's handle.
    ///
    /// # Safety
    /// The calling M holds the P this queue belongs to, and keeps it for
    /// as long as the handle lives (no other thread can hold an `Owner`
    /// of this queue meanwhile).
    pub(crate) unsafe fn owner(&self) -> Owner<'_> {
        Owner {
            q: self,
            _on_this_thread: PhantomData,
        }
    }

    fn slot(&self, i: u32) -> &RingPtr<G> {
        &self.slots[(i % RUNQ_SIZE) as usize]
    }

    /// Any thread. Number of Gs queued, runnext included (a snapshot: it
    /// may be stale by the time it is used, which callers accept).
    pub(crate) fn len(&self) -> u32 {
        // Acquire on both: a count no older than the last published push
        // and take (the value is only a hint; nothing is read through it).
        let h = self.head.load(Ordering::Acquire);
        let t = self.tail.load(Ordering::Acquire);
        let next = !self.runnext.load(Ordering::Acquire).is_null() as u32;
        t.wrapping_sub(h).min(RUNQ_SIZE) + next
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Any thread (a thief, into its own queue `dst` from `dst_tail` on,
    /// slots only the thief's `Owner` may write). Copies half of this
    /// queue there and commits by CAS; returns how many were taken. With
    /// `steal_next`, takes `runnext` when the ring is empty.
    fn grab(&self, dst: &RunQueue, dst_tail: u32, steal_next: bool) -> u32 {
        loop {
            // Acquire on head: sees other takes' commits, so `h` is not
            // older than a slot already handed out (a stale one fails the
            // CAS below anyway). Acquire on tail: pairs with the owner's
            // Release store in `put`, so the slots up to `t` hold the Gs
            // pushed (and those Gs' fields are visible).
            let h = self.head.load(Ordering::Acquire);
            let t = self.tail.load(Ordering::Acquire);
            let len = t.wrapping_sub(h);
            let n = len - len / 2;
            if n == 0 {
                if steal_next && !self.runnext.load(Ordering::Acquire).is_null() {
                    // Go's runqgrab: the victim just readied this G (a
                    // channel hand-off) and is likely about to block and
                    // run it itself; give it ~3us before taking it.
                    #[cfg(not(gort_loom))]
                    std::thread::sleep(std::time::Duration::from_micros(3));
                    #[cfg(gort_loom)]
                    loom::thread::yield_now();
                }
                if steal_next {
                    // Acquire: pairs with the owner's AcqRel swap that put
                    // the G there (its fields are visible to us).
                    let next = self.runnext.load(Ordering::Acquire);
                    if !next.is_null() {
                        // AcqRel: the commit of this take against the
                        // owner's `get` and other thieves; only one CAS
                        // from `next` to null succeeds.
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
                        // Relaxed: `dst` is the thief's own ring; its
                        // Release tail store (steal_from) publishes it.
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
                // Relaxed: the Acquire on tail above made these slots'
                // contents visible. If the owner reuses a slot meanwhile,
                // head has moved first (it only writes slot t when t - head
                // < RUNQ_SIZE) and the CAS below fails: the copy is dropped.
                let gp = self.slot(h.wrapping_add(i)).load(Ordering::Relaxed);
                // Relaxed: our own ring, published by our tail store.
                dst.slot(dst_tail.wrapping_add(i))
                    .store(gp, Ordering::Relaxed);
            }
            // AcqRel: the commit. Release orders our slot reads before it,
            // and the owner's Acquire head load in `put` then orders them
            // before it overwrites those slots. Acquire pairs with the
            // previous take's commit.
            if self
                .head
                .compare_exchange(h, h.wrapping_add(n), Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                return n;
            }
        }
    }
}

impl Owner<'_> {
    /// Queues `gp`; with `next`, into `runnext` (the displaced runnext
    /// goes to the tail). Returns an overflow batch when the ring is full.
    pub(crate) fn put(&self, mut gp: *mut G, next: bool) -> Result<(), Overflow> {
        let q = self.q;
        if next {
            // AcqRel: Release publishes gp (and its fields) to a thief that
            // takes runnext with Acquire; Acquire gets the displaced G's.
            let old = q.runnext.swap(gp, Ordering::AcqRel);
            if old.is_null() {
                return Ok(());
            }
            gp = old;
        }
        loop {
            // Acquire: pairs with a thief's commit (its Release CAS on
            // head), so its copies of the slots before `h` happen before
            // we reuse any of them below.
            let h = q.head.load(Ordering::Acquire);
            // Relaxed: only we write tail.
            let t = q.tail.load(Ordering::Relaxed);
            if t.wrapping_sub(h) < RUNQ_SIZE {
                // Relaxed: published by the Release tail store next.
                q.slot(t).store(gp, Ordering::Relaxed);
                // Release: thieves that read this tail with Acquire see
                // the slot and the G's fields.
                q.tail.store(t.wrapping_add(1), Ordering::Release);
                return Ok(());
            }
            if let Some(batch) = self.take_half_for_overflow(gp, h, t) {
                return Err(Overflow { batch });
            }
            // A thief moved the head: the ring has room now, retry.
        }
    }

    fn take_half_for_overflow(&self, gp: *mut G, h: u32, t: u32) -> Option<GList> {
        let q = self.q;
        let n = t.wrapping_sub(h) / 2;
        debug_assert_eq!(n, RUNQ_SIZE / 2);
        let mut taken = [std::ptr::null_mut(); (RUNQ_SIZE / 2) as usize];
        for (i, slot) in taken.iter_mut().enumerate().take(n as usize) {
            // Relaxed: slots we wrote ourselves.
            *slot = q.slot(h.wrapping_add(i as u32)).load(Ordering::Relaxed);
        }
        // AcqRel: the commit against thieves taking the same slots; only
        // one CAS from `h` succeeds.
        if q.head
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

    /// Takes the next G: runnext first (then `true`: it inherits the
    /// current time slice), else the head of the ring.
    pub(crate) fn get(&self) -> Option<(*mut G, bool)> {
        let q = self.q;
        // Acquire, then an AcqRel CAS: a thief may take runnext at the same
        // time; the CAS decides who runs it.
        let next = q.runnext.load(Ordering::Acquire);
        if !next.is_null()
            && q.runnext
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
            // Acquire: see thieves' commits (a head they moved).
            let h = q.head.load(Ordering::Acquire);
            // Relaxed: only we write tail.
            let t = q.tail.load(Ordering::Relaxed);
            if t == h {
                return None;
            }
            // Relaxed: a slot we wrote ourselves.
            let gp = q.slot(h).load(Ordering::Relaxed);
            // AcqRel: the commit against thieves taking slot h too.
            if q.head
                .compare_exchange(h, h.wrapping_add(1), Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                return Some((gp, false));
            }
        }
    }

    /// Steals half of `victim`'s queue into this one and returns one of
    /// the stolen Gs to run.
    pub(crate) fn steal_from(&self, victim: &RunQueue, steal_next: bool) -> Option<*mut G> {
        let q = self.q;
        // Relaxed: only we write our tail.
        let t = q.tail.load(Ordering::Relaxed);
        let n = victim.grab(q, t, steal_next);
        if n == 0 {
            return None;
        }
        let n = n - 1;
        // Relaxed: a slot `grab` just wrote on this thread.
        let gp = q.slot(t.wrapping_add(n)).load(Ordering::Relaxed);
        if n > 0 {
            // Release: publishes the stolen Gs to thieves of our queue.
            q.tail.store(t.wrapping_add(n), Ordering::Release);
        }
        Some(gp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    fn gs(n: usize) -> Vec<*mut G> {
        (0..n).map(|_| Box::into_raw(Box::new(G::new()))).collect()
    }

    #[test]
    fn owner_gets_runnext_first_then_fifo() {
        let q = RunQueue::new();
        // SAFETY: a queue of no P: this test is its only user.
        let o = unsafe { q.owner() };
        let g = gs(4);
        assert!(o.get().is_none());
        o.put(g[0], false).ok().unwrap();
        o.put(g[1], false).ok().unwrap();
        o.put(g[2], true).ok().unwrap();
        // A second runnext displaces the first to the tail.
        o.put(g[3], true).ok().unwrap();
        assert_eq!(q.len(), 4);
        assert_eq!(o.get(), Some((g[3], true)));
        assert_eq!(o.get(), Some((g[0], false)));
        assert_eq!(o.get(), Some((g[1], false)));
        assert_eq!(o.get(), Some((g[2], false)));
        assert!(o.get().is_none());
        assert!(q.is_empty());
    }

    #[test]
    fn a_full_ring_overflows_half_plus_the_new_one_oldest_first() {
        let q = RunQueue::new();
        // SAFETY: a queue of no P: this test is its only user.
        let o = unsafe { q.owner() };
        let g = gs(RUNQ_SIZE as usize + 1);
        for &gp in &g[..RUNQ_SIZE as usize] {
            o.put(gp, false).ok().unwrap();
        }
        let mut batch = match o.put(g[RUNQ_SIZE as usize], false) {
            Err(Overflow { batch }) => batch,
            Ok(()) => panic!("a full ring took one more"),
        };
        let mut want: Vec<*mut G> = g[..(RUNQ_SIZE / 2) as usize].to_vec();
        want.push(g[RUNQ_SIZE as usize]);
        let got: Vec<*mut G> = std::iter::from_fn(|| batch.pop_front()).collect();
        assert_eq!(got, want);
        let rest: Vec<*mut G> = std::iter::from_fn(|| o.get().map(|r| r.0)).collect();
        assert_eq!(
            rest,
            g[(RUNQ_SIZE / 2) as usize..RUNQ_SIZE as usize].to_vec()
        );
    }

    #[test]
    fn steal_takes_half_and_the_last_round_takes_runnext() {
        let (victim, thief) = (RunQueue::new(), RunQueue::new());
        // SAFETY: queues of no P: this test is their only user.
        let (v, t) = unsafe { (victim.owner(), thief.owner()) };
        let g = gs(9);
        for &gp in &g[..8] {
            v.put(gp, false).ok().unwrap();
        }
        // Half of the ring (4), oldest first; one is returned to run.
        assert_eq!(t.steal_from(&victim, false), Some(g[3]));
        assert_eq!(thief.len(), 3);
        assert_eq!(victim.len(), 4);
        let stolen: Vec<*mut G> = std::iter::from_fn(|| t.get().map(|r| r.0)).collect();
        assert_eq!(stolen, g[..3].to_vec());
        let left: Vec<*mut G> = std::iter::from_fn(|| v.get().map(|r| r.0)).collect();
        assert_eq!(left, g[4..8].to_vec());
        // Empty ring: only a last-round steal takes runnext.
        v.put(g[8], true).ok().unwrap();
        assert_eq!(victim.len(), 1);
        assert_eq!(t.steal_from(&victim, false), None);
        assert_eq!(t.steal_from(&victim, true), Some(g[8]));
        assert!(victim.is_empty());
    }

    /// The owner pushes and pops while thieves steal, on real threads:
    /// every G comes out exactly once.
    #[test]
    fn concurrent_owner_and_thieves_lose_and_duplicate_nothing() {
        const N: usize = 100_000;
        let victim = Arc::new(RunQueue::new());
        let g: Vec<usize> = gs(N).into_iter().map(|p| p as usize).collect();
        let done = Arc::new(AtomicBool::new(false));
        let thieves: Vec<_> = (0..2)
            .map(|_| {
                let (victim, done) = (victim.clone(), done.clone());
                std::thread::spawn(move || {
                    let mine = RunQueue::new();
                    // SAFETY: `mine` is this thread's alone.
                    let o = unsafe { mine.owner() };
                    let mut got = Vec::new();
                    while !done.load(Ordering::Acquire) || !victim.is_empty() {
                        if let Some(gp) = o.steal_from(&victim, true) {
                            got.push(gp as usize);
                            while let Some((gp, _)) = o.get() {
                                got.push(gp as usize);
                            }
                        }
                    }
                    got
                })
            })
            .collect();
        // SAFETY: only this thread owns the victim's queue.
        let o = unsafe { victim.owner() };
        let mut mine = Vec::new();
        let mut overflowed = Vec::new();
        for (i, &gp) in g.iter().enumerate() {
            if let Err(Overflow { mut batch }) = o.put(gp as *mut G, i % 7 == 0) {
                overflowed.extend(std::iter::from_fn(|| batch.pop_front()).map(|p| p as usize));
            }
            if i % 3 == 0 {
                if let Some((gp, _)) = o.get() {
                    mine.push(gp as usize);
                }
            }
        }
        while let Some((gp, _)) = o.get() {
            mine.push(gp as usize);
        }
        done.store(true, Ordering::Release);
        let mut all = mine;
        all.extend(overflowed);
        for t in thieves {
            all.extend(t.join().unwrap());
        }
        assert_eq!(all.len(), N, "a G was lost or taken twice");
        let unique: HashSet<usize> = all.iter().copied().collect();
        assert_eq!(unique.len(), N);
        assert_eq!(unique, g.iter().copied().collect::<HashSet<usize>>());
    }
}

/// The run queue's model check: loom runs the owner and a thief through
/// every interleaving (up to a preemption bound) of their atomic steps on
/// a 4-slot ring, and every G must come out exactly once.
/// `RUSTFLAGS="--cfg gort_loom" cargo test --release --lib loom_`.
#[cfg(all(test, gort_loom))]
mod loom_model {
    use super::*;
    use loom::sync::Arc;

    /// Gs for the model, made once outside it (they are never freed).
    fn gs(n: usize) -> Vec<usize> {
        (0..n)
            .map(|_| Box::into_raw(Box::new(G::new())) as usize)
            .collect()
    }

    fn model(f: impl Fn() + Sync + Send + 'static) {
        let mut b = loom::model::Builder::new();
        b.preemption_bound = Some(3);
        b.check(f);
    }

    /// Pops everything left in `o`'s queue into `got`.
    fn drain_into(o: &Owner<'_>, got: &mut Vec<usize>) {
        while let Some((gp, _)) = o.get() {
            got.push(gp as usize);
        }
    }

    /// Every G of `all` came out exactly once.
    fn assert_each_once(mut got: Vec<usize>, all: &[usize]) {
        got.sort_unstable();
        let mut want = all.to_vec();
        want.sort_unstable();
        assert_eq!(got, want, "a G was lost or taken twice");
    }

    /// Everything a thief gets from one steal attempt: what `steal_from`
    /// returns and what it queued in the thief's own ring.
    fn steal_all(victim: &RunQueue, steal_next: bool) -> Vec<usize> {
        let mine = RunQueue::new();
        // SAFETY: `mine` is this thread's alone.
        let o = unsafe { mine.owner() };
        let mut got = Vec::new();
        if let Some(gp) = o.steal_from(victim, steal_next) {
            got.push(gp as usize);
            drain_into(&o, &mut got);
        }
        got
    }

    #[test]
    fn loom_put_overflow_get_against_a_thief() {
        let g = gs(6);
        model(move || {
            let q = Arc::new(RunQueue::new());
            let thief = {
                let q = q.clone();
                loom::thread::spawn(move || steal_all(&q, false))
            };
            // SAFETY: this thread is the queue's only owner.
            let o = unsafe { q.owner() };
            let mut got = Vec::new();
            // Six puts into four slots: an overflow unless the thief took
            // some first.
            for &gp in &g {
                if let Err(Overflow { mut batch }) = o.put(gp as *mut G, false) {
                    got.extend(std::iter::from_fn(|| batch.pop_front()).map(|p| p as usize));
                }
            }
            drain_into(&o, &mut got);
            got.extend(thief.join().unwrap());
            assert_each_once(got, &g);
        });
    }

    #[test]
    fn loom_runnext_taken_once_by_owner_or_thief() {
        let g = gs(3);
        model(move || {
            let q = Arc::new(RunQueue::new());
            // SAFETY: this thread is the queue's only owner.
            let o = unsafe { q.owner() };
            o.put(g[0] as *mut G, false).ok().unwrap();
            let thief = {
                let q = q.clone();
                loom::thread::spawn(move || {
                    let mut got = steal_all(&q, true);
                    got.extend(steal_all(&q, true));
                    got
                })
            };
            o.put(g[1] as *mut G, true).ok().unwrap();
            o.put(g[2] as *mut G, true).ok().unwrap();
            let mut got = Vec::new();
            drain_into(&o, &mut got);
            got.extend(thief.join().unwrap());
            assert_each_once(got, &g);
        });
    }
}
