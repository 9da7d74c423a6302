//! Goroutine groups and the deadlock check per group (docs/design.md,
//! "Deadlock detection").
//!
//! Each `gort::run` (and so each `#[gort::test]`) starts a group: its main
//! goroutine and, transitively, every goroutine spawned from one of the
//! group's goroutines (or from a `spawn_blocking` task started by one).
//! A goroutine spawned from a plain thread belongs to no group (id 0).
//!
//! # Durably blocked (Go's testing/synctest bubbles)
//!
//! A group is deadlocked when every one of its goroutines is parked on a
//! wait only another goroutine can end — channel, mutex, rwlock, condvar,
//! wait group, once, join — with no timer of the group pending (a sleep, a
//! channel timeout, an armed `Timer`/`Ticker`, an `after`), none waiting
//! on the network, in a system call or in `block_on`, and no
//! `spawn_blocking` task of the group still running. Goroutines of other
//! groups do not matter: a test that leaks a goroutine parked in `accept`
//! does not hide another test's deadlock.
//!
//! # The checker
//!
//! A helper thread (`gort-deadlock`, started with the first `run`) looks
//! every `CHECK_EVERY` while some `run` waits. First at each group's main
//! goroutine alone: a deadlocked group's main goroutine stays in one
//! durable park, so only a group whose main goroutine did not move since
//! the last look is examined further, by a walk over `allg` (stopped as
//! soon as each examined group shows a live goroutine; and spaced so that
//! walking takes at most a tenth of the time). A group that looks
//! deadlocked is reported only
//! if it looks *the same* `GRACE` later: the same goroutines, each parked
//! the same number of times (`G::park_mark`). A plain thread can still
//! wake a goroutine (a channel send from outside the runtime), which the
//! runtime cannot see coming; such a wake-up within the grace moves a park
//! count and cancels the report. The report goes to that group's `run`
//! only, with a dump of that group's goroutines.

use crate::deadlock::RunWait;
use crate::g::{G_DEAD, G_IDLE, G_WAITING};
use crate::lock::Mutex;
use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar};
use std::time::{Duration, Instant};

/// How often the checker looks while some `run` waits.
const CHECK_EVERY: Duration = Duration::from_millis(100);
/// How long a group must look deadlocked, unchanged, before it is reported.
pub(crate) const GRACE: Duration = Duration::from_millis(300);

static NEXT_GROUP: AtomicU64 = AtomicU64::new(1);

/// What a group shares with whoever can keep it alive: how many armed
/// timers and running `spawn_blocking` tasks it has. Reached through a
/// pointer in each G (no lock, no hashing on the timer paths). States are
/// never freed: a run's state goes back to a pool when the run returns
/// with no hold left, and is reused by a later run. A goroutine leaked by
/// the old run may still take holds on it: that only makes the new run's
/// check more careful (a deadlock seen later, never a false one).
pub(crate) struct GroupState {
    holds: AtomicUsize,
}

static FREE_STATES: Mutex<Vec<&'static GroupState>> = Mutex::new(Vec::new());

/// A group: its id (which goroutines belong, exactly) and its state.
#[derive(Clone, Copy)]
pub(crate) struct Group {
    pub(crate) id: u64,
    state: *const GroupState,
}

// SAFETY: `state` points at a `GroupState` that is never freed and whose
// fields are atomics.
unsafe impl Send for Group {}
// SAFETY: a `Group` is immutable after creation and its `state` points at a
// never-freed `GroupState` of atomics, so shared references are sound.
unsafe impl Sync for Group {}

impl Group {
    /// No group (goroutines spawned from plain threads).
    pub(crate) const NONE: Group = Group {
        id: 0,
        state: std::ptr::null(),
    };

    /// A fresh group (for a `run`).
    pub(crate) fn new() -> Group {
        let state = FREE_STATES.lock().pop().unwrap_or_else(|| {
            Box::leak(Box::new(GroupState {
                holds: AtomicUsize::new(0),
            }))
        });
        Group {
            id: NEXT_GROUP.fetch_add(1, Ordering::Relaxed),
            state,
        }
    }

    /// The run is over: its state may serve another run.
    pub(crate) fn release(self) {
        // SAFETY: states are never freed.
        if let Some(st) = unsafe { self.state.as_ref() } {
            if st.holds.load(Ordering::SeqCst) == 0 {
                FREE_STATES.lock().push(st);
            }
        }
    }

