//! `gort::time::sleep`: sleeping goroutines hold no thread, wake on time
//! when the runtime is idle and when every P is busy, and 100,000 can
//! sleep at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

/// The tests of this file measure timing: run them one at a time (the
/// returned guard serialises them), so that one test's 100,000 sleepers do
/// not delay another's wake-ups.
fn start() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    static START: Once = Once::new();
    START.call_once(|| {
        gort::Builder::new().procs(2).start().expect("start gort");
    });
    guard
}

#[test]
fn sleep_waits_at_least_the_duration() {
    let _serial = start();
    let took = gort::run(|| {
        let t0 = Instant::now();
        gort::time::sleep(Duration::from_millis(30));
        t0.elapsed()
    });
    assert!(took >= Duration::from_millis(30), "{took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[test]
fn sleepers_wake_in_deadline_order() {
    let _serial = start();
    let order = gort::run(|| {
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let hs: Vec<_> = [50u64, 10, 40, 20, 30]
            .into_iter()
            .map(|ms| {
                let log = log.clone();
                gort::spawn(move || {
                    gort::time::sleep(Duration::from_millis(ms));
                    log.lock().unwrap().push(ms);
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        Arc::try_unwrap(log).unwrap().into_inner().unwrap()
    });
    assert_eq!(order, vec![10, 20, 30, 40, 50]);
}

#[test]
fn hundred_thousand_sleepers() {
    let _serial = start();
    let t0 = Instant::now();
    let n = gort::run(|| {
        let hs: Vec<_> = (0..100_000u64)
            .map(|i| {
                gort::spawn(move || {
                    gort::time::sleep(Duration::from_millis(200 + i % 100));
                    1u64
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
    });
    assert_eq!(n, 100_000);
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(299), "{took:?}");
    assert!(took < Duration::from_secs(30), "{took:?}");
}

#[test]
fn sleeper_wakes_while_every_p_spins() {
    let _serial = start();
    let lateness = gort::run(|| {
        let stop = Arc::new(AtomicBool::new(false));
        let spinners: Vec<_> = (0..4)
            .map(|_| {
                let stop = stop.clone();
                gort::spawn(move || {
                    let mut x = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        x = x.wrapping_add(1);
                    }
                    x
                })
            })
            .collect();
        let mut worst = Duration::ZERO;
        for _ in 0..20 {
            let t0 = Instant::now();
            gort::time::sleep(Duration::from_millis(1));
            worst = worst.max(t0.elapsed() - Duration::from_millis(1));
        }
        stop.store(true, Ordering::Relaxed);
        for h in spinners {
            h.join().unwrap();
        }
        worst
    });
    // Default 10ms slice: a wake-up waits for a preemption at worst.
    assert!(
        lateness < Duration::from_secs(1),
        "worst lateness {lateness:?}"
    );
}

#[test]
fn sleep_outside_goroutine_sleeps_the_thread() {
    let t0 = Instant::now();
    gort::time::sleep(Duration::from_millis(5));
    assert!(t0.elapsed() >= Duration::from_millis(5));
}
