//! gort: a Go-style preemptive M:N runtime for Rust on Linux.
//!
//! Goroutines (G) are stackful coroutines multiplexed by processors (P) onto
//! OS threads (M). See `docs/design.md` for how it works and `README.md` for
//! the hazards of running Rust code on a goroutine.
//!
//! ```no_run
//! let sum: u64 = gort::run(|| {
//!     let hs: Vec<_> = (0..1000u64).map(|i| gort::spawn(move || i * 2)).collect();
//!     hs.into_iter().map(|h| h.join().unwrap()).sum()
//! });
//! assert_eq!(sum, 999_000);
//! ```
//!
//! - Entry points: [`run`], [`#[gort::main]`](main), [`#[gort::test]`](test);
//!   [`spawn`] from any thread starts the runtime if nothing did.
//! - Goroutines: [`spawn`], [`Spawn`] (names), [`scope`] (borrowing),
//!   [`JoinSet`] (first of many), [`spawn_blocking`] (a thread pool for
//!   blocking work), [`block_on`] (await a `Future` from a goroutine).
//! - Communication: [`chan`], [`select!`], [`sync`], [`time`], [`net`].
//! - Per-goroutine values: [`local!`].
//!
//! # `thread_local!` in goroutines
//!
//! A goroutine may resume on another OS thread after any wait or
//! preemption, and other goroutines run on its thread meanwhile, so a
//! `thread_local!` is shared by whatever goroutines happen to run on a
//! thread and changes under a goroutine that moves:
//!
//! ```no_run
//! use std::cell::Cell;
//! thread_local!(static DEPTH: Cell<u32> = const { Cell::new(0) });
//! gort::local!(static GDEPTH: Cell<u32> = const { Cell::new(0) });
//!
//! gort::run(|| {
//!     DEPTH.set(1);
//!     GDEPTH.set(1);
//!     gort::time::sleep(std::time::Duration::from_millis(1)); // may move threads
//!     let _unreliable = DEPTH.get(); // this thread's value: maybe another goroutine's
//!     assert_eq!(GDEPTH.get(), 1); // this goroutine's value, wherever it runs
//!
//!     // For code that needs its thread (thread-affine C libraries, a
//!     // thread-local cache it cannot live without):
//!     let _wired = gort::lock_os_thread_guard();
//!     // ... no other goroutine runs on this thread, and this one stays here
//! });
//! ```
//!
//! Use [`local!`] for per-goroutine values and [`lock_os_thread_guard`]
//! (or [`lock_os_thread`]) for thread-affine code.
//!
//! # Preemption hazards
//!
//! A goroutine may be stopped by signal anywhere in your own code and
//! resumed on another OS thread. gort never stops it inside std, the
//! global allocator, gort, non-Rust code, while it unwinds a panic, or on
//! a stack that is not its own, and finds std code inlined into your
//! functions through DWARF — build LTO programs with
//! `debug = "line-tables-only"`, or a fat-LTO binary gets cooperative
//! preemption only. What it cannot know is per-thread state that *your*
//! code holds across work: a `thread_local!` reference, or a thread-keyed
//! lock such as stdout's. Keep such sections unpreempted:
//!
//! ```no_run
//! use std::io::Write;
//! gort::run(|| {
//!     gort::spawn(|| {
//!         // stdout's lock is reentrant per OS thread: held across a
//!         // preemption, another goroutine on this thread could enter it.
//!         let _np = gort::preempt::disable();
//!         let mut out = std::io::stdout().lock();
//!         for i in 0..1000 {
//!             writeln!(out, "{i}").unwrap();
//!         }
//!     })
//!     .join()
//!     .unwrap();
//! });
//! ```
//!
//! The README's *Hazards* section has the full list (blocking in a Drop
//! during unwinding, `std::sync::Mutex`, stack needs of `RUST_BACKTRACE`).

#![deny(unsafe_op_in_unsafe_fn)]

use std::sync::atomic::Ordering;

mod arch;
mod blocking;
pub mod chan;
mod deadlock;
mod dwarf;
pub mod exectrace;
mod fd;
mod future;
mod g;
mod group;
pub mod io;
mod join;
mod joinset;
mod local;
mod lock;
mod lockosthread;
mod m;
mod maintenance;
pub mod net;
mod netpoll;
mod note;
mod p;
mod panics;
mod park;
pub mod preempt;
mod runtime;
mod sched;
mod scope;
mod signal;
mod stack;
mod symbols;
pub mod sync;
pub mod syscall;
mod sysmon;
mod testing;
mod thread;
mod timer;
mod trace;
mod traceback;
mod unannounced;

pub mod time;

pub use blocking::spawn_blocking;
pub use deadlock::OnDeadlock;
pub use future::block_on;
pub use gort_macros::main;
pub use gort_macros::preemptible;
pub use gort_macros::test;
pub use join::{exit, run, spawn, Exit, JoinHandle};
pub use joinset::JoinSet;
pub use local::LocalKey;
pub use panics::panic_message;
pub use scope::{scope, Scope, ScopedJoinHandle, Spawn};

/// Used by the expansion of `#[gort::test]`; not public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::testing::{test_run, TestOptions};
}
pub use lockosthread::{lock_os_thread, unlock_os_thread};
pub use runtime::{
    Builder, Error, Runtime, DEFAULT_MAINTENANCE_PERIOD, DEFAULT_SCAVENGE_AFTER,
    DEFAULT_STACK_SIZE, DEFAULT_TIME_SLICE, DEFAULT_UNANNOUNCED_HANDOFF, MAX_PROCS, MIN_STACK_SIZE,
    MIN_TIME_SLICE, MIN_UNANNOUNCED_HANDOFF,
};

