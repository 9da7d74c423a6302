//! Asynchronous preemption (SIGURG) with the default time slice and two
//! processors: goroutines that spin in loops with no calls and no
//! instrumentation cannot starve the others.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

fn start() {
    static START: Once = Once::new();
    START.call_once(|| {
        gort::Builder::new().procs(2).start().expect("start gort");
    });
}

/// A loop with no calls: only signals can stop it.
#[inline(never)]
fn spin_until(stop: &AtomicBool) -> u64 {
    let mut x = 1u64;
    while !stop.load(Ordering::Relaxed) {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
    }
    x
}

#[test]
fn sleeper_keeps_waking_while_every_p_spins() {
    start();
    let before = gort::stats();
    let (wakes, spins) = gort::run(|| {
        let stop = Arc::new(AtomicBool::new(false));
        // More spinners than Ps: every P is busy all the time.
        let spinners: Vec<_> = (0..4)
            .map(|_| {
                let stop = stop.clone();
                gort::spawn(move || spin_until(&stop))
            })
            .collect();
        // The sleeper: a goroutine timer wakes it, then it needs a P again
        // to count the wake. Without preemption it never gets one. A
        // second one sleeps in the kernel (off its P) instead.
        let wakes = Arc::new(AtomicU64::new(0));
        let w = wakes.clone();
        let sleeper = gort::spawn(move || {
            for _ in 0..20 {
                gort::time::sleep(Duration::from_millis(1));
                w.fetch_add(1, Ordering::SeqCst);
            }
        });
        let kwakes = Arc::new(AtomicU64::new(0));
        let kw = kwakes.clone();
        let ksleeper = gort::spawn(move || {
            for _ in 0..20 {
                gort::syscall::blocking(|| std::thread::sleep(Duration::from_millis(1)));
                kw.fetch_add(1, Ordering::SeqCst);
            }
        });
        let t0 = Instant::now();
        while !(sleeper.is_finished() && ksleeper.is_finished())
            && t0.elapsed() < Duration::from_secs(20)
        {
            gort::time::sleep(Duration::from_millis(5));
        }
        stop.store(true, Ordering::Relaxed);
        let spins: Vec<u64> = spinners.into_iter().map(|h| h.join().unwrap()).collect();
        (
            (wakes.load(Ordering::SeqCst), kwakes.load(Ordering::SeqCst)),
            spins,
        )
    });
    assert_eq!(wakes, (20, 20), "a sleeper starved (timer, kernel)");
    assert_eq!(spins.len(), 4);
    let after = gort::stats();
    assert!(after.async_preempt, "async preemption is not active");
    assert!(
        after.preempted_async > before.preempted_async,
        "no goroutine was preempted by signal: {after:?}"
    );
}

#[test]
fn procs1_blocking_syscall_lets_others_run() {
    // In a child with one P: a goroutine sits 300ms in syscall::blocking;
    // the others must run meanwhile (sysmon hands the P off).
    common::expect_child(
        "child_syscall_handoff",
        &[],
        Duration::from_secs(60),
        "HANDOFF OK",
    );
}

