//! Channels (`gort::chan`): bounded multi-producer multi-consumer queues
//! with Go's semantics, and the runtime half of [`select!`](crate::select).
//!
//! ```no_run
//! use gort::chan::channel;
//! let sum: u64 = gort::run(|| {
//!     let (tx, rx) = channel::<u64>(0); // 0: a rendezvous
//!     let producer = gort::spawn(move || {
//!         for i in 1..=100 {
//!             tx.send(i).unwrap();
//!         }
//!         // dropping the last Sender closes the channel
//!     });
//!     let sum = rx.iter().sum();
//!     producer.join().unwrap();
//!     sum
//! });
//! assert_eq!(sum, 5050);
//! ```
//!
//! # Semantics
//!
//! - `channel(cap)`: up to `cap` values are buffered; `cap == 0` is a
//!   rendezvous (a send completes only when a receiver takes the value).
//! - `close` (on either end) is Go's: receivers first drain what is
//!   buffered, then get `Err`; a send on a closed channel returns the value
//!   in `Err` (Go panics); closing twice returns `false` (Go panics).
//!   Senders and receivers blocked at the moment of the close are woken
//!   with `Err`.
//! - **Dropping the last `Sender` — or the last `Receiver` — closes the
//!   channel** (Go has no such rule; Rust users expect it from std and
//!   crossbeam). So a consumer's `for v in &rx` ends when the producers are
//!   gone, and a producer blocked on a channel nobody can receive from gets
//!   `Err` instead of waiting forever. Values still buffered when the last
//!   handle goes are dropped with the channel.
//! - A goroutine that waits is parked (its M runs other goroutines) with
//!   wait reason `chan send`, `chan receive` or `select`; a plain thread
//!   (or a goroutine inside `syscall::blocking`) blocks its thread on a
//!   futex. Both can use the same channel at once.
//!
//! # Structure (Go's `hchan`)
//!
//! A `Chan` is a runtime lock (`crate::lock::Mutex<()>`) guarding a ring
//! buffer (`VecDeque`, allocated at its full capacity up front), a `closed`
//! flag, and two FIFO wait queues, `recvq` and `sendq`, of `Node`s (Go's
//! `sudog`). A node lives on the blocked party's own stack, holds the
//! value slot for the hand-off, and points at a `Claim`: the one word that
//! decides who completes the blocked operation, plus how to wake its party
//! (the parked goroutine, made runnable with `sched::ready`, or a `Note`
//! a thread sleeps on).
//!
//! The wait queues are never both non-empty with a live waiter, and a
//! live sender waits only while the buffer is full:
//!
//! | buffer               | `recvq`          | `sendq`          | a send…                             | a receive…                          |
//! |----------------------|------------------|------------------|-------------------------------------|-------------------------------------|
//! | empty                | empty            | empty            | buffers (cap > 0) or waits (cap 0)  | waits                               |
//! | empty                | receivers        | empty            | hands its value to the first one    | waits behind them                   |
//! | partly full          | empty            | empty            | buffers                             | takes the oldest                    |
//! | full (cap 0: always) | empty            | senders          | waits behind them                   | takes the oldest, moves the first sender's value into the buffer (cap 0: takes it directly) |
//! | closed               | empty            | empty            | fails                               | drains the buffer, then fails       |
//!
//! "First one" means the first whose claim the waker wins: a node of a
//! `select` already decided by another case (or a timed-out waiter) is
//! unlinked and skipped. Direct hand-off (Go's `send`/`recv` copy) saves a
//! trip through the buffer and lets the woken party return at once.
//!
//! # The claim protocol
//!
//! | `Claim::state` | meaning                                            |
//! |----------------|----------------------------------------------------|
//! | `WAITING` (0)  | nobody decided yet                                 |
//! | `k + 1`        | case `k` (0 for a plain send/receive) completed: its node was unlinked, and its slot and `success` filled, by the waker |
//! | `TIMED_OUT`    | the deadline won; the party unlinks its own nodes  |
//!
//! 1. The blocking party locks the channel (a `select`: every channel, in
//!    address order, each once), finds nothing ready, links its node(s),
//!    and parks *with the locks held*: they are released by the park
//!    callback, on g0 after the goroutine's context is saved (Go's
//!    `gopark(chanparkcommit)`), or inline on a thread. So no waker can
//!    see a node before its party can be woken. publish moves the lock
//!    guards off the goroutine stack before releasing the first one, and
//!    touches nothing of that stack afterwards.
//! 2. A waker, under the channel lock, unlinks the first node and wins its
//!    claim: a plain store when nobody else can compete (an untimed send
//!    or receive), else a CAS from `WAITING` (select, timeouts). It fills
//!    the slot and `success` (false: woken by `close`), releases the lock,
//!    and only then wakes the party (`sched::ready` / `Note::wakeup`), and
//!    touches nothing of the node or claim after that.
//! 3. A timeout wins the claim with `TIMED_OUT`: a thread by itself after
//!    its `Note` wait timed out (if it loses, it waits for the winner's
//!    wake-up, which is still coming); a goroutine through a runtime timer
//!    (`timer::TimerTask`) whose claim lives in an `Arc` shared with the
//!    timer, so a late timer never touches a returned goroutine's stack
//!    (the goroutine it readies is still parked: only the winner wakes
//!    it, and the party cannot return before being woken). A real wake-up marks the
//!    timer's heap entry dead (`timer::stopped`).
//! 4. Woken, a party reads its claim. A `select` (or a timed-out party)
//!    then locks its channels again and unlinks its remaining nodes: a
//!    waker that found one of them under that lock has finished with it.
//!    Only after that does the party return and its stack go away.
//!
//! The code that holds a channel lock is gort's own and not inlined into
//! user code (`#[inline(never)]` on the generic paths), so asynchronous
//! preemption never stops a goroutine holding one (`symbols.rs`); no user
//! code (drops of `T`) runs under a channel lock.
//!
//! # select
//!
//! [`select!`](crate::select) builds one case object per arm on the
//! stack and calls `__select`, which (like Go's `selectgo`) locks every
//! channel in address order, polls the cases in a uniformly random order
//! (a per-thread xorshift), completes the first ready one, or — unless
//! there is a `default` — links one node per case, all sharing one claim,
//! and parks. The first waker to win the claim picks the case.

use crate::g::WaitReason;
use crate::lock::Mutex;
use crate::note::Note;
use crate::timer::TimerTask;
use std::cell::{Cell, UnsafeCell};
use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, MutexGuard};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Claims: who completes a blocked operation, and how to wake its party.

