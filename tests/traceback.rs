//! Goroutine dumps show where each goroutine is: Go's header, its frames
//! (function, then `file:line`), and who created it.
//!
//! Each scenario runs in a child process (the dump goes to stderr), with a
//! goroutine parked in a known function, one spinning in a known function,
//! and the dump asked for by `gort::dump()`, by SIGQUIT, or made by a
//! deadlock report.

mod common;

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(60);

#[inline(never)]
fn traceback_probe_parked(rx: gort::chan::Receiver<u32>) -> u32 {
    // Using the result keeps this frame on the stack (no tail call).
    black_box(rx.recv().unwrap_or(0)) + 1
}

static SPINNING: AtomicBool = AtomicBool::new(false);
static STOP: AtomicBool = AtomicBool::new(false);

#[inline(never)]
fn traceback_probe_spinner() -> u64 {
    let mut x = black_box(1u64);
    SPINNING.store(true, Ordering::SeqCst);
    while !STOP.load(Ordering::Relaxed) {
        x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
    x
}

/// Lines of the dump section for goroutine `id` (header to blank line).
fn section(dump: &str, id: u64) -> String {
    let head = format!("goroutine {id} [");
    let start = dump
        .find(&head)
        .unwrap_or_else(|| panic!("no {head:?} in the dump:\n{dump}"));
    let rest = &dump[start..];
    let end = rest.find("\n\n").unwrap_or(rest.len());
    rest[..end].to_string()
}

fn child_dump(asked_by: &'static str) {
    gort::Builder::new().procs(2).start().expect("start");
    gort::run(move || {
        let (tx, rx) = gort::chan::channel::<u32>(0);
        let parked = gort::spawn(move || traceback_probe_parked(rx));
        let spinner = gort::spawn(traceback_probe_spinner);
        while !SPINNING.load(Ordering::SeqCst) {
            gort::time::sleep(Duration::from_millis(1));
        }
        gort::time::sleep(Duration::from_millis(50));
        println!("PARKED={} SPINNER={}", parked.id(), spinner.id());
        match asked_by {
            "dump" => gort::dump(),
            "sigquit" => {
                // SAFETY: raise only delivers a signal to this process.
                unsafe { libc::raise(libc::SIGQUIT) };
                gort::time::sleep(Duration::from_secs(30));
            }
            _ => unreachable!(),
        }
        STOP.store(true, Ordering::Relaxed);
        tx.send(1).unwrap();
        parked.join().unwrap();
        spinner.join().unwrap();
    });
}

#[test]
#[ignore = "child process of dump_shows_parked_and_running_frames"]
fn child_dump_by_call() {
    child_dump("dump");
}

#[test]
#[ignore = "child process of sigquit_dump_shows_frames"]
fn child_dump_by_sigquit() {
    child_dump("sigquit");
}

/// The goroutine ids the child printed.
fn ids(stdout: &str) -> (u64, u64) {
    let line = stdout
        .lines()
        .find_map(|l| l.find("PARKED=").map(|i| &l[i..]))
        .unwrap_or_else(|| panic!("no ids in child output:\n{stdout}"));
    let mut it = line
        .split_whitespace()
        .map(|kv| kv.split_once('=').unwrap().1.parse::<u64>().unwrap());
    (it.next().unwrap(), it.next().unwrap())
}

fn check_dump(stdout: &str, stderr: &str) {
    let (parked, spinner) = ids(stdout);
    let p = section(stderr, parked);
    assert!(
        p.contains("[chan receive"),
        "parked goroutine's wait reason missing:\n{p}"
    );
    assert!(
        p.contains("traceback::traceback_probe_parked") && p.contains("tests/traceback.rs:"),
        "parked goroutine's frames do not name its function and file:line:\n{p}"
    );
    assert!(
        !p.contains("gort::sched::"),
        "runtime frames are shown at the default level:\n{p}"
    );
    assert!(
        p.contains("created by traceback::child_dump"),
        "no 'created by' line naming the spawning function:\n{p}"
    );
    let s = section(stderr, spinner);
    assert!(
        s.contains("[running"),
        "spinner's state is not running:\n{s}"
    );
    assert!(
        s.contains("traceback::traceback_probe_spinner") && s.contains("tests/traceback.rs:"),
        "running goroutine's frames do not name its function and file:line:\n{s}"
    );
}

#[test]
fn dump_shows_parked_and_running_frames() {
    let out = common::run_child("child_dump_by_call", &[], TIMEOUT);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    check_dump(&stdout, &stderr);
}

#[test]
fn sigquit_dump_shows_frames() {
    let out = common::run_child("child_dump_by_sigquit", &[], TIMEOUT);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "SIGQUIT exits 2:\n{stdout}\n{stderr}"
    );
    check_dump(&stdout, &stderr);
}

#[test]
#[ignore = "child process of traceback_none_prints_headers_only"]
fn child_dump_level_none() {
    child_dump("dump");
}

