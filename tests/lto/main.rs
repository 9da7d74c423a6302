//! The fat-LTO program of issue 10, built by tests/lto/run.sh the way users
//! build theirs (release, `lto = "fat"`, `codegen-units = 1`, println!
//! everywhere, a `#[global_allocator]` with a spin lock), with a path
//! dependency on gort.
//!
//! `print`: 8 goroutines println! lines with a slow Display under a 100 µs
//! slice on 2 Ps; run.sh checks that every line is whole and that the run
//! ends. `spin`: with one P, a spinning goroutine must be preempted by
//! signal for a sleeper to run (when async preemption is on).
//! `report`: gort's code-map summary.

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

struct SpinAlloc(AtomicBool);

// SAFETY: forwards to System under a spin lock.
unsafe impl GlobalAlloc for SpinAlloc {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        while self.0.swap(true, Ordering::Acquire) {
            std::hint::spin_loop();
        }
        // SAFETY: as the caller guarantees.
        let p = unsafe { System.alloc(l) };
        self.0.store(false, Ordering::Release);
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        while self.0.swap(true, Ordering::Acquire) {
            std::hint::spin_loop();
        }
        // SAFETY: as the caller guarantees.
        unsafe { System.dealloc(p, l) };
        self.0.store(false, Ordering::Release);
    }
}

#[global_allocator]
static A: SpinAlloc = SpinAlloc(AtomicBool::new(false));

struct Slow(u64);

impl fmt::Display for Slow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Slow on purpose, while println! holds stdout's lock.
        let mut x = self.0;
        for _ in 0..20_000 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        write!(f, "value {:020} checksum {:020}", self.0, x)
    }
}

fn start(procs: usize) {
    gort::Builder::new()
        .procs(procs)
        .time_slice(Duration::from_micros(100))
        .start()
        .expect("start gort");
}

fn stats(what: &str) {
    let s = gort::stats();
    eprintln!(
        "{what}: async_preempt={} preempted_async={} rejected={}",
        s.async_preempt, s.preempted_async, s.preempt_rejected
    );
}

fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("report") => println!("{}", gort::__code_map_report()),
        Some("spin") => {
            start(1);
            while !gort::stats().async_preempt {
                std::thread::sleep(Duration::from_millis(1));
            }
            gort::run(|| {
                let stop = Arc::new(AtomicBool::new(false));
                let s = stop.clone();
                let h = gort::spawn(move || {
                    let mut x = 1u64;
                    while !s.load(Ordering::Relaxed) {
                        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                    }
                    x
                });
                for _ in 0..50 {
                    gort::time::sleep(Duration::from_millis(1));
                }
                stop.store(true, Ordering::Relaxed);
                h.join().unwrap();
            });
            stats("spin");
        }
        _ => {
            start(2);
            gort::run(|| {
                let hs: Vec<_> = (0..8u64)
                    .map(|g| {
                        gort::spawn(move || {
                            for i in 0..300u64 {
                                let mut x = i;
                                for _ in 0..20_000 {
                                    x = std::hint::black_box(
                                        x.wrapping_mul(6364136223846793005).wrapping_add(1),
                                    );
                                }
                                let words: Vec<String> = (0..4).map(|w| format!("{w}")).collect();
                                std::hint::black_box(&words);
                                println!("g{g} line {i:05} {}", Slow(g * 1_000_000 + i));
                            }
                        })
                    })
                    .collect();
                for h in hs {
                    h.join().unwrap();
                }
            });
            stats("print");
        }
    }
}