/// Nobody has decided the blocked operation yet.
const WAITING: usize = 0;
/// The deadline decided it.
const TIMED_OUT: usize = usize::MAX;

/// How to wake a blocked party.
#[derive(Clone, Copy)]
enum Party {
    Unset,
    /// A goroutine parked by `sched::park`.
    Goroutine(*mut crate::g::G),
    /// A thread sleeping on a note (on its stack).
    Note(*const Note),
}

/// The decision word of one blocked operation (see the module docs).
pub(crate) struct Claim {
    state: AtomicUsize,
    /// Set before any node pointing here becomes visible; read by the
    /// winner only.
    party: Cell<Party>,
    /// Timed goroutine waits: the P whose heap holds the timeout.
    timer_p: AtomicUsize,
}

// SAFETY: `party` is written once before publication (under the channel
// locks that publish the nodes) and read afterwards by the single winner;
// the pointers it holds stay valid until the winner wakes the party.
unsafe impl Send for Claim {}
// SAFETY: `party` is written once before the claim is published (under the
// channel locks) and read afterwards by the single winner of `state`, an
// atomic; nothing else is shared.
unsafe impl Sync for Claim {}

impl Claim {
    fn new() -> Claim {
        Claim {
            state: AtomicUsize::new(WAITING),
            party: Cell::new(Party::Unset),
            timer_p: AtomicUsize::new(usize::MAX),
        }
    }

