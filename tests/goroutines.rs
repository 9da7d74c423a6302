//! Goroutines: spawn, join, nesting, panics, exit, yield, concurrent `run`.
//! The runtime starts from the environment (default procs).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

#[test]
fn hundred_thousand_goroutines_exact_sum() {
    const N: u64 = 100_000;
    let sum = gort::run(|| {
        let hs: Vec<_> = (0..N).map(|i| gort::spawn(move || i * 3 + 1)).collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
    });
    assert_eq!(sum, 3 * N * (N - 1) / 2 + N);
}

#[test]
fn hundred_thousand_goroutines_alive_at_once() {
    // Every goroutine blocks (joins its successor) until the last one ends,
    // so all 100,000 are alive, each with its own stack, at the same time.
    const N: u64 = 100_000;
    fn chain(i: u64) -> u64 {
        if i == 0 {
            return 0;
        }
        let h = gort::spawn(move || chain(i - 1));
        i + h.join().unwrap()
    }
    let sum = gort::run(|| chain(N));
    assert_eq!(sum, N * (N + 1) / 2);
}

#[test]
fn nested_spawns_form_a_tree() {
    fn tree(depth: u32) -> u64 {
        if depth == 0 {
            return 1;
        }
        let l = gort::spawn(move || tree(depth - 1));
        let r = gort::spawn(move || tree(depth - 1));
        l.join().unwrap() + r.join().unwrap()
    }
    assert_eq!(gort::run(|| tree(12)), 4096);
}

#[test]
fn panic_in_goroutine_reaches_join() {
    let msg = gort::run(|| {
        let n = std::hint::black_box(42);
        let h = gort::spawn(move || -> u32 { panic!("boom {n}") });
        let err = h.join().expect_err("join must report the panic");
        err.downcast_ref::<String>()
            .cloned()
            .expect("String payload")
    });
    assert_eq!(msg, "boom 42");
}

#[test]
fn panic_in_main_goroutine_comes_out_of_run() {
    let r = std::panic::catch_unwind(|| gort::run(|| -> u32 { panic!("main goroutine failed") }));
    let err = r.expect_err("run must panic");
    assert_eq!(err.downcast_ref::<&str>(), Some(&"main goroutine failed"));
    // The runtime still works afterwards.
    assert_eq!(gort::run(|| 7), 7);
}

struct SetOnDrop(Arc<AtomicUsize>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn exit_ends_goroutine_and_runs_destructors() {
    let drops = Arc::new(AtomicUsize::new(0));
    let d = drops.clone();
    let (payload_is_exit, after_exit_ran) = gort::run(move || {
        let ran_after = Arc::new(AtomicUsize::new(0));
        let ra = ran_after.clone();
        let h = gort::spawn(move || {
            let _guard = SetOnDrop(d);
            fn deep(n: u32) {
                if n == 0 {
                    gort::exit();
                }
                deep(n - 1);
            }
            deep(10);
            ra.store(1, Ordering::SeqCst); // never reached
        });
        let err = h.join().expect_err("an exited goroutine has no value");
        (err.is::<gort::Exit>(), ran_after.load(Ordering::SeqCst))
    });
    assert!(payload_is_exit);
    assert_eq!(after_exit_ran, 0, "code after exit() ran");
    assert_eq!(drops.load(Ordering::SeqCst), 1, "destructor did not run");
}

#[test]
fn exit_outside_goroutine_is_a_clear_panic() {
    let err = std::panic::catch_unwind(|| gort::exit()).expect_err("must panic");
    let msg = err.downcast_ref::<&str>().copied().unwrap_or_default();
    assert!(msg.contains("outside a goroutine"), "{msg}");
}

#[test]
fn run_inside_goroutine_is_a_clear_panic() {
    let msg = gort::run(|| {
        let err = gort::spawn(|| gort::run(|| 1))
            .join()
            .expect_err("nested run must panic");
        err.downcast_ref::<&str>()
            .map(|s| s.to_string())
            .unwrap_or_default()
    });
    assert!(msg.contains("inside a goroutine"), "{msg}");
}

#[test]
fn current_id_is_unique_per_goroutine() {
    assert_eq!(gort::current_id(), 0, "plain thread has id 0");
    let ids = gort::run(|| {
        let me = gort::current_id();
        let hs: Vec<_> = (0..1000).map(|_| gort::spawn(gort::current_id)).collect();
        let mut ids: Vec<u64> = hs.iter().map(|h| h.id()).collect();
        let got: Vec<u64> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(ids, got, "JoinHandle::id matches current_id inside");
        ids.push(me);
        ids
    });
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), ids.len(), "ids repeat");
    assert!(sorted[0] >= 1);
}

