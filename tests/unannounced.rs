//! Unannounced blocking (docs/design.md, "Unannounced blocking"): plain
//! `std` calls that block in the kernel without `syscall::blocking` must
//! not stall a processor. Each scenario runs in a child process (a
//! regression would hang), mostly on one P, where a stalled processor
//! stops every other goroutine.
//!
//! Bounds are generous (a loaded 2-core CI VM): a 1ms ticker beside the
//! blocked goroutine must get a good share of its wake-ups, where without
//! the handoff it gets none.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(60);

fn child(test: &str) {
    let _shared = CPU_HOGS.read().unwrap_or_else(|e| e.into_inner());
    common::expect_child(test, &[], LIMIT, "CHILD OK");
}

/// `child`, with no other scenario running beside it (see CPU_HOGS).
fn child_alone(test: &str) {
    let _alone = CPU_HOGS.write().unwrap_or_else(|e| e.into_inner());
    common::expect_child(test, &[], LIMIT, "CHILD OK");
}

/// Held for writing by the scenario that starts CPU-hogging threads, for
/// reading by every other: the ticker bounds below assume the tests beside
/// them do not take the CPUs away (under qemu-user, the hogs left a 1ms
/// ticker less than a fifth of its wake-ups in CI).
static CPU_HOGS: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// The scenarios run with the defaults: the handoff is on out of the box.
fn start(procs: usize) {
    gort::Builder::new().procs(procs).start().unwrap();
}

/// `start` with the shortest unannounced handoff delay (more handoffs to
/// race with).
fn start_quick_handoff(procs: usize) {
    gort::Builder::new()
        .procs(procs)
        .unannounced_handoff(Some(gort::MIN_UNANNOUNCED_HANDOFF))
        .start()
        .unwrap();
}

/// Runs `block` on a goroutine beside a goroutine ticking every 1ms
/// (`gort::time::sleep`), until `block` returns. Returns how many ticks
/// the ticker got and how long `block` took.
fn ticks_during<F: FnOnce() + Send + 'static>(block: F) -> (u64, Duration) {
    gort::run(move || {
        let done = Arc::new(AtomicBool::new(false));
        let ticks = Arc::new(AtomicU64::new(0));
        let (d, t) = (done.clone(), ticks.clone());
        let ticker = gort::spawn(move || {
            while !d.load(Ordering::SeqCst) {
                gort::time::sleep(Duration::from_millis(1));
                t.fetch_add(1, Ordering::SeqCst);
            }
        });
        // Let the ticker start first.
        while ticks.load(Ordering::SeqCst) == 0 {
            gort::time::sleep(Duration::from_millis(1));
        }
        let t0 = Instant::now();
        let n0 = ticks.load(Ordering::SeqCst);
        gort::spawn(block).join().unwrap();
        let elapsed = t0.elapsed();
        let n = ticks.load(Ordering::SeqCst) - n0;
        done.store(true, Ordering::SeqCst);
        ticker.join().unwrap();
        (n, elapsed)
    })
}

/// The ticker must have got at least a fifth of the wake-ups a free 1ms
/// ticker would (it gets none while its only P is stalled).
fn assert_ticked(what: &str, ticks: u64, elapsed: Duration) {
    let ideal = elapsed.as_millis() as u64;
    println!("{what}: {ticks} ticks in {elapsed:?}; {:?}", gort::stats());
    assert!(
        ticks * 5 >= ideal,
        "{what}: the 1ms ticker got {ticks} wake-ups in {elapsed:?}; stats {:?}",
        gort::stats()
    );
    assert!(
        gort::stats().unannounced_handoffs >= 1,
        "{:?}",
        gort::stats()
    );
}

#[test]
fn std_sleep_loop_beside_ticker() {
    child("child_std_sleep_loop");
}

