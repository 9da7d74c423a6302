//! `gort::sync`: Mutex, RwLock, Condvar, WaitGroup and Once park
//! goroutines (never their thread), stay correct under contention, keep
//! Go's starvation bound, and work from plain threads too.
//!
//! Every test is bounded: the work runs in a goroutine (or threads) and
//! the test thread waits for its result with a timeout, so a bug fails
//! the test instead of hanging the run.

mod common;

use gort::sync::{Condvar, Mutex, Once, RwLock, WaitGroup};
use std::collections::VecDeque;
use std::panic;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PROCS: usize = 2;

fn start() {
    static START: std::sync::Once = std::sync::Once::new();
    START.call_once(|| {
        gort::Builder::new()
            .procs(PROCS)
            .start()
            .expect("start gort");
    });
}

/// Runs `f` on a goroutine and returns its result, failing the test if it
/// takes longer than `limit` (the goroutine is left behind).
fn bounded<T, F>(limit: Duration, f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    start();
    common::on_goroutine_within(limit, f)
}

/// Runs `f` on a plain thread, with the same bound.
fn bounded_thread<T, F>(limit: Duration, f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    common::on_thread_within(limit, f)
}

fn join_all<T>(hs: Vec<gort::JoinHandle<T>>) -> Vec<T> {
    hs.into_iter()
        .map(|h| h.join().expect("goroutine panicked"))
        .collect()
}

// ---------------------------------------------------------------------------
// Mutex.

#[test]
fn mutex_100_goroutines_exact_total() {
    let total = bounded(Duration::from_secs(60), || {
        let m = Arc::new(Mutex::new(0u64));
        let hs: Vec<_> = (0..100)
            .map(|_| {
                let m = m.clone();
                gort::spawn(move || {
                    for _ in 0..1000 {
                        let mut g = m.lock();
                        // A read-modify-write with a yield point inside
                        // the critical section would expose a broken lock.
                        let v = *g;
                        std::hint::black_box(&v);
                        *g = v + 1;
                    }
                })
            })
            .collect();
        join_all(hs);
        let v = *m.lock();
        v
    });
    assert_eq!(total, 100 * 1000);
}

