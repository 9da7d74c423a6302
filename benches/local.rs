//! Cost of one `gort::local!` access (`Cell::get` through the key) on a
//! goroutine, beside the same through `std::thread_local!` on a plain
//! thread.
//!
//! ```text
//! cargo bench --bench local
//! ```
//!
//! One criterion iteration = one access; the loop runs inside one
//! `gort::run` (timed there with `iter_custom`).

use criterion::{criterion_group, criterion_main, Criterion};
use std::cell::Cell;
use std::hint::black_box;
use std::time::Instant;

gort::local! {
    static G_COUNT: Cell<u64> = const { Cell::new(0) };
}

thread_local! {
    static T_COUNT: Cell<u64> = const { Cell::new(0) };
}

fn bench(c: &mut Criterion) {
    c.bench_function("local_get_set_on_goroutine", |b| {
        b.iter_custom(|iters| {
            gort::run(move || {
                let t0 = Instant::now();
                for _ in 0..iters {
                    G_COUNT.set(black_box(G_COUNT.get()) + 1);
                }
                t0.elapsed() / 2 // two accesses per iteration
            })
        })
    });
    c.bench_function("local_with_on_goroutine", |b| {
        b.iter_custom(|iters| {
            gort::run(move || {
                let t0 = Instant::now();
                for _ in 0..iters {
                    black_box(G_COUNT.with(|c| c.get()));
                }
                t0.elapsed()
            })
        })
    });
    c.bench_function("thread_local_with_on_thread", |b| {
        b.iter(|| black_box(T_COUNT.with(|c| c.get())))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