#[test]
#[ignore = "child process"]
fn child_std_sleep_loop() {
    if !common::is_child() {
        return;
    }
    start(1);
    let (ticks, elapsed) = ticks_during(|| {
        for _ in 0..20 {
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    assert_ticked("std::thread::sleep loop", ticks, elapsed);
    println!("CHILD OK");
}

/// Short sleeps back to back: the thread's CPU clock moves a little at
/// every wake-up, so it never stands still for the handoff delay, yet the
/// goroutine spends its slices in `nanosleep`, where a preemption signal
/// is not sent. sysmon must hand its P off when the slice is over and the
/// ticker's timer waits. (Before, the ticker got almost nothing.)
#[test]
fn short_std_sleeps_beside_ticker() {
    child("child_short_std_sleeps");
}

#[test]
#[ignore = "child process"]
fn child_short_std_sleeps() {
    if !common::is_child() {
        return;
    }
    start(1);
    let (ticks, elapsed) = ticks_during(|| {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(1) {
            std::thread::sleep(Duration::from_micros(20));
        }
    });
    // Under qemu-user each 20µs sleep costs the emulator about as much
    // CPU as it sleeps, so sysmon finds the thread running (and its
    // signal rejected in libc) as often as in the kernel: CI saw 152
    // ticks in 1s there (818–838 alone). Natively the thread sleeps
    // nearly all the time. Under qemu the scenario must only finish.
    if std::env::var_os("GORT_TEST_RUNNER").is_none() {
        assert_ticked("short std::thread::sleep loop", ticks, elapsed);
    } else {
        println!("short std::thread::sleep loop (emulated): {ticks} ticks in {elapsed:?}");
    }
    println!("CHILD OK");
}

#[test]
fn fifo_open_and_read() {
    child("child_fifo");
}

#[test]
#[ignore = "child process"]
fn child_fifo() {
    if !common::is_child() {
        return;
    }
    start(1);
    let path = std::env::temp_dir().join(format!("gort-unannounced-{}", std::process::id()));
    let cpath = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(cpath.as_ptr(), 0o600) }, 0);
    let wpath = path.clone();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&wpath)
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        use std::io::Write;
        f.write_all(b"hello").unwrap();
    });
    let rpath = path.clone();
    let (ticks, elapsed) = ticks_during(move || {
        use std::io::Read;
        // Blocks in open until the writer opens, then in read.
        let mut f = std::fs::File::open(&rpath).unwrap();
        let mut buf = [0u8; 5];
        f.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hello");
    });
    writer.join().unwrap();
    let _ = std::fs::remove_file(&path);
    assert_ticked("FIFO open+read", ticks, elapsed);
    println!("CHILD OK");
}

#[test]
fn std_net_blocking_read() {
    child("child_std_net_read");
}

#[test]
#[ignore = "child process"]
fn child_std_net_read() {
    if !common::is_child() {
        return;
    }
    start(1);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        std::thread::sleep(Duration::from_millis(500));
        use std::io::Write;
        s.write_all(b"pong").unwrap();
    });
    let (ticks, elapsed) = ticks_during(move || {
        use std::io::Read;
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"pong");
    });
    server.join().unwrap();
    assert_ticked("std::net read", ticks, elapsed);
    println!("CHILD OK");
}

#[test]
fn command_output() {
    child("child_command_output");
}

#[test]
#[ignore = "child process"]
fn child_command_output() {
    if !common::is_child() {
        return;
    }
    start(1);
    let (ticks, elapsed) = ticks_during(|| {
        let out = std::process::Command::new("sleep")
            .arg("0.5")
            .output()
            .unwrap();
        assert!(out.status.success());
    });
    assert_ticked("Command::output", ticks, elapsed);
    println!("CHILD OK");
}

#[test]
fn std_condvar_notified_by_thread() {
    child("child_std_condvar");
}

#[test]
#[ignore = "child process"]
fn child_std_condvar() {
    if !common::is_child() {
        return;
    }
    start(1);
    let pair = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
    let p2 = pair.clone();
    let notifier = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        *p2.0.lock().unwrap() = true;
        p2.1.notify_all();
    });
    let (ticks, elapsed) = ticks_during(move || {
        let mut ready = pair.0.lock().unwrap();
        while !*ready {
            ready = pair.1.wait(ready).unwrap();
        }
    });
    notifier.join().unwrap();
    assert_ticked("std Condvar wait", ticks, elapsed);
    println!("CHILD OK");
}

