//! Spawning goroutines and waiting for them: `spawn`, `JoinHandle`, `run`,
//! `exit`.
//!
//! A spawn makes one allocation: a `Packet` holding the closure and, later,
//! its result. The G holds it as a `Task`, the `JoinHandle` as `Joinable`.
//!
//! # The join handshake (`Packet::state`)
//!
//! | state        | meaning                                          |
//! |--------------|--------------------------------------------------|
//! | `RUNNING`(0) | no result yet, nobody waiting                    |
//! | `DONE` (1)   | result stored; whoever joins takes it            |
//! | a `*Waiter`  | no result yet; a joiner waits (goroutine or thread) |
//!
//! The goroutine stores its result, then swaps in `DONE`; if it finds a
//! waiter it wakes it. A joining goroutine publishes its waiter from g0
//! (inside `park`), so it is never woken before its context is saved.

use crate::deadlock::{self, RunWait};
use crate::g::{Task, WaitReason};
use crate::park::Waiter;
use std::any::Any;
use std::cell::UnsafeCell;
use std::panic::{self, AssertUnwindSafe, Location};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

const RUNNING: usize = 0;
const DONE: usize = 1;

/// The payload a goroutine ended by [`exit`] leaves in its join result:
/// `join()` returns `Err(payload)` and `payload.is::<Exit>()` holds.
#[derive(Debug)]
pub struct Exit;

/// How the code map (`symbols`) recognises `Packet::run`, the frame under
/// every goroutine's closure (which optimised builds inline into it): the
/// demangled names of its instances start with this and end with
/// `g::TASK_RUN_SUFFIX`.
pub(crate) const PACKET_PREFIX: &str = concat!("<", module_path!(), "::Packet<");

struct Packet<F, T> {
    state: AtomicUsize,
    f: UnsafeCell<Option<F>>,
    result: UnsafeCell<Option<std::thread::Result<T>>>,
}

// SAFETY: `f` is taken once by the goroutine; `result` is written once by
// the goroutine before `state` becomes DONE and read once by the joiner
// after it observed DONE (acquire). F and T are Send.
unsafe impl<F: Send, T: Send> Sync for Packet<F, T> {}

/// The joiner's view of a packet, without the closure type.
trait Joinable<T>: Send + Sync {
    fn state(&self) -> &AtomicUsize;
    /// # Safety
    /// Only after observing DONE, once.
    unsafe fn take_result(&self) -> std::thread::Result<T>;
}

impl<F, T> Joinable<T> for Packet<F, T>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    fn state(&self) -> &AtomicUsize {
        &self.state
    }

    unsafe fn take_result(&self) -> std::thread::Result<T> {
        // SAFETY: the caller observed DONE, so the write happened before.
        match unsafe { (*self.result.get()).take() } {
            Some(r) => r,
            None => crate::fatal("join: goroutine result taken twice"),
        }
    }
}

impl<F, T> Task for Packet<F, T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    fn entry_name(&self) -> &'static str {
        std::any::type_name::<F>()
    }

    fn run(self: Arc<Self>) {
        // SAFETY: only the goroutine takes the closure, once.
        let f = unsafe { (*self.f.get()).take() };
        let Some(f) = f else {
            crate::fatal("goroutine closure run twice")
        };
        let result = panic::catch_unwind(AssertUnwindSafe(f));
        // The goroutine's `local!` values go before its result is
        // published: after `join` returns they are gone, as a thread's
        // thread-locals are.
        crate::local::end_goroutine();
        // SAFETY: single writer, before publishing DONE.
        unsafe { *self.result.get() = Some(result) };
        let prev = self.state.swap(DONE, Ordering::AcqRel);
        if prev != RUNNING {
            // SAFETY: a published waiter stays alive until it is woken, and
            // only this swap could see it.
            unsafe { Waiter::wake(prev as *const Waiter, 0) };
        }
    }
}

/// An owned permission to wait for a goroutine and take its result.
///
/// Dropping it detaches the goroutine.
///
/// It is not a `Future`: its join word holds the one parked waiter
/// (goroutine or thread), and a second, waker-based protocol would cost
/// every join. Async code that waits for a goroutine can have it send its
/// result on a `futures` oneshot or `async-channel` (goroutines send with
/// [`block_on`](crate::block_on) where needed).
pub struct JoinHandle<T> {
    packet: Arc<dyn Joinable<T>>,
    id: u64,
}

impl<T> JoinHandle<T> {
    /// The goroutine's id (as `current_id()` returns inside it).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Whether the goroutine has ended (join would not wait).
    pub fn is_finished(&self) -> bool {
        self.packet.state().load(Ordering::Acquire) == DONE
    }

