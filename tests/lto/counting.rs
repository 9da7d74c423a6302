//! A second program of tests/lto/run.sh: a counting `#[global_allocator]`
//! (live bytes with `fetch_add`/`fetch_sub`, the peak with `fetch_max`),
//! as memory-profiling users write them. Its atomics are counters, not a
//! lock: gort must not gate signal preemption on them (they never read
//! zero again). With one P and a 100 µs slice, a goroutine that spins
//! without calls must still be preempted by signal for a sleeper to run;
//! `report` prints gort's code-map summary.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

#[path = "../spin.rs"]
mod spin;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to System; the counters are only statistics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let now = LIVE.fetch_add(l.size(), Ordering::Relaxed) + l.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        // SAFETY: as the caller guarantees.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        // SAFETY: as the caller guarantees.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn main() {
    if std::env::args().nth(1).as_deref() == Some("report") {
        println!("{}", gort::__code_map_report());
        return;
    }
    gort::Builder::new()
        .procs(1)
        .time_slice(Duration::from_micros(100))
        .start()
        .expect("start gort");
    spin::spin_beside_a_sleeper();
    let s = gort::stats();
    eprintln!(
        "counting: async_preempt={} preempted_async={} rejected={} peak_bytes={}",
        s.async_preempt,
        s.preempted_async,
        s.preempt_rejected,
        PEAK.load(Ordering::Relaxed)
    );
}