    fn try_win(&self, outcome: usize) -> bool {
        self.state
            .compare_exchange(WAITING, outcome, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Wakes the party of a claim this caller won.
    ///
    /// # Safety
    /// The caller won `this` and holds no channel lock of the party's. The
    /// claim and its party are alive until this call wakes them; nothing of
    /// them may be touched afterwards.
    unsafe fn wake(this: *const Claim) {
        // SAFETY: alive until the party is woken, below (caller's promise).
        let party = unsafe { (*this).party.get() };
        match party {
            // The goroutine is parked until this, the only wake-up.
            Party::Goroutine(gp) => crate::sched::ready(gp),
            // SAFETY: the note is alive until it is woken, here (caller's
            // promise); `wakeup` touches it only through its atomic swap (the
            // futex call uses the address as a key).
            // atomic swap (the futex call uses the address as a key).
            Party::Note(n) => unsafe { (*n).wakeup() },
            Party::Unset => crate::fatal("chan: waking a party that never blocked"),
        }
    }
}

/// A goroutine's timeout: the runtime timer holds the claim in an `Arc`.
impl TimerTask for Claim {
    fn fire(self: Arc<Self>, _seq: u64) {
        if self.try_win(TIMED_OUT) {
            // SAFETY: we won, so the party is still blocked (it cannot
            // return before being woken), and holds no lock of ours.
            unsafe { Claim::wake(Arc::as_ptr(&self)) };
        }
    }

    fn live(&self, _seq: u64) -> bool {
        self.state.load(Ordering::Relaxed) == WAITING
    }
}

/// Wakes the party of a won claim, if any (after the locks are released).
fn wake_opt(w: Option<*const Claim>) {
    if let Some(c) = w {
        // SAFETY: the claim was won by this thread under a channel lock
        // that is released now; see `Claim::wake`.
        unsafe { Claim::wake(c) };
    }
}

/// Whether the caller must block its thread rather than park: a plain
/// thread, or a goroutine inside `syscall::blocking` (which has no P).
fn blocks_thread() -> bool {
    let gp = crate::sched::getg();
    // SAFETY: the current goroutine is alive while it runs.
    gp.is_null() || unsafe { (*gp).status() } == crate::g::G_SYSCALL
}

/// The blocked party's side: everything it needs on its stack while its
/// nodes are queued. Must not move once a node points at it (it is only
/// ever used in place, through `&self`).
struct Blocker {
    note: Note,
    /// The claim of untimed waits and of threads.
    local: Claim,
    /// The claim of a goroutine's timed wait, shared with its timer.
    timed: Option<Arc<Claim>>,
    thread: bool,
    deadline: Option<Instant>,
}

impl Blocker {
    fn new(deadline: Option<Instant>) -> Blocker {
        let thread = blocks_thread();
        Blocker {
            note: Note::new(),
            local: Claim::new(),
            timed: (!thread && deadline.is_some()).then(|| Arc::new(Claim::new())),
            thread,
            deadline,
        }
    }

    fn claim(&self) -> *const Claim {
        match &self.timed {
            Some(c) => Arc::as_ptr(c),
            None => &self.local,
        }
    }

    /// Blocks until the claim is decided and returns the outcome. The
    /// caller's nodes are queued and `held` holds their channels' locks;
    /// they are released once the caller can be woken (module docs, 1).
    fn block<H>(&self, reason: WaitReason, held: H) -> usize {
        // SAFETY: points at `self.local` or into `self.timed`, both alive.
        let claim = unsafe { &*self.claim() };
        if self.thread {
            claim.party.set(Party::Note(&self.note));
            drop(held);
            let timed_out = match self.deadline {
                None => {
                    self.note.sleep();
                    false
                }
                Some(d) => !self
                    .note
                    .sleep_timeout(d.saturating_duration_since(Instant::now())),
            };
            if timed_out && !claim.try_win(TIMED_OUT) {
                // A waker won meanwhile; its wake-up is on the way and may
                // still touch the note: wait for it.
                self.note.sleep();
            }
        } else {
            let mut held = Some(held);
            let mut timer = self.timed.as_ref().map(|c| {
                let left = self.deadline.map_or(Duration::ZERO, |d| {
                    d.saturating_duration_since(Instant::now())
                });
                (c.clone(), crate::timer::when_after(left))
            });
            // `sched::park` directly rather than `park::Waiter`: the claim
            // already decides who wakes us (under the channel lock, before
            // the slot is filled), so Waiter's own first-wake-wins CAS
            // would be a second, redundant decision on every hand-off; and
            // a timer must not hold a pointer to a Waiter on our stack.
            // Same rule as Waiter's: after the first unlock below, nothing
            // of the goroutine's stack is touched.
            let timed = timer.is_some();
            let gp = crate::sched::getg();
            // SAFETY: the current goroutine (this one) is alive; owner write.
            unsafe { (*gp).timed_wait.set(timed) };
            crate::sched::park(reason, &mut |gp| {
                // On g0, the goroutine parked. Move everything off its
                // stack before the first lock is released: from then on it
                // may be woken, run elsewhere and return.
                let held = held.take();
                let timer = timer.take();
                claim.party.set(Party::Goroutine(gp));
                let p = timer.as_ref().map(|_| crate::timer::pick_p());
                if let (Some((c, _)), Some(p)) = (&timer, p) {
                    c.timer_p.store(p, Ordering::Relaxed);
                }
                drop(held);
                if let (Some((c, when)), Some(p)) = (timer, p) {
                    crate::timer::add_task_on(p, when, c, 0);
                }
                true
            });
            if timed {
                let gp = crate::sched::getg();
                // SAFETY: the goroutine is running again (it is the current G)
                // and writes its own field.
                unsafe { (*gp).timed_wait.set(false) };
            }
        }
        claim.state.load(Ordering::Acquire)
    }

    /// After the wait: a timed goroutine woken by a real wake-up leaves a
    /// dead timer entry behind; tell its heap.
    fn finish(&self, outcome: usize) {
        if let Some(c) = &self.timed {
            if outcome != TIMED_OUT && outcome != WAITING {
                crate::timer::stopped(c.timer_p.load(Ordering::Relaxed));
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Wait queue nodes (Go's sudog).

/// One blocked operation on one channel. Lives on the blocked party's
/// stack (inside a select case, or a local of `send`/`recv`). Every field
/// but the slot's contents after the wake is accessed under the channel
/// lock.
struct Node<T> {
    claim: Cell<*const Claim>,
    /// What a waker stores in the claim when it wins this node.
    outcome: Cell<usize>,
    /// Others may compete for the claim (select, timeout): wakers CAS.
    contested: Cell<bool>,
    /// The value: a sender's, or the one handed to a receiver.
    slot: UnsafeCell<Option<T>>,
    /// Set by the waker: true if the operation happened, false if the
    /// channel was closed.
    success: Cell<bool>,
    queued: Cell<bool>,
    prev: Cell<*const Node<T>>,
    next: Cell<*const Node<T>>,
}

impl<T> Node<T> {
    fn new(value: Option<T>) -> Node<T> {
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

    fn arm(&self, claim: *const Claim, outcome: usize, contested: bool) {
        self.claim.set(claim);
        self.outcome.set(outcome);
        self.contested.set(contested);
    }

    /// Tries to decide the node's operation for this waker.
    ///
    /// # Safety
    /// The node was just unlinked under its channel lock, which is held.
    unsafe fn win(&self) -> bool {
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
    unsafe fn take(&self) -> Option<T> {
        // SAFETY: exclusive access per the caller.
        unsafe { (*self.slot.get()).take() }
    }

    /// # Safety
    /// As for `take`.
    unsafe fn put(&self, v: T) {
        // SAFETY: exclusive access per the caller.
        unsafe { *self.slot.get() = Some(v) };
    }
}

/// An intrusive FIFO of nodes (channel lock held for every operation).
struct WaitQ<T> {
    head: *const Node<T>,
    tail: *const Node<T>,
}

impl<T> WaitQ<T> {
    const fn new() -> WaitQ<T> {
        WaitQ {
            head: std::ptr::null(),
            tail: std::ptr::null(),
        }
    }

    /// # Safety
    /// Lock held; `n` stays alive and in place until unlinked.
    unsafe fn push_back(&mut self, n: *const Node<T>) {
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
    unsafe fn remove(&mut self, n: *const Node<T>) {
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
    unsafe fn dequeue_won(&mut self) -> Option<*const Node<T>> {
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
struct State<T> {
    buf: VecDeque<T>,
    closed: bool,
    recvq: WaitQ<T>,
    sendq: WaitQ<T>,
}

enum SendTry<T> {
    /// Done; wake this claim's party once unlocked.
    Done(Option<*const Claim>),
    Closed(T),
    WouldBlock(T),
}

enum RecvTry<T> {
    Value(T, Option<*const Claim>),
    Closed,
    WouldBlock,
}

impl<T> State<T> {
    /// # Safety
    /// Channel lock held.
    unsafe fn try_send(&mut self, cap: usize, v: T) -> SendTry<T> {
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
    unsafe fn try_recv(&mut self) -> RecvTry<T> {
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
enum Wait {
    Never,
    Forever,
    Until(Instant),
}

impl Wait {
    fn timeout(d: Duration) -> Wait {
        match Instant::now().checked_add(d) {
            Some(t) => Wait::Until(t),
            None => Wait::Forever,
        }
    }
}

/// Why an operation did not happen.
enum Fail {
    WouldBlock,
    Closed,
    TimedOut,
}

struct Chan<T> {
    lock: Mutex<()>,
    state: UnsafeCell<State<T>>,
    cap: usize,
    /// Mirror of `state.closed` (written under the lock).
    closed: AtomicBool,
    senders: AtomicUsize,
    receivers: AtomicUsize,
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
    unsafe fn st(&self) -> &mut State<T> {
        // SAFETY: per the caller.
        unsafe { &mut *self.state.get() }
    }

    #[inline(never)]
    fn send(&self, v: T, wait: Wait) -> Result<(), (T, Fail)> {
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
    fn recv(&self, wait: Wait) -> Result<T, Fail> {
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
    fn close(&self) -> bool {
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

    fn len(&self) -> usize {
        let _g = self.lock.lock();
        // SAFETY: locked.
        unsafe { self.st().buf.len() }
    }
}

// ---------------------------------------------------------------------------
// Public API.

/// Creates a channel buffering up to `cap` values; `cap == 0` makes a
/// rendezvous channel (a send waits for a receiver). Both ends can be
/// cloned and shared between goroutines and threads.
pub fn channel<T>(cap: usize) -> (Sender<T>, Receiver<T>) {
    make(cap, VecDeque::with_capacity(cap))
}

/// Creates a channel without a bound: a send never waits (the buffer
/// grows as needed), a receive waits while it is empty. `capacity()`
/// reports `usize::MAX`. Like crossbeam's `unbounded` and tokio's
/// `unbounded_channel`; prefer a bound where a producer can outrun its
/// consumer.
pub fn unbounded<T>() -> (Sender<T>, Receiver<T>) {
    make(usize::MAX, VecDeque::new())
}

fn make<T>(cap: usize, buf: VecDeque<T>) -> (Sender<T>, Receiver<T>) {
    let chan = Arc::new(Chan {
        lock: Mutex::new(()),
        state: UnsafeCell::new(State {
            buf,
            closed: false,
            recvq: WaitQ::new(),
            sendq: WaitQ::new(),
        }),
        cap,
        closed: AtomicBool::new(false),
        senders: AtomicUsize::new(1),
        receivers: AtomicUsize::new(1),
    });
    (Sender { chan: chan.clone() }, Receiver { chan })
}

/// A channel of capacity 1 whose one sender is the returned timer task,
/// which sends the time once when it fires (`time::after`; one allocation
/// fewer than a task holding a `Sender`). If the entry is dropped unfired
/// (only when the channel is closed: `live` is false) the sender count is
/// left as it is, which no one can observe any more.
pub(crate) fn after_channel() -> (Arc<dyn TimerTask>, Receiver<Instant>) {
    let (tx, rx) = channel::<Instant>(1);
    // Turn the Sender into its Arc without running its Drop (which would
    // close the channel): the task keeps the sender count of 1.
    let tx = std::mem::ManuallyDrop::new(tx);
    // SAFETY: `tx` is never used or dropped again, so the Arc is moved
    // out exactly once.
    let chan = unsafe { std::ptr::read(&tx.chan) };
    (chan, rx)
}

/// The task of `after_channel`: the channel is its own timer task.
impl TimerTask for Chan<Instant> {
    fn fire(self: Arc<Self>, _seq: u64) {
        let _ = self.send(Instant::now(), Wait::Never);
        // The task was the only sender: it is gone now.
        if self.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.close();
        }
    }

    fn live(&self, _seq: u64) -> bool {
        !self.closed.load(Ordering::Relaxed)
    }
}

/// The sending end of a channel. Clone it for more senders; the channel
/// closes when the last `Sender` (or the last `Receiver`) is dropped.
pub struct Sender<T> {
    chan: Arc<Chan<T>>,
}

/// The receiving end of a channel. Clone it for more receivers (each value
/// goes to one of them); the channel closes when the last `Receiver` (or
/// the last `Sender`) is dropped.
pub struct Receiver<T> {
    chan: Arc<Chan<T>>,
}

impl<T> Sender<T> {
    /// Sends `value`, waiting while the channel is full (cap 0: until a
    /// receiver takes it). Returns the value in `Err` if the channel is
    /// closed, or gets closed while waiting.
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        self.chan
            .send(value, Wait::Forever)
            .map_err(|(v, _)| SendError(v))
    }

    /// Sends without waiting: `Full` if the buffer is full (cap 0: if no
    /// receiver is waiting), `Closed` if the channel is closed.
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        self.chan
            .send(value, Wait::Never)
            .map_err(|(v, f)| match f {
                Fail::Closed => TrySendError::Closed(v),
                _ => TrySendError::Full(v),
            })
    }

    /// Sends, waiting at most `timeout`.
    pub fn send_timeout(&self, value: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        self.chan
            .send(value, Wait::timeout(timeout))
            .map_err(|(v, f)| match f {
                Fail::Closed => SendTimeoutError::Closed(v),
                _ => SendTimeoutError::Timeout(v),
            })
    }

    /// Closes the channel (see the module docs). Returns true if this call
    /// closed it, false if it was closed already (Go panics there).
    pub fn close(&self) -> bool {
        self.chan.close()
    }

    /// Whether the channel is closed.
    pub fn is_closed(&self) -> bool {
        self.chan.closed.load(Ordering::Acquire)
    }

    /// Values buffered now.
    pub fn len(&self) -> usize {
        self.chan.len()
    }

    /// Whether no value is buffered now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The buffer size given to [`channel`].
    pub fn capacity(&self) -> usize {
        self.chan.cap
    }

    /// Whether both handles are ends of the same channel.
    pub fn same_channel(&self, other: &Sender<T>) -> bool {
        Arc::ptr_eq(&self.chan, &other.chan)
    }
}

impl<T> Receiver<T> {
    /// Receives a value, waiting while the channel is empty. `Err` once the
    /// channel is closed and every buffered value has been received.
    pub fn recv(&self) -> Result<T, RecvError> {
        self.chan.recv(Wait::Forever).map_err(|_| RecvError)
    }

    /// Receives without waiting.
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        self.chan.recv(Wait::Never).map_err(|f| match f {
            Fail::Closed => TryRecvError::Closed,
            _ => TryRecvError::Empty,
        })
    }

    /// Receives, waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.chan.recv(Wait::timeout(timeout)).map_err(|f| match f {
            Fail::Closed => RecvTimeoutError::Closed,
            _ => RecvTimeoutError::Timeout,
        })
    }

    /// Closes the channel (see the module docs). Returns true if this call
    /// closed it, false if it was closed already.
    pub fn close(&self) -> bool {
        self.chan.close()
    }

    /// Whether the channel is closed (values may still be buffered).
    pub fn is_closed(&self) -> bool {
        self.chan.closed.load(Ordering::Acquire)
    }

    /// Values buffered now.
    pub fn len(&self) -> usize {
        self.chan.len()
    }

    /// Whether no value is buffered now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The buffer size given to [`channel`].
    pub fn capacity(&self) -> usize {
        self.chan.cap
    }

    /// Whether both handles are ends of the same channel.
    pub fn same_channel(&self, other: &Receiver<T>) -> bool {
        Arc::ptr_eq(&self.chan, &other.chan)
    }

    /// A blocking iterator: yields values until the channel is closed and
    /// drained.
    pub fn iter(&self) -> Iter<'_, T> {
        Iter { rx: self }
    }

    /// A non-blocking iterator over the values available now.
    pub fn try_iter(&self) -> TryIter<'_, T> {
        TryIter { rx: self }
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.chan.senders.fetch_add(1, Ordering::Relaxed);
        Sender {
            chan: self.chan.clone(),
        }
    }
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        self.chan.receivers.fetch_add(1, Ordering::Relaxed);
        Receiver {
            chan: self.chan.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if self.chan.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.chan.close();
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        if self.chan.receivers.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.chan.close();
        }
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("capacity", &self.chan.cap)
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("capacity", &self.chan.cap)
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

/// Blocking iterator of [`Receiver::iter`].
#[derive(Debug)]
pub struct Iter<'a, T> {
    rx: &'a Receiver<T>,
}

impl<T> Iterator for Iter<'_, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.rx.recv().ok()
    }
}

/// Non-blocking iterator of [`Receiver::try_iter`].
#[derive(Debug)]
pub struct TryIter<'a, T> {
    rx: &'a Receiver<T>,
}

impl<T> Iterator for TryIter<'_, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.rx.try_recv().ok()
    }
}

/// Owning blocking iterator (`for v in rx`).
#[derive(Debug)]
pub struct IntoIter<T> {
    rx: Receiver<T>,
}

impl<T> Iterator for IntoIter<T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.rx.recv().ok()
    }
}

impl<'a, T> IntoIterator for &'a Receiver<T> {
    type Item = T;
    type IntoIter = Iter<'a, T>;
    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
}

impl<T> IntoIterator for Receiver<T> {
    type Item = T;
    type IntoIter = IntoIter<T>;
    fn into_iter(self) -> IntoIter<T> {
        IntoIter { rx: self }
    }
}

// ---------------------------------------------------------------------------
// Errors.

/// The channel was closed; the value that could not be sent.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SendError<T>(pub T);

/// Why [`Sender::try_send`] failed; both carry the value back.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum TrySendError<T> {
    /// The buffer is full (cap 0: no receiver is waiting).
    Full(T),
    Closed(T),
}

/// Why [`Sender::send_timeout`] failed; both carry the value back.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum SendTimeoutError<T> {
    Timeout(T),
    Closed(T),
}

/// The channel is closed and empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecvError;

/// Why [`Receiver::try_recv`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TryRecvError {
    /// Nothing buffered and no sender waiting.
    Empty,
    /// Closed and drained.
    Closed,
}

