//! The channel itself: wait-queue nodes (Go's `sudog`), the sender and
//! receiver queues, the buffer, and `Chan`, the shared state behind the
//! public ends.
//!
//! Part of `gort::chan`; the design is in that module's docs.

use super::claim::*;
use crate::g::WaitReason;
use crate::lock::Mutex;
use std::cell::{Cell, UnsafeCell};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// One blocked operation on one channel. Lives on the blocked party's
/// stack (inside a select case, or a local of `send`/`recv`). Every field
/// but the slot's contents after the wake is accessed under the channel
/// lock.
pub(super) struct Node<T> {
    claim: Cell<*const Claim>,
    /// What a waker stores in the claim when it wins this node.
    outcome: Cell<usize>,
    /// Others may compete for the claim (select, timeout): wakers CAS.
    contested: Cell<bool>,
    /// The value: a sender's, or the one handed to a receiver.
    slot: UnsafeCell<Option<T>>,
    /// Set by the waker: true if the operation happened, false if the
    /// channel was closed.
    pub(super) success: Cell<bool>,
    queued: Cell<bool>,
    prev: Cell<*const Node<T>>,
    next: Cell<*const Node<T>>,
}

impl<T> Node<T> {
    pub(super) fn new(value: Option<T>) -> Node<T> {
        Node {
            claim: Cell::new(std::ptr::null()),
            outcome: Cell::new(1),
            contested: Cell::new(false),
            slot: UnsafeCell::new(value),
            success: Cell::new(false),
            queued: Cell::new(false),
            prev: Cell::new(std::ptr::null()),
            next: Cell::new(std::ptr::null()),
        }
    }

    pub(super) fn arm(&self, claim: *const Claim, outcome: usize, contested: bool) {
        self.claim.set(claim);
        self.outcome.set(outcome);
        self.contested.set(contested);
    }

    /// Tries to decide the node's operation for this waker.
    ///
    /// # Safety
    /// The node was just unlinked under its channel lock, which is held.
    pub(super) unsafe fn win(&self) -> bool {
        // SAFETY: the claim outlives every node pointing at it while
        // queued, and we hold the lock the node was queued under.
        let c = unsafe { &*self.claim.get() };
        if self.contested.get() {
            c.try_win(self.outcome.get())
        } else {
            // Nobody else can reach an uncontested claim: its only node
            // was unlinked by us, under the lock.
            c.state.store(self.outcome.get(), Ordering::Release);
            true
        }
    }

    /// Takes the value out of the slot.
    ///
    /// # Safety
    /// No one else accesses the slot: under the channel lock while the
    /// node is reachable, or by its owner after the claim is decided.
    pub(super) unsafe fn take(&self) -> Option<T> {
        // SAFETY: exclusive access per the caller.
        unsafe { (*self.slot.get()).take() }
    }

    /// # Safety
    /// As for `take`.
    pub(super) unsafe fn put(&self, v: T) {
        // SAFETY: exclusive access per the caller.
        unsafe { *self.slot.get() = Some(v) };
    }
}

/// An intrusive FIFO of nodes (channel lock held for every operation).
pub(super) struct WaitQ<T> {
    head: *const Node<T>,
    tail: *const Node<T>,
}

impl<T> WaitQ<T> {
    pub(super) const fn new() -> WaitQ<T> {
        WaitQ {
            head: std::ptr::null(),
            tail: std::ptr::null(),
        }
    }

    /// # Safety
    /// Lock held; `n` stays alive and in place until unlinked.
    pub(super) unsafe fn push_back(&mut self, n: *const Node<T>) {
        // SAFETY: per the caller.
        let node = unsafe { &*n };
        node.prev.set(self.tail);
        node.next.set(std::ptr::null());
        node.queued.set(true);
        if self.tail.is_null() {
            self.head = n;
        } else {
            // SAFETY: queued nodes are alive (their owners unlink them
            // under the lock before returning).
            unsafe { (*self.tail).next.set(n) };
        }
        self.tail = n;
    }

    /// Unlinks `n` if it is still queued (here: a node is only ever
    /// queued on the queue its owner put it on).
    ///
    /// # Safety
    /// Lock held; `n` alive.
    pub(super) unsafe fn remove(&mut self, n: *const Node<T>) {
        // SAFETY: per the caller.
        let node = unsafe { &*n };
        if !node.queued.get() {
            return;
        }
        let (p, nx) = (node.prev.get(), node.next.get());
        if p.is_null() {
            self.head = nx;
        } else {
            // SAFETY: queued neighbours are alive.
            unsafe { (*p).next.set(nx) };
        }
        if nx.is_null() {
            self.tail = p;
        } else {
            // SAFETY: `nx` is the queued node after `p`, alive while queued; we
            // hold the channel's lock.
            unsafe { (*nx).prev.set(p) };
        }
        node.queued.set(false);
        node.prev.set(std::ptr::null());
        node.next.set(std::ptr::null());
    }