/// A goroutine holding a `std::sync::Mutex` is preempted; others then
/// block on it in the kernel (futex). Must complete.
fn std_mutex_across_preemption(procs: usize) {
    gort::Builder::new()
        .procs(procs)
        .time_slice(Duration::from_millis(1))
        .start()
        .unwrap();
    let t0 = Instant::now();
    while !gort::stats().async_preempt && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let total = gort::run(|| {
        let m = Arc::new(std::sync::Mutex::new(0u64));
        let m2 = m.clone();
        let holder = gort::spawn(move || {
            let mut g = m2.lock().unwrap();
            // The waiters start while we hold the lock.
            let waiters: Vec<_> = (0..8)
                .map(|_| {
                    let m = m2.clone();
                    gort::spawn(move || {
                        *m.lock().unwrap() += 1;
                    })
                })
                .collect();
            // Spin long enough to be preempted with the lock held.
            let t = Instant::now();
            let mut x = 0u64;
            while t.elapsed() < Duration::from_millis(50) {
                x = x.wrapping_add(std::hint::black_box(1));
            }
            std::hint::black_box(x);
            *g += 0;
            drop(g);
            waiters
        });
        for w in holder.join().unwrap() {
            w.join().unwrap();
        }
        let n = *m.lock().unwrap();
        n
    });
    assert_eq!(total, 8);
    println!("stats {:?}", gort::stats());
}

#[test]
fn std_mutex_held_across_preemption_one_p() {
    for _ in 0..3 {
        child("child_std_mutex_one_p");
    }
}

#[test]
#[ignore = "child process"]
fn child_std_mutex_one_p() {
    if !common::is_child() {
        return;
    }
    std_mutex_across_preemption(1);
    println!("CHILD OK");
}

#[test]
fn std_mutex_held_across_preemption_two_p() {
    for _ in 0..5 {
        child("child_std_mutex_two_p");
    }
}

#[test]
#[ignore = "child process"]
fn child_std_mutex_two_p() {
    if !common::is_child() {
        return;
    }
    std_mutex_across_preemption(2);
    println!("CHILD OK");
}

/// User + system CPU time of this process (getrusage: µs resolution).
fn rusage_cpu() -> Duration {
    // SAFETY: getrusage fills a valid, zeroed rusage.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(libc::RUSAGE_SELF, &mut ru), 0);
        ru
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

#[test]
fn long_std_sleep_costs_little_cpu_at_short_slice() {
    child("child_cpu_cost");
}

#[test]
#[ignore = "child process"]
fn child_cpu_cost() {
    if !common::is_child() {
        return;
    }
    gort::Builder::new()
        .procs(1)
        .time_slice(gort::MIN_TIME_SLICE)
        .start()
        .unwrap();
    let t0 = Instant::now();
    while !gort::stats().async_preempt && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(5));
    }
    // The code map's DWARF stage (a helper thread; about a second of CPU
    // in this unoptimised binary) is start-up work, not the cost measured.
    let _ = gort::__code_map_report();
    let before = gort::stats();
    let cpu0 = rusage_cpu();
    let wall0 = Instant::now();
    gort::run(|| std::thread::sleep(Duration::from_secs(2)));
    let cpu = rusage_cpu() - cpu0;
    let wall = wall0.elapsed();
    let after = gort::stats();
    println!(
        "2s std sleep at a 100µs slice: {cpu:?} CPU in {wall:?}; signals rejected {}",
        after.preempt_rejected - before.preempt_rejected
    );
    // Before: 18% of a core (a SIGURG every slice, all rejected).
    assert!(cpu < wall / 10, "{cpu:?} of CPU in {wall:?}");
    println!("CHILD OK");
}

#[test]
fn timeouts_not_cut_short_by_runtime_signals() {
    child("child_eintr");
}

