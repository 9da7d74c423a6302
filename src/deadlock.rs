//! Deadlock detection (Go's `checkdead`; docs/design.md, "Deadlock
//! detection") and the threads that wait in `gort::run`, which are the
//! ones told about it.
//!
//! # When is it a deadlock?
//!
//! No M runs goroutine code (every M is idle, parked on its note, or a
//! locked M waiting for its goroutine), every P is idle, no goroutine is
//! runnable, no timer is pending, and nobody waits on the network — yet some
//! thread waits in `gort::run` for its main goroutine. Then nothing inside
//! the runtime can ever make progress.
//!
//! Unlike Go, a plain thread outside the runtime can wake a goroutine (send
//! on a channel, unlock a mutex). So sysmon, which checks whenever every P
//! is idle, reports only after the state has lasted `GRACE` with no
//! goroutine spawned or run in between (a goroutine a plain thread wakes
//! goes through the global queue and so starts a fresh time slice, which
//! moves its P's schedtick): a thread that hands work to the
//! runtime within that time is not mistaken for a deadlock. A goroutine
//! that waits longer than that for a plain thread is reported (README).
//!
//! # Reporting
//!
//! Each waiting `run` caller gets the report and panics with it (a
//! deadlocked test fails instead of hanging); with
//! `Builder::on_deadlock(OnDeadlock::Abort)` the report goes to stderr as
//! Go's `fatal error: ...` and the process exits with code 2. A main
//! goroutine that called `gort::exit()` makes `run` wait until no goroutine
//! is left, then report Go's `no goroutines (main called runtime.Goexit) -
//! deadlock!` (with gort's name for Goexit).

use crate::g::{G_RUNNABLE, G_RUNNING, G_SYSCALL};
use crate::lock::Mutex;
use crate::note::Note;
use crate::sched::Sched;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the runtime must look deadlocked before it is reported, when
/// the process has threads of its own that might wake a goroutine.
pub(crate) const GRACE: Duration = Duration::from_millis(200);
/// The same when every thread of the process is the runtime's or waits in
/// `gort::run`: nothing outside can wake a goroutine, and the wait only
/// lets in-flight hand-offs between Ms settle (sysmon looks twice or more).
const GRACE_NO_THREADS: Duration = Duration::from_millis(2);

/// The runtime's own threads other than Ms (sysmon, helpers, the
/// `spawn_blocking` pool), by tid: they never wake a goroutine the
/// deadlock check could miss (a running `spawn_blocking` task counts as
/// live by itself).
static RUNTIME_THREADS: Mutex<Vec<libc::pid_t>> = Mutex::new(Vec::new());

/// Registers the calling thread as one of the runtime's until the guard
/// drops.
pub(crate) fn runtime_thread() -> RuntimeThread {
    let tid = crate::thread::gettid();
    RUNTIME_THREADS.lock().push(tid);
    RuntimeThread(tid)
}

pub(crate) struct RuntimeThread(libc::pid_t);

impl Drop for RuntimeThread {
    fn drop(&mut self) {
        RUNTIME_THREADS.lock().retain(|&t| t != self.0);
    }
}

/// Whether every thread of the process is an M, a runtime thread or a
/// thread waiting in `gort::run`: then no plain thread exists that could
/// still wake a goroutine (by a channel send, an unlock, a `WaitGroup`
/// done), and a deadlock needs no grace. Any thread we cannot account for
/// (or an unreadable /proc) says no.
fn only_known_threads(s: &Sched) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return false;
    };
    let mut known: Vec<libc::pid_t> = RUNTIME_THREADS.lock().clone();
    known.extend(RUNS.lock().iter().map(|r| r.tid));
    s.with_ms(|ms| known.extend(ms.iter().map(|m| m.procid.load(Ordering::Acquire))));
    for e in dir {
        let Some(tid) = e.ok().and_then(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.parse::<libc::pid_t>().ok())
        }) else {
            return false;
        };
        if !known.contains(&tid) {
            return false;
        }
    }
    true
}

/// What to do when every goroutine is asleep.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OnDeadlock {
    /// `gort::run` panics with the report (the default: a deadlocked test
    /// fails rather than hangs).
    #[default]
    Panic,
    /// Print Go's `fatal error: all goroutines are asleep - deadlock!` and
    /// the goroutine dump to stderr, and exit the process with code 2.
    Abort,
}

