//! The building block: a semaphore with FIFO wait queues (`Sema`), keyed
//! by address in a global table, and the wait nodes every primitive parks on.
//!
//! Part of `gort::sync`; the algorithms are described in that module's docs.

use crate::g::{WaitReason, G};
use crate::note::Note;
use std::cell::Cell;
use std::sync::atomic::{AtomicU32, Ordering};

/// One waiting party, on its own stack while it waits.
pub(super) struct Node {
    /// A parked goroutine (set on g0 before the node is published), or
    /// null for a thread, which then sleeps on `note`.
    g: Cell<*mut G>,
    note: Note,
    /// What the node waits on (the semaphore's address), for the shared
    /// semaphore queues.
    key: Cell<usize>,
    /// Next node waiting on the same key (queue lock held).
    pub(super) next: Cell<*const Node>,
    /// Semaphore queues: on the first node of a key, the last one.
    tail: Cell<*const Node>,
    /// Semaphore queues: on the first node of a key, the first node of the
    /// next key in the same root.
    next_key: Cell<*const Node>,
    /// Set by a handing-off releaser (queue lock held, before the wake):
    /// the token was taken on this waiter's behalf.
    ticket: Cell<bool>,
    /// The condvar ticket this node waits for (written before publishing).
    pub(super) seq: Cell<u32>,
}

impl Node {
    pub(super) fn new() -> Node {
        Node {
            g: Cell::new(std::ptr::null_mut()),
            note: Note::new(),
            key: Cell::new(0),
            next: Cell::new(std::ptr::null()),
            tail: Cell::new(std::ptr::null()),
            next_key: Cell::new(std::ptr::null()),
            ticket: Cell::new(false),
            seq: Cell::new(0),
        }
    }
}

impl Node {
    /// Parks the caller until a waker dequeues the node and calls
    /// `wake_node`. `publish` runs once the caller can be woken and either
    /// queues the node and returns true, or returns false to cancel the
    /// wait; it must record a cancellation itself (in a capture, before
    /// returning false): a published node may be woken, and its goroutine
    /// run elsewhere, before `publish` has even returned.
    ///
    /// A goroutine parks (`sched::park`; `publish` runs on g0 once its
    /// context is saved). A plain thread sleeps on the node's futex note,
    /// and so does a goroutine inside `syscall::blocking`: it holds no P,
    /// its thread is already accounted as blocked, and parking is not
    /// possible there (`sched::park` would panic — after the primitive had
    /// counted the caller as a waiter, corrupting it for everyone else).
    pub(super) fn wait(&self, reason: WaitReason, publish: &mut dyn FnMut() -> bool) {
        if crate::sched::must_block_thread() {
            if publish() {
                self.note.sleep();
            }
            return;
        }
        // The shape of `park::Waiter::wait`: nothing on the goroutine's
        // stack is written once `publish` has made it reachable (a waker
        // may already run it on another M); `publish`'s result goes back
        // to `park` in a register.
        crate::sched::park(reason, &mut |gp| {
            self.g.set(gp);
            publish()
        });
    }
}

/// Wakes `n`, which the caller has just dequeued.
///
/// # Safety
/// `n` was published in a queue, has been removed from it by the caller
/// and nobody woke it since; the caller must not touch it afterwards.
pub(super) unsafe fn wake_node(n: *const Node) {
    // SAFETY: by the contract a dequeued, un-woken node is alive.
    let gp = unsafe { (*n).g.get() };
    if gp.is_null() {
        // The thread may return as soon as the note is set; `wakeup` uses
        // the note's address afterwards only as a futex key.
        // SAFETY: a dequeued, un-woken node is alive (the contract); it is
        // dequeued, hence woken, only once, and `wakeup` touches the note only
        // through its atomic swap (the futex call uses the address as a key).
        unsafe { (*n).note.wakeup() };
    } else {
        // The goroutine parked (`g` was set on g0 before publication) and
        // only its dequeuer may ready it.
        crate::sched::ready(gp);
    }
}

/// The waiters of one semaphore root: for each key with waiters, a FIFO
/// of nodes; the FIFOs' first nodes are chained through `next_key` (Go
/// uses a treap; a chain suffices, few keys wait in one root at a time).
/// Only touched under the root's lock.
pub(super) struct KeyedQueue {
    heads: *const Node,
}