#[test]
fn mutex_critical_section_with_yields() {
    // Every holder yields its P inside the critical section: other
    // goroutines run, find it locked and park; the count stays exact.
    let (total, max_inside) = bounded(Duration::from_secs(60), || {
        let m = Arc::new(Mutex::new(0u64));
        let inside = Arc::new(AtomicUsize::new(0));
        let max_inside = Arc::new(AtomicUsize::new(0));
        let hs: Vec<_> = (0..50)
            .map(|_| {
                let (m, inside, max_inside) = (m.clone(), inside.clone(), max_inside.clone());
                gort::spawn(move || {
                    for _ in 0..100 {
                        let mut g = m.lock();
                        let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        max_inside.fetch_max(n, Ordering::SeqCst);
                        gort::yield_now();
                        *g += 1;
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        join_all(hs);
        let v = *m.lock();
        (v, max_inside.load(Ordering::SeqCst))
    });
    assert_eq!(total, 50 * 100);
    assert_eq!(max_inside, 1, "two holders inside the critical section");
}

#[test]
fn mutex_waiters_do_not_hold_threads() {
    const WAITERS: usize = 1000;
    let (threads, probe_took) = bounded(Duration::from_secs(60), || {
        let m = Arc::new(Mutex::new(0u64));
        let holding = Arc::new(AtomicBool::new(false));
        let holder = {
            let (m, holding) = (m.clone(), holding.clone());
            gort::spawn(move || {
                let mut g = m.lock();
                holding.store(true, Ordering::SeqCst);
                gort::time::sleep(Duration::from_millis(300));
                *g += 1;
            })
        };
        while !holding.load(Ordering::SeqCst) {
            gort::yield_now();
        }
        let waiters: Vec<_> = (0..WAITERS)
            .map(|_| {
                let m = m.clone();
                gort::spawn(move || *m.lock() += 1)
            })
            .collect();
        // Let every waiter reach the mutex and park.
        gort::time::sleep(Duration::from_millis(100));
        // With 1,000 goroutines parked on the mutex, other goroutines still
        // run promptly.
        let t0 = Instant::now();
        let probe = gort::spawn(|| (0..1000u64).sum::<u64>());
        assert_eq!(probe.join().unwrap(), 499_500);
        let probe_took = t0.elapsed();
        let threads = gort::stats().threads;
        holder.join().unwrap();
        join_all(waiters);
        assert_eq!(*m.lock(), 1 + WAITERS as u64);
        (threads, probe_took)
    });
    eprintln!(
        "{WAITERS} mutex waiters: {threads} threads, a probe goroutine ran in {probe_took:?}"
    );
    assert!(
        threads <= PROCS + 3,
        "{threads} threads while {WAITERS} goroutines wait on a mutex (procs={PROCS})"
    );
    assert!(
        probe_took < Duration::from_millis(100),
        "a goroutine took {probe_took:?} to run while others waited on a mutex"
    );
}

#[test]
fn mutex_starvation_mode_bounds_the_wait() {
    // A goroutine re-locks the mutex in a tight loop; another one wants it
    // now and then. In normal mode the hot locker would win nearly every
    // race; starvation mode hands the mutex to the waiter after 1ms.
    let (max_wait, hot_rounds) = bounded(Duration::from_secs(60), || {
        let m = Arc::new(Mutex::new(0u64));
        let stop = Arc::new(AtomicBool::new(false));
        let hot = {
            let (m, stop) = (m.clone(), stop.clone());
            gort::spawn(move || {
                let mut rounds = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let mut g = m.lock();
                    for _ in 0..50 {
                        *g = std::hint::black_box(*g + 1);
                    }
                    drop(g);
                    rounds += 1;
                }
                rounds
            })
        };
        let waiter = {
            let m = m.clone();
            gort::spawn(move || {
                let mut max_wait = Duration::ZERO;
                for _ in 0..50 {
                    let t0 = Instant::now();
                    let g = m.lock();
                    max_wait = max_wait.max(t0.elapsed());
                    drop(g);
                    gort::time::sleep(Duration::from_millis(2));
                }
                max_wait
            })
        };
        let max_wait = waiter.join().unwrap();
        stop.store(true, Ordering::Relaxed);
        (max_wait, hot.join().unwrap())
    });
    eprintln!("starvation: waiter's max wait {max_wait:?}, hot locker rounds {hot_rounds}");
    assert!(hot_rounds > 0);
    assert!(
        max_wait < Duration::from_secs(1),
        "waiter kept out for {max_wait:?}"
    );
}

#[test]
fn mutex_try_lock_get_mut_into_inner() {
    bounded(Duration::from_secs(10), || {
        let mut m = Mutex::new(vec![1, 2]);
        {
            let g = m.try_lock().expect("free mutex");
            assert!(m.try_lock().is_none(), "try_lock on a held mutex");
            assert_eq!(*g, vec![1, 2]);
        }
        m.get_mut().push(3);
        assert_eq!(format!("{m:?}"), "Mutex { data: [1, 2, 3], .. }");
        assert_eq!(m.into_inner(), vec![1, 2, 3]);
    });
}

#[test]
fn mutex_is_not_poisoned_by_a_panic() {
    bounded(Duration::from_secs(10), || {
        let m = Arc::new(Mutex::new(1));
        let m2 = m.clone();
        let r = gort::spawn(move || {
            let mut g = m2.lock();
            *g = 2;
            panic!("boom while holding the lock");
        })
        .join();
        assert!(r.is_err());
        assert_eq!(*m.lock(), 2);
    });
}

#[test]
fn mutex_from_plain_threads() {
    let total = bounded_thread(Duration::from_secs(60), || {
        let m = Arc::new(Mutex::new(0u64));
        let hs: Vec<_> = (0..8)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        *m.lock() += 1;
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        let v = *m.lock();
        v
    });
    assert_eq!(total, 80_000);
}

#[test]
fn mutex_shared_by_threads_and_goroutines() {
    start();
    let total = bounded_thread(Duration::from_secs(60), || {
        let m = Arc::new(Mutex::new(0u64));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..5_000 {
                        *m.lock() += 1;
                    }
                })
            })
            .collect();
        let gs: Vec<_> = (0..20)
            .map(|_| {
                let m = m.clone();
                gort::spawn(move || {
                    for _ in 0..1_000 {
                        let mut g = m.lock();
                        *g += 1;
                        if (*g).is_multiple_of(97) {
                            gort::yield_now(); // park others while held
                        }
                    }
                })
            })
            .collect();
        for h in threads {
            h.join().unwrap();
        }
        join_all(gs);
        let v = *m.lock();
        v
    });
    assert_eq!(total, 4 * 5_000 + 20 * 1_000);
}

