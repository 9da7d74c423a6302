//! Timers: per-P 4-ary heaps (as Go's) and the hooks
//! the scheduler and sysmon use to run them on time (docs/design.md, "Timers").
//!
//! # Where timers run
//!
//! A timer lives in the heap of the P that created it. Expired timers run:
//! - in `find_runnable`, for the M's own P, every time it looks for work;
//! - in `steal_work`, for every other P (an idle P's timers too);
//! - when every P is idle or busy elsewhere, sysmon notices the overdue
//!   timer (its sleep is bounded by the earliest timer) and starts an M for
//!   an idle P, which then runs it.
//!
//! Adding a timer earlier than sysmon's planned wake-up wakes sysmon —
//! only if it is the earliest of its P's heap: otherwise an earlier timer
//! of the same P already bounds sysmon's sleep (or, if that one is
//! overdue, the P runs both at its next schedule). Without this filter
//! every new timer within sysmon's nominal delay cost a futex wake (100k
//! sleepers: ~16k wake-ups of sysmon per run, Go's ~200).
//!
//! Each P publishes its earliest deadline in `timer0` (u64::MAX: none), so
//! the checks above cost one atomic load when nothing is due.
//!
//! Times are nanoseconds since the runtime started (`nanotime`).
//!
//! # Tasks, stopping, and dead entries
//!
//! Besides waking a sleeper (`TimerAction::Wake`), a timer can run a
//! `TimerTask` (`TimerAction::Task`): channel timeouts (`chan`), and
//! the public [`Timer`], [`Ticker`] and [`after`]. A task runs on the
//! scheduler stack (g0) of whichever M runs the timers, outside every
//! timer lock; it must not block (it may take short runtime locks, send
//! on a channel without blocking, and make goroutines runnable).
//!
//! Stopping is lazy, as in Go: the entry stays in the heap, and the task
//! itself knows it no longer matters (`TimerTask::live(seq)` is false;
//! `fire` then does nothing). Whoever stops a timer tells the P that holds
//! it (`stopped`), which counts dead entries; once at least a quarter of
//! a heap (and at least `COMPACT_MIN` entries) is dead, the next `add`
//! drops them all and re-heapifies — O(n) every n/4 stops, so a loop doing
//! `recv_timeout(1s)` a million times a second keeps a bounded heap.
//! `live` runs under the heap lock, so it must only read atomics.
//!
//! | entry state  | `fire`                      | at compaction |
//! |--------------|-----------------------------|---------------|
//! | live         | runs the action             | kept          |
//! | stopped/reset (`live` false) | nothing     | dropped       |
//!
//! The public timers (`gort::time`) are in `time`.

use crate::g::G;
use crate::lock::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Work a timer does when it fires, other than waking a sleeper.
pub(crate) trait TimerTask: Send + Sync {
    /// The entry armed as `seq` is due. Runs on g0 (or wherever timers
    /// run), outside the heap lock; must not block.
    fn fire(self: Arc<Self>, seq: u64);
    /// Whether the entry armed as `seq` still matters. Called under the
    /// heap lock: must only read atomics.
    fn live(&self, seq: u64) -> bool;
}

/// What a timer does when it fires.
pub(crate) enum TimerAction {
    /// Make a sleeping goroutine runnable.
    Wake(*mut G),
    /// Run a task, with the sequence number it was armed with.
    Task(Arc<dyn TimerTask>, u64),
}

// SAFETY: the G pointer is handed to exactly one waker (whoever pops the
// entry); Gs are never freed. Tasks are Send + Sync.
unsafe impl Send for TimerAction {}

impl TimerAction {
    fn live(&self) -> bool {
        match self {
            TimerAction::Wake(_) => true,
            TimerAction::Task(t, seq) => t.live(*seq),
        }
    }
}

/// A heap compacts only with at least this many dead entries.
const COMPACT_MIN: usize = 64;

struct Entry {
    when: u64,
    action: TimerAction,
}