    /// Unlinks nodes from the front until one whose claim this caller
    /// wins; nodes decided elsewhere are dropped from the queue.
    ///
    /// # Safety
    /// Lock held.
    pub(super) unsafe fn dequeue_won(&mut self) -> Option<*const Node<T>> {
        while !self.head.is_null() {
            let n = self.head;
            // SAFETY: lock held; queued nodes are alive.
            unsafe {
                self.remove(n);
                if (*n).win() {
                    return Some(n);
                }
            }
        }
        None
    }
}

// ---------------------------------------------------------------------------
// The channel.

/// What the lock guards.
pub(super) struct State<T> {
    pub(super) buf: VecDeque<T>,
    pub(super) closed: bool,
    pub(super) recvq: WaitQ<T>,
    pub(super) sendq: WaitQ<T>,
}

pub(super) enum SendTry<T> {
    /// Done; wake this claim's party once unlocked.
    Done(Option<*const Claim>),
    Closed(T),
    WouldBlock(T),
}

pub(super) enum RecvTry<T> {
    Value(T, Option<*const Claim>),
    Closed,
    WouldBlock,
}

impl<T> State<T> {
    /// # Safety
    /// Channel lock held.
    pub(super) unsafe fn try_send(&mut self, cap: usize, v: T) -> SendTry<T> {
        if self.closed {
            return SendTry::Closed(v);
        }
        // SAFETY: lock held.
        if let Some(n) = unsafe { self.recvq.dequeue_won() } {
            // SAFETY: we won the node under the lock: its slot is ours
            // until we wake its party.
            unsafe {
                (*n).put(v);
                (*n).success.set(true);
                return SendTry::Done(Some((*n).claim.get()));
            }
        }
        if self.buf.len() < cap {
            self.buf.push_back(v);
            return SendTry::Done(None);
        }
        SendTry::WouldBlock(v)
    }

    /// # Safety
    /// Channel lock held.
    pub(super) unsafe fn try_recv(&mut self) -> RecvTry<T> {
        // SAFETY: lock held.
        if let Some(n) = unsafe { self.sendq.dequeue_won() } {
            // SAFETY: we won the node: its slot is ours until the wake.
            let sv = unsafe { (*n).take() };
            let Some(sv) = sv else {
                crate::fatal("chan: waiting sender without a value")
            };
            // A waiting sender means a full buffer: take the oldest value
            // and put the sender's at the back (cap 0: take it directly).
            let v = match self.buf.pop_front() {
                Some(front) => {
                    self.buf.push_back(sv);
                    front
                }
                None => sv,
            };
            // SAFETY: `n` is the sender node we won just now (dequeued under
            // the channel's lock); its party stays parked until woken through
            // the claim we return, so the node is alive.
            unsafe { (*n).success.set(true) };
            // SAFETY: the same node: alive until its party is woken through the
            // claim we return.
            return RecvTry::Value(v, Some(unsafe { (*n).claim.get() }));
        }
        if let Some(v) = self.buf.pop_front() {
            return RecvTry::Value(v, None);
        }
        if self.closed {
            return RecvTry::Closed;
        }
        RecvTry::WouldBlock
    }
}

/// How long an operation may wait.
#[derive(Clone, Copy)]
pub(super) enum Wait {
    Never,
    Forever,
    Until(Instant),
}

impl Wait {
    pub(super) fn timeout(d: Duration) -> Wait {
        match Instant::now().checked_add(d) {
            Some(t) => Wait::Until(t),
            None => Wait::Forever,
        }
    }
}

/// Why an operation did not happen.
pub(super) enum Fail {
    WouldBlock,
    Closed,
    TimedOut,
}

pub(super) struct Chan<T> {
    pub(super) lock: Mutex<()>,
    pub(super) state: UnsafeCell<State<T>>,
    pub(super) cap: usize,
    /// Mirror of `state.closed` (written under the lock).
    pub(super) closed: AtomicBool,
    pub(super) senders: AtomicUsize,
    pub(super) receivers: AtomicUsize,
}

// SAFETY: `state` is only accessed under `lock`; values of T move between
// threads, hence T: Send.
unsafe impl<T: Send> Send for Chan<T> {}
// SAFETY: shared `&Chan<T>` only moves whole T values between threads, under
// `lock`: `T: Send` suffices.
unsafe impl<T: Send> Sync for Chan<T> {}

impl<T> Chan<T> {
    /// The guarded state.
    ///
    /// # Safety
    /// `lock` held (by the caller or, in a select, by another case on
    /// the same channel) for as long as the reference is used.
    #[allow(clippy::mut_from_ref)]
    pub(super) unsafe fn st(&self) -> &mut State<T> {
        // SAFETY: per the caller.
        unsafe { &mut *self.state.get() }
    }