#[test]
#[ignore = "child process of procs1_blocking_syscall_lets_others_run"]
fn child_syscall_handoff() {
    if !common::is_child() {
        return;
    }
    gort::Builder::new().procs(1).start().unwrap();
    let (ran_during, elapsed) = gort::run(|| {
        let in_call = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicBool::new(false));
        let (i2, d2) = (in_call.clone(), done.clone());
        let blocker = gort::spawn(move || {
            gort::syscall::blocking(|| {
                i2.store(true, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(300));
            });
            d2.store(true, Ordering::SeqCst);
        });
        while !in_call.load(Ordering::SeqCst) {
            gort::yield_now();
        }
        // The blocker holds no P now: this goroutine and others run.
        let t0 = Instant::now();
        let counter = Arc::new(AtomicU64::new(0));
        let hs: Vec<_> = (0..10)
            .map(|_| {
                let c = counter.clone();
                gort::spawn(move || {
                    c.fetch_add(1, Ordering::SeqCst);
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        let ran_during = !done.load(Ordering::SeqCst) && counter.load(Ordering::SeqCst) == 10;
        let elapsed = t0.elapsed();
        blocker.join().unwrap();
        (ran_during, elapsed)
    });
    assert!(
        ran_during,
        "other goroutines did not run during the syscall"
    );
    println!("HANDOFF OK: 10 goroutines ran in {elapsed:?} while one blocked");
}

#[test]
fn foreign_sigurg_handler_still_gets_its_signals() {
    common::expect_child(
        "child_foreign_sigurg",
        &[],
        Duration::from_secs(60),
        "FOREIGN OK",
    );
}

static FOREIGN: AtomicU64 = AtomicU64::new(0);

extern "C" fn foreign_handler(_: libc::c_int) {
    FOREIGN.fetch_add(1, Ordering::SeqCst);
}

#[test]
#[ignore = "child process of foreign_sigurg_handler_still_gets_its_signals"]
fn child_foreign_sigurg() {
    if !common::is_child() {
        return;
    }
    // SAFETY: installs a plain async-signal-safe handler (an atomic add)
    // before the runtime starts, so gort records it as the previous one.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = foreign_handler as *const () as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(libc::sigaction(libc::SIGURG, &sa, std::ptr::null_mut()), 0);
    }
    gort::Builder::new()
        .procs(2)
        .time_slice(Duration::from_millis(1))
        .start()
        .unwrap();
    let t0 = Instant::now();
    while !gort::stats().async_preempt && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(5));
    }
    println!("code map ready after {:?}", t0.elapsed());
    let before = gort::stats();
    let sent = gort::run(|| {
        let stop = Arc::new(AtomicBool::new(false));
        let spinners: Vec<_> = (0..3)
            .map(|_| {
                let stop = stop.clone();
                gort::spawn(move || spin_until(&stop))
            })
            .collect();
        // Signals from "outside" the runtime: kill(2) to the whole process,
        // spaced so that they do not merge.
        let mut sent = 0;
        for _ in 0..50 {
            // SAFETY: sends SIGURG to our own process.
            unsafe { libc::kill(libc::getpid(), libc::SIGURG) };
            sent += 1;
            gort::syscall::blocking(|| std::thread::sleep(Duration::from_millis(2)));
        }
        stop.store(true, Ordering::Relaxed);
        for h in spinners {
            h.join().unwrap();
        }
        sent
    });
    // Give the last signals time to land.
    std::thread::sleep(Duration::from_millis(50));
    let got = FOREIGN.load(Ordering::SeqCst);
    let after = gort::stats();
    assert!(
        got >= sent * 8 / 10,
        "foreign handler got {got} of {sent} signals"
    );
    assert!(
        got <= sent + 2,
        "foreign handler got the runtime's signals too: {got} of {sent}"
    );
    assert!(after.preempted_async > before.preempted_async, "{after:?}");
    println!(
        "FOREIGN OK: {got}/{sent} forwarded, {} async preemptions",
        after.preempted_async
    );
}

#[test]
fn sigurg_from_outside_harms_nothing() {
    start();
    // With no foreign handler, kill(SIGURG) to the process while
    // goroutines compute must change nothing.
    let sum = gort::run(|| {
        let hs: Vec<_> = (0..8u64)
            .map(|i| {
                gort::spawn(move || {
                    let mut x = i;
                    for k in 0..2_000_000u64 {
                        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(k));
                    }
                    x
                })
            })
            .collect();
        for _ in 0..200 {
            // SAFETY: sends SIGURG to our own process.
            unsafe { libc::kill(libc::getpid(), libc::SIGURG) };
        }
        hs.into_iter()
            .map(|h| h.join().unwrap())
            .fold(0u64, u64::wrapping_add)
    });
    let expect = (0..8u64)
        .map(|i| {
            let mut x = i;
            for k in 0..2_000_000u64 {
                x = x.wrapping_mul(31).wrapping_add(k);
            }
            x
        })
        .fold(0u64, u64::wrapping_add);
    assert_eq!(sum, expect);
}