/// Why [`Receiver::recv_timeout`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecvTimeoutError {
    Timeout,
    /// Closed and drained.
    Closed,
}

impl<T> SendError<T> {
    /// The value that was not sent.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> TrySendError<T> {
    /// The value that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            TrySendError::Full(v) | TrySendError::Closed(v) => v,
        }
    }

    pub fn is_full(&self) -> bool {
        matches!(self, TrySendError::Full(_))
    }

    pub fn is_closed(&self) -> bool {
        matches!(self, TrySendError::Closed(_))
    }
}

impl<T> SendTimeoutError<T> {
    /// The value that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            SendTimeoutError::Timeout(v) | SendTimeoutError::Closed(v) => v,
        }
    }

    pub fn is_timeout(&self) -> bool {
        matches!(self, SendTimeoutError::Timeout(_))
    }

    pub fn is_closed(&self) -> bool {
        matches!(self, SendTimeoutError::Closed(_))
    }
}

impl<T> From<SendError<T>> for TrySendError<T> {
    fn from(e: SendError<T>) -> Self {
        TrySendError::Closed(e.0)
    }
}

impl<T> From<SendError<T>> for SendTimeoutError<T> {
    fn from(e: SendError<T>) -> Self {
        SendTimeoutError::Closed(e.0)
    }
}