#[test]
fn waits_inside_syscall_blocking() {
    // A goroutine in `syscall::blocking` holds no P: a wait there blocks
    // its thread, and must leave the primitives consistent.
    bounded(Duration::from_secs(30), || {
        let m = Arc::new(Mutex::new(0u64));
        let wg = WaitGroup::new();
        let held = m.lock();
        wg.add(1);
        let h = {
            let (m, wg) = (m.clone(), wg.clone());
            gort::spawn(move || {
                gort::syscall::blocking(|| {
                    *m.lock() += 1; // waits for the holder below
                    wg.wait(); // waits for the done below
                });
                *m.lock() += 1;
            })
        };
        gort::time::sleep(Duration::from_millis(20));
        drop(held);
        gort::time::sleep(Duration::from_millis(20));
        wg.done();
        h.join().unwrap();
        // The mutex still works for parking goroutines.
        let hs: Vec<_> = (0..20)
            .map(|_| {
                let m = m.clone();
                gort::spawn(move || {
                    for _ in 0..100 {
                        *m.lock() += 1;
                        gort::yield_now();
                    }
                })
            })
            .collect();
        join_all(hs);
        assert_eq!(*m.lock(), 2 + 20 * 100);
    });
}

// ---------------------------------------------------------------------------
// RwLock.

#[test]
fn rwlock_readers_share_the_lock() {
    const READERS: usize = 100;
    let max_inside = bounded(Duration::from_secs(30), || {
        let l = Arc::new(RwLock::new(7u64));
        let inside = Arc::new(AtomicUsize::new(0));
        let max_inside = Arc::new(AtomicUsize::new(0));
        let hs: Vec<_> = (0..READERS)
            .map(|_| {
                let (l, inside, max_inside) = (l.clone(), inside.clone(), max_inside.clone());
                gort::spawn(move || {
                    let g = l.read();
                    let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    max_inside.fetch_max(n, Ordering::SeqCst);
                    // Hold the read lock across a park.
                    gort::time::sleep(Duration::from_millis(50));
                    inside.fetch_sub(1, Ordering::SeqCst);
                    *g
                })
            })
            .collect();
        assert!(join_all(hs).iter().all(|&v| v == 7));
        max_inside.load(Ordering::SeqCst)
    });
    // All readers sleep 50ms inside at once: they overlap.
    assert!(
        max_inside > READERS / 2,
        "only {max_inside} of {READERS} readers were inside together"
    );
}