/// A thread blocked in `gort::run`.
pub(crate) struct RunWait {
    pub(crate) note: Note,
    /// Set when the main goroutine ended (by return, panic or exit).
    pub(crate) done: AtomicBool,
    /// The main goroutine called `gort::exit()`: wait for the runtime to
    /// empty, then report.
    pub(crate) main_exited: AtomicBool,
    pub(crate) report: Mutex<Option<String>>,
    /// The run's goroutine group (see `group`).
    pub(crate) group: crate::group::Group,
    /// Where `run` was called (named in the group's report).
    pub(crate) site: &'static std::panic::Location<'static>,
    /// The main goroutine, once it runs (the group checker looks at it
    /// first: a deadlocked group's main goroutine sits in one park).
    pub(crate) main_g: std::sync::atomic::AtomicPtr<crate::g::G>,
    /// The waiting thread (a known thread, see `only_known_threads`).
    tid: libc::pid_t,
}

impl RunWait {
    pub(crate) fn new(
        group: crate::group::Group,
        site: &'static std::panic::Location<'static>,
    ) -> Arc<RunWait> {
        Arc::new(RunWait {
            note: Note::new(),
            done: AtomicBool::new(false),
            main_exited: AtomicBool::new(false),
            report: Mutex::new(None),
            group,
            site,
            main_g: std::sync::atomic::AtomicPtr::new(std::ptr::null_mut()),
            tid: crate::thread::gettid(),
        })
    }
}

static RUNS: Mutex<Vec<Arc<RunWait>>> = Mutex::new(Vec::new());

/// A value that moves whenever a goroutine is spawned or runs a fresh
/// time slice: a deadlock candidate is confirmed only if it did not move.
/// Derived from counters the scheduler keeps anyway (a woken goroutine runs,
/// and `execute` bumps its P's schedtick), so the hot paths pay nothing.
fn progress_mark(s: &Sched) -> u64 {
    let ticks: u64 = s
        .allp()
        .iter()
        .map(|p| p.schedtick.load(Ordering::Relaxed) as u64)
        .sum();
    s.goroutine_counts().1.wrapping_add(ticks)
}

pub(crate) fn register(w: &Arc<RunWait>) {
    RUNS.lock().push(w.clone());
    crate::group::run_registered();
}

/// The waiting runs whose group the group checker judges (a main that
/// called `exit` waits for the whole runtime instead).
pub(crate) fn group_runs() -> Vec<Arc<RunWait>> {
    RUNS.lock()
        .iter()
        .filter(|r| r.group.id != 0 && !r.main_exited.load(Ordering::Acquire))
        .cloned()
        .collect()
}

/// Reports `text` to the one run `w` (the group checker's verdict).
pub(crate) fn report_one(s: &Sched, w: &Arc<RunWait>, text: String) {
    let abort = s.config().on_deadlock == OnDeadlock::Abort;
    if abort {
        crate::exectrace::deadlock(true); // exectrace
        crate::signal::write_stderr(format!("fatal error: {text}").as_bytes());
        crate::thread::exit_now(2);
    }
    let mut runs = RUNS.lock();
    let Some(i) = runs.iter().position(|x| Arc::ptr_eq(x, w)) else {
        return; // it returned (or was reported) meanwhile
    };
    runs.swap_remove(i);
    drop(runs);
    // The trace (a flight recorder's window) is written before the run
    // wakes up and maybe ends the process.
    crate::exectrace::deadlock(false); // exectrace
    *w.report.lock() = Some(text);
    w.note.wakeup();
}

