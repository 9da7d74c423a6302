//! Misuse and failure: each case runs in a child process, so that this
//! binary's runtime state (or a crash) cannot leak between cases.

mod common;

use common::{is_child, run_child};
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
#[ignore = "child process of spawn_before_start_starts_the_runtime"]
fn child_spawn_before_start() {
    if !is_child() {
        return;
    }
    match std::panic::catch_unwind(|| gort::spawn(|| 1).join().unwrap()) {
        Ok(v) => println!("RESULT: {v}"),
        Err(err) => {
            let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
            println!("MESSAGE: {msg}");
        }
    }
}

#[test]
fn spawn_before_start_starts_the_runtime() {
    let out = run_child("child_spawn_before_start", &[], T);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", stderr(&out));
    assert!(stdout.contains("RESULT: 1"), "{stdout}");
    // Starting it from a bad environment is a clear error.
    let out = run_child("child_spawn_before_start", &[("GORT_MAXPROCS", "lots")], T);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("MESSAGE: gort: bad environment variable GORT_MAXPROCS=\"lots\""),
        "{stdout}"
    );
}

#[test]
#[ignore = "child process of bad_env tests"]
fn child_run_with_env() {
    if !is_child() {
        return;
    }
    let v = gort::run(|| 5);
    println!("RESULT: {v} procs={}", gort::stats().procs);
}

#[test]
fn bad_maxprocs_names_the_variable() {
    for bad in ["0", "lots", "-3", "99999"] {
        let out = run_child("child_run_with_env", &[("GORT_MAXPROCS", bad)], T);
        assert!(!out.status.success(), "GORT_MAXPROCS={bad} was accepted");
        let err = stderr(&out);
        assert!(
            err.contains(&format!("GORT_MAXPROCS=\"{bad}\"")) && err.contains("expected"),
            "GORT_MAXPROCS={bad}: {err}"
        );
    }
}

#[test]
fn good_maxprocs_is_used() {
    let out = run_child("child_run_with_env", &[("GORT_MAXPROCS", "3")], T);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("RESULT: 5 procs=3"),
        "{stdout}\n{}",
        stderr(&out)
    );
}

#[test]
fn bad_debug_names_the_variable() {
    let out = run_child(
        "child_run_with_env",
        &[("GORT_DEBUG", "schedtrace=soon")],
        T,
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("GORT_DEBUG=\"schedtrace=soon\""), "{err}");
}

#[test]
fn bad_builder_settings_are_errors() {
    // These fail before touching the runtime, so they can run in-process.
    let e = gort::Builder::new().procs(0).start().unwrap_err();
    assert!(e.to_string().contains("procs(0)"), "{e}");
    let e = gort::Builder::new().stack_size(100).start().unwrap_err();
    assert!(e.to_string().contains("stack_size(100)"), "{e}");
    let e = gort::Builder::new()
        .time_slice(Duration::from_micros(5))
        .start()
        .unwrap_err();
    assert!(e.to_string().contains("time_slice"), "{e}");
}

#[test]
#[ignore = "child process of stack_overflow_is_reported"]
fn child_overflow() {
    if !is_child() {
        return;
    }
    #[inline(never)]
    fn recurse(n: u64) -> u64 {
        let buf = std::hint::black_box([n as u8; 512]);
        if n == u64::MAX {
            return 0;
        }
        recurse(n + 1) + buf[7] as u64
    }
    gort::run(|| {
        // The goroutine overflows only after its id is printed (with two
        // Ps it could otherwise abort the process first).
        let (go, wait) = gort::chan::channel::<()>(1);
        let h = gort::spawn(move || {
            wait.recv().unwrap();
            recurse(0)
        });
        println!("GOROUTINE {}", h.id());
        go.send(()).unwrap();
        h.join().unwrap()
    });
}

#[test]
fn stack_overflow_is_reported() {
    let out = run_child("child_overflow", &[], T);
    let err = stderr(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let id: u64 = stdout
        .lines()
        .find_map(|l| l.split("GOROUTINE ").nth(1))
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("child printed no goroutine id: {stdout}\n{err}"));
    assert!(
        err.contains(&format!("goroutine {id} stack overflow")),
        "missing overflow report for goroutine {id}:\n{err}"
    );
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{:?}", out.status);
}

#[test]
#[ignore = "child process of plain_segfault_is_not_hidden"]
fn child_segfault() {
    if !is_child() {
        return;
    }
    gort::run(|| {
        // SAFETY: deliberately not safe: a null write, to check that gort
        // does not swallow or misreport ordinary faults.
        unsafe { std::ptr::write_volatile(std::ptr::null_mut::<u64>(), 1) };
    });
}

#[test]
fn plain_segfault_is_not_hidden() {
    let out = run_child("child_segfault", &[], T);
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGSEGV),
        "{:?}\n{}",
        out.status,
        stderr(&out)
    );
    assert!(!stderr(&out).contains("stack overflow"));
}
