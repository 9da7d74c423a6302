//! `gort::time`: goroutine-aware sleeping, one-shot timers and tickers,
//! built on the per-P timer heaps of `timer`.
//!
//! # Timer, Ticker, after
//!
//! Each owns a channel of capacity 1 that the firing task fills with
//! `try_send(Instant::now())`: a slow receiver misses ticks instead of
//! blocking the timer (Go's `sendTime`). A `seq` number under the timer's
//! own lock tells the current arming from stale heap entries: `stop` and
//! `reset` bump it, and drain a value already delivered to the channel, so
//! nothing stale is received after they return (Go 1.23 semantics).
//! Lock order: timer state → heap, timer state → channel; a heap lock is
//! never held while taking another lock (dead entries are dropped after
//! the heap lock is released, since dropping one may close a channel).

use crate::chan::{channel, Receiver, Sender};
use crate::g::WaitReason;
use crate::lock::Mutex;
use crate::timer::{
    add_task, add_task_on, arm_on, nanotime, pick_p, stopped, when_after, TimerAction, TimerTask,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Puts the calling goroutine to sleep for `d` without holding its thread.
/// Outside a goroutine, sleeps the thread.
pub fn sleep(d: Duration) {
    if crate::sched::must_block_thread() {
        std::thread::sleep(d);
        return;
    }
    if d.is_zero() {
        crate::yield_now();
        return;
    }
    let when = when_after(d);
    crate::sched::park(WaitReason::Sleep, &mut |gp| {
        // Copy the deadline off the goroutine's stack (where this closure
        // lives) before publishing: see below.
        let deadline = when;
        // This M's P; or, when the goroutine lost it in a plain blocking
        // call just before (the park then runs on a g0 without a P), the
        // next one round-robin (heaps take timers from any thread).
        arm_on(pick_p(), deadline, TimerAction::Wake(gp));
        // From here on the G may be woken and run: touch nothing of the
        // closure's captures.
        true
    });
}

// ---------------------------------------------------------------------------
// Timer, Ticker, after.

/// Panics unless the runtime runs (timers need Ms to fire them).
#[track_caller]
fn need_runtime() {
    // Timers run on the runtime's Ps: start it if nothing did.
    crate::runtime::ensure_started();
}

/// Returns a receiver that gets the current time once `d` has passed (Go's
/// `time.After`). Works in goroutines and on plain threads.
///
/// The channel holds the one value; after it has been received, further
/// receives report the channel closed (Go's would block forever). Dropping
/// the receiver before the time is up makes the timer a no-op.
///
/// # Panics
/// If the runtime had to be started and the environment is bad.
#[track_caller]
pub fn after(d: Duration) -> Receiver<Instant> {
    need_runtime();
    let (task, rx) = crate::chan::after_channel();
    let hold = crate::group::Hold::current();
    let task: Arc<dyn TimerTask> = if hold.group().id == 0 {
        task
    } else {
        Arc::new(HeldTask { task, _hold: hold })
    };
    add_task(when_after(d), task, 0);
    rx
}

/// A timer task that keeps its group from being judged deadlocked until
/// the heap drops it (fired or discarded).
struct HeldTask {
    task: Arc<dyn TimerTask>,
    _hold: crate::group::Hold,
}

impl TimerTask for HeldTask {
    fn fire(self: Arc<Self>, seq: u64) {
        self.task.clone().fire(seq)
    }

    fn live(&self, seq: u64) -> bool {
        self.task.live(seq)
    }
}

/// The arming of a [`Timer`] or [`Ticker`] (under `TimerCore::state`).
struct Arming {
    /// The current arming's number; heap entries with another are stale.
    seq: u64,
    armed: bool,
    /// Deadline of the current arming (nanotime).
    when: u64,
    /// Ticker period in ns (0: one-shot).
    period: u64,
    /// The P whose heap holds the current entry.
    p: usize,
    /// While armed: keeps the arming goroutine's group from being judged
    /// deadlocked (the timer will send).
    hold: Option<crate::group::Hold>,
}

/// What a [`Timer`] or [`Ticker`] shares with its heap entries.
struct TimerCore {
    state: Mutex<Arming>,
    /// `seq` of the armed entry, or `u64::MAX` if none (read by `live`
    /// under the heap lock, so it must be an atomic).
    live_seq: AtomicU64,
    tx: Sender<Instant>,
}

impl TimerTask for TimerCore {
    fn fire(self: Arc<Self>, seq: u64) {
        let mut st = self.state.lock();
        if !st.armed || st.seq != seq {
            return; // stopped or reset since this entry was armed
        }
        // A full channel drops the value: the receiver is slow (Go).
        let _ = self.tx.try_send(Instant::now());
        if st.period == 0 {
            st.armed = false;
            st.hold = None;
            self.live_seq.store(u64::MAX, Ordering::Relaxed);
            return;
        }
        // Next tick, skipping the ones already missed (Go's period
        // arithmetic in `timer.unlockAndRun`).
        let now = nanotime();
        let mut next = st.when.saturating_add(st.period);
        if next <= now {
            next = next.saturating_add(st.period.saturating_mul((now - next) / st.period + 1));
        }
        st.when = next;
        let p = pick_p();
        st.p = p;
        add_task_on(p, next, self.clone(), seq);
    }

    fn live(&self, seq: u64) -> bool {
        self.live_seq.load(Ordering::Relaxed) == seq
    }
}

impl TimerCore {
    fn new(d: Duration, period: u64) -> (Arc<TimerCore>, Receiver<Instant>) {
        let (tx, rx) = channel(1);
        let core = Arc::new(TimerCore {
            state: Mutex::new(Arming {
                seq: 0,
                armed: false,
                when: 0,
                period,
                p: 0,
                hold: None,
            }),
            live_seq: AtomicU64::new(u64::MAX),
            tx,
        });
        core.rearm(&rx, Some((d, period)));
        (core, rx)
    }

    /// Stops the current arming (draining a value it already delivered),
    /// then, with `next`, arms again after `d` with the given period.
    /// Returns whether the timer was active: armed, or its value still
    /// unreceived in the channel.
    #[inline(never)]
    fn rearm(self: &Arc<Self>, rx: &Receiver<Instant>, next: Option<(Duration, u64)>) -> bool {
        let mut st = self.state.lock();
        let was_armed = st.armed;
        if was_armed {
            stopped(st.p);
        }
        st.armed = false;
        st.hold = None;
        st.seq = st.seq.wrapping_add(1);
        self.live_seq.store(u64::MAX, Ordering::Relaxed);
        // Under our lock no firing can add a value behind this drain.
        let mut drained = false;
        while rx.try_recv().is_ok() {
            drained = true;
        }
        if let Some((d, period)) = next {
            st.armed = true;
            st.hold = Some(crate::group::Hold::current());
            st.period = period;
            st.when = when_after(d);
            st.p = pick_p();
            self.live_seq.store(st.seq, Ordering::Relaxed);
            add_task_on(st.p, st.when, self.clone(), st.seq);
        }
        was_armed || drained
    }
}

/// A single event in the future (Go's `time.Timer`): after the duration,
/// the current time is delivered on [`channel`](Timer::channel).
///
/// ```no_run
/// use std::time::Duration;
/// gort::run(|| {
///     let t = gort::time::Timer::new(Duration::from_millis(10));
///     let fired_at = t.channel().recv().unwrap();
///     # let _ = fired_at;
/// });
/// ```
///
/// [`stop`](Timer::stop) and [`reset`](Timer::reset) follow Go 1.23: once
/// they return, no value from before them is received. Dropping the timer
/// stops it. Starts the runtime if nothing did; usable from goroutines
/// and plain threads.
pub struct Timer {
    core: Arc<TimerCore>,
    rx: Receiver<Instant>,
}

impl Timer {
    /// A timer that fires once, `d` from now.
    ///
    /// # Panics
    /// If the runtime had to be started and the environment is bad.
    #[track_caller]
    pub fn new(d: Duration) -> Timer {
        need_runtime();
        let (core, rx) = TimerCore::new(d, 0);
        Timer { core, rx }
    }

    /// The channel the time is delivered on (capacity 1).
    pub fn channel(&self) -> &Receiver<Instant> {
        &self.rx
    }

    /// Stops the timer. Returns true if this call stopped it (it had not
    /// fired, or had fired but its value was not received yet: that value
    /// is discarded), false if it had already expired and been received,
    /// or was stopped.
    pub fn stop(&self) -> bool {
        self.core.rearm(&self.rx, None)
    }

    /// Re-arms the timer to fire `d` from now, discarding a pending
    /// firing or unreceived value. Returns whether the timer was active
    /// (as [`stop`](Timer::stop) would have).
    pub fn reset(&self, d: Duration) -> bool {
        self.core.rearm(&self.rx, Some((d, 0)))
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        self.stop();
    }
}

impl std::fmt::Debug for Timer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timer").finish_non_exhaustive()
    }
}