/// A 4-ary min-heap by `when` (shallower than a binary heap: fewer cache
/// misses on sift-down, as Go found).
#[derive(Default)]
pub(crate) struct TimerHeap {
    entries: Vec<Entry>,
}

impl TimerHeap {
    fn push(&mut self, e: Entry) {
        self.entries.push(e);
        let mut i = self.entries.len() - 1;
        while i > 0 {
            let parent = (i - 1) / 4;
            if self.entries[parent].when <= self.entries[i].when {
                break;
            }
            self.entries.swap(i, parent);
            i = parent;
        }
    }

    fn pop(&mut self) -> Option<Entry> {
        if self.entries.is_empty() {
            return None;
        }
        let last = self.entries.len() - 1;
        self.entries.swap(0, last);
        let top = self.entries.pop();
        self.sift_down(0);
        top
    }

    /// Drops the entries that no longer matter (moved into `out`, to be
    /// dropped by the caller outside the lock) and restores the heap.
    fn compact(&mut self, out: &mut Vec<Entry>) {
        let mut i = 0;
        while i < self.entries.len() {
            if self.entries[i].action.live() {
                i += 1;
            } else {
                out.push(self.entries.swap_remove(i));
            }
        }
        let n = self.entries.len();
        if n > 1 {
            for i in (0..=(n - 2) / 4).rev() {
                self.sift_down(i);
            }
        }
    }

    fn sift_down(&mut self, mut i: usize) {
        let n = self.entries.len();
        loop {
            let first = 4 * i + 1;
            if first >= n {
                break;
            }
            let end = (first + 4).min(n);
            let mut min = first;
            for c in first + 1..end {
                if self.entries[c].when < self.entries[min].when {
                    min = c;
                }
            }
            if self.entries[i].when <= self.entries[min].when {
                break;
            }
            self.entries.swap(i, min);
            i = min;
        }
    }

    fn first(&self) -> u64 {
        self.entries.first().map_or(u64::MAX, |e| e.when)
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Per-P timer state.
pub(crate) struct PTimers {
    heap: Mutex<TimerHeap>,
    /// Earliest deadline in the heap, u64::MAX if empty.
    pub(crate) timer0: AtomicU64,
    /// Entries reported stopped since the last compaction (an estimate:
    /// see the module docs).
    dead: AtomicUsize,
}

impl PTimers {
    pub(crate) fn new() -> PTimers {
        PTimers {
            heap: Mutex::new(TimerHeap::default()),
            timer0: AtomicU64::new(u64::MAX),
            dead: AtomicUsize::new(0),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.heap.lock().len()
    }

    /// Adds a timer; returns whether it is now the heap's earliest.
    fn add(&self, when: u64, action: TimerAction) -> bool {
        let mut dropped = Vec::new();
        let mut h = self.heap.lock();
        let dead = self.dead.load(Ordering::Relaxed);
        if dead >= COMPACT_MIN && dead * 4 >= h.len() {
            self.dead.store(0, Ordering::Relaxed);
            h.compact(&mut dropped);
        }
        let earliest = when < h.first();
        h.push(Entry { when, action });
        self.timer0.store(h.first(), Ordering::SeqCst);
        drop(h);
        // Dropping a task may close a channel: not under the heap lock.
        drop(dropped);
        earliest
    }

    /// Pops every timer due at `now`; returns their actions.
    fn take_expired(&self, now: u64, out: &mut Vec<TimerAction>) {
        if self.timer0.load(Ordering::Acquire) > now {
            return;
        }
        let mut h = self.heap.lock();
        while h.first() <= now {
            if let Some(e) = h.pop() {
                out.push(e.action);
            }
        }
        self.timer0.store(h.first(), Ordering::SeqCst);
    }
}

/// Nanoseconds since the runtime started.
///
/// `CLOCK_MONOTONIC` (the clock of `Instant`) read directly, minus the
/// reading at `Sched::start_time`: one vDSO call, without `Instant`'s
/// checked `timespec` arithmetic (the scheduler reads this on every park).
pub(crate) fn nanotime() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC).saturating_sub(clock_base())
}

/// `nanotime()` to within a clock tick (1–4ms), for bookkeeping that only
/// needs minutes (the wait times in goroutine dumps):
/// `CLOCK_MONOTONIC_COARSE` (the same clock, updated once a tick) costs
/// ~5ns through the vDSO, where the precise clock costs ~35ns on a VM.
pub(crate) fn nanotime_coarse() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC_COARSE).saturating_sub(clock_base())
}