impl From<RecvError> for TryRecvError {
    fn from(_: RecvError) -> Self {
        TryRecvError::Closed
    }
}

impl From<RecvError> for RecvTimeoutError {
    fn from(_: RecvError) -> Self {
        RecvTimeoutError::Closed
    }
}

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SendError(..)")
    }
}

impl<T> fmt::Debug for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("Full(..)"),
            TrySendError::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

impl<T> fmt::Debug for SendTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendTimeoutError::Timeout(_) => f.write_str("Timeout(..)"),
            SendTimeoutError::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sending on a closed channel")
    }
}

impl<T> fmt::Display for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("sending on a full channel"),
            TrySendError::Closed(_) => f.write_str("sending on a closed channel"),
        }
    }
}

impl<T> fmt::Display for SendTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendTimeoutError::Timeout(_) => f.write_str("timed out sending on a channel"),
            SendTimeoutError::Closed(_) => f.write_str("sending on a closed channel"),
        }
    }
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("receiving on a closed and empty channel")
    }
}

impl fmt::Display for TryRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryRecvError::Empty => f.write_str("receiving on an empty channel"),
            TryRecvError::Closed => f.write_str("receiving on a closed and empty channel"),
        }
    }
}

impl fmt::Display for RecvTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvTimeoutError::Timeout => f.write_str("timed out receiving on a channel"),
            RecvTimeoutError::Closed => f.write_str("receiving on a closed and empty channel"),
        }
    }
}

impl<T> std::error::Error for SendError<T> {}
impl<T> std::error::Error for TrySendError<T> {}
impl<T> std::error::Error for SendTimeoutError<T> {}
impl std::error::Error for RecvError {}
impl std::error::Error for TryRecvError {}
impl std::error::Error for RecvTimeoutError {}

// ---------------------------------------------------------------------------
// select: the runtime half of `gort::select!`.

/// Most cases one `select!` may have.
pub const MAX_SELECT_CASES: usize = 32;

mod sealed {
    /// Opaque: a party to wake once every lock is released.
    pub struct Wake(pub(super) Option<*const super::Claim>);

    /// Opaque: the claim every node of one select points at.
    pub struct ClaimRef(pub(super) *const super::Claim);

    /// What polling a case found.
    pub enum Polled {
        NotReady,
        Ready(Wake),
    }

    pub trait Sealed {}
}

use sealed::{ClaimRef, Polled, Wake};

/// One arm of a `select!` (implementation detail of the macro).
#[doc(hidden)]
pub trait SelectCase<'a>: sealed::Sealed {
    /// The channel's address: lock order, and one lock per channel.
    fn chan_id(&self) -> usize;
    /// Locks the case's channel.
    fn lock(&self) -> MutexGuard<'a, ()>;
    /// Completes the operation if it can without waiting.
    ///
    /// # Safety
    /// The channel's lock is held.
    unsafe fn poll(&mut self) -> Polled;
    /// Queues the case's node under `claim`.
    ///
    /// # Safety
    /// The lock is held; the case stays in place until `dequeue`.
    unsafe fn enqueue(&mut self, claim: &ClaimRef, outcome: usize);
    /// Unlinks the node if it is still queued.
    ///
    /// # Safety
    /// The lock is held.
    unsafe fn dequeue(&mut self);
    /// The claim chose this case: take the result from the node.
    ///
    /// # Safety
    /// The claim was decided for this case.
    unsafe fn complete(&mut self);
}

/// A `recv(rx)` arm.
#[doc(hidden)]
pub struct RecvCase<'a, T> {
    chan: &'a Chan<T>,
    node: Node<T>,
    result: Option<Result<T, RecvError>>,
}

impl<'a, T> RecvCase<'a, T> {
    pub fn new(rx: &'a Receiver<T>) -> Self {
        RecvCase {
            chan: &rx.chan,
            node: Node::new(None),
            result: None,
        }
    }

    /// The result of the chosen case.
    pub fn take_result(&mut self) -> Result<T, RecvError> {
        match self.result.take() {
            Some(r) => r,
            None => panic!("gort::select!: result of a case that was not chosen"),
        }
    }
}