// SAFETY: the queue holds pointers to nodes on the stacks of waiting
// parties; they are only dereferenced under the root's lock, while the
// nodes are alive (a party cannot return before it is dequeued and woken).
unsafe impl Send for KeyedQueue {}

impl KeyedQueue {
    pub(super) const fn new() -> KeyedQueue {
        KeyedQueue {
            heads: std::ptr::null(),
        }
    }

    /// The first node waiting on `key` and the head before it in the chain
    /// (null if it is the first).
    pub(super) fn find(&self, key: usize) -> (*const Node, *const Node) {
        let mut prev: *const Node = std::ptr::null();
        let mut h = self.heads;
        while !h.is_null() {
            // SAFETY: queued nodes are alive (see `KeyedQueue`).
            let hr = unsafe { &*h };
            if hr.key.get() == key {
                break;
            }
            prev = h;
            h = hr.next_key.get();
        }
        (prev, h)
    }

    /// Makes the chain link after `prev` (or the chain start) point at `n`.
    pub(super) fn relink(&mut self, prev: *const Node, n: *const Node) {
        if prev.is_null() {
            self.heads = n;
        } else {
            // SAFETY: queued nodes are alive (see `KeyedQueue`).
            unsafe { (*prev).next_key.set(n) };
        }
    }

    /// Queues `n` on `key`: last, or with `lifo` first.
    pub(super) fn push(&mut self, key: usize, n: &Node, lifo: bool) {
        n.key.set(key);
        n.next.set(std::ptr::null());
        let (prev, h) = self.find(key);
        if h.is_null() {
            // First waiter on this key.
            n.tail.set(n);
            n.next_key.set(self.heads);
            self.heads = n;
            return;
        }
        // SAFETY: queued nodes are alive (see `KeyedQueue`).
        let hr = unsafe { &*h };
        if lifo {
            n.next.set(h);
            n.tail.set(hr.tail.get());
            n.next_key.set(hr.next_key.get());
            self.relink(prev, n);
        } else {
            // SAFETY: the tail of a queued node's list is itself a queued node,
            // alive while queued (see `KeyedQueue`).
            unsafe { (*hr.tail.get()).next.set(n) };
            hr.tail.set(n);
        }
    }

    /// Dequeues the first node waiting on `key`.
    pub(super) fn pop(&mut self, key: usize) -> Option<*const Node> {
        let (prev, h) = self.find(key);
        if h.is_null() {
            return None;
        }
        // SAFETY: queued nodes are alive (see `KeyedQueue`).
        let hr = unsafe { &*h };
        let next = hr.next.get();
        if next.is_null() {
            self.relink(prev, hr.next_key.get());
        } else {
            // SAFETY: `next` is the following queued node of the same key,
            // alive while queued (see `KeyedQueue`).
            let nr = unsafe { &*next };
            nr.tail.set(hr.tail.get());
            nr.next_key.set(hr.next_key.get());
            self.relink(prev, next);
        }
        Some(h)
    }
}

/// A root of the semaphore table: waiters of every semaphore whose
/// address hashes here. Padded to its own cache lines: the lock and
/// `nwait` must not share a line with the mutex words that lockers fight
/// over (measured: with the queue inside the mutex, 100 goroutines on one
/// mutex ran 2-3x slower).
#[repr(align(128))]
pub(super) struct SemaRoot {
    /// Parties enqueued or about to be (changed under `queue`'s lock).
    nwait: AtomicU32,
    queue: crate::lock::Mutex<KeyedQueue>,
}

impl SemaRoot {
    pub(super) const fn new() -> SemaRoot {
        SemaRoot {
            nwait: AtomicU32::new(0),
            queue: crate::lock::Mutex::new(KeyedQueue::new()),
        }
    }
}

/// Number of roots (Go's `semTabSize`, a prime).
pub(super) const SEMTAB_SIZE: usize = 251;

pub(super) static SEMTABLE: [SemaRoot; SEMTAB_SIZE] = [const { SemaRoot::new() }; SEMTAB_SIZE];

/// A counting semaphore whose waiters park (Go's `sema.go`): the count
/// lives in the object, the waiters in the global table, keyed by the
/// count's address.
pub(crate) struct Sema {
    pub(super) count: AtomicU32,
}

impl Sema {
    pub(crate) const fn new() -> Sema {
        Sema::with_count(0)
    }

