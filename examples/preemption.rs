//! The preemption showcase: goroutines that spin forever in loops with no
//! calls and no yields, on every processor, and a ticker that still keeps
//! its beat — because sysmon preempts the spinners by signal.
//!
//! `cargo run --release --example preemption [seconds] [slice_us]`

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// No calls, no yields, no checks: only a signal can stop this loop.
#[inline(never)]
fn spin(stop: &AtomicBool, count: &AtomicU64) {
    let mut x = 1u64;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        n += 1;
        if n & 0xffff == 0 {
            count.store(n, Ordering::Relaxed);
        }
    }
    std::hint::black_box(x);
    count.store(n, Ordering::Relaxed);
}

fn main() {
    let mut args = std::env::args().skip(1);
    let secs: u64 = args.next().map_or(3, |s| s.parse().expect("seconds"));
    let slice_us: u64 = args.next().map_or(10_000, |s| s.parse().expect("slice_us"));
    let rt = gort::Builder::new()
        .time_slice(Duration::from_micros(slice_us))
        .start()
        .expect("start gort");
    let procs = rt.procs();
    // Signal preemption starts once sysmon's code map is built (a few tens
    // of milliseconds after start-up); cooperative checks work before.
    let t0 = Instant::now();
    while !gort::stats().async_preempt && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let spinners = procs * 2;
    const TICK: Duration = Duration::from_millis(10);
    println!(
        "{procs} processors, {spinners} goroutines spinning without ever yielding, \
         a ticker every {TICK:?}, time slice {slice_us}µs, for {secs}s"
    );
    let (late, counts) = rt.run(move || {
        let stop = Arc::new(AtomicBool::new(false));
        let counts: Vec<Arc<AtomicU64>> =
            (0..spinners).map(|_| Arc::new(AtomicU64::new(0))).collect();
        let hs: Vec<_> = counts
            .iter()
            .map(|c| {
                let (stop, c) = (stop.clone(), c.clone());
                gort::spawn(move || spin(&stop, &c))
            })
            .collect();
        // The ticker: a goroutine timer wakes it; it then needs a
        // processor back from the spinners to record its tick.
        let ticker = gort::spawn(move || {
            let start = Instant::now();
            let mut late = Vec::new();
            let mut next = start + TICK;
            while start.elapsed() < Duration::from_secs(secs) {
                let now = Instant::now();
                if next > now {
                    gort::time::sleep(next - now);
                }
                late.push(Instant::now().saturating_duration_since(next));
                next += TICK;
            }
            late
        });
        let late = ticker.join().unwrap();
        stop.store(true, Ordering::Relaxed);
        for h in hs {
            h.join().unwrap();
        }
        (
            late,
            counts
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect::<Vec<_>>(),
        )
    });
    let mut sorted = late.clone();
    sorted.sort();
    let pct = |p: f64| sorted[((sorted.len() - 1) as f64 * p) as usize];
    println!(
        "ticker: {} ticks (expected {}), lateness p50 {:?}, p99 {:?}, max {:?}",
        late.len(),
        secs * 1000 / TICK.as_millis() as u64,
        pct(0.5),
        pct(0.99),
        sorted.last().unwrap()
    );
    let total: u64 = counts.iter().sum();
    let shares: Vec<String> = counts
        .iter()
        .map(|&c| format!("{:.1}%", 100.0 * c as f64 / total as f64))
        .collect();
    println!("spinner shares of {total} iterations: {}", shares.join(" "));
    let st = gort::stats();
    println!(
        "sysmon asked for {} preemptions: {} served by signal, {} at cooperative checks; \
         {} signals found an unsafe point and were retried; {} OS threads",
        st.preempt_requests,
        st.preempted_async,
        st.preempted_cooperative,
        st.preempt_rejected,
        st.threads
    );
}
