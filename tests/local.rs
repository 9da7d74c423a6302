//! `gort::local!`: one value per goroutine, kept across yields,
//! preemptions and moves between threads, dropped when the goroutine
//! ends. Every test here asks for the same settings (one runtime per
//! process).

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

gort::local! {
    static ID: Cell<u64> = const { Cell::new(0) };
    static LOG: RefCell<Vec<u64>> = RefCell::new(Vec::new());
}

fn tid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

/// Spins for `d` without any call into gort: only preemption (by signal,
/// or the cooperative check in this preemptible function) lets others run.
#[gort::preemptible]
fn spin(d: Duration) -> u64 {
    let t0 = Instant::now();
    let mut n = 0u64;
    while t0.elapsed() < d {
        n = n.wrapping_add(1);
    }
    n
}

#[gort::test(procs = 4, time_slice = "1ms")]
fn values_survive_yields_preemptions_and_migrations() {
    let migrations = std::sync::Arc::new(AtomicUsize::new(0));
    let before = gort::stats();
    let hs: Vec<_> = (1..=64u64)
        .map(|i| {
            let migrations = migrations.clone();
            gort::spawn(move || {
                assert_eq!(ID.get(), 0, "a fresh goroutine sees the initial value");
                ID.set(i);
                LOG.with_borrow_mut(|v| v.push(i));
                let mut last = tid();
                for round in 0..20u64 {
                    match round % 3 {
                        0 => gort::yield_now(),
                        1 => {
                            spin(Duration::from_millis(2));
                        }
                        _ => gort::time::sleep(Duration::from_micros(200)),
                    }
                    if tid() != last {
                        migrations.fetch_add(1, Ordering::Relaxed);
                        last = tid();
                    }
                    assert_eq!(ID.get(), i);
                    // A reference held across a switch stays ours too.
                    LOG.with(|log| {
                        gort::yield_now();
                        log.borrow_mut().push(round);
                    });
                }
                LOG.with_borrow(|v| v.len())
            })
        })
        .collect();
    for h in hs {
        assert_eq!(h.join().unwrap(), 21);
    }
    let after = gort::stats();
    let preempted = (after.preempted_async + after.preempted_cooperative)
        - (before.preempted_async + before.preempted_cooperative);
    eprintln!(
        "migrations: {}, preemptions: {preempted}",
        migrations.load(Ordering::Relaxed)
    );
    assert!(migrations.load(Ordering::Relaxed) > 0, "no goroutine moved");
    assert!(preempted > 0, "no goroutine was preempted");
}

static DROPPED: AtomicUsize = AtomicUsize::new(0);

struct Tracked(u32);

impl Drop for Tracked {
    fn drop(&mut self) {
        DROPPED.fetch_add(self.0 as usize, Ordering::SeqCst);
    }
}

gort::local! {
    static TRACKED: RefCell<Option<Tracked>> = const { RefCell::new(None) };
}

#[gort::test(procs = 4, time_slice = "1ms")]
fn values_are_dropped_when_the_goroutine_ends() {
    let before = DROPPED.load(Ordering::SeqCst);
    gort::spawn(|| TRACKED.set(Some(Tracked(1000))))
        .join()
        .unwrap();
    assert_eq!(DROPPED.load(Ordering::SeqCst) - before, 1000);
    // Also when it panics or calls exit.
    let _ = gort::spawn(|| {
        TRACKED.set(Some(Tracked(100)));
        panic!("with a local");
    })
    .join();
    let _ = gort::spawn(|| {
        TRACKED.set(Some(Tracked(10)));
        gort::exit();
    })
    .join();
    assert_eq!(DROPPED.load(Ordering::SeqCst) - before, 1110);
    // A recycled goroutine starts fresh.
    let fresh = (0..100)
        .map(|_| gort::spawn(|| TRACKED.with_borrow(|t| t.is_none())))
        .all(|h| h.join().unwrap());
    assert!(fresh);
}

#[gort::test(procs = 4, time_slice = "1ms")]
fn cell_and_refcell_helpers() {
    ID.set(5);
    assert_eq!(ID.replace(6), 5);
    assert_eq!(ID.take(), 6);
    assert_eq!(ID.get(), 0);
    LOG.set(vec![1, 2]);
    assert_eq!(LOG.replace(vec![3]), vec![1, 2]);
    assert_eq!(LOG.take(), vec![3]);
    assert!(LOG.with_borrow(Vec::is_empty));
}

#[test]
fn on_a_plain_thread_values_are_per_thread() {
    ID.set(9);
    assert_eq!(ID.get(), 9);
    let other = std::thread::spawn(|| ID.get()).join().unwrap();
    assert_eq!(other, 0);
}
