//! The fat-LTO program of issue 10, built by tests/lto/run.sh the way users
//! build theirs (release, `lto = "fat"`, `codegen-units = 1`, println!
//! everywhere, a `#[global_allocator]` with a spin lock), with a path
//! dependency on gort.
//!
//! `print`: 8 goroutines println! lines with a slow Display under a
//! 100 µs slice on 2 Ps; run.sh checks that every line is whole and that
//! the run ends (`print-after-map`: the same, started once async
//! preemption is on). `spin`: with one P, a spinning goroutine must be preempted by
//! signal for a sleeper to run (when async preemption is on).
//! `report`: gort's code-map summary.
//! `blocking`: with one P, goroutines block in plain std calls (never
//! `syscall::blocking`) — `std::thread::sleep`, `std::fs::read`, a
//! `std::sync::Mutex` held across a sleep — and println! after each step,
//! beside a 1 ms ticker; the run must end, every line whole, and the
//! ticker must keep ticking (the processor is handed off, not stalled).

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

mod spin;

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

/// Work between the prints, out of line: with this program's inlined
/// spin-locked allocator, gort leaves every function that allocates alone,
/// so this is where the print goroutines get preempted by signal.
#[inline(never)]
fn churn(mut x: u64) -> u64 {
    for _ in 0..20_000 {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
    x
}

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
            spin::spin_beside_a_sleeper();
            stats("spin");
        }
        Some("blocking") => {
            start(1);
            blocking();
        }
        mode => {
            start(2);
            if mode == Some("print-after-map") {
                // Where the map needs the DWARF first (fat LTO, or an
                // inlined allocator like this one's), start once signal
                // preemption is on, so that println! is preempted too.
                while !gort::stats().async_preempt {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            gort::run(|| {
                let hs: Vec<_> = (0..8u64)
                    .map(|g| {
                        gort::spawn(move || {
                            for i in 0..300u64 {
                                std::hint::black_box(churn(i));
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

/// The `blocking` mode (see the top).
fn blocking() {
    let t0 = std::time::Instant::now();
    let ticks = gort::run(|| {
        let ticks = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let (t, d) = (ticks.clone(), done.clone());
        let ticker = gort::spawn(move || {
            while !d.load(Ordering::Relaxed) {
                gort::time::sleep(Duration::from_millis(1));
                t.fetch_add(1, Ordering::Relaxed);
            }
        });
        let shared = Arc::new(std::sync::Mutex::new(0u64));
        let hs: Vec<_> = (0..6u64)
            .map(|g| {
                let shared = shared.clone();
                gort::spawn(move || {
                    for i in 0..40u64 {
                        let what = match i % 4 {
                            0 => {
                                std::thread::sleep(Duration::from_millis(2));
                                "slept".to_string()
                            }
                            1 => {
                                let b = std::fs::read("/proc/self/status").expect("read");
                                format!("read {:06}", b.len())
                            }
                            2 => {
                                let mut n = shared.lock().unwrap();
                                std::thread::sleep(Duration::from_micros(500));
                                *n += 1;
                                format!("count {:06}", *n)
                            }
                            _ => Slow(i).to_string(),
                        };
                        println!("g{g} step {i:03} {what}");
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        done.store(true, Ordering::Relaxed);
        ticker.join().unwrap();
        ticks.load(Ordering::Relaxed)
    });
    let ms = t0.elapsed().as_millis() as u64;
    let s = gort::stats();
    eprintln!(
        "blocking: {ms} ms, ticker {ticks} ticks, unannounced_handoffs={}",
        s.unannounced_handoffs
    );
    // The goroutines sleep 2 ms ten times each and hold the std Mutex for
    // 0.5 ms ten times each; with the P stalled the ticker gets nothing
    // while they block. Measured with the handoff off
    // (`GORT_DEBUG=blockhandoff=0`): 6-7 ticks in 170-180 ms; on: a tick
    // every 1.2 ms, and every 5.7 ms with both CPUs busy with a cargo
    // build beside it. A tick per 12 ms tells the two apart.
    if ticks * 12 < ms || s.unannounced_handoffs == 0 {
        eprintln!("blocking: the processor stalled");
        std::process::exit(1);
    }
}
