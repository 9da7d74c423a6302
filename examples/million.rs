//! A million goroutines: spawned, run on a handful of OS threads, joined.
//!
//! `cargo run --release --example million [N]`

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("N must be a whole number"))
        .unwrap_or(1_000_000);
    let threads = Arc::new(Mutex::new(HashSet::new()));
    let seen = threads.clone();
    let start = Instant::now();
    let sum = gort::run(move || {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let seen = seen.clone();
                gort::spawn(move || {
                    if i % 1024 == 0 {
                        // SAFETY: gettid has no preconditions.
                        let tid = unsafe { libc::gettid() };
                        seen.lock().unwrap().insert(tid);
                    }
                    i * 2
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
    });
    let took = start.elapsed();
    assert_eq!(sum, n * (n - 1));
    let st = gort::stats();
    println!(
        "{n} goroutines spawned and joined in {took:.2?} ({:.0} ns each)",
        took.as_nanos() as f64 / n as f64
    );
    println!(
        "sum = {sum}; {} procs, {} OS threads created, goroutines ran on {} threads, {} steals",
        st.procs,
        st.threads,
        threads.lock().unwrap().len(),
        st.steals
    );
}