#[test]
#[ignore = "child process"]
fn child_eintr() {
    if !common::is_child() {
        return;
    }
    start(1);
    let t0 = Instant::now();
    while !gort::stats().async_preempt && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(5));
    }
    gort::run(|| {
        // A busy goroutine beside, so that sysmon is awake and preempting.
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let spinner = gort::spawn(move || {
            while !s2.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        });
        let udp = gort::spawn(|| {
            let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let t = Instant::now();
            let mut buf = [0u8; 16];
            let r = sock.recv(&mut buf);
            (t.elapsed(), r.map_err(|e| e.kind()))
        });
        let poll = gort::spawn(|| {
            let mut fds = [0i32; 2];
            // SAFETY: a valid array of two fds.
            assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
            let mut pfd = libc::pollfd {
                fd: fds[0],
                events: libc::POLLIN,
                revents: 0,
            };
            let t = Instant::now();
            // SAFETY: one valid pollfd.
            let r = unsafe { libc::poll(&mut pfd, 1, 2000) };
            let e = std::io::Error::last_os_error();
            let el = t.elapsed();
            // SAFETY: closing our own pipe.
            unsafe {
                libc::close(fds[0]);
                libc::close(fds[1]);
            }
            (el, r, e.raw_os_error())
        });
        let epoll = gort::spawn(|| {
            // SAFETY: plain syscalls on an epoll fd of our own, with a
            // valid event buffer.
            unsafe {
                let ep = libc::epoll_create1(libc::EPOLL_CLOEXEC);
                assert!(ep >= 0);
                let mut ev: [libc::epoll_event; 1] = std::mem::zeroed();
                let t = Instant::now();
                let r = libc::epoll_wait(ep, ev.as_mut_ptr(), 1, 2000);
                let e = std::io::Error::last_os_error().raw_os_error();
                let el = t.elapsed();
                libc::close(ep);
                (el, r, e)
            }
        });
        let nanosleep = gort::spawn(|| {
            let ts = libc::timespec {
                tv_sec: 2,
                tv_nsec: 0,
            };
            let t = Instant::now();
            // SAFETY: a valid timespec; no remainder wanted.
            let r = unsafe { libc::nanosleep(&ts, std::ptr::null_mut()) };
            (
                t.elapsed(),
                r,
                std::io::Error::last_os_error().raw_os_error(),
            )
        });
        let (ep_t, ep_r, ep_e) = epoll.join().unwrap();
        let (ns_t, ns_r, ns_e) = nanosleep.join().unwrap();
        println!("epoll_wait: {ep_r} ({ep_e:?}) after {ep_t:?}; nanosleep: {ns_r} ({ns_e:?}) after {ns_t:?}");
        assert_eq!(ep_r, 0, "epoll_wait: {ep_e:?} after {ep_t:?}");
        assert!(ep_t >= Duration::from_millis(1900), "{ep_t:?}");
        assert_eq!(ns_r, 0, "nanosleep: {ns_e:?} after {ns_t:?}");
        let (udp_t, udp_r) = udp.join().unwrap();
        let (poll_t, poll_r, poll_e) = poll.join().unwrap();
        stop.store(true, Ordering::Relaxed);
        spinner.join().unwrap();
        println!(
            "udp recv: {udp_r:?} after {udp_t:?}; poll: {poll_r} ({poll_e:?}) after {poll_t:?}"
        );
        assert!(
            matches!(
                udp_r,
                Err(std::io::ErrorKind::WouldBlock) | Err(std::io::ErrorKind::TimedOut)
            ),
            "{udp_r:?}"
        );
        assert!(udp_t >= Duration::from_millis(1900), "{udp_t:?}");
        assert_eq!(poll_r, 0, "poll: {poll_e:?} after {poll_t:?}");
        assert!(poll_t >= Duration::from_millis(1900), "{poll_t:?}");
    });
    println!("CHILD OK");
}

#[test]
fn blockwarn_names_goroutine_syscall_and_site() {
    let out = common::run_child("child_blockwarn", &[("GORT_DEBUG", "blockwarn=50")], LIMIT);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("CHILD OK"),
        "{stdout}\n{stderr}"
    );
    let line = stderr
        .lines()
        .find(|l| l.contains("outside syscall::blocking"))
        .unwrap_or_else(|| panic!("no blockwarn line:\n{stderr}"));
    assert!(line.contains("goroutine "), "{line}");
    // Under qemu-user (GORT_TEST_RUNNER) the kernel describes qemu's host
    // thread: the number is the host's, which this target cannot name.
    let emulated = std::env::var_os("GORT_TEST_RUNNER").is_some();
    assert!(
        line.contains("nanosleep") || (emulated && line.contains("blocked in syscall ")),
        "{line}"
    );
    // Then the goroutine's stack, as in a dump, and who created it.
    let report: String = stderr
        .lines()
        .skip_while(|l| !l.contains("outside syscall::blocking"))
        .take_while(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        report.contains("created by unannounced::child_blockwarn")
            && report.contains("tests/unannounced.rs:"),
        "{report}"
    );
    // x86_64 unwinds from the kernel's sp/pc through libc to the closure
    // (under qemu-user the kernel reports the host's registers).
    if !emulated && cfg!(target_arch = "x86_64") {
        assert!(
            report
                .lines()
                .any(|l| l.starts_with("std::") && l.contains("sleep"))
                && names_closure(&report, "unannounced::child_blockwarn::{{closure}}"),
            "{report}"
        );
    }
    // Reported once per blocking call.
    let n = stderr
        .lines()
        .filter(|l| l.contains("outside syscall::blocking"))
        .count();
    assert_eq!(n, 1, "{stderr}");
}

