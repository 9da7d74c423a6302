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

use std::sync::atomic::Ordering;

mod arch;
pub mod chan;
mod deadlock;
pub mod exectrace;
mod fd;
mod g;
pub mod io;
mod join;
mod lock;
mod m;
pub mod net;
mod netpoll;
mod note;
mod p;
mod panics;
mod park;
pub mod preempt;
mod runtime;
mod sched;
mod signal;
mod stack;
mod symbols;
pub mod sync;
pub mod syscall;
mod sysmon;
mod timer;
mod trace;
mod traceback;

/// Time: goroutine-aware sleeping, one-shot timers and tickers.
pub mod time {
    pub use crate::timer::{after, sleep, Ticker, Timer};
}

pub use deadlock::OnDeadlock;
pub use gort_macros::main;
pub use gort_macros::preemptible;
pub use join::{exit, run, spawn, Exit, JoinHandle};
pub use panics::panic_message;
pub use runtime::{
    Builder, Error, Runtime, DEFAULT_MAINTENANCE_PERIOD, DEFAULT_SCAVENGE_AFTER,
    DEFAULT_STACK_SIZE, DEFAULT_TIME_SLICE, MAX_PROCS, MIN_STACK_SIZE, MIN_TIME_SLICE,
};
pub use syscall::{lock_os_thread, unlock_os_thread};

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
    Stats {
        procs: s.procs(),
        threads: s.mcount.load(Ordering::Relaxed) as usize,
        goroutines: s.ngoroutines.load(Ordering::Relaxed),
        spawned: s.spawned.load(Ordering::Relaxed),
        steals: s
            .allp
            .iter()
            .map(|p| p.steals.load(Ordering::Relaxed))
            .sum(),
        stack_reserved: stack::reserved_bytes(),
        stacks_pooled: s.stacks.pooled(),
        stack_scavenged: stack::scavenged_bytes(),
        preempt_requests: sysmon::PREEMPT_REQUESTS.load(Ordering::Relaxed),
        preempted_cooperative: preempt::COOPERATIVE.load(Ordering::Relaxed),
        preempted_async: preempt::ASYNC.load(Ordering::Relaxed),
        preempt_rejected: preempt::REJECTED.load(Ordering::Relaxed),
        syscall_handoffs: sysmon::HANDOFFS.load(Ordering::Relaxed),
        maintenance_runs: trace::MAINTENANCE_RUNS.load(Ordering::Relaxed),
        async_preempt: s.async_preempt.load(Ordering::Relaxed),
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
