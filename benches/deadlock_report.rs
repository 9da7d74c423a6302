//! How long a deadlock takes to be reported: from the moment the main
//! goroutine of a `gort::run` blocks for good (a receive nobody will ever
//! send to) until the report comes out of `run` as a panic. 20 runs in one
//! process (the runtime stays up between them); p50 and max in µs.
//!
//! `cargo bench --bench deadlock_report`
//!
//! With no thread in the process other than the runtime's and the one in
//! `run`, the process-wide check needs no grace for plain threads (~2ms);
//! set `EXTRA_THREAD=1` to keep a plain thread alive beside, which brings
//! back the 200ms grace.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn main() {
    // The benchmark harness passes `--bench`; nothing to parse.
    let _extra = std::env::var_os("EXTRA_THREAD").map(|_| {
        std::thread::spawn(|| loop {
            std::thread::sleep(Duration::from_secs(3600));
        })
    });
    // The reports are expected: keep them off the terminal.
    std::panic::set_hook(Box::new(|_| {}));
    let mut us = Vec::new();
    for _ in 0..20 {
        let blocked_at: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
        let b = blocked_at.clone();
        let r = std::panic::catch_unwind(move || {
            gort::run(move || {
                let (_tx, rx) = gort::chan::channel::<()>(0);
                // Some scheduling first, so the runtime is not idle already.
                gort::spawn(|| gort::time::sleep(Duration::from_millis(2)))
                    .join()
                    .unwrap();
                *b.lock().unwrap() = Some(Instant::now());
                let _ = rx.recv();
            })
        });
        let since = blocked_at
            .lock()
            .unwrap()
            .expect("the main goroutine blocked");
        let d = since.elapsed();
        let msg = r.expect_err("a deadlock must be reported");
        assert!(gort::panic_message(&*msg).is_some_and(|m| m.contains("deadlock")));
        us.push(d.as_micros() as u64);
    }
    let first = us[0];
    us.sort_unstable();
    println!(
        "deadlock block -> report: p50 {} us, max {} us (first run {} us), {} runs",
        us[us.len() / 2],
        us[us.len() - 1],
        first,
        us.len()
    );
}
