//! Timers: per-P 4-ary heaps (as Go's), `gort::time::sleep`, and the hooks
//! the scheduler and sysmon use to run them on time (DESIGN §10).
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
//! Adding a timer earlier than sysmon's planned wake-up wakes sysmon.
//!
//! Each P publishes its earliest deadline in `timer0` (u64::MAX: none), so
//! the checks above cost one atomic load when nothing is due.
//!
//! Times are nanoseconds since the runtime started (`nanotime`).

use crate::g::{WaitReason, G};
use crate::lock::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// What a timer does when it fires.
pub(crate) enum TimerAction {
    /// Make a sleeping goroutine runnable.
    Wake(*mut G),
}

// SAFETY: the G pointer is handed to exactly one waker (whoever pops the
// entry); Gs are never freed.
unsafe impl Send for TimerAction {}

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
        let n = self.entries.len();
        let mut i = 0;
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
        top
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
}

impl PTimers {
    pub(crate) fn new() -> PTimers {
        PTimers {
            heap: Mutex::new(TimerHeap::default()),
            timer0: AtomicU64::new(u64::MAX),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.heap.lock().len()
    }

    fn add(&self, when: u64, action: TimerAction) {
        let mut h = self.heap.lock();
        h.push(Entry { when, action });
        self.timer0.store(h.first(), Ordering::SeqCst);
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
pub(crate) fn nanotime() -> u64 {
    let s = crate::sched::sched();
    s.start_time.elapsed().as_nanos() as u64
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
        }
    }
    n
}

/// The earliest timer deadline over all Ps (u64::MAX: none).
pub(crate) fn next_timer(s: &crate::sched::Sched) -> u64 {
    s.allp
        .iter()
        .map(|p| p.timers.timer0.load(Ordering::Acquire))
        .min()
        .unwrap_or(u64::MAX)
}

/// Puts the calling goroutine to sleep for `d` without holding its thread.
/// Outside a goroutine, sleeps the thread.
pub fn sleep(d: Duration) {
    if crate::sched::getg().is_null() {
        std::thread::sleep(d);
        return;
    }
    if d.is_zero() {
        crate::yield_now();
        return;
    }
    let when = nanotime().saturating_add(d.as_nanos().min(u64::MAX as u128) as u64);
    crate::sched::park(WaitReason::Sleep, &mut |gp| {
        // Copy the deadline off the goroutine's stack (where this closure
        // lives) before publishing: see below.
        let deadline = when;
        let mp = crate::m::getm().expect("timer park off an M");
        // SAFETY: g0 of this M holds its P while running the park function.
        let pp = unsafe { &*mp.p() };
        pp.timers.add(deadline, TimerAction::Wake(gp));
        // From here on the G may be woken and run: touch nothing of the
        // closure's captures.
        crate::sysmon::timer_added(deadline);
        true
    });
}
