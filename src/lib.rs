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

#![deny(unsafe_op_in_unsafe_fn)]

mod arch;
mod g;
mod join;
mod lock;
mod m;
mod note;
mod p;
mod runtime;
mod sched;
mod signal;
mod stack;
mod trace;

pub use gort_macros::main;
pub use join::{exit, run, spawn, Exit, JoinHandle};
pub use runtime::{
    Builder, Error, Runtime, DEFAULT_STACK_SIZE, DEFAULT_TIME_SLICE, MAX_PROCS, MIN_STACK_SIZE,
    MIN_TIME_SLICE,
};

/// Yields the processor so other goroutines can run (Go's
/// `runtime.Gosched`). The current goroutine goes to the back of its run
/// queue. Outside a goroutine it yields the OS thread.
pub fn yield_now() {
    sched::gosched()
}

/// The id of the current goroutine (ids start at 1 and are never reused),
/// or 0 when called outside a goroutine.
pub fn current_id() -> u64 {
    let gp = sched::getg();
    if gp.is_null() {
        0
    } else {
        // SAFETY: the current G is alive while it runs.
        unsafe { (*gp).id() }
    }
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
}

/// Runtime counters, or all zero if the runtime has not started.
pub fn stats() -> Stats {
    let Some(s) = sched::try_sched() else {
        return Stats::default();
    };
    Stats {
        procs: s.procs(),
        threads: s.mcount.load(std::sync::atomic::Ordering::Relaxed) as usize,
        goroutines: s.ngoroutines.load(std::sync::atomic::Ordering::Relaxed),
        spawned: s.spawned.load(std::sync::atomic::Ordering::Relaxed),
        steals: s
            .allp
            .iter()
            .map(|p| p.steals.load(std::sync::atomic::Ordering::Relaxed))
            .sum(),
        stack_reserved: stack::reserved_bytes(),
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
