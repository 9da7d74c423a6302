//! sysmon's periodic duties and observability, with short periods: the
//! scavenger and the maintenance goroutine give memory back after a burst;
//! schedtrace prints Go's SCHED line; an idle runtime (sysmon included)
//! costs no CPU; locked goroutines stay on their thread.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

fn start() {
    static START: Once = Once::new();
    START.call_once(|| {
        gort::Builder::new()
            .procs(2)
            .scavenge_after(Duration::from_millis(200))
            .maintenance_period(Duration::from_millis(300))
            .start()
            .expect("start gort");
    });
}

fn rss_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb * 1024
}

#[test]
fn rss_falls_after_a_burst_of_goroutines() {
    common::expect_child("child_rss", &[], Duration::from_secs(120), "RSS OK");
}

#[test]
#[ignore = "child process of rss_falls_after_a_burst_of_goroutines"]
fn child_rss() {
    if !common::is_child() {
        return;
    }
    start();
    let base = rss_bytes();
    // 100,000 goroutines alive at once, each touching 8 KiB of its stack.
    const N: u64 = 100_000;
    static PEAK: AtomicUsize = AtomicUsize::new(0);
    fn chain(i: u64) -> u64 {
        if i == 0 {
            // Every goroutine of the chain is alive now.
            PEAK.store(rss_bytes(), Ordering::SeqCst);
            return 0;
        }
        let buf = std::hint::black_box([i as u8; 8 * 1024]);
        let h = gort::spawn(move || chain(i - 1));
        i + h.join().unwrap() + buf[100] as u64 - i as u8 as u64
    }
    let sum = gort::run(|| chain(N));
    assert_eq!(sum, N * (N + 1) / 2);
    let peak = PEAK.load(Ordering::SeqCst);
    // Wait for the scavenger and the maintenance goroutine.
    let t0 = Instant::now();
    let mut now = peak;
    while t0.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
        now = rss_bytes();
        if now < base + (peak - base) / 3 && gort::stats().maintenance_runs > 0 {
            break;
        }
    }
    let st = gort::stats();
    println!(
        "rss base {} MiB, peak {} MiB, after {} MiB; scavenged {} MiB; maintenance runs {}",
        base >> 20,
        peak >> 20,
        now >> 20,
        st.stack_scavenged >> 20,
        st.maintenance_runs
    );
    assert!(
        peak > base + (512 << 20),
        "burst did not use memory: {peak} vs {base}"
    );
    assert!(
        now < base + (peak - base) / 3,
        "RSS did not fall: {now} (peak {peak})"
    );
    assert!(st.maintenance_runs > 0);
    println!("RSS OK");
}

#[test]
fn schedtrace_prints_go_style_lines() {
    let out = common::run_child(
        "child_schedtrace",
        &[("GORT_DEBUG", "schedtrace=50,scheddetail=0")],
        Duration::from_secs(60),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("SCHED "))
        .unwrap_or_else(|| panic!("no SCHED line:\n{stderr}"));
    // SCHED 50ms: gomaxprocs=2 idleprocs=N threads=N spinningthreads=N
    // idlethreads=N runqueue=N [N N]
    let fields = [
        "ms: gomaxprocs=2 ",
        " idleprocs=",
        " threads=",
        " spinningthreads=",
        " idlethreads=",
        " runqueue=",
        " [",
    ];
    for f in fields {
        assert!(line.contains(f), "{f:?} missing in {line:?}");
    }
    assert!(line.ends_with(']'), "{line:?}");
    let n = stderr.lines().filter(|l| l.starts_with("SCHED ")).count();
    assert!(n >= 3, "only {n} SCHED lines in ~400ms:\n{stderr}");

    let out = common::run_child(
        "child_schedtrace",
        &[("GORT_DEBUG", "schedtrace=50,scheddetail=1")],
        Duration::from_secs(60),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.lines().any(|l| l.starts_with("  P0: status=")),
        "{stderr}"
    );
    assert!(
        stderr.lines().any(|l| l.starts_with("  M1: p=")),
        "{stderr}"
    );
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("  G") && l.contains("spawned at")),
        "{stderr}"
    );
}

#[test]
#[ignore = "child process of schedtrace_prints_go_style_lines"]
fn child_schedtrace() {
    if !common::is_child() {
        return;
    }
    gort::Builder::new().procs(2).start().unwrap();
    gort::run(|| {
        let hs: Vec<_> = (0..4)
            .map(|_| {
                gort::spawn(|| {
                    let t0 = Instant::now();
                    while t0.elapsed() < Duration::from_millis(400) {
                        std::hint::black_box(0);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
    });
}

#[test]
fn idle_runtime_with_sysmon_uses_no_cpu() {
    common::expect_child("child_idle", &[], Duration::from_secs(60), "IDLE OK");
}

#[test]
#[ignore = "child process of idle_runtime_with_sysmon_uses_no_cpu"]
fn child_idle() {
    if !common::is_child() {
        return;
    }
    gort::Builder::new().procs(2).start().unwrap();
    gort::run(|| {
        let hs: Vec<_> = (0..4)
            .map(|_| {
                gort::spawn(|| {
                    let t0 = Instant::now();
                    while t0.elapsed() < Duration::from_millis(50) {}
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
    });
    // The one-time start-up work is not idle time: the code map (symbols,
    // then DWARF) is built on a helper thread, which in this unoptimised
    // test binary takes about a second of CPU. The report waits for it.
    let t = Instant::now();
    let _ = gort::__code_map_report();
    println!("code map complete after {:?} more", t.elapsed());
    std::thread::sleep(Duration::from_millis(200));
    let cpu0 = common::process_cpu_time();
    std::thread::sleep(Duration::from_secs(2));
    let cpu = common::process_cpu_time() - cpu0;
    assert!(
        cpu < Duration::from_millis(60),
        "idle runtime used {cpu:?} of CPU in 2 s"
    );
    println!("IDLE OK: {cpu:?} of CPU in 2 s");
}

#[test]
fn locked_goroutine_stays_on_its_thread() {
    start();
    let ok = gort::run(|| {
        let h = gort::spawn(|| {
            gort::lock_os_thread();
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::gettid() };
            let mut same = true;
            for i in 0..200 {
                // Yield, block and let others run; we must come back here.
                gort::yield_now();
                if i % 20 == 0 {
                    let others: Vec<_> = (0..8).map(|_| gort::spawn(gort::yield_now)).collect();
                    for o in others {
                        o.join().unwrap();
                    }
                }
                // SAFETY: as above.
                same &= unsafe { libc::gettid() } == tid;
            }
            gort::unlock_os_thread();
            same
        });
        h.join().unwrap()
    });
    assert!(ok, "a locked goroutine moved to another thread");
    // And the runtime still works normally afterwards.
    let v = gort::run(|| {
        let hs: Vec<_> = (0..100u64).map(|i| gort::spawn(move || i)).collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
    });
    assert_eq!(v, 4950);
}
