//! `block_on`: wait for a `Future` from a goroutine.
//!
//! The future is polled on the goroutine. When it is pending, the
//! goroutine parks (a `park::Waiter`) until the future's `Waker` fires;
//! the waker may be called from any thread, as many times as it likes.
//!
//! `Signal::state`: `IDLE`, `NOTIFIED` (woken since the last poll began),
//! or the address of the parked goroutine's `Waiter`. The goroutine sets
//! `IDLE` before each poll, then publishes its waiter with a CAS from
//! `IDLE`; a wake swaps in `NOTIFIED` and wakes a waiter it found. A wake
//! during the poll makes the CAS fail, so the goroutine polls again at
//! once instead of sleeping through it.

use crate::g::WaitReason;
use crate::park::Waiter;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

const IDLE: usize = 0;
const NOTIFIED: usize = 1;

struct Signal {
    state: AtomicUsize,
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref()
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let prev = self.state.swap(NOTIFIED, Ordering::AcqRel);
        if prev > NOTIFIED {
            // SAFETY: only the swap that took the waiter's address out of
            // `state` may wake it, and the waiter stays alive (its
            // goroutine parked) until it is woken.
            unsafe { Waiter::wake(prev as *const Waiter, 0) };
        }
    }
}

/// Runs a future to completion on the calling goroutine, parking the
/// goroutine (not its thread) while the future is pending. On a plain
/// thread it blocks the thread.
///
/// It has no reactor of its own: the future must be woken by something
/// that runs anyway — another goroutine, a plain thread, a timer thread,
/// another async runtime. `futures::channel`, `async-channel`,
/// `event-listener` and similar work; tokio's I/O and timers need a
/// running tokio runtime.
///
/// ```no_run
/// gort::run(|| {
///     let (tx, rx) = futures_channel::oneshot::channel();
///     gort::spawn(move || tx.send(42).unwrap());
///     assert_eq!(gort::block_on(rx).unwrap(), 42);
/// });
/// ```
///
/// A goroutine waiting here does not count as deadlocked: its waker may
/// come from outside the runtime.
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let signal = Arc::new(Signal {
        state: AtomicUsize::new(IDLE),
    });
    let waker = Waker::from(signal.clone());
    let mut cx = Context::from_waker(&waker);
    loop {
        signal.state.store(IDLE, Ordering::Release);
        if let Poll::Ready(v) = future.as_mut().poll(&mut cx) {
            return v;
        }
        let waiter = Waiter::new();
        let wp = &waiter as *const Waiter as usize;
        // Cancelled (None) if a wake came during the poll: poll again.
        waiter.wait(WaitReason::Future, &mut || {
            signal
                .state
                .compare_exchange(IDLE, wp, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        });
    }
}
