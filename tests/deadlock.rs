//! Deadlock detection (check_dead) and goroutine dumps. Every case runs in
//! a child process: a deadlock leaves goroutines blocked for good, which
//! would make the other tests' runtime state depend on the order they ran.

mod common;

use common::{is_child, run_child};
use std::os::unix::process::ExitStatusExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

/// Spawns a goroutine that joins itself: it can never be woken.
fn spawn_self_joiner() -> u64 {
    let slot: Arc<Mutex<Option<gort::JoinHandle<()>>>> = Arc::new(Mutex::new(None));
    let s2 = slot.clone();
    let h = gort::spawn(move || {
        let own = loop {
            if let Some(h) = s2.lock().unwrap().take() {
                break h;
            }
            gort::yield_now();
        };
        let _ = own.join();
    });
    let id = h.id();
    *slot.lock().unwrap() = Some(h);
    id
}

fn panic_message(err: Box<dyn std::any::Any + Send>) -> String {
    err.downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[test]
#[ignore = "child process"]
fn child_asleep() {
    if !is_child() {
        return;
    }
    let stuck = std::sync::atomic::AtomicU64::new(0);
    let stuck = Arc::new(stuck);
    let s2 = stuck.clone();
    let err = std::panic::catch_unwind(move || {
        gort::run(move || {
            s2.store(spawn_self_joiner(), std::sync::atomic::Ordering::SeqCst);
            gort::exit();
        })
    })
    .expect_err("run must report the deadlock");
    let msg = panic_message(err);
    println!("STUCK {}", stuck.load(std::sync::atomic::Ordering::SeqCst));
    println!("REPORT BEGIN\n{msg}\nREPORT END");
}

#[test]
fn goroutines_all_asleep_after_main_exits() {
    let out = run_child("child_asleep", &[], T);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id: u64 = stdout
        .lines()
        .find_map(|l| l.split("STUCK ").nth(1))
        .and_then(|s| s.trim().parse().ok())
        .expect("stuck goroutine id");
    assert!(
        stdout.contains("all goroutines are asleep - deadlock!"),
        "{stdout}"
    );
    // The dump: id, wait reason, how long, spawn site.
    let line = stdout
        .lines()
        .find(|l| l.starts_with(&format!("goroutine {id} [")))
        .unwrap_or_else(|| panic!("goroutine {id} missing from the report:\n{stdout}"));
    assert!(line.contains("[join, ") && line.ends_with("]:"), "{line}");
    // Then its stack (the function it is stuck in), and who spawned it where.
    assert!(
        stdout.contains("deadlock::spawn_self_joiner::{{closure}}(...)\n\t")
            && stdout.contains(
                "created by deadlock::spawn_self_joiner in goroutine 1\n\ttests/deadlock.rs:"
            ),
        "{stdout}"
    );
}

#[test]
#[ignore = "child process"]
fn child_main_exit_alone() {
    if !is_child() {
        return;
    }
    let err = std::panic::catch_unwind(|| gort::run(|| gort::exit())).expect_err("must report");
    println!("REPORT: {}", panic_message(err));
}

#[test]
fn main_exit_with_nothing_left_is_go_s_no_goroutines() {
    let out = run_child("child_main_exit_alone", &[], T);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("REPORT: no goroutines (main called gort::exit) - deadlock!"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "child process"]
fn child_exit_then_others_finish() {
    if !is_child() {
        return;
    }
    // Main exits while others still work: run waits for them, then reports.
    let err = std::panic::catch_unwind(|| {
        gort::run(|| {
            for _ in 0..10 {
                drop(gort::spawn(|| {
                    gort::time::sleep(Duration::from_millis(100))
                }));
            }
            gort::exit();
        })
    })
    .expect_err("must report");
    println!("REPORT: {}", panic_message(err));
}

#[test]
fn main_exit_waits_for_the_others_first() {
    let t0 = std::time::Instant::now();
    let out = run_child("child_exit_then_others_finish", &[], T);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("REPORT: no goroutines (main called gort::exit) - deadlock!"),
        "{stdout}"
    );
    assert!(t0.elapsed() >= Duration::from_millis(100));
}

#[test]
#[ignore = "child process"]
fn child_timer_pending() {
    if !is_child() {
        return;
    }
    // A sleeping goroutine is not a deadlock, however long the sleep.
    let v = gort::run(|| {
        gort::time::sleep(Duration::from_millis(700));
        7
    });
    println!("RESULT {v}");
}

#[test]
fn pending_timer_is_not_a_deadlock() {
    let out = run_child("child_timer_pending", &[], T);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("RESULT 7"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "child process"]
fn child_abort_mode() {
    if !is_child() {
        return;
    }
    gort::Builder::new()
        .on_deadlock(gort::OnDeadlock::Abort)
        .start()
        .unwrap();
    gort::run(|| {
        spawn_self_joiner();
        gort::exit();
    });
}

#[test]
fn abort_mode_prints_go_s_fatal_error_and_exits_2() {
    let out = run_child("child_abort_mode", &[], T);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{:?}\n{stderr}", out.status);
    assert!(
        stderr.contains("fatal error: all goroutines are asleep - deadlock!"),
        "{stderr}"
    );
    assert!(stderr.contains("[join, "), "{stderr}");
}

#[test]
#[ignore = "child process"]
fn child_sigquit() {
    if !is_child() {
        return;
    }
    gort::run(|| {
        let hs: Vec<_> = (0..3)
            .map(|_| gort::spawn(|| gort::time::sleep(Duration::from_secs(30))))
            .collect();
        gort::time::sleep(Duration::from_millis(100));
        gort::dump();
        // SAFETY: sends SIGQUIT to our own process (the test's point).
        unsafe { libc::kill(libc::getpid(), libc::SIGQUIT) };
        for h in hs {
            h.join().unwrap();
        }
    });
}

#[test]
fn sigquit_and_dump_print_every_goroutine() {
    let out = run_child("child_sigquit", &[], T);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{:?}\n{stderr}", out.status);
    assert!(out.status.signal().is_none());
    assert!(stderr.contains("SIGQUIT: quit"), "{stderr}");
    // dump() and the SIGQUIT dump both list the three sleepers.
    let sleepers = stderr.lines().filter(|l| l.contains("[sleep, ")).count();
    assert!(sleepers >= 6, "{sleepers} sleeper lines:\n{stderr}");
}