    pub(super) const fn with_count(n: u32) -> Sema {
        Sema {
            count: AtomicU32::new(n),
        }
    }

    pub(super) fn key(&self) -> usize {
        &self.count as *const AtomicU32 as usize
    }

    pub(super) fn root(&self) -> &'static SemaRoot {
        &SEMTABLE[(self.key() >> 3) % SEMTAB_SIZE]
    }

    pub(super) fn try_acquire(&self) -> bool {
        let mut v = self.count.load(Ordering::SeqCst);
        while v != 0 {
            match self
                .count
                .compare_exchange_weak(v, v - 1, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return true,
                Err(cur) => v = cur,
            }
        }
        false
    }

    /// Takes a token, parking until one is available. `lifo` queues at the
    /// head (a mutex waiter that already waited once).
    #[inline(never)]
    pub(crate) fn acquire(&self, lifo: bool, reason: WaitReason) {
        if self.try_acquire() {
            return;
        }
        let root = self.root();
        let key = self.key();
        loop {
            let node = Node::new();
            let mut got = false;
            // `got` (written only when the wait is cancelled, before
            // anything is published) and `node.ticket` (written by the waker
            // before the wake) say what happened.
            node.wait(reason, &mut || {
                let mut q = root.queue.lock();
                // Count ourselves before re-checking the count: a releaser
                // adds to the count before it looks at `nwait` (both
                // SeqCst), so one of us sees the other.
                root.nwait.fetch_add(1, Ordering::SeqCst);
                if self.try_acquire() {
                    root.nwait.fetch_sub(1, Ordering::SeqCst);
                    got = true;
                    return false;
                }
                q.push(key, &node, lifo);
                // Published: from here on the node belongs to the queue.
                true
            });
            if got || node.ticket.get() || self.try_acquire() {
                return;
            }
            // Woken without a token (somebody took it first): wait again.
        }
    }

    /// Adds a token and wakes the first waiter, if any. With `handoff`
    /// the token goes to that waiter directly and the caller yields its P
    /// to it.
    #[inline(never)]
    pub(crate) fn release(&self, handoff: bool) {
        self.count.fetch_add(1, Ordering::SeqCst);
        let root = self.root();
        if root.nwait.load(Ordering::SeqCst) == 0 {
            return;
        }
        let mut q = root.queue.lock();
        if root.nwait.load(Ordering::SeqCst) == 0 {
            return;
        }
        // Nobody may wait on this key (the waiters are another key's):
        // then the token stays in the count.
        let Some(n) = q.pop(self.key()) else {
            return;
        };
        root.nwait.fetch_sub(1, Ordering::SeqCst);
        let ticket = handoff && self.try_acquire();
        if ticket {
            // SAFETY: `n` was dequeued under the lock and is not woken yet.
            unsafe { (*n).ticket.set(true) };
        }
        drop(q);
        // SAFETY: `n` was just dequeued by us; we do not touch it again.
        unsafe { wake_node(n) };
        if ticket {
            handoff_yield();
        }
    }
}

/// After a direct hand-off: let the woken goroutine (in this P's
/// `runnext`) run now instead of at our next block, as Go's `semrelease`
/// does. Plain threads do nothing.
pub(super) fn handoff_yield() {
    if !crate::sched::getg().is_null() {
        crate::sched::gosched();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_queue_fifo_lifo_per_key() {
        let nodes: Vec<Node> = (0..5).map(|_| Node::new()).collect();
        let p = |i: usize| &nodes[i] as *const Node;
        let mut q = KeyedQueue::new();
        q.push(10, &nodes[0], false);
        q.push(20, &nodes[1], false);
        q.push(10, &nodes[2], false);
        q.push(10, &nodes[3], true); // to the front of key 10
        q.push(20, &nodes[4], true);
        assert_eq!(q.pop(30), None);
        assert_eq!(q.pop(10), Some(p(3)));
        assert_eq!(q.pop(20), Some(p(4)));
        assert_eq!(q.pop(10), Some(p(0)));
        q.push(10, &nodes[3], false);
        assert_eq!(q.pop(20), Some(p(1)));
        assert_eq!(q.pop(20), None);
        assert_eq!(q.pop(10), Some(p(2)));
        assert_eq!(q.pop(10), Some(p(3)));
        assert_eq!(q.pop(10), None);
        assert!(q.heads.is_null());
    }
}
