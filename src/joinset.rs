//! `JoinSet`: wait for the first of many goroutines to finish.
//!
//! Each goroutine of the set sends its id and result on one unbounded
//! channel when it ends; `join_next` receives the next. Unbounded, so a
//! finished goroutine never waits for the set's owner.

use crate::chan::{unbounded, Receiver, Sender};
use std::panic::{self, AssertUnwindSafe, Location};

/// A set of goroutines whose results come back in the order they finish,
/// like tokio's `JoinSet` (without cancellation: dropping the set
/// detaches its goroutines, which cannot be aborted).
///
/// ```no_run
/// use std::time::Duration;
/// gort::run(|| {
///     let mut set = gort::JoinSet::new();
///     for ms in [30u64, 10, 20] {
///         set.spawn(move || {
///             gort::time::sleep(Duration::from_millis(ms));
///             ms
///         });
///     }
///     let (_id, first) = set.join_next().unwrap();
///     assert_eq!(first.unwrap(), 10);
/// });
/// ```
pub struct JoinSet<T> {
    tx: Sender<(u64, std::thread::Result<T>)>,
    rx: Receiver<(u64, std::thread::Result<T>)>,
    pending: usize,
}

impl<T: Send + 'static> JoinSet<T> {
    /// An empty set.
    pub fn new() -> JoinSet<T> {
        let (tx, rx) = unbounded();
        JoinSet { tx, rx, pending: 0 }
    }

    /// Spawns `f` as a goroutine of the set; returns its id.
    #[track_caller]
    pub fn spawn<F>(&mut self, f: F) -> u64
    where
        F: FnOnce() -> T + Send + 'static,
    {
        crate::runtime::ensure_started();
        let tx = self.tx.clone();
        let h = crate::join::spawn_at(
            move || {
                let r = panic::catch_unwind(AssertUnwindSafe(f));
                let _ = tx.send((crate::current_id(), r));
            },
            Location::caller(),
            None,
            0,
        );
        self.pending += 1;
        h.id()
    }

    /// Waits for the next goroutine of the set to finish and returns its
    /// id and result (`Err` with the payload if it panicked), or `None`
    /// if the set is empty.
    pub fn join_next(&mut self) -> Option<(u64, std::thread::Result<T>)> {
        if self.pending == 0 {
            return None;
        }
        let r = self.rx.recv().ok()?;
        self.pending -= 1;
        Some(r)
    }

    /// `join_next` without waiting: `None` if no goroutine has finished
    /// since (or the set is empty).
    pub fn try_join_next(&mut self) -> Option<(u64, std::thread::Result<T>)> {
        let r = self.rx.try_recv().ok()?;
        self.pending -= 1;
        Some(r)
    }

    /// Goroutines spawned and not yet returned by `join_next`.
    pub fn len(&self) -> usize {
        self.pending
    }

    /// Whether `len() == 0`.
    pub fn is_empty(&self) -> bool {
        self.pending == 0
    }
}

impl<T: Send + 'static> Default for JoinSet<T> {
    fn default() -> Self {
        JoinSet::new()
    }
}

impl<T> std::fmt::Debug for JoinSet<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinSet")
            .field("len", &self.pending)
            .finish()
    }
}