    /// Waits for the goroutine to end and returns its result, or the panic
    /// payload if it panicked (or [`Exit`] if it called [`exit`]).
    ///
    /// In a goroutine this parks the goroutine, not the thread; on a plain
    /// thread it blocks the thread.
    pub fn join(self) -> std::thread::Result<T> {
        let state = self.packet.state();
        if state.load(Ordering::Acquire) != DONE {
            let waiter = Waiter::new();
            let wp = &waiter as *const Waiter as usize;
            // Publishing fails only if the goroutine finished meanwhile.
            waiter.wait(WaitReason::JoinHandle, &mut || {
                state
                    .compare_exchange(RUNNING, wp, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            });
            let s = state.load(Ordering::Acquire);
            if s != DONE {
                crate::fatal(&format!("join: woken with state {s:#x}, not done"));
            }
        }
        // SAFETY: DONE observed (acquire) and `self` is consumed: once.
        unsafe { self.packet.take_result() }
    }
}

impl<T> std::fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinHandle").field("id", &self.id).finish()
    }
}

/// Starts a goroutine running `f` and returns a handle to join it.
///
/// Callable from a goroutine or from any thread; the first call starts
/// the runtime (with the settings of `GORT_MAXPROCS`/`GORT_DEBUG`) if
/// nothing did. Dropping the handle detaches the goroutine. For a name in
/// dumps, see [`Spawn`](crate::Spawn); to borrow from the caller, see
/// [`scope`](crate::scope).
///
/// # `thread_local!` is per OS thread, not per goroutine
///
/// A goroutine may move to another OS thread whenever it waits or is
/// preempted, and other goroutines run on its thread meanwhile. A value
/// taken from a `thread_local!` can change under it:
///
/// ```no_run
/// use std::cell::Cell;
/// thread_local!(static COUNT: Cell<u32> = const { Cell::new(0) });
///
/// gort::run(|| {
///     COUNT.set(1);
///     gort::yield_now(); // may resume on another thread, and others ran on this one
///     let maybe_not_1 = COUNT.get(); // another thread's (or another goroutine's) value
///     # let _ = maybe_not_1;
/// });
/// ```
///
/// Use [`gort::local!`](crate::local!) for per-goroutine values, or
/// [`lock_os_thread`](crate::lock_os_thread) to keep the goroutine on its
/// thread (and other goroutines off it) while thread-affine code runs.
///
/// `f` may also be preempted by signal in its own code and resumed on
/// another thread (never inside std, the allocator or while unwinding; see
/// the crate page's *Preemption hazards*): thread-tied state it holds
/// across work needs [`preempt::disable`](crate::preempt::disable) too.
///
/// # Panics
/// If the runtime had to be started and `GORT_MAXPROCS`/`GORT_DEBUG` hold
/// bad values.
#[track_caller]
pub fn spawn<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    crate::runtime::ensure_started();
    spawn_at(f, Location::caller(), None, 0)
}

pub(crate) fn spawn_at<F, T>(
    f: F,
    site: &'static Location<'static>,
    name: Option<Arc<str>>,
    stack_size: usize,
) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let (task, mut handle) = packet(f);
    handle.id = crate::sched::newproc(task, site, name, stack_size);
    handle
}

/// A task running `f` and the handle that joins it (id 0 until set).
pub(crate) fn packet<F, T>(f: F) -> (Arc<dyn Task>, JoinHandle<T>)
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let packet = Arc::new(Packet {
        state: AtomicUsize::new(RUNNING),
        f: UnsafeCell::new(Some(f)),
        result: UnsafeCell::new(None),
    });
    (packet.clone(), JoinHandle { packet, id: 0 })
}

