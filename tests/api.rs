//! The everyday API: `#[gort::test]`, `spawn_blocking`, `scope`, `Spawn`,
//! `block_on`, results that are not `Send`, and waits inside
//! `syscall::blocking`.

mod common;

use common::{is_child, run_child};
use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CHILD_LIMIT: Duration = Duration::from_secs(60);

fn panic_message(err: &(dyn std::any::Any + Send)) -> String {
    err.downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
// #[gort::test]

#[gort::test]
fn test_body_runs_on_a_goroutine() {
    assert_ne!(gort::current_id(), 0);
    let h = gort::spawn(|| 20 + 22);
    assert_eq!(h.join().unwrap(), 42);
}

#[gort::test]
fn test_may_return_a_result_that_is_not_send() -> Result<(), Box<dyn std::error::Error>> {
    let n: u32 = "17".parse()?;
    assert_eq!(n, 17);
    Ok(())
}

#[gort::test]
#[should_panic(expected = "boom in a joined goroutine")]
fn test_fails_with_the_panic_of_a_joined_goroutine() {
    gort::spawn(|| panic!("boom in a joined goroutine"))
        .join()
        .unwrap();
}

#[gort::test]
#[should_panic(expected = "the body's own panic")]
fn test_fails_with_the_body_s_panic() {
    gort::yield_now();
    panic!("the body's own panic");
}

#[gort::test(timeout = "300ms")]
#[ignore = "child process"]
fn child_test_times_out() {
    if !is_child() {
        return;
    }
    let _sleeper = gort::Spawn::new()
        .name("slow-helper")
        .spawn(|| gort::time::sleep(Duration::from_secs(30)));
    gort::time::sleep(Duration::from_secs(30));
}

#[test]
fn test_timeout_fails_the_test_with_a_dump_of_its_goroutines() {
    let out = run_child("child_test_times_out", &[], CHILD_LIMIT);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stdout}\n{stderr}");
    let all = format!("{stdout}\n{stderr}");
    assert!(all.contains("gort::test timed out after 300ms"), "{all}");
    assert!(all.contains("\"slow-helper\" [sleep, "), "{all}");
    assert!(
        all.contains("created by gort::run on a thread outside the runtime\n\ttests/api.rs:57:"),
        "{all}"
    );
    assert!(
        all.contains("created by api::child_test_times_out in goroutine 1\n\ttests/api.rs:"),
        "{all}"
    );
}

#[gort::test]
#[ignore = "child process"]
fn child_test_deadlocks() {
    if !is_child() {
        return;
    }
    let (_tx, rx) = gort::chan::channel::<u32>(0);
    let _ = rx.recv(); // nobody will send: `_tx` is ours
}

#[test]
fn test_deadlock_fails_the_test_with_go_s_report() {
    let out = run_child("child_test_deadlocks", &[], CHILD_LIMIT);
    let all = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{all}");
    assert!(
        all.contains("all goroutines are asleep - deadlock!"),
        "{all}"
    );
    assert!(all.contains("[chan receive, "), "{all}");
}

#[gort::test(procs = 1)]
#[ignore = "child process"]
fn child_options_apply() {
    if !is_child() {
        return;
    }
    println!("PROCS {}", gort::stats().procs);
}

#[test]
#[ignore = "child process"]
fn child_options_conflict() {
    if !is_child() {
        return;
    }
    gort::Builder::new().procs(2).start().unwrap();
    let err = std::panic::catch_unwind(|| {
        gort::__private::test_run(
            gort::__private::TestOptions {
                procs: Some(1),
                ..Default::default()
            },
            || (),
        )
    })
    .expect_err("conflicting settings must fail the test");
    println!("MESSAGE {}", panic_message(&*err));
}

#[test]
fn test_options_configure_the_runtime_or_say_why_not() {
    let out = run_child(
        "child_options_apply",
        &[("GORT_MAXPROCS", "2")],
        CHILD_LIMIT,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("PROCS 1"), "{stdout}");
    let out = run_child("child_options_conflict", &[], CHILD_LIMIT);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("already runs with procs = 2") && stdout.contains("own binary"),
        "{stdout}"
    );
}