/// Delivers the time on [`channel`](Ticker::channel) every period (Go's
/// `time.Ticker`). The channel holds one tick: a receiver slower than the
/// period misses ticks rather than getting a backlog, and a tick late by
/// more than a period is not repeated (the next one is on the period's
/// grid). Dropping the ticker stops it.
pub struct Ticker {
    core: Arc<TimerCore>,
    rx: Receiver<Instant>,
}

fn period_ns(period: Duration) -> u64 {
    assert!(!period.is_zero(), "gort::time::Ticker: non-positive period");
    period.as_nanos().clamp(1, u64::MAX as u128) as u64
}

impl Ticker {
    /// A ticker with the given period; the first tick comes one period
    /// from now.
    ///
    /// # Panics
    /// If `period` is zero (as Go's `NewTicker`), or if the runtime has not
    /// been started.
    #[track_caller]
    pub fn new(period: Duration) -> Ticker {
        let ns = period_ns(period);
        need_runtime();
        let (core, rx) = TimerCore::new(period, ns);
        Ticker { core, rx }
    }

    /// The channel ticks are delivered on (capacity 1).
    pub fn channel(&self) -> &Receiver<Instant> {
        &self.rx
    }

    /// Stops the ticker: no tick is received after this returns.
    pub fn stop(&self) {
        self.core.rearm(&self.rx, None);
    }

    /// Stops the ticker and restarts it with a new period, the next tick
    /// one period from now.
    ///
    /// # Panics
    /// If `period` is zero.
    pub fn reset(&self, period: Duration) {
        let ns = period_ns(period);
        self.core.rearm(&self.rx, Some((period, ns)));
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop();
    }
}

impl std::fmt::Debug for Ticker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticker").finish_non_exhaustive()
    }
}
