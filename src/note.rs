//! `Note`: a one-shot sleep/wakeup on a futex, Go's `note`.
//!
//! A note blocks the OS thread, never just a goroutine: Ms park on their
//! `park` note when they have nothing to run, and plain threads (callers of
//! `gort::run`, joiners outside the runtime) wait on one.
//!
//! Protocol: `clear` before use; one `wakeup`; any number of `sleep` calls
//! return once `wakeup` happened. `wakeup` may come before `sleep`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub(crate) struct Note {
    key: AtomicU32,
}

impl Note {
    pub(crate) const fn new() -> Note {
        Note {
            key: AtomicU32::new(0),
        }
    }

    /// Re-arms the note. Only call when no thread sleeps on it.
    pub(crate) fn clear(&self) {
        self.key.store(0, Ordering::Relaxed);
    }

    /// Wakes the sleeper (or lets the next `sleep` return at once).
    pub(crate) fn wakeup(&self) {
        if self.key.swap(1, Ordering::Release) == 0 {
            futex_wake(&self.key, 1);
        }
    }

    /// Blocks the calling thread until `wakeup`.
    pub(crate) fn sleep(&self) {
        while self.key.load(Ordering::Acquire) == 0 {
            futex_wait(&self.key, 0, None);
        }
    }

    /// Blocks until `wakeup` or until `timeout` passed. Returns whether the
    /// note was woken.
    pub(crate) fn sleep_timeout(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.key.load(Ordering::Acquire) != 0 {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            futex_wait(&self.key, 0, Some(deadline - now));
        }
    }
}

/// Sleeps while `*word == expected` (or until `timeout`). Spurious wakeups
/// and EINTR simply return: callers loop on their own condition.
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    let ts;
    let tsp = match timeout {
        Some(d) => {
            ts = libc::timespec {
                tv_sec: d.as_secs().min(i64::MAX as u64) as libc::time_t,
                tv_nsec: d.subsec_nanos() as libc::c_long,
            };
            &ts as *const libc::timespec
        }
        None => std::ptr::null(),
    };
    // SAFETY: FUTEX_WAIT reads the aligned u32 behind `word`, which is valid
    // for the duration of the call; `tsp` is null or points at `ts`.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            tsp,
        );
    }
}

/// Wakes up to `n` threads sleeping on `word`.
pub(crate) fn futex_wake(word: &AtomicU32, n: i32) {
    // SAFETY: FUTEX_WAKE only uses the address as a key; it never touches
    // memory, so this is sound even if the note's owner is gone.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            n,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn wakeup_before_sleep_returns_at_once_until_cleared() {
        let n = Note::new();
        n.wakeup();
        n.sleep();
        n.sleep();
        assert!(n.sleep_timeout(Duration::ZERO));
        n.clear();
        assert!(!n.sleep_timeout(Duration::from_millis(20)));
    }

    #[test]
    fn sleep_timeout_waits_about_the_timeout() {
        let n = Note::new();
        let t = Instant::now();
        assert!(!n.sleep_timeout(Duration::from_millis(30)));
        let waited = t.elapsed();
        assert!(waited >= Duration::from_millis(30), "{waited:?}");
        assert!(waited < Duration::from_secs(10), "{waited:?}");
    }

    #[test]
    fn a_wakeup_from_another_thread_ends_the_sleep() {
        for _ in 0..50 {
            let n = Arc::new(Note::new());
            let w = n.clone();
            let h = std::thread::spawn(move || w.wakeup());
            n.sleep();
            h.join().unwrap();
            let n2 = Arc::new(Note::new());
            let w2 = n2.clone();
            let h2 = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(1));
                w2.wakeup();
            });
            assert!(n2.sleep_timeout(Duration::from_secs(30)));
            h2.join().unwrap();
        }
    }
}
