//! Two processors: both really run goroutines, work is stolen, and an idle
//! runtime sleeps. The runtime of this test binary is started with procs=2.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

fn start() {
    static START: Once = Once::new();
    START.call_once(|| {
        gort::Builder::new()
            .procs(2)
            .start()
            .expect("start gort with 2 procs");
    });
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
    start();
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
    start();
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
fn idle_runtime_uses_no_cpu() {
    // In a child process: other tests of this binary burn CPU meanwhile.
    let out = common::run_child("child_idle_cpu", &[], Duration::from_secs(60));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("IDLE OK"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "child process of idle_runtime_uses_no_cpu"]
fn child_idle_cpu() {
    if !common::is_child() {
        return;
    }
    start();
    // Get every P and M busy once, then let them go idle.
    gort::run(|| {
        let hs: Vec<_> = (0..8).map(|_| gort::spawn(|| busy(20))).collect();
        for h in hs {
            h.join().unwrap();
        }
    });
    std::thread::sleep(Duration::from_millis(100));
    let before = common::process_cpu_time();
    std::thread::sleep(Duration::from_secs(2));
    let used = common::process_cpu_time() - before;
    // A spinning M would burn ~2 s here; parked Ms burn nothing. Allow
    // 100ms for the test harness and clock-tick granularity.
    assert!(
        used < Duration::from_millis(100),
        "idle runtime used {used:?} of CPU in 2s"
    );
    println!("IDLE OK: {used:?} of CPU in 2s");
}

#[test]
fn second_configuration_is_an_error() {
    start();
    let err = gort::Builder::new()
        .procs(1)
        .start()
        .expect_err("already started");
    assert_eq!(err, gort::Error::AlreadyStarted);
    assert!(err.to_string().contains("already started"), "{err}");
}