    /// Whether a timer or `spawn_blocking` task of the group is pending.
    pub(crate) fn held(&self) -> bool {
        // SAFETY: states are never freed.
        unsafe { self.state.as_ref() }.is_some_and(|st| st.holds.load(Ordering::SeqCst) > 0)
    }

    pub(crate) fn state_ptr(&self) -> *mut GroupState {
        self.state as *mut GroupState
    }
}

thread_local! {
    /// The group a plain thread spawns into (set by `run` around the spawn
    /// of its main goroutine, and by `spawn_blocking` threads for a task).
    static THREAD_GROUP: Cell<Group> = const { Cell::new(Group::NONE) };
}

/// The group of the caller: its goroutine's, or the plain thread's.
pub(crate) fn current() -> Group {
    of(crate::sched::getg())
}

/// The group of goroutine `gp` (the caller's own), or of the calling
/// plain thread if null.
pub(crate) fn of(gp: *mut crate::g::G) -> Group {
    if gp.is_null() {
        THREAD_GROUP.with(|c| c.get())
    } else {
        // SAFETY: the current goroutine is alive while it runs.
        let g = unsafe { &*gp };
        Group {
            id: g.group.load(Ordering::Relaxed),
            state: g.gstate.load(Ordering::Relaxed),
        }
    }
}

/// Makes goroutines spawned by this plain thread join `group` until dropped.
pub(crate) struct ThreadGroup(Group);

impl ThreadGroup {
    pub(crate) fn enter(group: Group) -> ThreadGroup {
        ThreadGroup(THREAD_GROUP.with(|c| c.replace(group)))
    }
}

impl Drop for ThreadGroup {
    fn drop(&mut self) {
        THREAD_GROUP.with(|c| c.set(self.0));
    }
}

/// Keeps a group from being reported while it lives (an armed timer, a
/// running `spawn_blocking` task).
pub(crate) struct Hold(Group);

impl Hold {
    /// A hold on the caller's group (a no-op outside any group).
    pub(crate) fn current() -> Hold {
        let g = current();
        // SAFETY: states are never freed.
        if let Some(st) = unsafe { g.state.as_ref() } {
            st.holds.fetch_add(1, Ordering::SeqCst);
        }
        Hold(g)
    }