#[test]
fn traceback_none_prints_headers_only() {
    let out = common::run_child(
        "child_dump_level_none",
        &[("GORT_TRACEBACK", "none")],
        TIMEOUT,
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    let (parked, _) = ids(&stdout);
    let p = section(&stderr, parked);
    assert!(
        !p.contains("traceback_probe_parked"),
        "frames printed with GORT_TRACEBACK=none:\n{p}"
    );
    assert!(p.contains("created by"), "{p}");
}

#[test]
#[ignore = "child process of bad_traceback_setting_is_reported"]
fn child_bad_traceback_setting() {
    gort::run(|| ());
}

#[test]
fn bad_traceback_setting_is_reported() {
    let out = common::run_child(
        "child_bad_traceback_setting",
        &[("GORT_TRACEBACK", "everything")],
        TIMEOUT,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("GORT_TRACEBACK") && stderr.contains("everything"),
        "{stderr}"
    );
}

#[inline(never)]
fn traceback_probe_deadlocked(rx: gort::chan::Receiver<u32>) -> u32 {
    black_box(rx.recv().unwrap_or(0)) + 1
}

#[test]
fn deadlock_report_shows_frames() {
    let report = std::panic::catch_unwind(|| {
        gort::run(|| {
            let (tx, rx) = gort::chan::channel::<u32>(0);
            let h = gort::spawn(move || traceback_probe_deadlocked(rx));
            h.join().unwrap();
            drop(tx);
        })
    })
    .expect_err("a deadlock must be reported");
    let text = report.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(text.contains("deadlock"), "{text}");
    assert!(
        text.contains("traceback_probe_deadlocked") && text.contains("tests/traceback.rs:"),
        "the report does not show where the goroutine is blocked:\n{text}"
    );
}

/// 10,000 parked goroutines dump in well under a few seconds (the target
/// is under one second; the bound is generous for a loaded machine).
#[test]
#[ignore = "child process of dump_of_many_goroutines_is_fast"]
fn child_many_goroutines() {
    gort::run(|| {
        let (tx, hs) = common::parked_receivers(10_000);
        gort::time::sleep(Duration::from_millis(200));
        let t = std::time::Instant::now();
        gort::dump();
        println!("DUMP_MS={}", t.elapsed().as_millis());
        common::release(tx, hs);
    });
}

#[test]
fn dump_of_many_goroutines_is_fast() {
    let out = common::run_child("child_many_goroutines", &[], TIMEOUT);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let ms: u64 = stdout
        .lines()
        .find_map(|l| l.find("DUMP_MS=").map(|i| &l[i + 8..]))
        .expect("DUMP_MS")
        .parse()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let headers = stderr.matches("[chan receive").count();
    assert!(headers >= 10_000, "{headers} goroutines in the dump");
    // Under an emulator (qemu-user for aarch64) everything is 10-50x
    // slower: there only the content is checked.
    if std::env::var_os("GORT_TEST_RUNNER").is_none() {
        assert!(ms < 10_000, "dumping 10,000 goroutines took {ms} ms");
    }
}

// ---------------------------------------------------------------------------
// Panics name their goroutine.

#[test]
#[ignore = "child process of goroutine_panic_names_the_goroutine"]
fn child_goroutine_panic() {
    let (id, err) = gort::run(|| {
        let h = gort::spawn(|| -> u32 { panic!("boom {}", 7) });
        let id = h.id();
        (id, h.join().unwrap_err())
    });
    println!("ID={id} MESSAGE={}", gort::panic_message(&*err).unwrap());
}

#[test]
fn goroutine_panic_names_the_goroutine() {
    let out = common::run_child("child_goroutine_panic", &[], TIMEOUT);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let id: u64 = stdout
        .lines()
        .find_map(|l| l.find("ID=").map(|i| &l[i + 3..]))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no id: {stdout}"));
    assert!(stdout.contains("MESSAGE=boom 7"), "{stdout}");
    let want = format!("goroutine {id} panicked at tests/traceback.rs:");
    assert!(
        stderr.contains(&want) && stderr.contains("boom 7"),
        "expected {want:?} in:\n{stderr}"
    );
    assert!(!stderr.contains("thread '<unnamed>'"), "{stderr}");
}

#[test]
#[ignore = "child process of main_goroutine_panic_is_printed_once"]
fn child_main_panic() {
    gort::run(|| panic!("main {}", "failed"));
}

#[test]
fn main_goroutine_panic_is_printed_once() {
    let out = common::run_child("child_main_panic", &[], TIMEOUT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(
        stderr.matches("main failed").count(),
        1,
        "the main goroutine's panic message once:\n{stderr}"
    );
    assert!(
        stderr.contains("goroutine 1 panicked at")
            || stderr.contains("panicked at tests/traceback.rs"),
        "{stderr}"
    );
}

#[test]
fn main_panic_payload_keeps_its_type() {
    let err = std::panic::catch_unwind(|| gort::run(|| -> () { std::panic::panic_any(42u32) }))
        .unwrap_err();
    assert_eq!(err.downcast_ref::<u32>(), Some(&42));
    let err =
        std::panic::catch_unwind(|| gort::run(|| -> () { panic!("text {}", 1) })).unwrap_err();
    assert_eq!(gort::panic_message(&*err), Some("text 1"));
}