impl<T> sealed::Sealed for RecvCase<'_, T> {}

impl<'a, T> SelectCase<'a> for RecvCase<'a, T> {
    fn chan_id(&self) -> usize {
        self.chan as *const Chan<T> as usize
    }

    fn lock(&self) -> MutexGuard<'a, ()> {
        self.chan.lock.lock()
    }

    unsafe fn poll(&mut self) -> Polled {
        // SAFETY: locked (caller).
        match unsafe { self.chan.st().try_recv() } {
            RecvTry::Value(v, w) => {
                self.result = Some(Ok(v));
                Polled::Ready(Wake(w))
            }
            RecvTry::Closed => {
                self.result = Some(Err(RecvError));
                Polled::Ready(Wake(None))
            }
            RecvTry::WouldBlock => Polled::NotReady,
        }
    }

    unsafe fn enqueue(&mut self, claim: &ClaimRef, outcome: usize) {
        self.node.arm(claim.0, outcome, true);
        // SAFETY: locked; the case stays in place until dequeued (caller).
        unsafe { self.chan.st().recvq.push_back(&self.node) };
    }

    unsafe fn dequeue(&mut self) {
        // SAFETY: locked (caller).
        unsafe { self.chan.st().recvq.remove(&self.node) };
    }

    unsafe fn complete(&mut self) {
        self.result = Some(if self.node.success.get() {
            // SAFETY: decided for us: the slot is ours.
            match unsafe { self.node.take() } {
                Some(v) => Ok(v),
                None => crate::fatal("select: woken receiver without a value"),
            }
        } else {
            Err(RecvError)
        });
    }
}

/// A `send(tx, value)` arm.
#[doc(hidden)]
pub struct SendCase<'a, T> {
    chan: &'a Chan<T>,
    /// Holds the value from the start (it is moved out on success).
    node: Node<T>,
    result: Option<Result<(), SendError<T>>>,
}

impl<'a, T> SendCase<'a, T> {
    pub fn new(tx: &'a Sender<T>, value: T) -> Self {
        SendCase {
            chan: &tx.chan,
            node: Node::new(Some(value)),
            result: None,
        }
    }

    /// The result of the chosen case.
    pub fn take_result(&mut self) -> Result<(), SendError<T>> {
        match self.result.take() {
            Some(r) => r,
            None => panic!("gort::select!: result of a case that was not chosen"),
        }
    }
}

impl<T> sealed::Sealed for SendCase<'_, T> {}

impl<'a, T> SelectCase<'a> for SendCase<'a, T> {
    fn chan_id(&self) -> usize {
        self.chan as *const Chan<T> as usize
    }

    fn lock(&self) -> MutexGuard<'a, ()> {
        self.chan.lock.lock()
    }

    unsafe fn poll(&mut self) -> Polled {
        // SAFETY: the node is not queued: its slot is ours.
        let Some(v) = (unsafe { self.node.take() }) else {
            crate::fatal("select: send case without a value")
        };
        // SAFETY: locked (caller).
        match unsafe { self.chan.st().try_send(self.chan.cap, v) } {
            SendTry::Done(w) => {
                self.result = Some(Ok(()));
                Polled::Ready(Wake(w))
            }
            SendTry::Closed(v) => {
                self.result = Some(Err(SendError(v)));
                Polled::Ready(Wake(None))
            }
            SendTry::WouldBlock(v) => {
                // SAFETY: the node is ours (this select arm's) and not
                // published yet; `put` stores the value it will offer.
                unsafe { self.node.put(v) };
                Polled::NotReady
            }
        }
    }

    unsafe fn enqueue(&mut self, claim: &ClaimRef, outcome: usize) {
        self.node.arm(claim.0, outcome, true);
        // SAFETY: locked; the case stays in place until dequeued (caller).
        unsafe { self.chan.st().sendq.push_back(&self.node) };
    }

    unsafe fn dequeue(&mut self) {
        // SAFETY: locked (caller).
        unsafe { self.chan.st().sendq.remove(&self.node) };
    }

    unsafe fn complete(&mut self) {
        self.result = Some(if self.node.success.get() {
            Ok(())
        } else {
            // SAFETY: decided for us: the slot is ours.
            match unsafe { self.node.take() } {
                Some(v) => Err(SendError(v)),
                None => crate::fatal("select: failed send lost its value"),
            }
        });
    }
}

/// How a select may wait (implementation detail of the macro).
#[doc(hidden)]
#[derive(Clone, Copy, Debug)]
pub enum SelectMode {
    /// No `default` or `timeout` arm.
    Block,
    /// A `default` arm: never wait.
    NonBlocking,
    /// A `timeout(d)` arm.
    Timeout(Duration),
}

/// A uniformly random number below `n` from a per-thread xorshift.
#[inline(never)]
fn fastrand_n(n: usize) -> usize {
    thread_local! {
        static RNG: Cell<u64> = const { Cell::new(0) };
    }
    RNG.with(|r| {
        let mut x = r.get();
        if x == 0 {
            // Seed: this thread's TLS address and the clock, mixed.
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            x = (r as *const Cell<u64> as u64 ^ t).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        r.set(x);
        // Lemire's multiply-shift: uniform enough for small n.
        (((x >> 32) * n as u64) >> 32) as usize
    })
}

/// The locks of a select, one per distinct channel.
type Held<'a> = [Option<MutexGuard<'a, ()>>; MAX_SELECT_CASES];

fn lock_all<'a>(cases: &[&mut (dyn SelectCase<'a> + '_)], order: &[u8]) -> Held<'a> {
    let mut held: Held<'a> = Default::default();
    let mut last = usize::MAX;
    for (k, &i) in order.iter().enumerate() {
        let c = &cases[i as usize];
        if c.chan_id() != last {
            last = c.chan_id();
            held[k] = Some(c.lock());
        }
    }
    held
}

