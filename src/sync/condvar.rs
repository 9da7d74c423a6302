//! [`Condvar`]: Go's `notifyList`: tickets, no lost or spurious wake-ups.
//!
//! Part of `gort::sync`; the algorithms are described in that module's docs.

use super::mutex::*;
use super::sema::*;
use crate::g::WaitReason;
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Ticket order with wrap-around (Go's `less` in `notifyList`).
fn ticket_before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// A condvar's waiters in ticket order (mostly: a ticket may queue late),
/// chained through `next`. Only touched under the condvar's lock.
struct CondQueue {
    head: *const Node,
    tail: *const Node,
}

// SAFETY: as `KeyedQueue`: pointers to live nodes, used under the lock.
unsafe impl Send for CondQueue {}

impl CondQueue {
    const fn new() -> CondQueue {
        CondQueue {
            head: std::ptr::null(),
            tail: std::ptr::null(),
        }
    }

    fn push_back(&mut self, n: &Node) {
        n.next.set(std::ptr::null());
        if self.tail.is_null() {
            self.head = n;
        } else {
            // SAFETY: queued nodes are alive (see `CondQueue`).
            unsafe { (*self.tail).next.set(n) };
        }
        self.tail = n;
    }

    /// Removes and returns the node waiting for ticket `seq`.
    fn remove_seq(&mut self, seq: u32) -> Option<*const Node> {
        let mut prev: *const Node = std::ptr::null();
        let mut cur = self.head;
        while !cur.is_null() {
            // SAFETY: queued nodes are alive (see `CondQueue`).
            let c = unsafe { &*cur };
            if c.seq.get() == seq {
                let next = c.next.get();
                if prev.is_null() {
                    self.head = next;
                } else {
                    // SAFETY: `prev` is the queued node before `cur`, alive
                    // while queued (see `CondQueue`); we hold the queue's lock.
                    unsafe { (*prev).next.set(next) };
                }
                if self.tail == cur {
                    self.tail = prev;
                }
                return Some(cur);
            }
            prev = cur;
            cur = c.next.get();
        }
        None
    }

    /// Empties the queue, returning its former head (a chain through
    /// `next`).
    fn take_all(&mut self) -> *const Node {
        let h = self.head;
        self.head = std::ptr::null();
        self.tail = std::ptr::null();
        h
    }
}

/// A condition variable for [`Mutex`] (Go's `sync.Cond`): `wait` unlocks
/// the mutex and parks until notified, then locks it again. Notifications
/// are not lost (a waiter takes its place in line while it still holds the
/// mutex) and there are no spurious wake-ups (except that a
/// [`wait_timeout`](Condvar::wait_timeout) reaching its deadline wakes
/// every waiter of the condvar), but as always the condition
/// may have changed again by the time the waiter holds the mutex: check it
/// in a loop, or use [`wait_while`](Condvar::wait_while).
///
/// One condvar may be used with several mutexes (each wait with the one
/// it holds).
pub struct Condvar {
    /// Next ticket to hand to a waiter.
    wait: AtomicU32,
    /// Tickets below this have been notified (written under `queue`).
    notify: AtomicU32,
    queue: crate::lock::Mutex<CondQueue>,
}

impl Condvar {
    /// A new condition variable.
    pub const fn new() -> Condvar {
        Condvar {
            wait: AtomicU32::new(0),
            notify: AtomicU32::new(0),
            queue: crate::lock::Mutex::new(CondQueue::new()),
        }
    }

    /// Unlocks the guard's mutex, parks until notified, and locks the
    /// mutex again.
    pub fn wait<'a, T: ?Sized>(&self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        // Take a ticket while the mutex is held: a notifier that changed
        // the condition under the mutex must see it.
        let t = self.wait.fetch_add(1, Ordering::SeqCst);
        let mutex = guard.lock;
        drop(guard);
        self.wait_ticket(t);
        mutex.raw.lock(WaitReason::SyncMutexLock);
        MutexGuard {
            lock: mutex,
            _not_auto: PhantomData,
        }
    }

    /// [`wait`](Condvar::wait), giving up after `timeout`: returns the
    /// guard (the mutex locked again) and whether the time ran out.
    ///
    /// At the deadline a runtime timer notifies *all* waiters of the
    /// condvar (the simple way to reach this one without losing a
    /// notification meant for another): the others may see that as a
    /// spurious wake-up, which code that re-checks its condition in a loop
    /// (as it should) handles. Starts the runtime if nothing did.
    pub fn wait_timeout<'a, T: ?Sized>(
        &self,
        guard: MutexGuard<'a, T>,
        timeout: Duration,
    ) -> (MutexGuard<'a, T>, WaitTimeoutResult) {
        crate::runtime::ensure_started();
        let start = Instant::now();
        // The ticket first (as `wait` does, under the mutex), the timer
        // after: a timer that fired before the ticket was taken would
        // notify nobody and leave this wait without an end.
        let t = self.wait.fetch_add(1, Ordering::SeqCst);
        let mutex = guard.lock;
        drop(guard);
        let alarm = Arc::new(Alarm {
            cv: crate::lock::Mutex::new(self as *const Condvar as usize),
            armed: AtomicBool::new(true),
        });
        let p = crate::timer::add_task(crate::timer::when_after(timeout), alarm.clone(), 0);
        // For deadlock detection: this wait has a timer.
        let _hold = crate::group::Hold::current();
        let g = crate::sched::current_g();
        if let Some(g) = g {
            g.timed_wait.set(true);
        }
        self.wait_ticket(t);
        mutex.raw.lock(WaitReason::SyncMutexLock);
        let guard = MutexGuard {
            lock: mutex,
            _not_auto: PhantomData,
        };
        // Running again, maybe on another M: still the same G, writing
        // its own field.
        if let Some(g) = g {
            g.timed_wait.set(false);
        }
        // Disarm: after this the timer never touches `self` (it holds the
        // alarm's lock while it does).
        *alarm.cv.lock() = 0;
        if alarm.armed.swap(false, Ordering::AcqRel) {
            crate::timer::stopped(p);
        }
        let timed_out = start.elapsed() >= timeout;
        (guard, WaitTimeoutResult(timed_out))
    }

    /// Waits while `condition` holds for the data, which it may also
    /// modify: returns with the mutex locked and `condition` false.
    pub fn wait_while<'a, T: ?Sized, F>(
        &self,
        mut guard: MutexGuard<'a, T>,
        mut condition: F,
    ) -> MutexGuard<'a, T>
    where
        F: FnMut(&mut T) -> bool,
    {
        while condition(&mut *guard) {
            guard = self.wait(guard);
        }
        guard
    }

    #[inline(never)]
    fn wait_ticket(&self, t: u32) {
        let node = Node::new();
        node.seq.set(t);
        node.wait(WaitReason::SyncCondWait, &mut || {
            let mut q = self.queue.lock();
            if ticket_before(t, self.notify.load(Ordering::SeqCst)) {
                return false; // notified already
            }
            q.push_back(&node);
            true
        });
    }

    /// Wakes one waiter (the one waiting longest), if any.
    #[inline(never)]
    pub fn notify_one(&self) {
        // Fast path: nobody took a ticket since the last notification.
        if self.wait.load(Ordering::SeqCst) == self.notify.load(Ordering::SeqCst) {
            return;
        }
        let mut q = self.queue.lock();
        let t = self.notify.load(Ordering::SeqCst);
        if t == self.wait.load(Ordering::SeqCst) {
            return;
        }
        self.notify.store(t.wrapping_add(1), Ordering::SeqCst);
        // The ticket's owner may not have queued yet: then it will see
        // `notify` past its ticket and not park.
        let n = q.remove_seq(t);
        drop(q);
        if let Some(n) = n {
            // SAFETY: dequeued by us under the lock, not woken yet.
            unsafe { wake_node(n) };
        }
    }

    /// Wakes every waiter.
    #[inline(never)]
    pub fn notify_all(&self) {
        if self.wait.load(Ordering::SeqCst) == self.notify.load(Ordering::SeqCst) {
            return;
        }
        let mut q = self.queue.lock();
        self.notify
            .store(self.wait.load(Ordering::SeqCst), Ordering::SeqCst);
        let mut n = q.take_all();
        drop(q);
        while !n.is_null() {
            // SAFETY: the chain was dequeued by us under the lock; read the
            // link before the wake, after which the node may be gone.
            let next = unsafe { (*n).next.get() };
            // SAFETY: `n` was dequeued by us under the lock and nobody else can
            // reach it, so it is alive and not woken yet: `wake_node`'s
            // contract.
            unsafe { wake_node(n) };
            n = next;
        }
    }
}