    #[inline(never)]
    pub(super) fn send(&self, v: T, wait: Wait) -> Result<(), (T, Fail)> {
        let guard = self.lock.lock();
        // SAFETY: locked.
        let st = unsafe { self.st() };
        // SAFETY: locked.
        let v = match unsafe { st.try_send(self.cap, v) } {
            SendTry::Done(w) => {
                drop(guard);
                wake_opt(w);
                return Ok(());
            }
            SendTry::Closed(v) => return Err((v, Fail::Closed)),
            SendTry::WouldBlock(v) => v,
        };
        let deadline = match wait {
            Wait::Never => return Err((v, Fail::WouldBlock)),
            Wait::Forever => None,
            Wait::Until(d) if Instant::now() >= d => return Err((v, Fail::TimedOut)),
            Wait::Until(d) => Some(d),
        };
        let blocker = Blocker::new(deadline);
        let node = Node::new(Some(v));
        node.arm(blocker.claim(), 1, deadline.is_some());
        // SAFETY: locked; the node stays in place until it is unlinked, by
        // a waker or below.
        unsafe { st.sendq.push_back(&node) };
        let outcome = blocker.block(WaitReason::ChanSend, guard);
        blocker.finish(outcome);
        if outcome == TIMED_OUT {
            let _g = self.lock.lock();
            // SAFETY: locked; nobody else decided the node, so its value
            // is still in its slot.
            unsafe {
                self.st().sendq.remove(&node);
                return Err((
                    node.take().expect("chan: timed-out send lost its value"),
                    Fail::TimedOut,
                ));
            }
        }
        // A waker unlinked the node and filled it before waking us.
        if node.success.get() {
            Ok(())
        } else {
            // SAFETY: decided: the slot is ours again.
            let v = unsafe { node.take() };
            Err((v.expect("chan: failed send lost its value"), Fail::Closed))
        }
    }

    #[inline(never)]
    pub(super) fn recv(&self, wait: Wait) -> Result<T, Fail> {
        let guard = self.lock.lock();
        // SAFETY: locked.
        let st = unsafe { self.st() };
        // SAFETY: locked.
        match unsafe { st.try_recv() } {
            RecvTry::Value(v, w) => {
                drop(guard);
                wake_opt(w);
                return Ok(v);
            }
            RecvTry::Closed => return Err(Fail::Closed),
            RecvTry::WouldBlock => {}
        }
        let deadline = match wait {
            Wait::Never => return Err(Fail::WouldBlock),
            Wait::Forever => None,
            Wait::Until(d) if Instant::now() >= d => return Err(Fail::TimedOut),
            Wait::Until(d) => Some(d),
        };
        let blocker = Blocker::new(deadline);
        let node = Node::new(None);
        node.arm(blocker.claim(), 1, deadline.is_some());
        // SAFETY: locked; the node stays in place until it is unlinked.
        unsafe { st.recvq.push_back(&node) };
        let outcome = blocker.block(WaitReason::ChanReceive, guard);
        blocker.finish(outcome);
        if outcome == TIMED_OUT {
            let _g = self.lock.lock();
            // SAFETY: locked.
            unsafe { self.st().recvq.remove(&node) };
            return Err(Fail::TimedOut);
        }
        if node.success.get() {
            // SAFETY: decided: the slot is ours.
            let v = unsafe { node.take() };
            Ok(v.expect("chan: woken receiver without a value"))
        } else {
            Err(Fail::Closed)
        }
    }

    /// Closes the channel; returns false if it was closed already.
    #[inline(never)]
    pub(super) fn close(&self) -> bool {
        let guard = self.lock.lock();
        // SAFETY: locked.
        let st = unsafe { self.st() };
        if st.closed {
            return false;
        }
        st.closed = true;
        self.closed.store(true, Ordering::Release);
        // Decide every waiter (success = false) and chain them through
        // their `next` links (they are unlinked, and their owners cannot
        // return before being woken); wake them after unlocking.
        let mut woken: *const Node<T> = std::ptr::null();
        for q in [&mut st.recvq, &mut st.sendq] {
            // SAFETY: locked.
            while let Some(n) = unsafe { q.dequeue_won() } {
                // SAFETY: won under the lock: ours until the wake.
                unsafe {
                    (*n).success.set(false);
                    (*n).next.set(woken);
                }
                woken = n;
            }
        }
        drop(guard);
        while !woken.is_null() {
            // SAFETY: read both before the wake, after which the node may
            // be gone.
            let (next, claim) = unsafe { ((*woken).next.get(), (*woken).claim.get()) };
            // SAFETY: won above; lock released.
            unsafe { Claim::wake(claim) };
            woken = next;
        }
        true
    }

    pub(super) fn len(&self) -> usize {
        let _g = self.lock.lock();
        // SAFETY: locked.
        unsafe { self.st().buf.len() }
    }
}