// ---------------------------------------------------------------------------
// Starting on first use.

#[test]
#[ignore = "child process"]
fn child_spawn_from_a_plain_thread_first() {
    if !is_child() {
        return;
    }
    // Nothing started the runtime: spawn does.
    let h = gort::spawn(gort::current_id);
    let id = h.join().unwrap();
    println!("ID {id} PROCS {}", gort::stats().procs);
}

#[test]
fn spawn_starts_the_runtime_on_first_use() {
    let out = run_child(
        "child_spawn_from_a_plain_thread_first",
        &[("GORT_MAXPROCS", "3")],
        CHILD_LIMIT,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("ID 1 PROCS 3"), "{stdout}");
}

// ---------------------------------------------------------------------------
// run / main with results that are not Send.

#[test]
fn run_returns_a_value_that_is_not_send() {
    let rc: Rc<Cell<u32>> = gort::run(|| {
        let v = Rc::new(Cell::new(1));
        gort::yield_now();
        v.set(v.get() + 1);
        v
    });
    assert_eq!(rc.get(), 2);
    let r: Result<(), Box<dyn std::error::Error>> = gort::run(|| Err("no".into()));
    assert_eq!(r.unwrap_err().to_string(), "no");
}

// ---------------------------------------------------------------------------
// spawn_blocking

#[gort::test]
fn spawn_blocking_joins_from_a_goroutine() {
    let h = gort::spawn_blocking(|| {
        std::thread::sleep(Duration::from_millis(20));
        std::thread::current().name().map(str::to_owned)
    });
    assert_eq!(h.id(), 0);
    assert_eq!(h.join().unwrap().as_deref(), Some("gort-blocking"));
    let err = gort::spawn_blocking(|| panic!("blocking boom"))
        .join()
        .unwrap_err();
    assert_eq!(panic_message(&*err), "blocking boom");
}

#[gort::test]
fn spawn_blocking_runs_many_tasks_at_once() {
    // 32 tasks that each wait for all the others: they must run at once.
    let barrier = Arc::new(std::sync::Barrier::new(32));
    let hs: Vec<_> = (0..32)
        .map(|i| {
            let b = barrier.clone();
            gort::spawn_blocking(move || {
                b.wait();
                i
            })
        })
        .collect();
    let sum: i32 = hs.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(sum, (0..32).sum());
}

/// The tokio-style pattern: blocking work elsewhere, result on a channel.
/// The wait (well past the deadlock grace) must not be reported.
#[gort::test]
fn blocking_work_sending_on_a_channel_is_not_a_deadlock() {
    let (tx, rx) = gort::chan::channel(1);
    gort::spawn_blocking(move || {
        std::thread::sleep(Duration::from_millis(1200));
        tx.send(7u32).unwrap();
    });
    assert_eq!(rx.recv().unwrap(), 7);
}

#[test]
fn a_plain_thread_gets_no_such_credit() {
    // Documented: a group waiting only for a plain thread is reported
    // after the grace. (The thread's send then wakes the leaked goroutine.)
    let err = std::panic::catch_unwind(|| {
        gort::run(|| {
            let (tx, rx) = gort::chan::channel(1);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_secs(5));
                let _ = tx.send(1u32);
            });
            rx.recv().unwrap()
        })
    })
    .expect_err("must be reported");
    assert!(panic_message(&*err).contains("all goroutines are asleep - deadlock!"));
}

// ---------------------------------------------------------------------------
// scope

#[gort::test]
fn scope_borrows_and_joins_everything() {
    let mut data: Vec<u64> = (1..=100).collect();
    let hits = AtomicUsize::new(0);
    let total = gort::scope(|s| {
        for chunk in data.chunks(10) {
            let hits = &hits;
            s.spawn(move || {
                gort::yield_now();
                hits.fetch_add(chunk.len(), Ordering::Relaxed);
            });
        }
        let h = s.spawn(|| data.iter().sum::<u64>());
        h.join().unwrap()
    });
    // Every goroutine ended (not only the joined one).
    assert_eq!(hits.load(Ordering::Relaxed), 100);
    assert_eq!(total, 5050);
    data.push(101); // the borrows are over
    assert_eq!(data.len(), 101);
}