impl Default for Condvar {
    fn default() -> Condvar {
        Condvar::new()
    }
}

impl fmt::Debug for Condvar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condvar").finish_non_exhaustive()
    }
}

/// What [`Condvar::wait_timeout`] tells besides the guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitTimeoutResult(bool);

impl WaitTimeoutResult {
    /// Whether the wait returned because its time ran out.
    pub fn timed_out(&self) -> bool {
        self.0
    }
}

/// The timer of a `Condvar::wait_timeout`: at the deadline it notifies
/// the condvar, unless the waiter has disarmed it.
struct Alarm {
    /// The condvar's address, 0 once disarmed. The timer holds this lock
    /// while it notifies, so the waiter's disarming waits for that, and
    /// the condvar outlives every use here.
    cv: crate::lock::Mutex<usize>,
    /// Mirror of "not disarmed yet" for the heap (`live`).
    armed: AtomicBool,
}

impl crate::timer::TimerTask for Alarm {
    fn fire(self: Arc<Self>, _seq: u64) {
        self.armed.store(false, Ordering::Release);
        let cv = self.cv.lock();
        if *cv != 0 {
            // SAFETY: a non-zero address is a condvar whose timed waiter
            // has not disarmed the alarm yet; it cannot return (and the
            // condvar cannot go away) before it takes this lock.
            unsafe { (*(*cv as *const Condvar)).notify_all() };
        }
    }

    fn live(&self, _seq: u64) -> bool {
        self.armed.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticket_order_wraps() {
        assert!(ticket_before(1, 2));
        assert!(!ticket_before(2, 2));
        assert!(ticket_before(u32::MAX, 0));
        assert!(!ticket_before(0, u32::MAX));
    }

    #[test]
    fn cond_queue_remove_and_take() {
        let (a, b, c) = (Node::new(), Node::new(), Node::new());
        a.seq.set(1);
        b.seq.set(2);
        c.seq.set(3);
        let mut q = CondQueue::new();
        q.push_back(&a);
        q.push_back(&b);
        q.push_back(&c);
        assert_eq!(q.remove_seq(3), Some(&c as *const Node));
        assert_eq!(q.remove_seq(1), Some(&a as *const Node));
        assert_eq!(q.remove_seq(1), None);
        q.push_back(&a);
        let h = q.take_all();
        assert_eq!(h, &b as *const Node);
        assert_eq!(b.next.get(), &a as *const Node);
        assert!(q.take_all().is_null());
    }
}