/// Whether a goroutine's stack in `report` shows the closure `path`. A
/// release build's debug info is line tables only, where an inlined
/// closure has only its bare name: there the frame `{closure#0}(...)`
/// whose location is in this file counts.
fn names_closure(report: &str, path: &str) -> bool {
    let lines: Vec<&str> = report.lines().collect();
    report.contains(path)
        || (!cfg!(debug_assertions)
            && lines
                .windows(2)
                .any(|w| w[0].starts_with("{closure#") && w[1].contains("tests/unannounced.rs:")))
}

#[test]
#[ignore = "child process"]
fn child_blockwarn() {
    if !common::is_child() {
        return;
    }
    start(1);
    gort::run(|| {
        gort::spawn(|| std::thread::sleep(Duration::from_millis(400)))
            .join()
            .unwrap();
    });
    println!("CHILD OK");
}

#[test]
fn dump_shows_goroutine_in_syscall() {
    let out = common::run_child("child_dump", &[], LIMIT);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("CHILD OK"),
        "{stdout}\n{stderr}"
    );
    // Under qemu-user the main goroutine's 300ms timer has been seen to
    // fire only after the 800ms sleep ended (2 runs in 20 of the aarch64
    // build; never natively, also under load: 0 in 30), so the dump may
    // come too late to see the sleeper: only native runs check it.
    if std::env::var_os("GORT_TEST_RUNNER").is_some() {
        return;
    }
    assert!(stderr.contains("[syscall, "), "{stderr}");
    // Its stack, read without interrupting the call (x86_64, natively).
    if cfg!(target_arch = "x86_64") {
        let section: String = stderr
            .lines()
            .skip_while(|l| !l.contains("[syscall, "))
            .take_while(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            section.contains("sleep")
                && names_closure(&section, "unannounced::child_dump::{{closure}}"),
            "{section}"
        );
    }
}

#[test]
#[ignore = "child process"]
fn child_dump() {
    if !common::is_child() {
        return;
    }
    start(1);
    gort::run(|| {
        let h = gort::spawn(|| std::thread::sleep(Duration::from_millis(800)));
        gort::time::sleep(Duration::from_millis(300));
        gort::dump();
        h.join().unwrap();
    });
    println!("CHILD OK");
}

#[test]
fn goroutine_in_kernel_is_not_a_deadlock() {
    child("child_not_dead");
}

#[test]
#[ignore = "child process"]
fn child_not_dead() {
    if !common::is_child() {
        return;
    }
    start(1);
    // Every other goroutine waits for one that sits in the kernel for
    // longer than the deadlock grace period (200ms), in a sleep and then
    // in a pipe read that a plain thread satisfies.
    let mut fds = [0i32; 2];
    // SAFETY: a valid array of two fds.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let (r, w) = (fds[0], fds[1]);
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1200));
        // SAFETY: writes one byte from a valid buffer to our pipe.
        assert_eq!(unsafe { libc::write(w, b"x".as_ptr().cast(), 1) }, 1);
    });
    gort::run(move || {
        gort::spawn(move || {
            std::thread::sleep(Duration::from_millis(600));
            let mut b = [0u8; 1];
            // SAFETY: reads into a valid one-byte buffer from our pipe.
            assert_eq!(unsafe { libc::read(r, b.as_mut_ptr().cast(), 1) }, 1);
        })
        .join()
        .unwrap();
    });
    writer.join().unwrap();
    println!("CHILD OK");
}

#[test]
fn handoff_off_by_setting() {
    // With the handoff off, a blocked goroutine keeps its P: the ticker
    // starves (this is what the other tests would see without it).
    child("child_handoff_off");
}

#[test]
#[ignore = "child process"]
fn child_handoff_off() {
    if !common::is_child() {
        return;
    }
    gort::Builder::new()
        .procs(1)
        .unannounced_handoff(None)
        .start()
        .unwrap();
    let (ticks, elapsed) = ticks_during(|| std::thread::sleep(Duration::from_millis(300)));
    println!("handoff off: {ticks} ticks in {elapsed:?}");
    // A free 1ms ticker would tick ~300 times; a few ticks may land
    // before the sleeper gets its P (more under qemu-user).
    assert!(
        ticks <= elapsed.as_millis() as u64 / 20,
        "{ticks} ticks: the P was not held"
    );
    assert_eq!(gort::stats().unannounced_handoffs, 0);
    println!("CHILD OK");
}

