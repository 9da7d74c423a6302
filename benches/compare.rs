//! The gort side of the gort-vs-Go comparison (`benches/go/compare.sh`).
//!
//! ```text
//! cargo bench --bench compare -- <workload> [n=<N>] [runs=<R>]
//! GORT_MAXPROCS=2 target/release/deps/compare-* spawn_join n=1000000
//! ```
//!
//! Runs the workload once to warm up (Gs, stacks and heap get allocated),
//! then `runs` times (default 5), and prints the best run as one line:
//!
//! ```text
//! spawn_join procs=1 n=1000000 ns_per_op=123.4
//! ```
//!
//! `benches/go/` has the Go programs doing the same work, with the same
//! arguments and output. Keep the two sides in step when changing either.
//!
//! Workloads:
//! - `spawn_join`: the main goroutine spawns `n` goroutines, goroutine `i`
//!   returning `2*i + 1`; it keeps the handles, then joins them all and
//!   checks the sum (`n*n`). ns/op = elapsed / n.
//! - `yield_pingpong`: two goroutines each call `yield_now` `n` times; the
//!   main goroutine joins both. ns/op = elapsed / (2n), per yield.
//!
//! The number of procs comes from `GORT_MAXPROCS` (default: all CPUs).
//!
//! Without a workload (plain `cargo bench`, or `cargo test --all-targets`)
//! it runs every workload once with a small `n`, as a smoke test.

use std::hint::black_box;
use std::process::ExitCode;
use std::time::{Duration, Instant};

struct Workload {
    name: &'static str,
    default_n: u64,
    /// Runs the work once and returns (elapsed, operations done).
    run: fn(u64) -> (Duration, u64),
}

const WORKLOADS: &[Workload] = &[
    Workload {
        name: "spawn_join",
        default_n: 1_000_000,
        run: spawn_join,
    },
    Workload {
        name: "yield_pingpong",
        default_n: 1_000_000,
        run: yield_pingpong,
    },
];

/// Runs on the main goroutine.
fn spawn_join(n: u64) -> (Duration, u64) {
    let start = Instant::now();
    let handles: Vec<gort::JoinHandle<u64>> =
        (0..n).map(|i| gort::spawn(move || 2 * i + 1)).collect();
    let sum: u64 = handles
        .into_iter()
        .map(|h| h.join().expect("goroutine panicked"))
        .sum();
    let elapsed = start.elapsed();
    assert_eq!(sum, n * n, "spawn_join: wrong sum");
    (elapsed, n)
}

/// Runs on the main goroutine.
fn yield_pingpong(n: u64) -> (Duration, u64) {
    let start = Instant::now();
    let side = move || {
        for _ in 0..n {
            gort::yield_now();
        }
        black_box(n)
    };
    let a = gort::spawn(side);
    let b = gort::spawn(side);
    let done = a.join().expect("goroutine panicked") + b.join().expect("goroutine panicked");
    let elapsed = start.elapsed();
    assert_eq!(done, 2 * n);
    (elapsed, 2 * n)
}

fn usage() -> String {
    let names: Vec<&str> = WORKLOADS.iter().map(|w| w.name).collect();
    format!(
        "usage: compare <workload> [n=<N>] [runs=<R>]\nworkloads: {}",
        names.join(", ")
    )
}

/// The workloads to run, each with its `n`, and the number of runs.
type Plan = (Vec<(&'static Workload, u64)>, u32);

fn parse_args() -> Result<Plan, String> {
    let mut workload = None;
    let mut n = None;
    let mut runs = 5u32;
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.is_empty() {
        // Smoke test: every workload, small, once.
        return Ok((WORKLOADS.iter().map(|w| (w, 1000)).collect(), 1));
    }
    // cargo bench passes `--bench`; the rest is ours.
    for arg in args {
        if let Some(v) = arg.strip_prefix("n=") {
            n = Some(v.parse().map_err(|_| format!("bad n: {v:?}"))?);
        } else if let Some(v) = arg.strip_prefix("runs=") {
            runs = v.parse().map_err(|_| format!("bad runs: {v:?}"))?;
        } else if workload.is_none() {
            let w = WORKLOADS
                .iter()
                .find(|w| w.name == arg)
                .ok_or_else(|| format!("unknown workload {arg:?}"))?;
            workload = Some(w);
        } else {
            return Err(format!("unexpected argument {arg:?}"));
        }
    }
    let workload = workload.ok_or("no workload given")?;
    let n = n.unwrap_or(workload.default_n);
    if n == 0 || runs == 0 {
        return Err("n and runs must be at least 1".into());
    }
    Ok((vec![(workload, n)], runs))
}

fn main() -> ExitCode {
    let (plan, runs) = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("compare: {e}\n{}", usage());
            return ExitCode::from(2);
        }
    };
    for (workload, n) in plan {
        let run = workload.run;
        // The whole measurement runs on one main goroutine, as Go's main does.
        let best = gort::run(move || {
            run(n); // warm-up
            (0..runs)
                .map(|_| {
                    let (elapsed, ops) = run(n);
                    elapsed.as_nanos() as f64 / ops as f64
                })
                .fold(f64::INFINITY, f64::min)
        });
        println!(
            "{} procs={} n={} ns_per_op={:.1}",
            workload.name,
            gort::stats().procs,
            n,
            best
        );
    }
    ExitCode::SUCCESS
}
