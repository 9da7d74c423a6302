//! Cost of the cooperative preemption check that `#[gort::preemptible]`
//! injects: the same tight loop with and without the attribute.
//!
//! ```text
//! cargo bench --bench preempt_check
//! ```
//!
//! One criterion iteration = one call running `INNER` iterations of a
//! cheap integer recurrence (an LCG step through `black_box`, so the loop
//! is neither vectorised nor folded away). Criterion reports the time per
//! call and, through `Throughput`, loop iterations per second. Each
//! variant runs
//!
//! - on a goroutine (inside `gort::run`, timed there): the check is live,
//!   comparing the stack pointer with the goroutine's guard;
//! - on a plain thread: the check runs but its guard word is 0, so it
//!   never takes the slow path — the cost of the instructions alone.
//!
//! At the end a summary prints nanoseconds per loop iteration and the ratio
//! instrumented/plain: the median of criterion's samples, and an
//! interleaved A/B run (blocks of the two variants alternate, so load from
//! other processes hits both alike; its minimum is the steadiest figure on
//! a busy machine).

use criterion::{criterion_group, Criterion, Throughput};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Loop iterations per call.
const INNER: u64 = 1000;

#[inline(never)]
fn lcg_plain(n: u64, seed: u64) -> u64 {
    let mut x = seed;
    for _ in 0..n {
        x = black_box(
            x.wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407),
        );
    }
    x
}

#[inline(never)]
#[gort::preemptible]
fn lcg_preemptible(n: u64, seed: u64) -> u64 {
    let mut x = seed;
    for _ in 0..n {
        x = black_box(
            x.wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407),
        );
    }
    x
}

/// Per-call times (ns per loop iteration) of every sample, by variant.
static SAMPLES: Mutex<BTreeMap<&'static str, Vec<f64>>> = Mutex::new(BTreeMap::new());

fn record(name: &'static str, iters: u64, d: Duration) {
    let per = d.as_nanos() as f64 / (iters * INNER) as f64;
    SAMPLES.lock().unwrap().entry(name).or_default().push(per);
}

/// Runs `f` `iters` times on the calling thread and returns the time.
fn time_calls(f: fn(u64, u64) -> u64, iters: u64) -> Duration {
    let start = Instant::now();
    let mut seed = 1;
    for _ in 0..iters {
        seed = f(black_box(INNER), seed);
    }
    black_box(seed);
    start.elapsed()
}

type Variant = (&'static str, fn(u64, u64) -> u64);

const VARIANTS: [Variant; 2] = [("plain", lcg_plain), ("preemptible", lcg_preemptible)];

fn on_goroutine(c: &mut Criterion) {
    // Start from the environment (GORT_MAXPROCS / GORT_DEBUG honoured).
    gort::run(|| ());
    let mut group = c.benchmark_group("goroutine");
    group.throughput(Throughput::Elements(INNER));
    for (name, f) in VARIANTS {
        let key: &'static str = if name == "plain" {
            "goroutine/plain"
        } else {
            "goroutine/preemptible"
        };
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let d = gort::run(move || time_calls(f, iters));
                record(key, iters, d);
                d
            })
        });
    }
    group.finish();
}

fn on_thread(c: &mut Criterion) {
    let mut group = c.benchmark_group("thread");
    group.throughput(Throughput::Elements(INNER));
    for (name, f) in VARIANTS {
        let key: &'static str = if name == "plain" {
            "thread/plain"
        } else {
            "thread/preemptible"
        };
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let d = time_calls(f, iters);
                record(key, iters, d);
                d
            })
        });
    }
    group.finish();
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Calls per block of the interleaved comparison.
const BLOCK_CALLS: u64 = 1000;
/// Blocks per variant.
const ROUNDS: usize = 300;

/// A/B comparison robust to load that comes and goes (criterion measures
/// one variant after the other): alternates blocks of the two variants
/// and returns ns per loop iteration of every block, (plain, preemptible).
fn interleaved() -> (Vec<f64>, Vec<f64>) {
    let per = |d: Duration| d.as_nanos() as f64 / (BLOCK_CALLS * INNER) as f64;
    let (mut plain, mut pre) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        // Alternate which goes first, so neither always follows the other.
        if round % 2 == 0 {
            plain.push(per(time_calls(lcg_plain, BLOCK_CALLS)));
            pre.push(per(time_calls(lcg_preemptible, BLOCK_CALLS)));
        } else {
            pre.push(per(time_calls(lcg_preemptible, BLOCK_CALLS)));
            plain.push(per(time_calls(lcg_plain, BLOCK_CALLS)));
        }
    }
    (plain, pre)
}

fn summary() {
    let mut samples = SAMPLES.lock().unwrap();
    if samples.is_empty() {
        return; // filtered out, or `--list`
    }
    println!("\nns per loop iteration, instrumented (preemptible) vs plain:");
    println!("  criterion samples (median):");
    for place in ["goroutine", "thread"] {
        let mut get = |v: &str| {
            samples
                .get_mut(format!("{place}/{v}").as_str())
                .map(|s| median(s))
        };
        match (get("plain"), get("preemptible")) {
            (Some(p), Some(i)) => println!(
                "    {place:<9}  plain {p:.3}  preemptible {i:.3}  ratio {:.3}",
                i / p
            ),
            (p, i) => println!("    {place:<9}  plain {p:?}  preemptible {i:?}"),
        }
    }
    println!("  interleaved, {ROUNDS} blocks of {BLOCK_CALLS} calls each (min | median):");
    let runs = [
        ("goroutine", gort::run(interleaved)),
        ("thread", interleaved()),
    ];
    for (place, (mut p, mut i)) in runs {
        let pmin = p.iter().copied().fold(f64::INFINITY, f64::min);
        let imin = i.iter().copied().fold(f64::INFINITY, f64::min);
        let (pmed, imed) = (median(&mut p), median(&mut i));
        println!(
            "    {place:<9}  plain {pmin:.3} | {pmed:.3}  preemptible {imin:.3} | {imed:.3}  \
             ratio {:.3} | {:.3}",
            imin / pmin,
            imed / pmed
        );
    }
    let stats = gort::stats();
    println!(
        "  (runtime: procs={}, cooperative preemptions {}, async {})",
        stats.procs, stats.preempted_cooperative, stats.preempted_async
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50);
    targets = on_goroutine, on_thread
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    summary();
}