/// The `CLOCK_MONOTONIC` reading of `Sched::start_time`, in ns.
fn clock_base() -> u64 {
    static BASE: AtomicU64 = AtomicU64::new(u64::MAX);
    let base = BASE.load(Ordering::Relaxed);
    if base != u64::MAX {
        return base;
    }
    let s = crate::sched::sched();
    let since_start = s.since_start().as_nanos() as u64;
    let base = clock_ns(libc::CLOCK_MONOTONIC).saturating_sub(since_start);
    // Racing first callers compute bases a few ns apart: keep one.
    match BASE.compare_exchange(u64::MAX, base, Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => base,
        Err(first) => first,
    }
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write into; the clock ids are
    // constants every Linux supports.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// Runs the expired timers of `timers`; returns how many fired.
pub(crate) fn run_timers(timers: &PTimers, now: u64) -> usize {
    if timers.timer0.load(Ordering::Acquire) > now {
        return 0;
    }
    let mut fired = Vec::new();
    timers.take_expired(now, &mut fired);
    let n = fired.len();
    for a in fired {
        match a {
            TimerAction::Wake(gp) => crate::sched::ready(gp),
            // A stopped task's `fire` does nothing.
            TimerAction::Task(t, seq) => t.fire(seq),
        }
    }
    n
}

/// The P a new timer should go to: the calling M's, or (on a plain
/// thread, or a goroutine in a syscall) the next one round-robin.
pub(crate) fn pick_p() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    if let Some(mp) = crate::m::getm() {
        let pp = mp.p();
        if !pp.is_null() {
            // SAFETY: Ps live forever in `allp`.
            return unsafe { (*pp).id };
        }
    }
    NEXT.fetch_add(1, Ordering::Relaxed) % crate::sched::sched().procs()
}

/// Arms `task` (as `seq`) to fire at `when` on P `p`'s heap. Callable
/// from any thread once the runtime runs, and from g0.
pub(crate) fn add_task_on(p: usize, when: u64, task: Arc<dyn TimerTask>, seq: u64) {
    arm_on(p, when, TimerAction::Task(task, seq));
}

/// Puts `action` on P `p`'s heap for `when`, and tells sysmon if it is now
/// that heap's earliest. Callable from any thread and from g0 (with or
/// without a P).
pub(crate) fn arm_on(p: usize, when: u64, action: TimerAction) {
    if crate::sched::sched().allp()[p].timers.add(when, action) {
        timer_added(when);
    }
}

/// Arms `task` on the P `pick_p` chooses; returns that P.
pub(crate) fn add_task(when: u64, task: Arc<dyn TimerTask>, seq: u64) -> usize {
    let p = pick_p();
    add_task_on(p, when, task, seq);
    p
}

/// A task armed on P `p` was stopped: its entry is dead (counted for
/// compaction; see the module docs).
pub(crate) fn stopped(p: usize) {
    if let Some(pp) = crate::sched::sched().allp().get(p) {
        pp.timers.dead.fetch_add(1, Ordering::Relaxed);
    }
}

/// `nanotime()` `d` from now, saturating.
pub(crate) fn when_after(d: Duration) -> u64 {
    nanotime().saturating_add(d.as_nanos().min(u64::MAX as u128) as u64)
}

/// The earliest timer deadline over all Ps (u64::MAX: none).
pub(crate) fn next_timer(s: &crate::sched::Sched) -> u64 {
    s.allp()
        .iter()
        .map(|p| p.timers.timer0.load(Ordering::Acquire))
        .min()
        .unwrap_or(u64::MAX)
}

// ---------------------------------------------------------------------------
// sysmon's side: it sleeps until the earliest timer is a little late.