/// Wires the calling goroutine to its OS thread until the guard drops
/// ([`lock_os_thread`] and [`unlock_os_thread`] as a guard, like
/// [`preempt::disable`]): the goroutine runs only on this thread, and no
/// other goroutine runs on it. Guards nest. Outside a goroutine it does
/// nothing.
pub fn lock_os_thread_guard() -> OsThreadGuard {
    lock_os_thread();
    OsThreadGuard {
        _not_send: std::marker::PhantomData,
    }
}

/// The guard of [`lock_os_thread_guard`]; unlocks on drop. Not `Send`:
/// it belongs to the goroutine that took it.
#[must_use = "the goroutine is unwired as soon as the guard drops"]
#[derive(Debug)]
pub struct OsThreadGuard {
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Drop for OsThreadGuard {
    fn drop(&mut self) {
        unlock_os_thread();
    }
}

/// Yields the processor so other goroutines can run (Go's
/// `runtime.Gosched`). The current goroutine goes to the back of its run
/// queue. Outside a goroutine it yields the OS thread.
#[inline(never)]
pub fn yield_now() {
    sched::gosched()
}

/// Debug builds: makes threads in the runtime block for 150µs now and
/// then at points where sysmon's handoff races with the runtime (tests of
/// the unannounced handoff; not a stable API). Release builds ignore it.
#[doc(hidden)]
pub fn __inject_runtime_stalls(on: bool) {
    unannounced::inject_runtime_stalls(on)
}

/// A summary of the code map that decides where goroutines may be
/// preempted by signal (for measurements; not a stable API).
#[doc(hidden)]
pub fn __code_map_report() -> String {
    symbols::report()
}

/// The id of the current goroutine (ids start at 1 and are never reused),
/// or 0 when called outside a goroutine.
pub fn current_id() -> u64 {
    sched::current_g().map_or(0, |g| g.id())
}

/// Prints every goroutine to stderr, Go-style: id, state or wait reason
/// with how long it has waited, and where it was spawned. (`SIGQUIT` does
/// the same, then exits with code 2, as in Go.)
pub fn dump() {
    trace::dump()
}

/// A snapshot of runtime counters.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Stats {
    /// Number of Ps.
    pub procs: usize,
    /// OS threads the runtime has created (Ms).
    pub threads: usize,
    /// Goroutines alive now (spawned, not yet ended).
    pub goroutines: u64,
    /// Goroutines spawned since start.
    pub spawned: u64,
    /// Times an idle P stole work from another P's run queue.
    pub steals: u64,
    /// Bytes of address space reserved for goroutine stacks.
    pub stack_reserved: usize,
    /// Stacks in the global pool (free, not cached by a P).
    pub stacks_pooled: usize,
    /// Bytes of stack address range the scavenger released to the kernel
    /// (an upper bound on the memory returned: untouched pages count too).
    pub stack_scavenged: usize,
    /// Preemptions sysmon asked for (goroutines that ran past their slice).
    pub preempt_requests: u64,
    /// Preemptions served at a cooperative check.
    pub preempted_cooperative: u64,
    /// Preemptions served by signal.
    pub preempted_async: u64,
    /// Preemption signals that found the goroutine at an unsafe point.
    pub preempt_rejected: u64,
    /// Ps sysmon took back from goroutines blocked in `syscall::blocking`.
    pub syscall_handoffs: u64,
    /// Ps sysmon took from goroutines blocked in the kernel without
    /// `syscall::blocking` (plain `std` calls; see
    /// `Builder::unannounced_handoff`).
    pub unannounced_handoffs: u64,
    /// Passes of the maintenance goroutine.
    pub maintenance_runs: u64,
    /// Whether asynchronous (signal) preemption is active.
    pub async_preempt: bool,
}

/// Runtime counters, or all zero if the runtime has not started.
pub fn stats() -> Stats {
    let Some(s) = sched::try_sched() else {
        return Stats::default();
    };
    let (goroutines, spawned) = s.goroutine_counts();
    Stats {
        procs: s.procs(),
        threads: s.thread_count(),
        goroutines,
        spawned,
        steals: s
            .allp()
            .iter()
            .map(|p| p.steals.load(Ordering::Relaxed))
            .sum(),
        stack_reserved: stack::reserved_bytes(),
        stacks_pooled: s.stacks().pooled(),
        stack_scavenged: stack::scavenged_bytes(),
        preempt_requests: sysmon::PREEMPT_REQUESTS.load(Ordering::Relaxed),
        preempted_cooperative: preempt::COOPERATIVE.load(Ordering::Relaxed),
        preempted_async: preempt::ASYNC.load(Ordering::Relaxed),
        preempt_rejected: preempt::REJECTED.load(Ordering::Relaxed),
        syscall_handoffs: sysmon::HANDOFFS.load(Ordering::Relaxed),
        unannounced_handoffs: unannounced::HANDOFFS.load(Ordering::Acquire),
        maintenance_runs: maintenance::MAINTENANCE_RUNS.load(Ordering::Relaxed),
        async_preempt: s.async_preempt_on(),
    }
}

/// Prints `fatal error: <msg>` and aborts: for broken runtime invariants,
/// where unwinding would run user code on corrupt state.
#[cold]
pub(crate) fn fatal(msg: &str) -> ! {
    signal::write_stderr(b"fatal error: ");
    signal::write_stderr(msg.as_bytes());
    signal::write_stderr(b"\n");
    std::process::abort()
}