#[gort::test]
fn scope_nested_spawns_and_mutable_borrows() {
    let mut a = 0u32;
    let mut b = 0u32;
    gort::scope(|s| {
        s.spawn(|| {
            a += 1;
            gort::yield_now();
            a += 1;
        });
        s.spawn(|| {
            s.spawn(|| gort::time::sleep(Duration::from_millis(10)));
            b = 5;
        });
    });
    assert_eq!((a, b), (2, 5));
}

#[gort::test]
fn scope_propagates_panics() {
    let err = std::panic::catch_unwind(|| {
        gort::scope(|s| {
            s.spawn(|| panic!("scoped boom"));
        })
    })
    .expect_err("an unjoined panic must make the scope panic");
    assert_eq!(panic_message(&*err), "a scoped goroutine panicked");
    // A joined panic is the joiner's business.
    let v = gort::scope(|s| {
        let h = s.spawn(|| panic!("joined"));
        panic_message(&*h.join().unwrap_err())
    });
    assert_eq!(v, "joined");
    // The closure's own panic comes out, after the goroutines end.
    let done = AtomicUsize::new(0);
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        gort::scope(|s| {
            s.spawn(|| {
                gort::time::sleep(Duration::from_millis(50));
                done.store(1, Ordering::SeqCst);
            });
            panic!("closure boom");
        })
    }))
    .unwrap_err();
    assert_eq!(panic_message(&*err), "closure boom");
    assert_eq!(done.load(Ordering::SeqCst), 1);
}

#[test]
fn scope_works_from_a_plain_thread() {
    let v = String::from("abc");
    let n = gort::scope(|s| s.spawn(|| v.len()).join().unwrap());
    assert_eq!(n, 3);
}

// ---------------------------------------------------------------------------
// Spawn options

#[test]
#[ignore = "child process"]
fn child_named_goroutines() {
    if !is_child() {
        return;
    }
    gort::run(|| {
        let (tx, rx) = gort::chan::channel::<()>(0);
        let h = gort::Spawn::new()
            .name("worker-3")
            .spawn(move || rx.recv().is_err());
        gort::time::sleep(Duration::from_millis(150));
        gort::dump();
        drop(tx);
        assert!(h.join().unwrap());
        let err = gort::Spawn::new()
            .name("doomed")
            .spawn(|| panic!("named boom"))
            .join()
            .unwrap_err();
        assert_eq!(panic_message(&*err), "named boom");
    });
}

#[test]
fn names_show_in_dumps_and_panics() {
    let out = run_child(
        "child_named_goroutines",
        &[("GORT_DEBUG", "schedtrace=10,scheddetail=1")],
        CHILD_LIMIT,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("\"worker-3\" [chan receive, "), "{stderr}");
    assert!(stderr.contains("\"worker-3\": status="), "{stderr}");
    assert!(
        stderr.contains("\"doomed\" panicked at tests/api.rs:"),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------
// block_on

#[gort::test]
fn block_on_a_oneshot_woken_by_a_goroutine_and_a_thread() {
    let (tx, rx) = futures_channel::oneshot::channel();
    gort::spawn(move || {
        gort::time::sleep(Duration::from_millis(20));
        tx.send(1u32).unwrap();
    });
    assert_eq!(gort::block_on(rx).unwrap(), 1);
    let (tx, rx) = futures_channel::oneshot::channel();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        tx.send(2u32).unwrap();
    });
    assert_eq!(gort::block_on(rx).unwrap(), 2);
}