/// How late a P's earliest timer may be before sysmon ends the running
/// goroutine's slice for it (ns): a P that switches goroutines runs its
/// timers by then on its own.
pub(crate) const TIMER_LATE_NS: u64 = 50_000;
/// Whether `pp`'s earliest timer is TIMER_LATE_NS late at `now_ns`.
pub(crate) fn timer_overdue(pp: &crate::p::P, now_ns: u64) -> bool {
    pp.timers
        .timer0
        .load(Ordering::Relaxed)
        .saturating_add(TIMER_LATE_NS)
        <= now_ns
}

/// When sysmon plans to wake next (nanotime, 0: awake); a timer due
/// earlier wakes it (`timer_added`).
static SYSMON_WAKE_AT: AtomicU64 = AtomicU64::new(0);

/// sysmon publishes when its sleep ends (0 once awake).
pub(crate) fn plan_sysmon_wake(at: u64) {
    SYSMON_WAKE_AT.store(at, Ordering::SeqCst);
}

/// A timer due at `when` was added: wake sysmon if it would sleep past it
/// (and an M blocked in the netpoller, which also sleeps until a timer).
fn timer_added(when: u64) {
    crate::netpoll::timer_added(when);
    if when.saturating_add(TIMER_LATE_NS) < SYSMON_WAKE_AT.load(Ordering::SeqCst) {
        SYSMON_WAKE_AT.store(0, Ordering::SeqCst);
        crate::sched::sched().sysmon_note().wakeup();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A task that counts as live while `seq` is not stopped.
    struct Stoppable(AtomicU64);

    impl TimerTask for Stoppable {
        fn fire(self: Arc<Self>, _seq: u64) {}
        fn live(&self, seq: u64) -> bool {
            self.0.load(Ordering::Relaxed) != seq
        }
    }

    fn entry(when: u64, task: &Arc<Stoppable>, seq: u64) -> Entry {
        Entry {
            when,
            action: TimerAction::Task(task.clone(), seq),
        }
    }

    fn whens(h: &mut TimerHeap) -> Vec<u64> {
        std::iter::from_fn(|| h.pop().map(|e| e.when)).collect()
    }

    #[test]
    fn heap_pops_in_deadline_order() {
        let t = Arc::new(Stoppable(AtomicU64::new(u64::MAX)));
        let mut h = TimerHeap::default();
        assert_eq!(h.first(), u64::MAX);
        // A fixed pseudo-random order with duplicates, over several levels
        // of the 4-ary heap.
        let input: Vec<u64> = (0..500u64).map(|i| (i * 7919) % 211).collect();
        for (i, &w) in input.iter().enumerate() {
            h.push(entry(w, &t, i as u64));
            assert_eq!(h.first(), *input[..=i].iter().min().unwrap());
        }
        assert_eq!(h.len(), input.len());
        let mut sorted = input.clone();
        sorted.sort_unstable();
        assert_eq!(whens(&mut h), sorted);
        assert!(h.pop().is_none());
    }

    #[test]
    fn compaction_drops_stopped_entries_and_keeps_the_order() {
        let tasks: Vec<Arc<Stoppable>> = (0..300)
            .map(|_| Arc::new(Stoppable(AtomicU64::new(u64::MAX))))
            .collect();
        let mut h = TimerHeap::default();
        for (i, t) in tasks.iter().enumerate() {
            h.push(entry(((i as u64) * 31) % 97, t, 1));
        }
        // Stop every third one.
        for t in tasks.iter().step_by(3) {
            t.0.store(1, Ordering::Relaxed);
        }
        let mut dropped = Vec::new();
        h.compact(&mut dropped);
        assert_eq!(dropped.len(), 100);
        assert!(dropped.iter().all(|e| !e.action.live()));
        assert_eq!(h.len(), 200);
        let mut want: Vec<u64> = (0..300u64)
            .filter(|i| i % 3 != 0)
            .map(|i| (i * 31) % 97)
            .collect();
        want.sort_unstable();
        assert_eq!(whens(&mut h), want);
    }
}