/// Runs a select over `cases` (implementation detail of `select!`).
/// Returns the index of the case that completed, or `cases.len()` for
/// the `default` / `timeout` arm.
#[doc(hidden)]
#[inline(never)]
pub fn __select<'a>(cases: &mut [&mut (dyn SelectCase<'a> + '_)], mode: SelectMode) -> usize {
    let n = cases.len();
    assert!(
        n <= MAX_SELECT_CASES,
        "gort::select!: at most {MAX_SELECT_CASES} cases"
    );
    // Poll order: a uniformly random permutation (inside-out
    // Fisher-Yates). Lock order: by channel address.
    let mut poll = [0u8; MAX_SELECT_CASES];
    for i in 0..n {
        let j = fastrand_n(i + 1);
        poll[i] = poll[j];
        poll[j] = i as u8;
    }
    let mut order = [0u8; MAX_SELECT_CASES];
    for i in 0..n {
        order[i] = i as u8;
        let mut k = i;
        while k > 0 && cases[order[k - 1] as usize].chan_id() > cases[order[k] as usize].chan_id() {
            order.swap(k - 1, k);
            k -= 1;
        }
    }
    let (poll, order) = (&poll[..n], &order[..n]);
    let deadline = match mode {
        SelectMode::Timeout(d) => Instant::now().checked_add(d),
        _ => None,
    };

    let held = lock_all(cases, order);
    for &i in poll {
        // SAFETY: every case's channel is locked.
        if let Polled::Ready(Wake(w)) = unsafe { cases[i as usize].poll() } {
            drop(held);
            wake_opt(w);
            return i as usize;
        }
    }
    match (mode, deadline) {
        (SelectMode::NonBlocking, _) => return n,
        (SelectMode::Timeout(_), Some(d)) if Instant::now() >= d => return n,
        _ => {}
    }

    let blocker = Blocker::new(deadline);
    let claim = ClaimRef(blocker.claim());
    for &i in order {
        // SAFETY: locked; the cases stay in place (borrowed by us) until
        // dequeued below.
        unsafe { cases[i as usize].enqueue(&claim, i as usize + 1) };
    }
    let reason = if n == 0 {
        WaitReason::SelectNoCases
    } else {
        WaitReason::Select
    };
    let outcome = blocker.block(reason, held);
    blocker.finish(outcome);

    // Unlink every node still queued; once we hold each lock, no waker is
    // looking at our nodes any more.
    let held = lock_all(cases, order);
    for c in cases.iter_mut() {
        // SAFETY: locked.
        unsafe { c.dequeue() };
    }
    drop(held);
    match outcome {
        TIMED_OUT => n,
        k if (1..=n).contains(&k) => {
            // SAFETY: the claim was decided for case k - 1.
            unsafe { cases[k - 1].complete() };
            k - 1
        }
        _ => crate::fatal("select: woken without a decision"),
    }
}

/// Waits on several channel operations at once, like Go's `select`, and
/// runs the arm of the one that happens.
///
/// ```no_run
/// use std::time::Duration;
/// use gort::chan::channel;
/// gort::run(|| {
///     let (tx1, rx1) = channel::<i32>(1);
///     let (tx2, rx2) = channel::<&str>(0);
///     tx1.send(7).unwrap();
///     let _keep = (&tx2, &rx2);
///     let got = gort::select! {
///         recv(rx1) -> v => v.ok(),                  // v: Result<i32, RecvError>
///         send(tx2, "hi") -> res => { res.unwrap(); None } // res: Result<(), SendError<&str>>
///         timeout(Duration::from_millis(10)) => None,
///     };
///     assert_eq!(got, Some(7));
/// });
/// ```
///
/// Arms, separated by commas (optional after a `{ block }`):
///
/// - `recv(rx) -> pat => body`: receive from `rx` (a `Receiver` or a
///   reference to one); `pat` binds `Result<T, RecvError>` (`Err` once
///   the channel is closed and drained — a closed channel is always
///   ready, as in Go).
/// - `send(tx, value) -> pat => body`: send `value` on `tx`; `pat` binds
///   `Result<(), SendError<T>>` (`Err` with the value if the channel is
///   closed). If another arm is chosen, the value is dropped.
/// - `default => body` (optional): run if no operation is ready now; the
///   select never waits.
/// - `timeout(duration) => body` (optional): run if no operation happened
///   within `duration`. Not together with `default`.
///
/// Every channel and value expression is evaluated once, in order, before
/// anything else. If several operations are ready, one is chosen uniformly
/// at random (Go's rule). With no arm at all (`select! {}`) the caller
/// waits forever. A waiting goroutine is parked with wait reason
/// `select`; a plain thread blocks. The channel expressions stay borrowed
/// while the chosen arm's body runs. At most 32 `recv`/`send` arms.
#[macro_export]
macro_rules! select {
    ($($arms:tt)*) => {
        $crate::__select_parse!(
            [] [] []
            [(0 __c0) (1 __c1) (2 __c2) (3 __c3) (4 __c4) (5 __c5) (6 __c6) (7 __c7)
             (8 __c8) (9 __c9) (10 __c10) (11 __c11) (12 __c12) (13 __c13) (14 __c14) (15 __c15)
             (16 __c16) (17 __c17) (18 __c18) (19 __c19) (20 __c20) (21 __c21) (22 __c22) (23 __c23)
             (24 __c24) (25 __c25) (26 __c26) (27 __c27) (28 __c28) (29 __c29) (30 __c30) (31 __c31)]
            [$($arms)*]
        )
    };
}