/// Runs `f` as a main goroutine and blocks the calling thread until it
/// returns, starting the runtime from the environment if needed. A panic in
/// `f` comes out of `run`. Several threads may call `run` at once: they
/// share the one runtime.
///
/// The result need not be `Send` (`fn main() -> Result<(), Box<dyn
/// Error>>` works with `#[gort::main]`): it is handed over once the main
/// goroutine has ended, as the goroutine itself moves between threads.
///
/// Each `run` is a *group*: its main goroutine and every goroutine spawned
/// from it, transitively. If they all block for good (on channels,
/// mutexes, condvars, wait groups, joins — with no timer, network wait,
/// system call or `spawn_blocking` task of theirs pending), `run` panics
/// with `all goroutines are asleep - deadlock!` and a dump of the group's
/// goroutines, whatever other groups do. The state must hold for a grace
/// of a few hundred milliseconds, in case a plain thread wakes one; a
/// wait longer than that for a plain thread, or for a goroutine of another
/// group (a service started by another `run`), is reported too: use
/// `spawn_blocking` for blocking work, and start what a run waits for
/// inside it.
///
/// # Panics
/// If called from inside a goroutine (use `spawn` and `join` there), if
/// `f` panics, on deadlock, or if `GORT_MAXPROCS`/`GORT_DEBUG` hold bad
/// values.
#[track_caller]
pub fn run<F, T>(f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: 'static,
{
    match run_within(f, Location::caller(), crate::group::Group::new(), None) {
        Ok(v) => v,
        Err(_) => unreachable!("run without a timeout timed out"),
    }
}

/// Carries a value that is not `Send` from the main goroutine to the
/// thread waiting in `run`.
struct Handover<T>(T);

// SAFETY: the value is made on the main goroutine and moved to the `run`
// caller only after that goroutine has ended. Nothing the goroutine kept
// can touch it concurrently: its `local!` values are dropped before the
// hand-over, and other goroutines can only have received `Send` values
// from it (`spawn` requires `Send`). This is the same move a goroutine
// makes whenever it resumes on another thread.
unsafe impl<T> Send for Handover<T> {}

/// `run`, with a time limit for `#[gort::test]`: `Err(report)` with a
/// goroutine dump of the group if the main goroutine has not ended by
/// then (it is left running).
pub(crate) fn run_within<F, T>(
    f: F,
    site: &'static Location<'static>,
    group: crate::group::Group,
    limit: Option<std::time::Duration>,
) -> Result<T, String>
where
    F: FnOnce() -> T + Send + 'static,
    T: 'static,
{
    if !crate::sched::getg().is_null() {
        panic!("gort::run called from inside a goroutine: use gort::spawn(...).join() there");
    }
    crate::runtime::ensure_started();
    let wait = RunWait::new(group, site);
    /// Tells the waiting thread the main goroutine ended, however it ended
    /// (runs during unwinding too).
    struct Done(Arc<RunWait>);
    impl Drop for Done {
        fn drop(&mut self) {
            self.0.done.store(true, Ordering::Release);
            self.0.note.wakeup();
        }
    }
    let done = Done(wait.clone());
    let main_wait = wait.clone();
    let h = {
        let _group = crate::group::ThreadGroup::enter(group);
        spawn_at(
            move || {
                let _done = done;
                crate::panics::mark_run_main();
                main_wait
                    .main_g
                    .store(crate::sched::getg(), Ordering::Release);
                drop(main_wait);
                Handover(f())
            },
            site,
            None,
            0,
        )
    };
    deadlock::register(&wait);
    let deadline = limit.map(|d| std::time::Instant::now() + d);
    // Check, then sleep, then re-arm: a wake-up between the check and the
    // sleep leaves the note set, so it is never lost.
    let report = loop {
        // `done` first: once the main goroutine has ended, a report that
        // raced with its end is not this run's to raise.
        if wait.done.load(Ordering::Acquire) {
            break None;
        }
        if let Some(r) = wait.report.lock().take() {
            break Some(r);
        }
        match deadline {
            None => wait.note.sleep(),
            Some(d) => {
                let left = d.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() || !wait.note.sleep_timeout(left) {
                    if wait.done.load(Ordering::Acquire) {
                        continue;
                    }
                    deadlock::unregister(&wait);
                    let s = crate::sched::sched();
                    return Err(format!(
                        "timed out after {:?}; the goroutines of this test:\n\n{}",
                        limit.unwrap_or_default(),
                        crate::trace::goroutine_dump_group(s, group.id)
                    ));
                }
            }
        }
        wait.note.clear();
    };
    deadlock::unregister(&wait);
    if let Some(r) = report {
        panic!("{r}");
    }
    // Its goroutines may live on; reusing the state only makes a later
    // run's check more careful (see `group::GroupState`).
    group.release();
    // The main goroutine ended; its result is (about to be) stored.
    let main_id = h.id();
    match h.join() {
        Ok(v) => Ok(v.0),
        Err(payload) if payload.is::<Exit>() => {
            // As in Go: the program goes on until nothing is left to run,
            // which is then reported as a deadlock.
            wait.main_exited.store(true, Ordering::Release);
            deadlock::register(&wait);
            let r = loop {
                if let Some(r) = wait.report.lock().take() {
                    break r;
                }
                wait.note.sleep();
                wait.note.clear();
            };
            deadlock::unregister(&wait);
            panic!("{r}")
        }
        Err(payload) => {
            crate::exectrace::panic_in_run(); // exectrace: flight recorder
            crate::panics::rethrow(main_id, payload)
        }
    }
}

/// Ends the current goroutine, like Go's `runtime.Goexit`: it unwinds the
/// goroutine's stack, running destructors, and its `JoinHandle::join`
/// returns `Err` with an [`Exit`] payload.
///
/// Implemented by unwinding, so a `catch_unwind` inside the goroutine can
/// stop it; do not wrap `exit` in one.
///
/// # Panics
/// When called outside a goroutine.
pub fn exit() -> ! {
    if crate::sched::getg().is_null() {
        panic!("gort::exit called outside a goroutine");
    }
    panic::resume_unwind(Box::new(Exit) as Box<dyn Any + Send>)
}