pub(crate) fn unregister(w: &Arc<RunWait>) {
    RUNS.lock().retain(|x| !Arc::ptr_eq(x, w));
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Dead {
    /// Goroutines exist, all blocked.
    AllAsleep,
    /// No goroutine left, and some main goroutine called exit().
    NoGoroutines,
}

/// Checks the conditions in the module docs (no grace period).
pub(crate) fn check(s: &Sched) -> Option<Dead> {
    let any_main_exited = {
        let runs = RUNS.lock();
        if runs.is_empty() {
            return None;
        }
        runs.iter().any(|r| r.main_exited.load(Ordering::Acquire))
    };
    // Goroutines waiting on the network can be woken by the outside world,
    // and so can those a `spawn_blocking` task will wake.
    if crate::netpoll::waiters() > 0 || crate::blocking::live() > 0 {
        return None;
    }
    let ms = s.thread_count();
    let (parked, locked) = s.idle_ms();
    let mut idle = parked + locked;
    // An M blocked in the netpoller with nobody waiting there (the last
    // waiter left by a deadline or close) is as idle as a parked one.
    if crate::netpoll::blocking_poller_present() {
        idle += 1;
    }
    if ms > idle {
        return None; // some M runs (or sits in a syscall)
    }
    if !s.all_ps_idle()
        || s.global_runq_len() > 0
        || s.allp().iter().any(|p| !p.runq.is_empty())
        || crate::timer::next_timer(s) != u64::MAX
    {
        return None;
    }
    let mut live = 0;
    let runnable = s.with_gs(|gs| {
        gs.iter().any(|g| {
            let st = g.status();
            live += usize::from(st == crate::g::G_WAITING);
            matches!(st, G_RUNNABLE | G_RUNNING | G_SYSCALL)
        })
    });
    if runnable {
        return None;
    }
    if live == 0 {
        // Nothing blocked and nothing running: only a Goexit'ed main is
        // still waited for.
        return any_main_exited.then_some(Dead::NoGoroutines);
    }
    Some(Dead::AllAsleep)
}

/// sysmon's side: called while every P is idle. Confirms a deadlock after
/// `GRACE` of no progress and reports it. Returns how long sysmon may sleep
/// before calling again (None: nothing suspicious).
pub(crate) fn sysmon_check(s: &Sched, candidate: &mut Option<(Instant, u64)>) -> Option<Duration> {
    let Some(kind) = check(s) else {
        *candidate = None;
        return None;
    };
    let now = Instant::now();
    let p = progress_mark(s);
    match *candidate {
        Some((since, p0)) if p0 == p => {
            let waited = now.duration_since(since);
            // Threads are looked at only once the short grace is over
            // (reading /proc costs tens of µs).
            let grace = if waited >= GRACE_NO_THREADS && only_known_threads(s) {
                GRACE_NO_THREADS
            } else {
                GRACE
            };
            if waited >= grace {
                *candidate = None;
                report(s, kind, p);
                return None;
            }
            Some((GRACE - waited).min(GRACE_NO_THREADS))
        }
        _ => {
            *candidate = Some((now, p));
            Some(GRACE_NO_THREADS)
        }
    }
}

fn report(s: &Sched, kind: Dead, progress: u64) {
    let head = match kind {
        Dead::AllAsleep => "all goroutines are asleep - deadlock!",
        Dead::NoGoroutines => "no goroutines (main called gort::exit) - deadlock!",
    };
    // The runs waiting now are the ones the verdict is about; take them
    // before the dump, which can take a while (symbolizing stacks): a run
    // that starts meanwhile is not part of this deadlock (its new
    // goroutine may well end it). Not a run whose main goroutine has
    // already ended either: its thread is about to return, and the stuck
    // goroutines are not its own.
    let runs: Vec<Arc<RunWait>> = {
        let mut all = RUNS.lock();
        let (ended, waiting) = std::mem::take(&mut *all).into_iter().partition(|r| {
            r.done.load(Ordering::Acquire) && !r.main_exited.load(Ordering::Acquire)
        });
        *all = ended;
        waiting
    };
    if runs.is_empty() {
        return;
    }
    let text = format!("{head}\n\n{}", crate::trace::goroutine_dump(s));
    // Something ran or was spawned while the dump was made: no verdict.
    // The runs go back to waiting; sysmon looks again.
    if progress_mark(s) != progress {
        RUNS.lock().extend(runs);
        return;
    }
    crate::exectrace::deadlock(s.config().on_deadlock == OnDeadlock::Abort); // exectrace
    if s.config().on_deadlock == OnDeadlock::Abort {
        crate::signal::write_stderr(format!("fatal error: {text}").as_bytes());
        crate::thread::exit_now(2);
    }
    for r in runs {
        *r.report.lock() = Some(text.clone());
        r.note.wakeup();
    }
}