#[test]
fn rwlock_writer_progresses_among_busy_readers() {
    let (writes, max_write_wait, reads) = bounded(Duration::from_secs(60), || {
        let l = Arc::new(RwLock::new((0u64, 0u64)));
        let stop = Arc::new(AtomicBool::new(false));
        // Readers keep the lock read-held almost all the time, overlapping.
        let readers: Vec<_> = (0..8)
            .map(|_| {
                let (l, stop) = (l.clone(), stop.clone());
                gort::spawn(move || {
                    let mut reads = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let g = l.read();
                        // The writer updates both halves together.
                        assert_eq!(g.0, g.1, "torn write seen by a reader");
                        if reads.is_multiple_of(16) {
                            gort::yield_now(); // hold it across a switch
                        }
                        drop(g);
                        reads += 1;
                    }
                    reads
                })
            })
            .collect();
        let writer = {
            let l = l.clone();
            gort::spawn(move || {
                let mut max_wait = Duration::ZERO;
                for i in 1..=200u64 {
                    let t0 = Instant::now();
                    let mut g = l.write();
                    max_wait = max_wait.max(t0.elapsed());
                    g.0 = i;
                    gort::yield_now();
                    g.1 = i;
                    drop(g);
                    gort::yield_now();
                }
                max_wait
            })
        };
        let max_wait = writer.join().unwrap();
        stop.store(true, Ordering::Relaxed);
        let reads: u64 = join_all(readers).into_iter().sum();
        let writes = l.read().0;
        (writes, max_wait, reads)
    });
    eprintln!("rwlock: writer max wait {max_write_wait:?}, {reads} reads");
    assert_eq!(writes, 200);
    assert!(reads > 0);
    assert!(
        max_write_wait < Duration::from_secs(1),
        "writer waited {max_write_wait:?}"
    );
}

#[test]
fn rwlock_try_and_exclusion() {
    bounded(Duration::from_secs(10), || {
        let l = RwLock::new(1);
        let r1 = l.read();
        let r2 = l.try_read().expect("second reader");
        assert!(l.try_write().is_none(), "writer while readers inside");
        drop((r1, r2));
        let mut w = l.try_write().expect("free lock");
        assert!(l.try_read().is_none(), "reader while a writer inside");
        *w = 2;
        drop(w);
        assert_eq!(*l.read(), 2);
        assert_eq!(l.into_inner(), 2);
    });
}

#[test]
fn rwlock_counts_exact_under_writers() {
    let total = bounded(Duration::from_secs(60), || {
        let l = Arc::new(RwLock::new(0u64));
        let hs: Vec<_> = (0..40)
            .map(|i| {
                let l = l.clone();
                gort::spawn(move || {
                    for j in 0..500 {
                        if (i + j) % 4 == 0 {
                            *l.write() += 1;
                        } else {
                            std::hint::black_box(*l.read());
                        }
                    }
                })
            })
            .collect();
        join_all(hs);
        let v = *l.read();
        v
    });
    assert_eq!(total, 40 * 500 / 4);
}

// ---------------------------------------------------------------------------
// Condvar.

#[test]
fn condvar_producer_consumer() {
    const PRODUCERS: u64 = 4;
    const CONSUMERS: usize = 4;
    const ITEMS: u64 = 2000; // per producer
    const CAP: usize = 8;
    let (sum, count) = bounded(Duration::from_secs(60), || {
        struct Q {
            items: VecDeque<u64>,
            producers_left: u64,
        }
        let q = Arc::new((
            Mutex::new(Q {
                items: VecDeque::new(),
                producers_left: PRODUCERS,
            }),
            Condvar::new(), // not empty (or done)
            Condvar::new(), // not full
        ));
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let q = q.clone();
                gort::spawn(move || {
                    let (m, not_empty, not_full) = &*q;
                    for i in 0..ITEMS {
                        let mut g = not_full.wait_while(m.lock(), |q| q.items.len() >= CAP);
                        g.items.push_back(p * ITEMS + i);
                        drop(g);
                        not_empty.notify_one();
                    }
                    m.lock().producers_left -= 1;
                    not_empty.notify_all();
                })
            })
            .collect();
        let consumers: Vec<_> = (0..CONSUMERS)
            .map(|_| {
                let q = q.clone();
                gort::spawn(move || {
                    let (m, not_empty, not_full) = &*q;
                    let (mut sum, mut count) = (0u64, 0u64);
                    loop {
                        let mut g = m.lock();
                        while g.items.is_empty() && g.producers_left > 0 {
                            g = not_empty.wait(g);
                        }
                        let Some(v) = g.items.pop_front() else {
                            break; // empty and no producer left
                        };
                        drop(g);
                        not_full.notify_one();
                        sum += v;
                        count += 1;
                    }
                    (sum, count)
                })
            })
            .collect();
        join_all(producers);
        join_all(consumers)
            .into_iter()
            .fold((0, 0), |(s, c), (s1, c1)| (s + s1, c + c1))
    });
    let n = PRODUCERS * ITEMS;
    assert_eq!(count, n);
    assert_eq!(sum, n * (n - 1) / 2);
}

