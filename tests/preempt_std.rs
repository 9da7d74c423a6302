//! Preemption meets the standard library, under a 100µs time slice:
//! allocation-heavy goroutines, and `println!` of values whose `Display`
//! computes for a while, so that signals land inside std's stdout lock
//! (docs/design.md, "Preemption"). Both run in child processes so that
//! their stdout can be read whole.

mod common;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn start_fast_slices() {
    gort::Builder::new()
        .procs(2)
        .time_slice(Duration::from_micros(100))
        .start()
        .expect("start gort");
}

/// Spins in no-call loops until `stop`: keeps sysmon preempting.
fn spinners(stop: &Arc<AtomicBool>, n: usize) -> Vec<gort::JoinHandle<u64>> {
    (0..n)
        .map(|_| {
            let stop = stop.clone();
            gort::spawn(move || {
                let mut x = 1u64;
                while !stop.load(Ordering::Relaxed) {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                }
                x
            })
        })
        .collect()
}

fn alloc_work(seed: u64, rounds: u64) -> u64 {
    let mut total = 0u64;
    for r in 0..rounds {
        let mut m: HashMap<String, Vec<u64>> = HashMap::new();
        for i in 0..50u64 {
            let key = format!("k{}-{}", seed, (i * 7 + r) % 23);
            m.entry(key).or_default().push(i ^ seed);
        }
        let mut keys: Vec<&String> = m.keys().collect();
        keys.sort();
        let s: String = keys
            .iter()
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join(",");
        total = total.wrapping_add(s.len() as u64);
        total = total.wrapping_add(m.values().map(|v| v.iter().sum::<u64>()).sum::<u64>());
        let mut sink = Vec::new();
        use std::io::Write;
        writeln!(sink, "{seed} {r} {total}").unwrap();
        total = total.wrapping_add(sink.len() as u64);
    }
    total
}

#[test]
fn allocation_heavy_goroutines_under_fast_preemption() {
    common::expect_child("child_alloc", &[], Duration::from_secs(120), "ALLOC OK");
}

#[test]
#[ignore = "child process of allocation_heavy_goroutines_under_fast_preemption"]
fn child_alloc() {
    if !common::is_child() {
        return;
    }
    start_fast_slices();
    const SEEDS: u64 = 16;
    const ROUNDS: u64 = 300;
    let expected: Vec<u64> = (0..SEEDS).map(|s| alloc_work(s, ROUNDS)).collect();
    let t0 = Instant::now();
    let before = gort::stats();
    let mut passes = 0;
    // Several seconds of it, repeated passes each checked.
    while t0.elapsed() < Duration::from_secs(3) {
        let got = gort::run(move || {
            let stop = Arc::new(AtomicBool::new(false));
            let sp = spinners(&stop, 2);
            let hs: Vec<_> = (0..SEEDS)
                .map(|s| gort::spawn(move || alloc_work(s, ROUNDS)))
                .collect();
            let got: Vec<u64> = hs.into_iter().map(|h| h.join().unwrap()).collect();
            stop.store(true, Ordering::Relaxed);
            for h in sp {
                h.join().unwrap();
            }
            got
        });
        assert_eq!(got, expected, "wrong result in pass {passes}");
        passes += 1;
    }
    let after = gort::stats();
    let preempted = (after.preempted_async - before.preempted_async)
        + (after.preempted_cooperative - before.preempted_cooperative);
    assert!(preempted > 50, "only {preempted} preemptions: {after:?}");
    println!(
        "ALLOC OK: {passes} passes, {preempted} preemptions, {} unsafe points declined",
        after.preempt_rejected - before.preempt_rejected
    );
}

/// A value whose formatting takes a while (so that preemption requests
/// arrive while std holds the stdout lock around it).
struct Slow(u64);

impl fmt::Display for Slow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut x = self.0;
        for i in 0..20_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        write!(f, "{:016x}", x)?;
        // Several writes: a preemption between them would let another
        // line in.
        for i in 0..4 {
            write!(f, "-{i}")?;
        }
        Ok(())
    }
}

fn slow_value(v: u64) -> String {
    let mut x = v;
    for i in 0..20_000u64 {
        x = x.wrapping_mul(31).wrapping_add(i);
    }
    format!("{x:016x}-0-1-2-3")
}

const PRINTERS: u64 = 8;
const LINES: u64 = 150;

#[test]
fn println_with_slow_display_under_fast_preemption() {
    let out = common::run_child("child_println", &[], Duration::from_secs(120));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "child failed: {:?}\n{stderr}",
        out.status
    );
    assert!(!stderr.contains("already borrowed"), "{stderr}");
    let mut seen = std::collections::HashSet::new();
    for line in stdout.lines().filter(|l| l.contains("line ")) {
        // "test child_println ... " may prefix the first line.
        let line = &line[line.find("printer ").expect("printer prefix")..];
        let parts: Vec<&str> = line.split(' ').collect();
        assert_eq!(parts.len(), 5, "mangled line: {line:?}");
        let p: u64 = parts[1].parse().expect("printer id");
        let n: u64 = parts[3].trim_end_matches(':').parse().expect("line number");
        assert_eq!(
            parts[4],
            slow_value(p * 1000 + n),
            "mangled value in {line:?}"
        );
        assert!(seen.insert((p, n)), "duplicate line {line:?}");
    }
    assert_eq!(
        seen.len() as u64,
        PRINTERS * LINES,
        "lines missing:\n{stdout}"
    );
    assert!(stdout.contains("PRINT OK"), "{stdout}");
}

#[test]
#[ignore = "child process of println_with_slow_display_under_fast_preemption"]
fn child_println() {
    if !common::is_child() {
        return;
    }
    start_fast_slices();
    let before = gort::stats();
    gort::run(|| {
        let stop = Arc::new(AtomicBool::new(false));
        let sp = spinners(&stop, 2);
        let hs: Vec<_> = (0..PRINTERS)
            .map(|p| {
                gort::spawn(move || {
                    for n in 0..LINES {
                        println!("printer {p} line {n}: {}", Slow(p * 1000 + n));
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        for h in sp {
            h.join().unwrap();
        }
    });
    let after = gort::stats();
    println!(
        "PRINT OK: {} async preemptions, {} declined at unsafe points",
        after.preempted_async - before.preempted_async,
        after.preempt_rejected - before.preempt_rejected
    );
}
