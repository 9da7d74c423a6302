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
/// Callable from a goroutine or from any thread once the runtime runs
/// (inside `gort::run`, or after `Builder::start`).
///
/// # Panics
/// If the runtime has not been started: there would be nothing to run the
/// goroutine.
#[track_caller]
pub fn spawn<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    if !crate::sched::started() {
        panic!(
            "gort::spawn called outside the runtime: call it inside gort::run(...), \
             or start the runtime first with gort::Builder::new().start()"
        );
    }
    spawn_at(f, Location::caller())
}

fn spawn_at<F, T>(f: F, site: &'static Location<'static>) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let packet = Arc::new(Packet {
        state: AtomicUsize::new(RUNNING),
        f: UnsafeCell::new(Some(f)),
        result: UnsafeCell::new(None),
    });
    let id = crate::sched::newproc(packet.clone(), site);
    JoinHandle { packet, id }
}

/// Runs `f` as a main goroutine and blocks the calling thread until it
/// returns, starting the runtime from the environment if needed. A panic in
/// `f` comes out of `run`. Several threads may call `run` at once: they
/// share the one runtime.
///
/// # Panics
/// If called from inside a goroutine (use `spawn` and `join` there), if
/// `f` panics, or if `GORT_MAXPROCS`/`GORT_DEBUG` hold bad values.
#[track_caller]
pub fn run<F, T>(f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    if !crate::sched::getg().is_null() {
        panic!("gort::run called from inside a goroutine: use gort::spawn(...).join() there");
    }
    crate::runtime::ensure_started();
    let wait = RunWait::new();
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
    let h = spawn_at(
        move || {
            let _done = done;
            crate::panics::mark_run_main();
            f()
        },
        Location::caller(),
    );
    deadlock::register(&wait);
    // Check, then sleep, then re-arm: a wake-up between the check and the
    // sleep leaves the note set, so it is never lost.
    let report = loop {
        if let Some(r) = wait.report.lock().take() {
            break Some(r);
        }
        if wait.done.load(Ordering::Acquire) {
            break None;
        }
        wait.note.sleep();
        wait.note.clear();
    };
    deadlock::unregister(&wait);
    if let Some(r) = report {
        panic!("{r}");
    }
    // The main goroutine ended; its result is (about to be) stored.
    let main_id = h.id();
    match h.join() {
        Ok(v) => v,
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
