//! Two processors: both really run goroutines and work is stolen (the idle
//! runtime's CPU use is checked in tests/periodic.rs). The runtime of this
//! test binary is started with procs=2.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

/// Starts the runtime once and serialises the tests of this file: they
/// observe where goroutines run, so another test's spinners busy on the
/// other P would change what they see (that P would serve the global queue
/// instead of stealing).
fn start() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    static START: Once = Once::new();
    START.call_once(|| {
        gort::Builder::new()
            .procs(2)
            .start()
            .expect("start gort with 2 procs");
    });
    guard
}

fn busy(ms: u64) -> u64 {
    let end = Instant::now() + Duration::from_millis(ms);
    let mut x = 0u64;
    while Instant::now() < end {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
    x
}

#[test]
fn both_procs_run_goroutines_and_steal() {
    let _serial = start();
    let steals_before = gort::stats().steals;
    let tids = Arc::new(Mutex::new(HashSet::new()));
    let t = tids.clone();
    gort::run(move || {
        // All spawned from one goroutine: they land in its P's queue, and
        // the other P gets some only by stealing.
        let hs: Vec<_> = (0..64)
            .map(|_| {
                let t = t.clone();
                gort::spawn(move || {
                    busy(5);
                    // SAFETY: gettid has no preconditions.
                    t.lock().unwrap().insert(unsafe { libc::gettid() });
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
    });
    let n = tids.lock().unwrap().len();
    assert!(
        n >= 2,
        "goroutines ran on {n} thread(s); expected both Ps busy"
    );
    let st = gort::stats();
    assert!(st.steals > steals_before, "no steals recorded: {st:?}");
    assert_eq!(st.procs, 2);
}

#[test]
fn parallel_speedup_is_visible() {
    // Two CPU-bound goroutines of 300ms each take clearly less than 600ms
    // of wall time with 2 Ps (generous bound: 550ms, on a loaded machine
    // this can fail only if the second core is entirely taken).
    let _serial = start();
    let wall = gort::run(|| {
        let t0 = Instant::now();
        let a = gort::spawn(|| busy(300));
        let b = gort::spawn(|| busy(300));
        a.join().unwrap();
        b.join().unwrap();
        t0.elapsed()
    });
    assert!(
        wall < Duration::from_millis(550),
        "no parallelism: {wall:?}"
    );
}

#[test]
fn second_configuration_is_an_error() {
    let _serial = start();
    let err = gort::Builder::new()
        .procs(1)
        .start()
        .expect_err("already started");
    assert_eq!(err, gort::Error::AlreadyStarted);
    assert!(err.to_string().contains("already started"), "{err}");
}
