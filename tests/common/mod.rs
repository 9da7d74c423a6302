//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Re-runs this test binary with only `test` (an `#[ignore]`d child-mode
/// test), with `env` set, and returns its output. The child is killed
/// after `timeout`, so a hang fails the caller instead of blocking it.
///
/// `GORT_TEST_RUNNER` (e.g. `qemu-aarch64 -L /usr/aarch64-linux-gnu`, as
/// tests/aarch64/run.sh sets it) runs the child through that command, for
/// test binaries of another architecture.
pub fn run_child(test: &str, env: &[(&str, &str)], timeout: Duration) -> Output {
    let exe = std::env::current_exe().expect("current_exe");
    let runner = std::env::var("GORT_TEST_RUNNER").unwrap_or_default();
    let mut runner = runner.split_whitespace();
    let mut cmd = match runner.next() {
        Some(prog) => {
            let mut c = Command::new(prog);
            c.args(runner).arg(exe);
            c
        }
        None => Command::new(exe),
    };
    cmd.args([
        "--exact",
        test,
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("GORT_TEST_CHILD", "1")
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn child test process");
    // Drain both pipes while the child runs: a child that prints more than
    // a pipe holds (a dump of thousands of goroutines) would otherwise
    // block on its write and never exit.
    let drain = |r: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(child.stdout.take().map(|r| Box::new(r) as _));
    let err = drain(child.stderr.take().map(|r| Box::new(r) as _));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "child test {test} did not finish within {timeout:?}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.join().unwrap_or_default()),
                String::from_utf8_lossy(&err.join().unwrap_or_default())
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// Whether we are the child process of `run_child`.
pub fn is_child() -> bool {
    std::env::var_os("GORT_TEST_CHILD").is_some()
}

/// CPU time (user + system) this process has used so far.
pub fn process_cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("read /proc/self/stat");
    // Fields after the ")" that ends the command name; utime and stime are
    // fields 14 and 15 of the whole line, i.e. 12 and 13 after it.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

/// Runs `f` on a goroutine (the runtime must be started) and returns its
/// result, resuming its panic if it panicked, and failing the test if it
/// takes longer than `limit` (the goroutine is then left behind).
pub fn on_goroutine_within<T, F>(limit: Duration, f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    gort::spawn(move || {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let _ = tx.send(r);
    });
    result_within(rx, limit)
}

/// `on_goroutine_within` for a plain thread.
pub fn on_thread_within<T, F>(limit: Duration, f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let _ = tx.send(r);
    });
    result_within(rx, limit)
}

/// The result sent on `rx` within `limit`: its value, or its panic resumed.
fn result_within<T>(rx: std::sync::mpsc::Receiver<std::thread::Result<T>>, limit: Duration) -> T {
    match rx.recv_timeout(limit) {
        Ok(Ok(v)) => v,
        Ok(Err(p)) => std::panic::resume_unwind(p),
        Err(_) => panic!(
            "test did not finish within {limit:?} (hung?); stats: {:?}",
            gort::stats()
        ),
    }
}

/// Runs the child-mode test `test` (see `run_child`) and fails unless it
/// succeeded and printed `marker`; shows both outputs when it did not.
pub fn expect_child(test: &str, env: &[(&str, &str)], timeout: Duration, marker: &str) {
    let out = run_child(test, env, timeout);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(marker),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `n` goroutines parked in a receive on one unbuffered channel; returns
/// its sender and their handles. `release` wakes them all at once (the
/// close) and joins them.
pub fn parked_receivers(n: usize) -> (gort::chan::Sender<()>, Vec<gort::JoinHandle<()>>) {
    let (tx, rx) = gort::chan::channel::<()>(0);
    let hs = (0..n)
        .map(|_| {
            let rx = rx.clone();
            gort::spawn(move || {
                let _ = rx.recv();
            })
        })
        .collect();
    (tx, hs)
}

/// Closes the channel of `parked_receivers` and joins its goroutines.
pub fn release(tx: gort::chan::Sender<()>, hs: Vec<gort::JoinHandle<()>>) {
    drop(tx);
    for h in hs {
        h.join().unwrap();
    }
}