/// Parses the arms of `select!`: `[cases] [default] [timeout] [labels]
/// [input]`. Each case becomes `(kind [args] index label pattern body)`.
#[doc(hidden)]
#[macro_export]
macro_rules! __select_parse {
    // All parsed.
    ($cases:tt $default:tt $timeout:tt $labels:tt []) => {
        $crate::__select_finish!($cases $default $timeout)
    };

    // recv
    ([$($c:tt)*] $d:tt $t:tt [($n:tt $l:ident) $($ls:tt)*]
     [recv($rx:expr) -> $res:pat => $body:block , $($rest:tt)*]) => {
        $crate::__select_parse!([$($c)* (recv [$rx] $n $l $res $body)] $d $t [$($ls)*] [$($rest)*])
    };
    ([$($c:tt)*] $d:tt $t:tt [($n:tt $l:ident) $($ls:tt)*]
     [recv($rx:expr) -> $res:pat => $body:block $($rest:tt)*]) => {
        $crate::__select_parse!([$($c)* (recv [$rx] $n $l $res $body)] $d $t [$($ls)*] [$($rest)*])
    };
    ([$($c:tt)*] $d:tt $t:tt [($n:tt $l:ident) $($ls:tt)*]
     [recv($rx:expr) -> $res:pat => $body:expr , $($rest:tt)*]) => {
        $crate::__select_parse!([$($c)* (recv [$rx] $n $l $res $body)] $d $t [$($ls)*] [$($rest)*])
    };
    ([$($c:tt)*] $d:tt $t:tt [($n:tt $l:ident) $($ls:tt)*]
     [recv($rx:expr) -> $res:pat => $body:expr]) => {
        $crate::__select_parse!([$($c)* (recv [$rx] $n $l $res $body)] $d $t [$($ls)*] [])
    };

    // send
    ([$($c:tt)*] $d:tt $t:tt [($n:tt $l:ident) $($ls:tt)*]
     [send($tx:expr, $v:expr) -> $res:pat => $body:block , $($rest:tt)*]) => {
        $crate::__select_parse!([$($c)* (send [$tx, $v] $n $l $res $body)] $d $t [$($ls)*] [$($rest)*])
    };
    ([$($c:tt)*] $d:tt $t:tt [($n:tt $l:ident) $($ls:tt)*]
     [send($tx:expr, $v:expr) -> $res:pat => $body:block $($rest:tt)*]) => {
        $crate::__select_parse!([$($c)* (send [$tx, $v] $n $l $res $body)] $d $t [$($ls)*] [$($rest)*])
    };
    ([$($c:tt)*] $d:tt $t:tt [($n:tt $l:ident) $($ls:tt)*]
     [send($tx:expr, $v:expr) -> $res:pat => $body:expr , $($rest:tt)*]) => {
        $crate::__select_parse!([$($c)* (send [$tx, $v] $n $l $res $body)] $d $t [$($ls)*] [$($rest)*])
    };
    ([$($c:tt)*] $d:tt $t:tt [($n:tt $l:ident) $($ls:tt)*]
     [send($tx:expr, $v:expr) -> $res:pat => $body:expr]) => {
        $crate::__select_parse!([$($c)* (send [$tx, $v] $n $l $res $body)] $d $t [$($ls)*] [])
    };

    // default
    ($c:tt [] $t:tt $ls:tt [default => $body:block , $($rest:tt)*]) => {
        $crate::__select_parse!($c [$body] $t $ls [$($rest)*])
    };
    ($c:tt [] $t:tt $ls:tt [default => $body:block $($rest:tt)*]) => {
        $crate::__select_parse!($c [$body] $t $ls [$($rest)*])
    };
    ($c:tt [] $t:tt $ls:tt [default => $body:expr , $($rest:tt)*]) => {
        $crate::__select_parse!($c [$body] $t $ls [$($rest)*])
    };
    ($c:tt [] $t:tt $ls:tt [default => $body:expr]) => {
        $crate::__select_parse!($c [$body] $t $ls [])
    };

    // timeout
    ($c:tt $d:tt [] $ls:tt [timeout($dur:expr) => $body:block , $($rest:tt)*]) => {
        $crate::__select_parse!($c $d [$dur, $body] $ls [$($rest)*])
    };
    ($c:tt $d:tt [] $ls:tt [timeout($dur:expr) => $body:block $($rest:tt)*]) => {
        $crate::__select_parse!($c $d [$dur, $body] $ls [$($rest)*])
    };
    ($c:tt $d:tt [] $ls:tt [timeout($dur:expr) => $body:expr , $($rest:tt)*]) => {
        $crate::__select_parse!($c $d [$dur, $body] $ls [$($rest)*])
    };
    ($c:tt $d:tt [] $ls:tt [timeout($dur:expr) => $body:expr]) => {
        $crate::__select_parse!($c $d [$dur, $body] $ls [])
    };

    // Errors.
    ($c:tt [$($d:tt)+] $t:tt $ls:tt [default $($rest:tt)*]) => {
        ::core::compile_error!("gort::select!: more than one `default` arm")
    };
    ($c:tt $d:tt [$($t:tt)+] $ls:tt [timeout $($rest:tt)*]) => {
        ::core::compile_error!("gort::select!: more than one `timeout` arm")
    };
    ($c:tt $d:tt $t:tt [] [$kind:ident $($rest:tt)*]) => {
        ::core::compile_error!("gort::select!: too many arms (at most 32 `recv`/`send` arms)")
    };
    ($c:tt $d:tt $t:tt $ls:tt [$($rest:tt)*]) => {
        ::core::compile_error!(
            "gort::select!: expected `recv(rx) -> v => body`, `send(tx, value) -> r => body`, \
             `default => body` or `timeout(duration) => body`"
        )
    };
}

/// Picks the mode from the `default`/`timeout` arms.
#[doc(hidden)]
#[macro_export]
macro_rules! __select_finish {
    ($cases:tt [$($d:tt)+] [$($t:tt)+]) => {
        ::core::compile_error!(
            "gort::select!: `default` and `timeout` arms cannot be combined (default never waits)"
        )
    };
    ($cases:tt [$body:tt] []) => {
        $crate::__select_gen!($cases $cases [] ($crate::chan::SelectMode::NonBlocking) $body)
    };
    ($cases:tt [] [$dur:expr, $body:tt]) => {
        $crate::__select_gen!($cases $cases [] ($crate::chan::SelectMode::Timeout($dur)) $body)
    };
    ($cases:tt [] []) => {
        $crate::__select_gen!($cases $cases [] ($crate::chan::SelectMode::Block)
            { ::core::unreachable!("gort::select!: no arm chosen") })
    };
}

/// Evaluates the channel (and value) expressions in order, binding one
/// case per arm, then runs the select and the chosen arm.
#[doc(hidden)]
#[macro_export]
macro_rules! __select_gen {
    ([(recv [$rx:expr] $n:tt $l:ident $res:tt $body:tt) $($more:tt)*] $all:tt [$($b:ident)*] $mode:tt $else:tt) => {
        match &$rx {
            $l => {
                let mut $l = $crate::chan::RecvCase::new($l);
                $crate::__select_gen!([$($more)*] $all [$($b)* $l] $mode $else)
            }
        }
    };
    ([(send [$tx:expr, $v:expr] $n:tt $l:ident $res:tt $body:tt) $($more:tt)*] $all:tt [$($b:ident)*] $mode:tt $else:tt) => {
        match &$tx {
            $l => {
                let mut $l = $crate::chan::SendCase::new($l, $v);
                $crate::__select_gen!([$($more)*] $all [$($b)* $l] $mode $else)
            }
        }
    };
    ([] [$(($kind:ident $args:tt $n:tt $l:ident $res:tt $body:tt))*] [$($b:ident)*] ($mode:expr) $else:tt) => {{
        let __sel = $crate::chan::__select(
            &mut [$(&mut $b as &mut dyn $crate::chan::SelectCase<'_>),*],
            $mode,
        );
        match __sel {
            $(
                $n => {
                    let $res = $l.take_result();
                    $body
                }
            )*
            _ => $else,
        }
    }};
}