#[test]
fn condvar_notify_all_wakes_everyone() {
    bounded(Duration::from_secs(30), || {
        let s = Arc::new((Mutex::new((false, 0usize)), Condvar::new()));
        let hs: Vec<_> = (0..200)
            .map(|_| {
                let s = s.clone();
                gort::spawn(move || {
                    let (m, cv) = &*s;
                    let mut g = m.lock();
                    g.1 += 1;
                    let mut g = cv.wait_while(g, |st| !st.0);
                    g.1 -= 1;
                })
            })
            .collect();
        let (m, cv) = &*s;
        // Wait until all are waiting (they count themselves in first).
        while m.lock().1 < 200 {
            gort::time::sleep(Duration::from_millis(1));
        }
        m.lock().0 = true;
        cv.notify_all();
        join_all(hs);
        assert_eq!(m.lock().1, 0);
    });
}

#[test]
fn condvar_notify_without_waiters_is_not_remembered() {
    bounded(Duration::from_secs(10), || {
        let cv = Condvar::new();
        cv.notify_one();
        cv.notify_all();
        // A later waiter is woken only by a later notification.
        let s = Arc::new((Mutex::new(false), Condvar::new()));
        let s2 = s.clone();
        let h = gort::spawn(move || {
            let (m, cv) = &*s2;
            let _g = cv.wait_while(m.lock(), |ready| !*ready);
        });
        gort::time::sleep(Duration::from_millis(20));
        assert!(!h.is_finished(), "waiter returned without a notification");
        *s.0.lock() = true;
        s.1.notify_one();
        h.join().unwrap();
    });
}

// ---------------------------------------------------------------------------
// WaitGroup.

#[test]
fn waitgroup_10000_goroutines() {
    const N: usize = 10_000;
    let done = bounded(Duration::from_secs(60), || {
        let wg = WaitGroup::new();
        let count = Arc::new(AtomicUsize::new(0));
        for i in 0..N {
            wg.add(1);
            let (wg, count) = (wg.clone(), count.clone());
            gort::spawn(move || {
                if i % 100 == 0 {
                    gort::time::sleep(Duration::from_millis(5));
                } else if i % 3 == 0 {
                    gort::yield_now();
                }
                count.fetch_add(1, Ordering::SeqCst);
                wg.done();
            });
        }
        wg.wait();
        count.load(Ordering::SeqCst)
    });
    assert_eq!(done, N);
}

#[test]
fn waitgroup_many_waiters_and_reuse() {
    bounded(Duration::from_secs(30), || {
        let wg = WaitGroup::new();
        for round in 0..5 {
            wg.add(1);
            let released = Arc::new(AtomicBool::new(false));
            let waiters: Vec<_> = (0..50)
                .map(|_| {
                    let (wg, released) = (wg.clone(), released.clone());
                    gort::spawn(move || {
                        wg.wait();
                        assert!(released.load(Ordering::SeqCst), "wait returned early");
                    })
                })
                .collect();
            gort::time::sleep(Duration::from_millis(5));
            released.store(true, Ordering::SeqCst);
            wg.done();
            join_all(waiters);
            assert_eq!(wg.count(), 0, "round {round}");
        }
    });
}