    pub(crate) fn group(&self) -> Group {
        self.0
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        // SAFETY: states are never freed.
        if let Some(st) = unsafe { self.0.state.as_ref() } {
            st.holds.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

// ---------------------------------------------------------------------------
// Panic messages of a test's goroutines (for `#[gort::test]`).

/// Groups whose goroutines' panic messages are kept, with the messages.
static PANICS: Mutex<Option<HashMap<u64, Vec<String>>>> = Mutex::new(None);

/// At most this many messages are kept per group.
const PANICS_KEPT: usize = 8;

/// Starts keeping the panic messages of `group`'s goroutines.
pub(crate) fn keep_panics(group: u64) {
    PANICS
        .lock()
        .get_or_insert_with(HashMap::new)
        .insert(group, Vec::new());
}

/// Stops keeping them and returns those kept.
pub(crate) fn take_panics(group: u64) -> Vec<String> {
    PANICS
        .lock()
        .as_mut()
        .and_then(|m| m.remove(&group))
        .unwrap_or_default()
}

/// From the panic hook: a goroutine of `group` panicked with `msg`.
pub(crate) fn panicked(group: u64, msg: impl FnOnce() -> String) {
    let mut panics = PANICS.lock();
    if let Some(v) = panics.as_mut().and_then(|m| m.get_mut(&group)) {
        if v.len() < PANICS_KEPT {
            v.push(msg());
        }
    }
}

// ---------------------------------------------------------------------------
// The checker thread.

static CHECKER: AtomicBool = AtomicBool::new(false);
static WAKE: (std::sync::Mutex<bool>, Condvar) = (std::sync::Mutex::new(false), Condvar::new());

/// A `run` started waiting: make sure the checker runs.
pub(crate) fn run_registered() {
    if !CHECKER.swap(true, Ordering::AcqRel) {
        let spawned = std::thread::Builder::new()
            .name("gort-deadlock".into())
            .spawn(checker);
        if spawned.is_err() {
            // Without the checker only the process-wide check works.
            CHECKER.store(false, Ordering::Release);
        }
        return;
    }
    let (lock, cv) = &WAKE;
    *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
    cv.notify_one();
}

/// What a group looked like: its goroutines and their park counts.
type Shape = Vec<(u64, u64)>;

fn checker() {
    let _rt = crate::deadlock::runtime_thread();
    // Per group: the main goroutine's park mark last round, and the shape
    // of a group that looked deadlocked, with when it was seen.
    let mut main_marks: HashMap<u64, u64> = HashMap::new();
    let mut seen: HashMap<u64, (Instant, Shape)> = HashMap::new();
    let mut pause = CHECK_EVERY;
    loop {
        let runs: Vec<Arc<RunWait>> = crate::deadlock::group_runs();
        if runs.is_empty() {
            main_marks.clear();
            seen.clear();
            let (lock, cv) = &WAKE;
            let mut woken = lock.lock().unwrap_or_else(|e| e.into_inner());
            while !*woken {
                woken = cv.wait(woken).unwrap_or_else(|e| e.into_inner());
            }
            *woken = false;
            continue;
        }
        std::thread::sleep(pause);
        let Some(s) = crate::sched::try_sched() else {
            continue;
        };
        // Cheap filter first: a deadlocked group's main goroutine stays
        // in one durable park. Only groups whose main goroutine did so
        // since the last round are walked.
        let mut suspects = Vec::new();
        for r in &runs {
            let gp = r.main_g.load(Ordering::Acquire);
            if gp.is_null() {
                continue; // not started yet
            }
            // SAFETY: Gs are never freed; these fields are atomics.
            let g = unsafe { &*gp };
            let st = g.status();
            let mark = g.park_mark.load(Ordering::Relaxed);
            let prev = main_marks.insert(r.group.id, mark);
            if st == G_WAITING && mark & 1 == 1 && prev == Some(mark) && !r.group.held() {
                suspects.push(r.group.id);
            }
        }
        main_marks.retain(|g, _| runs.iter().any(|r| r.group.id == *g));
        seen.retain(|g, _| suspects.contains(g));
        if suspects.is_empty() {
            continue;
        }
        let t0 = Instant::now();
        let shapes = blocked_shapes(s, &suspects);
        // Walking `allg` costs in proportion to the goroutines alive: keep
        // it under a tenth of the checker's time.
        pause = CHECK_EVERY.max(t0.elapsed() * 10);
        let now = Instant::now();
        seen.retain(|g, _| shapes.contains_key(g));
        for (group, shape) in shapes {
            match seen.get(&group) {
                Some((since, old)) if *old == shape => {
                    let held = runs.iter().any(|r| r.group.id == group && r.group.held());
                    if now.duration_since(*since) >= GRACE && !held {
                        seen.remove(&group);
                        report(s, &runs, group);
                    }
                }
                _ => {
                    seen.insert(group, (now, shape));
                }
            }
        }
    }
}

/// Of `groups`, those whose goroutines all look durably blocked, with
/// their shapes: one walk over `allg`, which stops early once every group
/// has shown a live goroutine.
fn blocked_shapes(s: &crate::sched::Sched, groups: &[u64]) -> HashMap<u64, Shape> {
    let mut shapes: HashMap<u64, Option<Shape>> =
        groups.iter().map(|&g| (g, Some(Vec::new()))).collect();
    let mut undecided = groups.len();
    s.with_gs(|gs| {
        for &g in gs {
            let Some(slot) = shapes.get_mut(&g.group.load(Ordering::Relaxed)) else {
                continue;
            };
            let Some(shape) = slot else { continue };
            let st = g.status();
            if st == G_IDLE || st == G_DEAD {
                continue;
            }
            // Status first (acquire): the mark of the park that set WAITING is
            // visible then.
            let mark = g.park_mark.load(Ordering::Relaxed);
            if st != G_WAITING || mark & 1 == 0 {
                *slot = None; // live: this group is not deadlocked
                undecided -= 1;
                if undecided == 0 {
                    break;
                }
                continue;
            }
            shape.push((g.id(), mark));
        }
    });
    shapes
        .into_iter()
        .filter_map(|(g, s)| {
            s.filter(|s| !s.is_empty()).map(|mut s| {
                s.sort_unstable();
                (g, s)
            })
        })
        .collect()
}

fn report(s: &crate::sched::Sched, runs: &[Arc<RunWait>], group: u64) {
    let Some(run) = runs.iter().find(|r| r.group.id == group) else {
        return;
    };
    let text = format!(
        "all goroutines are asleep - deadlock!\n\n(the goroutines of gort::run at {})\n\n{}",
        run.site,
        crate::trace::goroutine_dump_group(s, group)
    );
    crate::deadlock::report_one(s, run, text);
}