#[test]
fn yield_now_lets_others_run() {
    // Two goroutines take strict turns, waiting for theirs with nothing
    // but yield_now: with one P that completes only if yield_now runs the
    // other goroutine; with more it must not get in the way. (Counting
    // interleavings of free-running loops instead says more about the
    // host's thread scheduling than about yield_now.)
    let log = gort::run(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        let turn = Arc::new(AtomicUsize::new(0));
        let hs: Vec<_> = (0..2)
            .map(|who| {
                let log = log.clone();
                let turn = turn.clone();
                gort::spawn(move || {
                    for i in 0..1000 {
                        while turn.load(Ordering::Acquire) % 2 != who {
                            gort::yield_now();
                        }
                        log.lock().unwrap().push((who, i));
                        turn.fetch_add(1, Ordering::AcqRel);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        Arc::try_unwrap(log).unwrap().into_inner().unwrap()
    });
    assert_eq!(log.len(), 2000);
    let expected: Vec<(usize, i32)> = (0..1000).flat_map(|i| [(0, i), (1, i)]).collect();
    assert_eq!(log, expected);
}

#[test]
fn concurrent_run_callers_share_the_runtime() {
    const THREADS: usize = 8;
    let barrier = Arc::new(Barrier::new(THREADS));
    let threads: Vec<_> = (0..THREADS as u64)
        .map(|t| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                gort::run(move || {
                    let hs: Vec<_> = (0..2000u64).map(|i| gort::spawn(move || i + t)).collect();
                    hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
                })
            })
        })
        .collect();
    for (t, th) in threads.into_iter().enumerate() {
        let got = th.join().unwrap();
        assert_eq!(got, 1999 * 2000 / 2 + 2000 * t as u64);
    }
}

#[test]
fn plain_thread_can_spawn_and_join_once_started() {
    gort::run(|| ()); // make sure the runtime runs
    let h = gort::spawn(|| (0..1000u64).sum::<u64>());
    assert_eq!(h.join().unwrap(), 499_500);
    let h = gort::spawn(gort::current_id);
    let id = h.id();
    assert_eq!(h.join().unwrap(), id);
}

#[test]
fn detached_goroutines_finish() {
    let done = Arc::new(AtomicUsize::new(0));
    let d = done.clone();
    gort::run(move || {
        for _ in 0..1000 {
            let d = d.clone();
            drop(gort::spawn(move || {
                d.fetch_add(1, Ordering::SeqCst);
            }));
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while done.load(Ordering::SeqCst) < 1000 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(done.load(Ordering::SeqCst), 1000);
}

#[test]
fn stats_count_goroutines() {
    let before = gort::stats();
    gort::run(|| {
        let hs: Vec<_> = (0..100).map(|_| gort::spawn(|| ())).collect();
        for h in hs {
            h.join().unwrap();
        }
    });
    let after = gort::stats();
    assert!(after.spawned >= before.spawned + 101);
    assert!(after.threads >= 1);
    assert!(after.procs >= 1);
}

#[cfg(target_arch = "x86_64")]
fn mxcsr() -> u32 {
    let mut v: u32 = 0;
    // SAFETY: stores MXCSR into a local.
    unsafe { std::arch::asm!("stmxcsr [{}]", in(reg) &mut v, options(nostack)) };
    v
}

#[cfg(target_arch = "x86_64")]
fn set_mxcsr(v: u32) {
    // SAFETY: loads a valid MXCSR value (exceptions masked).
    unsafe { std::arch::asm!("ldmxcsr [{}]", in(reg) &v, options(nostack)) };
}

#[cfg(target_arch = "x86_64")]
fn fpu_cw() -> u16 {
    let mut v: u16 = 0;
    // SAFETY: stores the x87 control word into a local.
    unsafe { std::arch::asm!("fnstcw [{}]", in(reg) &mut v, options(nostack)) };
    v
}

#[cfg(target_arch = "x86_64")]
fn set_fpu_cw(v: u16) {
    // SAFETY: loads a valid x87 control word (exceptions masked).
    unsafe { std::arch::asm!("fldcw [{}]", in(reg) &v, options(nostack)) };
}

/// The FP control words are callee-saved: each goroutine keeps its own
/// rounding mode across switches, whatever the others set.
#[cfg(target_arch = "x86_64")]
#[test]
fn fp_control_words_are_per_goroutine() {
    let ok = gort::run(|| {
        let hs: Vec<_> = (0..4u32)
            .map(|i| {
                gort::spawn(move || {
                    // Rounding control (MXCSR bits 13-14, FCW bits 10-11),
                    // a different mode per goroutine.
                    let m = (mxcsr() & !0x6000) | (i << 13);
                    let c = (fpu_cw() & !0x0c00) | ((i as u16) << 10);
                    set_mxcsr(m);
                    set_fpu_cw(c);
                    let mut ok = true;
                    for _ in 0..2000 {
                        gort::yield_now();
                        ok &= mxcsr() & 0xffc0 == m & 0xffc0 && fpu_cw() == c;
                    }
                    // Leave the thread as we found it.
                    set_mxcsr(0x1f80);
                    set_fpu_cw(0x037f);
                    ok
                })
            })
            .collect();
        hs.into_iter().all(|h| h.join().unwrap())
    });
    assert!(ok, "a goroutine's FP control words changed across a switch");
}