#[test]
fn waitgroup_from_plain_threads() {
    start();
    bounded_thread(Duration::from_secs(30), || {
        let wg = WaitGroup::new();
        let count = Arc::new(AtomicUsize::new(0));
        // Goroutines and threads finish; a plain thread waits.
        wg.add(100 + 4);
        for _ in 0..100 {
            let (wg, count) = (wg.clone(), count.clone());
            gort::spawn(move || {
                gort::time::sleep(Duration::from_millis(10));
                count.fetch_add(1, Ordering::SeqCst);
                wg.done();
            });
        }
        for _ in 0..4 {
            let (wg, count) = (wg.clone(), count.clone());
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(10));
                count.fetch_add(1, Ordering::SeqCst);
                wg.done();
            });
        }
        wg.wait();
        assert_eq!(count.load(Ordering::SeqCst), 104);
        // And a goroutine waits for plain threads.
        let wg2 = WaitGroup::new();
        wg2.add(2);
        let w = {
            let wg2 = wg2.clone();
            gort::spawn(move || wg2.wait())
        };
        for _ in 0..2 {
            let wg2 = wg2.clone();
            std::thread::spawn(move || wg2.done());
        }
        w.join().unwrap();
    });
}

#[test]
fn waitgroup_negative_counter_panics() {
    let wg = WaitGroup::new();
    wg.add(1);
    wg.done();
    let err = panic::catch_unwind(|| wg.done()).expect_err("negative counter must panic");
    let msg = err
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| err.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    assert!(msg.contains("negative WaitGroup counter"), "{msg:?}");
}

// ---------------------------------------------------------------------------
// Once.

#[test]
fn once_100_concurrent_callers() {
    let (runs, seen) = bounded(Duration::from_secs(30), || {
        let once = Arc::new(Once::new());
        let runs = Arc::new(AtomicUsize::new(0));
        let value = Arc::new(AtomicU64::new(0));
        let hs: Vec<_> = (0..100)
            .map(|_| {
                let (once, runs, value) = (once.clone(), runs.clone(), value.clone());
                gort::spawn(move || {
                    once.call_once(|| {
                        runs.fetch_add(1, Ordering::SeqCst);
                        // Long enough for every other caller to arrive and
                        // park.
                        gort::time::sleep(Duration::from_millis(50));
                        value.store(42, Ordering::SeqCst);
                    });
                    assert!(once.is_completed());
                    value.load(Ordering::SeqCst)
                })
            })
            .collect();
        let seen = join_all(hs);
        (runs.load(Ordering::SeqCst), seen)
    });
    assert_eq!(runs, 1);
    assert!(
        seen.iter().all(|&v| v == 42),
        "a caller returned before f finished"
    );
}

#[test]
fn once_poisoned_by_a_panic() {
    bounded(Duration::from_secs(10), || {
        let once = Arc::new(Once::new());
        let o = once.clone();
        let r = gort::spawn(move || o.call_once(|| panic!("init failed"))).join();
        assert!(r.is_err());
        assert!(!once.is_completed());
        let o = once.clone();
        let r = gort::spawn(move || o.call_once(|| {})).join();
        let err = r.expect_err("a poisoned Once must panic");
        let msg = err.downcast_ref::<&str>().copied().unwrap_or_default();
        assert!(msg.contains("poisoned"), "{msg:?}");
    });
}

#[test]
fn once_static_from_threads() {
    static ONCE: Once = Once::new();
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    bounded_thread(Duration::from_secs(10), || {
        let hs: Vec<_> = (0..8)
            .map(|_| {
                std::thread::spawn(|| {
                    ONCE.call_once(|| {
                        std::thread::sleep(Duration::from_millis(20));
                        RUNS.fetch_add(1, Ordering::SeqCst);
                    });
                    assert_eq!(RUNS.load(Ordering::SeqCst), 1);
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
    });
    assert_eq!(RUNS.load(Ordering::SeqCst), 1);
}