#[gort::test]
fn block_on_async_channel_between_goroutines() {
    let (tx, rx) = async_channel::bounded::<u64>(4);
    let producers: Vec<_> = (0..4u64)
        .map(|p| {
            let tx = tx.clone();
            gort::spawn(move || {
                for i in 0..1000 {
                    gort::block_on(tx.send(p * 1000 + i)).unwrap();
                }
            })
        })
        .collect();
    drop(tx);
    let consumers: Vec<_> = (0..3)
        .map(|_| {
            let rx = rx.clone();
            gort::spawn(move || {
                let mut sum = 0u64;
                while let Ok(v) = gort::block_on(rx.recv()) {
                    sum += v;
                }
                sum
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    let sum: u64 = consumers.into_iter().map(|c| c.join().unwrap()).sum();
    assert_eq!(sum, (0..4000).sum());
}

#[gort::test]
fn block_on_a_timer_future() {
    let t0 = Instant::now();
    gort::block_on(futures_timer::Delay::new(Duration::from_millis(50)));
    assert!(t0.elapsed() >= Duration::from_millis(50));
    // Others run while it waits.
    let ran = Arc::new(AtomicUsize::new(0));
    let r2 = ran.clone();
    let spinner = gort::spawn(move || {
        for _ in 0..10 {
            r2.fetch_add(1, Ordering::SeqCst);
            gort::yield_now();
        }
    });
    gort::block_on(futures_timer::Delay::new(Duration::from_millis(200)));
    // It finished while this goroutine waited for the timer.
    assert!(spinner.is_finished());
    spinner.join().unwrap();
    assert_eq!(ran.load(Ordering::SeqCst), 10);
}

#[test]
fn block_on_works_on_a_plain_thread() {
    let (tx, rx) = futures_channel::oneshot::channel();
    std::thread::spawn(move || tx.send(3u8).unwrap());
    assert_eq!(gort::block_on(rx).unwrap(), 3);
}

// ---------------------------------------------------------------------------
// Waits inside syscall::blocking block the thread, all of them.

#[gort::test]
fn every_wait_inside_syscall_blocking_blocks_the_thread() {
    let (tx, rx) = gort::chan::channel(1);
    let m = Arc::new(gort::sync::Mutex::new(0u32));
    let h = gort::spawn(|| 5u32);
    let got = gort::syscall::blocking(|| {
        gort::time::sleep(Duration::from_millis(5));
        let (itx, irx) = futures_channel::oneshot::channel();
        std::thread::spawn(move || itx.send(9u32).unwrap());
        let from_future = gort::block_on(irx).unwrap();
        tx.send(1u32).unwrap();
        let from_chan = rx.recv().unwrap();
        *m.lock() += 1;
        let joined = h.join().unwrap();
        from_future + from_chan + joined + *m.lock()
    });
    assert_eq!(got, 9 + 1 + 5 + 1);
}

// ---------------------------------------------------------------------------
// The small things: unbounded channel, Semaphore, Barrier, JoinSet, the
// lock_os_thread guard.

#[gort::test]
fn unbounded_channel_never_blocks_a_sender() {
    let (tx, rx) = gort::chan::unbounded();
    for i in 0..100_000u32 {
        tx.send(i).unwrap(); // no receiver running: must not wait
    }
    assert_eq!(tx.capacity(), usize::MAX);
    assert_eq!(rx.len(), 100_000);
    drop(tx);
    let mut n = 0u32;
    while let Ok(v) = rx.recv() {
        assert_eq!(v, n);
        n += 1;
    }
    assert_eq!(n, 100_000);
}

#[gort::test]
fn semaphore_bounds_the_holders() {
    static SEM: gort::sync::Semaphore = gort::sync::Semaphore::new(3);
    static INSIDE: AtomicUsize = AtomicUsize::new(0);
    static MAX: AtomicUsize = AtomicUsize::new(0);
    let hs: Vec<_> = (0..50)
        .map(|_| {
            gort::spawn(|| {
                let _p = SEM.acquire();
                let n = INSIDE.fetch_add(1, Ordering::SeqCst) + 1;
                MAX.fetch_max(n, Ordering::SeqCst);
                gort::time::sleep(Duration::from_millis(1));
                INSIDE.fetch_sub(1, Ordering::SeqCst);
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    let max = MAX.load(Ordering::SeqCst);
    assert!((1..=3).contains(&max), "{max}");
    assert_eq!(SEM.available_permits(), 3);
    // Three holders at once, a fourth waits until one leaves.
    let (go_tx, go_rx) = gort::chan::channel::<()>(0);
    let (held_tx, held_rx) = gort::chan::channel::<()>(0);
    let holders: Vec<_> = (0..3)
        .map(|_| {
            let (go_rx, held_tx) = (go_rx.clone(), held_tx.clone());
            gort::spawn(move || {
                let _p = SEM.acquire();
                held_tx.send(()).unwrap();
                go_rx.recv().unwrap();
            })
        })
        .collect();
    for _ in 0..3 {
        held_rx.recv().unwrap();
    }
    assert!(SEM.try_acquire().is_none());
    let fourth = gort::spawn(|| drop(SEM.acquire()));
    gort::time::sleep(Duration::from_millis(20));
    assert!(!fourth.is_finished());
    go_tx.send(()).unwrap(); // one holder leaves
    fourth.join().unwrap();
    go_tx.send(()).unwrap();
    go_tx.send(()).unwrap();
    for h in holders {
        h.join().unwrap();
    }
    assert_eq!(SEM.available_permits(), 3);
    let a = SEM.try_acquire().unwrap();
    let b = SEM.try_acquire().unwrap();
    SEM.try_acquire().unwrap().forget();
    assert!(SEM.try_acquire().is_none());
    drop((a, b));
    SEM.add_permits(1);
    assert_eq!(SEM.available_permits(), 3);
}

#[gort::test]
fn barrier_rounds_with_one_leader_each() {
    let barrier = Arc::new(gort::sync::Barrier::new(8));
    let leaders = Arc::new(AtomicUsize::new(0));
    let arrived = Arc::new(AtomicUsize::new(0));
    let hs: Vec<_> = (0..8)
        .map(|_| {
            let (b, l, a) = (barrier.clone(), leaders.clone(), arrived.clone());
            gort::spawn(move || {
                for round in 1..=5 {
                    a.fetch_add(1, Ordering::SeqCst);
                    if b.wait().is_leader() {
                        l.fetch_add(1, Ordering::SeqCst);
                    }
                    // Nobody passes before all 8 of this round arrived.
                    assert!(a.load(Ordering::SeqCst) >= 8 * round);
                    b.wait();
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(leaders.load(Ordering::SeqCst), 5);
}

#[gort::test]
fn join_set_returns_the_first_to_finish() {
    let mut set = gort::JoinSet::new();
    let mut ids = std::collections::HashMap::new();
    let mut release = Vec::new();
    for k in 0..3u32 {
        let (tx, rx) = gort::chan::channel::<()>(0);
        release.push(tx);
        let id = set.spawn(move || {
            rx.recv().unwrap();
            k
        });
        ids.insert(id, k);
    }
    let (ptx, prx) = gort::chan::channel::<()>(0);
    set.spawn(move || {
        prx.recv().unwrap();
        panic!("one of them fails")
    });
    assert_eq!(set.len(), 4);
    assert!(set.try_join_next().is_none());
    // Each returns as soon as it is let go, in that order.
    for k in [2u32, 0, 1] {
        release[k as usize].send(()).unwrap();
        let (id, r) = set.join_next().unwrap();
        assert_eq!((ids[&id], r.unwrap()), (k, k));
    }
    ptx.send(()).unwrap();
    let (_, r) = set.join_next().unwrap();
    assert_eq!(panic_message(&*r.unwrap_err()), "one of them fails");
    assert!(set.is_empty() && set.join_next().is_none());
}

#[gort::test]
fn lock_os_thread_guard_keeps_the_goroutine_on_its_thread() {
    fn tid() -> i32 {
        // SAFETY: gettid has no preconditions.
        unsafe { libc::gettid() }
    }
    let _others: Vec<_> = (0..8)
        .map(|_| gort::spawn(|| gort::time::sleep(Duration::from_millis(20))))
        .collect();
    {
        let _g = gort::lock_os_thread_guard();
        let t = tid();
        for _ in 0..20 {
            gort::time::sleep(Duration::from_micros(500));
            gort::yield_now();
            assert_eq!(tid(), t);
        }
    }
}

// ---------------------------------------------------------------------------
// Spawn::stack_size

/// Recurses `depth` times with a 1 KiB frame; returns the stack used.
#[inline(never)]
fn deep(depth: usize, top: usize) -> usize {
    let frame = [depth as u8; 1024];
    std::hint::black_box(&frame);
    let here = &frame as *const _ as usize;
    if depth == 0 {
        return top - here;
    }
    deep(depth - 1, top).max(std::hint::black_box(top - here))
}

#[test]
#[ignore = "child process"]
fn child_stack_sizes() {
    if !is_child() {
        return;
    }
    gort::run(|| {
        // 4 MiB of recursion: far past the default 256 KiB.
        let used = gort::Spawn::new()
            .stack_size(8 << 20)
            .spawn(|| {
                let top = 0u8;
                deep(4000, &top as *const u8 as usize)
            })
            .join()
            .unwrap();
        assert!(used > 4 << 20, "{used}");
        // Stacks of a size are reused: 300 goroutines one after another
        // reserve far less than 300 stacks.
        let before = gort::stats().stack_reserved;
        for _ in 0..300 {
            gort::Spawn::new()
                .stack_size(64 << 10)
                .spawn(gort::yield_now)
                .join()
                .unwrap();
        }
        let grew = gort::stats().stack_reserved - before;
        assert!(grew < 100 * (64 << 10), "{grew}");
        println!("STACKS OK used={used} grew={grew}");
    });
}

#[test]
fn spawn_stack_size_gives_room_and_reuses_stacks() {
    common::expect_child("child_stack_sizes", &[], CHILD_LIMIT, "STACKS OK");
}

#[gort::test]
fn condvar_wait_timeout() {
    let pair = Arc::new((gort::sync::Mutex::new(false), gort::sync::Condvar::new()));
    // Nobody notifies: times out, mutex held again.
    let t0 = Instant::now();
    let (g, r) = pair
        .1
        .wait_timeout(pair.0.lock(), Duration::from_millis(50));
    assert!(r.timed_out() && t0.elapsed() >= Duration::from_millis(50));
    assert!(!*g);
    drop(g);
    // Notified in time: not timed out.
    let p2 = pair.clone();
    gort::spawn(move || {
        gort::time::sleep(Duration::from_millis(10));
        *p2.0.lock() = true;
        p2.1.notify_one();
    });
    let mut g = pair.0.lock();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !*g {
        let (g2, r) = pair
            .1
            .wait_timeout(g, deadline.saturating_duration_since(Instant::now()));
        g = g2;
        assert!(!r.timed_out());
    }
    drop(g);
    // Many short timed waits beside an untimed waiter that must still get
    // its notification; the condvar outlives nothing it should.
    let flag = Arc::new((gort::sync::Mutex::new(0u32), gort::sync::Condvar::new()));
    let f2 = flag.clone();
    let waiter = gort::spawn(move || {
        let g = f2.0.lock();
        let g = f2.1.wait_while(g, |v| *v == 0);
        *g
    });
    for i in 0..300u64 {
        // Zero and tiny timeouts: the timer may fire before the wait has
        // queued; the wait must end all the same.
        let local = gort::sync::Condvar::new();
        let m = gort::sync::Mutex::new(());
        let (_g, r) = local.wait_timeout(m.lock(), Duration::from_micros(i % 3 * 100));
        assert!(r.timed_out());
    }
    *flag.0.lock() = 7;
    flag.1.notify_one();
    assert_eq!(waiter.join().unwrap(), 7);
}

#[test]
fn condvar_wait_timeout_on_a_plain_thread() {
    let m = gort::sync::Mutex::new(1);
    let cv = gort::sync::Condvar::new();
    let (g, r) = cv.wait_timeout(m.lock(), Duration::from_millis(20));
    assert!(r.timed_out());
    assert_eq!(*g, 1);
}
