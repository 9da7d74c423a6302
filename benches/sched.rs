//! Criterion benchmarks of the scheduler's hot paths.
//!
//! ```text
//! cargo bench --bench sched                     # all CPUs
//! GORT_MAXPROCS=1 cargo bench --bench sched     # one P
//! ```
//!
//! - `spawn_join/1000`: the main goroutine spawns 1000 goroutines, keeps
//!   the handles, joins them all. Reported per goroutine (Throughput).
//! - `yield_pingpong`: two goroutines call `yield_now` in turn; reported
//!   per yield (one criterion iteration = one yield).
//!
//! The runtime is process-wide and configured once: the first `gort::run`
//! starts it from the environment (`GORT_MAXPROCS`). Each measured batch
//! runs and is timed inside `gort::run`, on a goroutine, so thread start-up
//! and the final hand-back to the calling thread are outside the figure.
//!
//! For the gort-vs-Go figures see `benches/go/compare.sh`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::time::{Duration, Instant};

const SPAWN_BATCH: u64 = 1000;

fn spawn_join(c: &mut Criterion) {
    let procs = start_runtime();
    let mut group = c.benchmark_group(format!("procs={procs}"));
    group.throughput(Throughput::Elements(SPAWN_BATCH));
    group.bench_function(BenchmarkId::new("spawn_join", SPAWN_BATCH), |b| {
        b.iter_custom(|iters| {
            gort::run(move || {
                let start = Instant::now();
                for _ in 0..iters {
                    let handles: Vec<_> = (0..SPAWN_BATCH)
                        .map(|i| gort::spawn(move || black_box(2 * i + 1)))
                        .collect();
                    let sum: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
                    assert_eq!(sum, SPAWN_BATCH * SPAWN_BATCH);
                }
                start.elapsed()
            })
        })
    });
    group.finish();
}

fn yield_pingpong(c: &mut Criterion) {
    let procs = start_runtime();
    let mut group = c.benchmark_group(format!("procs={procs}"));
    group.throughput(Throughput::Elements(1));
    group.bench_function("yield_pingpong", |b| {
        b.iter_custom(|iters| {
            gort::run(move || {
                // One iteration = one yield, split between the two sides.
                let side = |n: u64| {
                    move || {
                        for _ in 0..n {
                            gort::yield_now();
                        }
                    }
                };
                let start = Instant::now();
                let a = gort::spawn(side(iters / 2));
                let b = gort::spawn(side(iters - iters / 2));
                a.join().unwrap();
                b.join().unwrap();
                start.elapsed()
            })
        })
    });
    group.finish();
}

/// Starts the runtime from the environment (first call only) and returns
/// its number of procs.
fn start_runtime() -> usize {
    gort::run(|| ());
    gort::stats().procs
}

fn config() -> Criterion {
    // Short runs: the whole file finishes in well under a minute.
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = spawn_join, yield_pingpong
}
criterion_main!(benches);