/// Goroutines alternate plain blocking calls around the handoff delay
/// with runtime calls (spawn, join, channels, yield, timers, gort mutex),
/// so sysmon's handoffs race with goroutines coming back to the runtime.
///
/// With `stalls`, threads also block now and then inside the runtime
/// itself (debug builds; see `gort::__inject_runtime_stalls`), where
/// sysmon must never take their P: between the ownership check and the
/// switch to g0, on g0, in `syscall::blocking`'s entry.
fn mixed_stress(procs: usize, stalls: bool) {
    gort::Builder::new()
        .procs(procs)
        .time_slice(Duration::from_millis(1))
        .unannounced_handoff(Some(gort::MIN_UNANNOUNCED_HANDOFF))
        .start()
        .unwrap();
    gort::__inject_runtime_stalls(stalls);
    let total = gort::run(|| {
        let (tx, rx) = gort::chan::channel::<u64>(4);
        let m = Arc::new(gort::sync::Mutex::new(0u64));
        let hs: Vec<_> = (0..16u64)
            .map(|i| {
                let tx = tx.clone();
                let m = m.clone();
                gort::spawn(move || {
                    let t = Instant::now();
                    let mut n = 0u64;
                    while t.elapsed() < Duration::from_millis(1500) {
                        let us = 50 + (i * 37 + n * 101) % 400;
                        std::thread::sleep(Duration::from_micros(us));
                        n += gort::spawn(move || i).join().unwrap() - i + 1;
                        tx.send(n).unwrap();
                        *m.lock() += 1;
                        gort::yield_now();
                        gort::time::sleep(Duration::from_micros(us / 2));
                        gort::syscall::blocking(|| {
                            std::thread::sleep(Duration::from_micros(us / 4))
                        });
                    }
                    n
                })
            })
            .collect();
        drop(tx);
        let drain = gort::spawn(move || {
            let mut c = 0u64;
            while rx.recv().is_ok() {
                c += 1;
            }
            c
        });
        let sent: u64 = hs.into_iter().map(|h| h.join().unwrap()).sum();
        let received = drain.join().unwrap();
        assert_eq!(sent, received);
        assert_eq!(*m.lock(), sent);
        sent
    });
    let st = gort::stats();
    println!("{total} rounds; {st:?}");
    assert!(total > 0);
}

#[test]
fn handoffs_race_with_runtime_calls_one_p() {
    child("child_mixed_one_p");
}

#[test]
#[ignore = "child process"]
fn child_mixed_one_p() {
    if !common::is_child() {
        return;
    }
    mixed_stress(1, false);
    println!("CHILD OK");
}

#[test]
fn handoffs_race_with_runtime_calls_two_p() {
    child("child_mixed_two_p");
}

#[test]
#[ignore = "child process"]
fn child_mixed_two_p() {
    if !common::is_child() {
        return;
    }
    mixed_stress(2, false);
    println!("CHILD OK");
}

#[test]
fn handoffs_race_with_stalls_in_the_runtime_one_p() {
    child("child_stalls_one_p");
}

#[test]
#[ignore = "child process"]
fn child_stalls_one_p() {
    if !common::is_child() {
        return;
    }
    mixed_stress(1, true);
    println!("CHILD OK");
}

#[test]
fn handoffs_race_with_stalls_in_the_runtime_two_p() {
    child("child_stalls_two_p");
}

#[test]
#[ignore = "child process"]
fn child_stalls_two_p() {
    if !common::is_child() {
        return;
    }
    mixed_stress(2, true);
    println!("CHILD OK");
}

#[test]
fn locked_goroutine_keeps_its_thread() {
    child("child_locked");
}

#[test]
#[ignore = "child process"]
fn child_locked() {
    if !common::is_child() {
        return;
    }
    start(1);
    let (ticks, elapsed) = ticks_during(|| {
        gort::lock_os_thread();
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        for _ in 0..5 {
            std::thread::sleep(Duration::from_millis(40));
            // A runtime call after each block: the goroutine takes a P
            // back, on its own thread.
            gort::yield_now();
            // SAFETY: as above.
            assert_eq!(unsafe { libc::gettid() }, tid);
        }
        gort::unlock_os_thread();
    });
    assert_ticked("locked goroutine", ticks, elapsed);
    println!("CHILD OK");
}

