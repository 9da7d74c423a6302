//! Cost of one asynchronous preemption round trip — SIGURG delivery, the
//! handler's checks (frame walk), the trampoline, the scheduler, and the
//! resumption — and the goroutine-stack bytes it touches.
//!
//! One P, one goroutine spinning for 2 s under a 100 µs time slice: every
//! slice sysmon preempts it by signal, the scheduler finds nothing else to
//! run and resumes it. The spinner reads the TSC every iteration; after a
//! gap over 0.5 µs it looks at `stats().preempted_async`: if that moved,
//! the gap was a preemption round trip. The median of those is reported
//! (other interruptions — the OS running other threads — inflate a few).
//! Before spinning the goroutine paints 40 KiB of its stack below its
//! frame; the deepest byte changed afterwards is the stack the
//! preemptions used.
//!
//! `cargo bench --bench async_preempt` (x86_64 only).

#[cfg(target_arch = "x86_64")]
fn main() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    const PAINT: usize = 40 * 1024;
    const PATTERN: u8 = 0x5a;

    #[inline(never)]
    fn paint() -> usize {
        let mut buf = [0u8; PAINT];
        for b in buf.iter_mut() {
            // SAFETY: a write to a local; volatile so it is kept.
            unsafe { std::ptr::write_volatile(b, PATTERN) };
        }
        std::hint::black_box(&buf);
        buf.as_ptr() as usize + PAINT
    }

    /// Spins until `stop`, recording TSC gaps longer than `min_gap` ticks
    /// during which a preemption happened.
    #[inline(never)]
    fn spin(stop: &AtomicBool, min_gap: u64, gaps: &mut Vec<u64>) {
        let mut seen = gort::stats().preempted_async;
        // SAFETY: rdtsc has no preconditions on x86_64.
        let mut last = unsafe { core::arch::x86_64::_rdtsc() };
        while !stop.load(Ordering::Relaxed) {
            // SAFETY: as above.
            let now = unsafe { core::arch::x86_64::_rdtsc() };
            if now - last > min_gap {
                let n = gort::stats().preempted_async;
                if n != seen && gaps.len() < gaps.capacity() {
                    gaps.push(now - last);
                }
                seen = n;
                // SAFETY: as above (not counting the stats call).
                last = unsafe { core::arch::x86_64::_rdtsc() };
                continue;
            }
            last = now;
        }
    }

    // TSC ticks per microsecond.
    // SAFETY: rdtsc has no preconditions on x86_64.
    let (t0, c0) = (Instant::now(), unsafe { core::arch::x86_64::_rdtsc() });
    std::thread::sleep(Duration::from_millis(200));
    // SAFETY: as above.
    let c1 = unsafe { core::arch::x86_64::_rdtsc() };
    let per_us = (c1 - c0) as f64 / t0.elapsed().as_secs_f64() / 1e6;

    gort::Builder::new()
        .procs(1)
        .stack_size(256 * 1024)
        .time_slice(Duration::from_micros(100))
        .start()
        .expect("start gort");
    while !gort::stats().async_preempt {
        std::thread::sleep(Duration::from_millis(1));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(2));
        s2.store(true, Ordering::Relaxed);
    });
    let before = gort::stats().preempted_async;
    let (mut gaps, touched) = gort::run(move || {
        gort::spawn(move || {
            let top = paint();
            let mut gaps = Vec::with_capacity(100_000);
            // Gaps over 0.5 µs: far above one loop iteration.
            spin(&stop, (per_us * 0.5) as u64, &mut gaps);
            let mut deepest = top;
            for a in top - PAINT..top {
                // SAFETY: our own stack, below every live frame; read only.
                if unsafe { std::ptr::read_volatile(a as *const u8) } != PATTERN {
                    deepest = a;
                    break;
                }
            }
            (gaps, top - deepest)
        })
        .join()
        .unwrap()
    });
    let n = gort::stats().preempted_async - before;
    gaps.sort_unstable();
    let us = |q: f64| gaps[((gaps.len() - 1) as f64 * q) as usize] as f64 / per_us;
    println!(
        "async preemptions: {n}; round trips seen: {}; median {:.2} us (p25 {:.2}, p75 {:.2})",
        gaps.len(),
        us(0.5),
        us(0.25),
        us(0.75)
    );
    println!("goroutine stack bytes touched by preemptions (incl. the spin frame): {touched}");
}

#[cfg(not(target_arch = "x86_64"))]
fn main() {
    eprintln!("async_preempt bench: x86_64 only");
}
