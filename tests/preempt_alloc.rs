//! A `#[global_allocator]` written in Rust with a spin lock (as talc and
//! other Rust allocators have): a goroutine preempted inside `alloc` with
//! the lock held would make the next goroutine on its M spin for ever.
//! The code map never treats the allocator as a safe point.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The system allocator behind a spin lock that it holds for a while.
struct SpinAlloc {
    locked: AtomicBool,
}

impl SpinAlloc {
    fn lock(&self) {
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::hint::spin_loop();
        }
    }

    fn unlock(&self) {
        self.locked.store(false, Ordering::Release);
    }

    /// Work under the lock, long enough for signals to land in it.
    #[inline(never)]
    fn busy(&self) {
        let mut x = 1u64;
        for _ in 0..200 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
    }
}

// SAFETY: every method forwards to System, under the lock.
unsafe impl GlobalAlloc for SpinAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.lock();
        self.busy();
        // SAFETY: as the caller guarantees for `layout`.
        let p = unsafe { System.alloc(layout) };
        self.unlock();
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        self.lock();
        self.busy();
        // SAFETY: as the caller guarantees for `ptr` and `layout`.
        unsafe { System.dealloc(ptr, layout) };
        self.unlock();
    }
}

#[global_allocator]
static ALLOC: SpinAlloc = SpinAlloc {
    locked: AtomicBool::new(false),
};

#[test]
fn spin_locked_allocator_one_p() {
    common::expect_child(
        "child_alloc",
        &[("PROCS", "1")],
        Duration::from_secs(60),
        "ALLOC OK",
    );
}

#[test]
fn spin_locked_allocator_two_ps() {
    common::expect_child(
        "child_alloc",
        &[("PROCS", "2")],
        Duration::from_secs(60),
        "ALLOC OK",
    );
}

#[test]
#[ignore = "child process of the spin_locked_allocator tests"]
fn child_alloc() {
    if !common::is_child() {
        return;
    }
    let procs = std::env::var("PROCS").unwrap().parse().unwrap();
    gort::Builder::new()
        .procs(procs)
        .time_slice(Duration::from_micros(100))
        .start()
        .unwrap();
    let t0 = Instant::now();
    while !gort::stats().async_preempt {
        assert!(t0.elapsed() < Duration::from_secs(20), "code map not ready");
        std::thread::sleep(Duration::from_millis(2));
    }
    let before = gort::stats();
    let allocs = std::sync::Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_millis(1500);
    gort::run({
        let allocs = allocs.clone();
        move || {
            let hs: Vec<_> = (0..6)
                .map(|_| {
                    let allocs = allocs.clone();
                    gort::spawn(move || {
                        while Instant::now() < deadline {
                            let v: Vec<u64> = (0..16).collect();
                            std::hint::black_box(&v);
                            drop(v);
                            allocs.fetch_add(1, Ordering::Relaxed);
                            // Work outside the allocator too.
                            let mut x = 1u64;
                            for _ in 0..2000 {
                                x = std::hint::black_box(x.wrapping_mul(3).wrapping_add(1));
                            }
                        }
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
        }
    });
    let after = gort::stats();
    let n = after.preempted_async - before.preempted_async;
    assert!(n > 0, "no async preemption happened: {after:?}");
    println!(
        "ALLOC OK: {} allocations, {n} async preemptions, {} rejected",
        allocs.load(Ordering::Relaxed),
        after.preempt_rejected - before.preempt_rejected
    );
}