/// Goroutines queued on one of the runtime's own locks (here a channel's,
/// as 10,000 receivers wake at its close) are in the runtime, not blocked
/// in user code: sysmon must not hand their Ps to new threads. (It did:
/// each waiter on the channel lock looked blocked in `futex`, so every
/// handoff started another M whose goroutine queued on the same lock, and
/// the process grew thousands of threads.)
#[test]
fn runtime_lock_waiters_keep_their_processor() {
    child_alone("child_runtime_lock_waiters");
}

#[test]
#[ignore = "child process"]
fn child_runtime_lock_waiters() {
    if !common::is_child() {
        return;
    }
    start_quick_handoff(2);
    // Plain threads that compete for the CPUs, as other processes do on a
    // loaded machine: a thread holding the channel lock is then sometimes
    // descheduled, and its waiters sit in `futex` long enough for sysmon.
    let stop = Arc::new(AtomicBool::new(false));
    let hogs: Vec<_> = (0..3)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    for round in 0..3 {
        gort::run(|| {
            let (tx, hs) = common::parked_receivers(10_000);
            gort::time::sleep(Duration::from_millis(20));
            common::release(tx, hs);
        });
        let s = gort::stats();
        println!("round {round}: {} threads", s.threads);
        // Two Ps, sysmon's spare Ms and the odd handoff of a goroutine
        // that really blocked (a page fault is not one): a few dozen at
        // most, where the bug made thousands.
        assert!(
            s.threads <= 64,
            "{} threads after round {round}: {s:?}",
            s.threads
        );
    }
    stop.store(true, Ordering::Relaxed);
    for h in hogs {
        h.join().unwrap();
    }
    println!("CHILD OK");
}

/// A goroutine that lost its P in a plain blocking call and then parks at
/// once (a channel receive, whose lock it holds until the park is
/// published) must publish the park before it waits for a P. (It queued
/// itself runnable with the channel's lock still held, and the goroutine
/// running on the only P then queued on that lock for ever: found by a
/// tree walk with 8 readers on a channel.)
#[test]
fn park_right_after_a_handoff() {
    child("child_park_after_handoff");
}

#[test]
#[ignore = "child process"]
fn child_park_after_handoff() {
    if !common::is_child() {
        return;
    }
    start_quick_handoff(1);
    let got = gort::run(|| {
        let (tx, rx) = gort::chan::channel::<u64>(0);
        let receiver = gort::spawn(move || {
            let mut sum = 0;
            for _ in 0..200 {
                // Loses the P to the sender's M while it sleeps...
                std::thread::sleep(Duration::from_millis(1));
                // ...and parks on the channel as soon as it is back.
                sum += rx.recv().unwrap();
            }
            sum
        });
        let sender = gort::spawn(move || {
            for i in 0..200u64 {
                // Hold the P past the receiver's sleep, then send.
                let t = Instant::now();
                while t.elapsed() < Duration::from_millis(2) {
                    std::hint::spin_loop();
                }
                tx.send(i).unwrap();
            }
        });
        sender.join().unwrap();
        receiver.join().unwrap()
    });
    assert_eq!(got, (0..200).sum::<u64>());
    // The same with a runtime sleep right after the blocking call: its
    // park arms a timer on a g0 that may hold no P. (Rarely reached
    // natively — sysmon usually makes the goroutine yield first; under
    // qemu-aarch64 the timer's park dereferenced the missing P.)
    gort::run(|| {
        let sleeper = gort::spawn(|| {
            for _ in 0..100 {
                std::thread::sleep(Duration::from_millis(1));
                gort::time::sleep(Duration::from_micros(200));
            }
        });
        let spinner = gort::spawn(|| {
            let t = Instant::now();
            while t.elapsed() < Duration::from_millis(300) {
                std::hint::spin_loop();
            }
        });
        spinner.join().unwrap();
        sleeper.join().unwrap();
    });
    let s = gort::stats();
    println!("handoffs: {}", s.unannounced_handoffs);
    assert!(s.unannounced_handoffs > 0, "{s:?}");
    println!("CHILD OK");
}
