//! The `spin` scenario, shared by tests/lto's two programs (main.rs and
//! counting.rs, each with its own `#[global_allocator]`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// With gort started on one P, once signal preemption is on: a goroutine
/// spins without calls while the root goroutine sleeps 1 ms fifty times,
/// which it can only do if the spinner is preempted by signal.
pub fn spin_beside_a_sleeper() {
    while !gort::stats().async_preempt {
        std::thread::sleep(Duration::from_millis(1));
    }
    gort::run(|| {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let h = gort::spawn(move || {
            let mut x = 1u64;
            while !s.load(Ordering::Relaxed) {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            }
            x
        });
        for _ in 0..50 {
            gort::time::sleep(Duration::from_millis(1));
        }
        stop.store(true, Ordering::Relaxed);
        h.join().unwrap();
    });
}
