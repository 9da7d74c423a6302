//! Goroutine-aware synchronisation: [`Mutex`], [`RwLock`], [`Condvar`], [`Semaphore`], [`Barrier`],
//! [`WaitGroup`] and [`Once`]. A goroutine that has to wait is *parked*
//! (its M goes on running other goroutines); a plain thread that has to
//! wait blocks on a futex. Both can use the same object at once.
//!
//! # The building block: a semaphore with FIFO wait queues (`Sema`)
//!
//! Like Go's `runtime/sema.go`: the object holds a count of free tokens
//! (one `u32`); the waiters live in a global table of 251 roots, chosen by
//! hashing the count's address, each with a FIFO per address and a short
//! runtime lock (`crate::lock::Mutex`, which blocks the M for a few
//! instructions, never across a park). Roots are padded to their own cache
//! lines. Keeping the queue *out* of the object matters for speed, not
//! just size (a `Mutex<()>` is 8 bytes, as in Go): a first version embedded
//! the queue lock and waiter count next to the mutex state, and every
//! wake-up then hit the cache line the lockers were fighting over — 100
//! goroutines on one mutex ran 2-3x slower than Go; with the table they
//! run at Go's speed.
//!
//! - `acquire`: take a token if there is one; otherwise, from the parking
//!   path (`Node::wait`'s `publish`, on g0 once the goroutine's context
//!   is saved), lock the root, count ourselves in its `nwait`, re-check
//!   the count (a release may have raced), and enqueue — at the tail, or
//!   at the head for a mutex waiter that was already woken once and lost
//!   the race (`lifo`). Woken, take a token or loop.
//! - `release(handoff)`: add a token; if the root's `nwait` says somebody
//!   waits, dequeue the first waiter on this address and wake it. With
//!   `handoff` the releaser takes the token back on the waiter's behalf
//!   (`ticket`), so nobody can steal it in between, and yields its P so
//!   the waiter (now in the P's `runnext`) runs at once.
//!
//! The wait nodes live on the waiting party's own stack; a waker only
//! touches a node it found in the queue under the queue lock, and never
//! after waking it. A goroutine parks with `sched::park` and is woken with
//! `sched::ready`; a thread sleeps on a futex `Note` (`Node::wait` says
//! why this is not `park::Waiter`, and about `syscall::blocking`).
//! Wake-ups happen after the queue lock is dropped. The code that holds a
//! queue lock is gort's own (not inlined into user code), so asynchronous
//! preemption never stops a goroutine holding one (see `symbols.rs`).
//!
//! # Mutex: one atomic word, Go's algorithm
//!
//! ```text
//!  31 ........................ 3   2          1        0
//! +------------------------------+----------+--------+--------+
//! | waiters (parked or about to) | STARVING | WOKEN  | LOCKED |
//! +------------------------------+----------+--------+--------+
//! ```
//!
//! | bit      | meaning                                                     |
//! |----------|-------------------------------------------------------------|
//! | LOCKED   | somebody owns the mutex                                     |
//! | WOKEN    | a waiter is awake and competing (spinning, or just woken): `unlock` need not wake another |
//! | STARVING | starvation mode: ownership goes from `unlock` straight to the first waiter |
//! | waiters  | parties counted as waiting in the semaphore                 |
//!
//! **Normal mode** (throughput). `lock` is one CAS `0 → LOCKED`. On
//! failure it may spin briefly — at most 4 rounds of 30 `pause`s, and only
//! if that can help: more than one CPU, and for a goroutine more than one P
//! with another P busy (`procs > idle + spinning + 1`) and nothing queued
//! on its own P (Go's `sync_runtime_canSpin`). A spinner sets WOKEN so
//! that `unlock` does not wake a sleeper it would have to compete with.
//! Then it adds itself to the waiter count and parks on the semaphore.
//! `unlock` is one `fetch_sub(LOCKED)`; only if the result is non-zero
//! (waiters, or flags) does it take the slow path, which wakes one waiter
//! (setting WOKEN, decrementing the count) unless one is already awake or
//! the mutex was re-locked meanwhile. The woken waiter *competes* with new
//! arrivals, which are on a CPU already and usually win: cheap hand-overs,
//! but a waiter can lose again and again. A waiter that loses re-queues at
//! the head of the queue.
//!
//! **Starvation mode** (fairness). A waiter that has waited more than 1ms
//! (`STARVATION_THRESHOLD`) sets STARVING on its next attempt. Then:
//! `unlock` clears LOCKED and hands the semaphore token directly to the
//! first waiter (`release(handoff)`), yielding its P to it; new arrivals
//! neither spin nor take LOCKED, they queue at the tail. The woken waiter
//! finds STARVING, LOCKED clear and itself counted as a waiter, and in one
//! `fetch_add` takes LOCKED, removes itself from the count, and — if it is
//! the last waiter or waited less than 1ms — clears STARVING (back to
//! normal mode). So no waiter is bypassed for much more than 1ms.
//!
//! | state (flags)          | `lock` by a new arrival         | `unlock`                          |
//! |------------------------|---------------------------------|-----------------------------------|
//! | 0                      | CAS → LOCKED (fast path)        | —                                 |
//! | LOCKED                 | spin (if allowed), then queue   | `fetch_sub`; nothing to wake      |
//! | LOCKED + waiters       | spin (if allowed), then queue   | wake first waiter, set WOKEN      |
//! | LOCKED + WOKEN + ...   | spin, then queue                | nobody woken (one is awake)       |
//! | STARVING + ...         | queue at the tail, no spinning  | hand off to the first waiter      |
//!
//! # The others
//!
//! - [`RwLock`]: Go's `RWMutex`. A writer first takes an inner `Mutex`
//!   (excluding other writers), then subtracts `MAX_READERS` from
//!   `reader_count`, which makes it negative: from then on new readers
//!   park on `reader_sem` — *writer preference*, so a stream of readers
//!   cannot starve a writer. The writer parks on `writer_sem` until the
//!   readers already inside (moved to `reader_wait`) leave; the last one
//!   releases it. Unlocking the writer adds `MAX_READERS` back and releases
//!   exactly as many readers as had queued.
//! - [`Condvar`]: Go's `notifyList`. `wait` takes a ticket while still
//!   holding the mutex, unlocks, and parks unless `notify` has passed the
//!   ticket; `notify_one` advances `notify` by one and wakes the waiter with
//!   that ticket, `notify_all` sets it to the last ticket and wakes all.
//!   Tickets make lost wake-ups impossible and there are no spurious ones.
//! - [`WaitGroup`]: one 64-bit word, counter (high 32 bits, signed) and
//!   number of waiters (low 32 bits), plus a semaphore. The `add` that
//!   brings the counter to zero resets the word and releases every waiter.
//! - [`Once`]: a state byte and an internal mutex; concurrent callers park
//!   on the mutex (shown as `sync.Once`) until the first caller's closure
//!   has finished.

use crate::g::{WaitReason, G, G_SYSCALL};
use crate::note::Note;
use std::cell::{Cell, UnsafeCell};
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Wait queues and the semaphore.

/// One waiting party, on its own stack while it waits.
struct Node {
    /// A parked goroutine (set on g0 before the node is published), or
    /// null for a thread, which then sleeps on `note`.
    g: Cell<*mut G>,
    note: Note,
    /// What the node waits on (the semaphore's address), for the shared
    /// semaphore queues.
    key: Cell<usize>,
    /// Next node waiting on the same key (queue lock held).
    next: Cell<*const Node>,
    /// Semaphore queues: on the first node of a key, the last one.
    tail: Cell<*const Node>,
    /// Semaphore queues: on the first node of a key, the first node of the
    /// next key in the same root.
    next_key: Cell<*const Node>,
    /// Set by a handing-off releaser (queue lock held, before the wake):
    /// the token was taken on this waiter's behalf.
    ticket: Cell<bool>,
    /// The condvar ticket this node waits for (written before publishing).
    seq: Cell<u32>,
}

impl Node {
    fn new() -> Node {
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
    fn wait(&self, reason: WaitReason, publish: &mut dyn FnMut() -> bool) {
        let gp = crate::sched::getg();
        // SAFETY: the current goroutine is alive while it runs.
        if gp.is_null() || unsafe { (*gp).status() } == G_SYSCALL {
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
unsafe fn wake_node(n: *const Node) {
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
struct KeyedQueue {
    heads: *const Node,
}

// SAFETY: the queue holds pointers to nodes on the stacks of waiting
// parties; they are only dereferenced under the root's lock, while the
// nodes are alive (a party cannot return before it is dequeued and woken).
unsafe impl Send for KeyedQueue {}

impl KeyedQueue {
    const fn new() -> KeyedQueue {
        KeyedQueue {
            heads: std::ptr::null(),
        }
    }

    /// The first node waiting on `key` and the head before it in the chain
    /// (null if it is the first).
    fn find(&self, key: usize) -> (*const Node, *const Node) {
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
    fn relink(&mut self, prev: *const Node, n: *const Node) {
        if prev.is_null() {
            self.heads = n;
        } else {
            // SAFETY: queued nodes are alive (see `KeyedQueue`).
            unsafe { (*prev).next_key.set(n) };
        }
    }

    /// Queues `n` on `key`: last, or with `lifo` first.
    fn push(&mut self, key: usize, n: &Node, lifo: bool) {
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
    fn pop(&mut self, key: usize) -> Option<*const Node> {
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
struct SemaRoot {
    /// Parties enqueued or about to be (changed under `queue`'s lock).
    nwait: AtomicU32,
    queue: crate::lock::Mutex<KeyedQueue>,
}

impl SemaRoot {
    const fn new() -> SemaRoot {
        SemaRoot {
            nwait: AtomicU32::new(0),
            queue: crate::lock::Mutex::new(KeyedQueue::new()),
        }
    }
}

/// Number of roots (Go's `semTabSize`, a prime).
const SEMTAB_SIZE: usize = 251;

static SEMTABLE: [SemaRoot; SEMTAB_SIZE] = [const { SemaRoot::new() }; SEMTAB_SIZE];

/// A counting semaphore whose waiters park (Go's `sema.go`): the count
/// lives in the object, the waiters in the global table, keyed by the
/// count's address.
pub(crate) struct Sema {
    count: AtomicU32,
}

impl Sema {
    pub(crate) const fn new() -> Sema {
        Sema::with_count(0)
    }

    const fn with_count(n: u32) -> Sema {
        Sema {
            count: AtomicU32::new(n),
        }
    }

    fn key(&self) -> usize {
        &self.count as *const AtomicU32 as usize
    }

    fn root(&self) -> &'static SemaRoot {
        &SEMTABLE[(self.key() >> 3) % SEMTAB_SIZE]
    }

    fn try_acquire(&self) -> bool {
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
fn handoff_yield() {
    if !crate::sched::getg().is_null() {
        crate::sched::gosched();
    }
}

// ---------------------------------------------------------------------------
// RawMutex: the state word.

const LOCKED: u32 = 1;
const WOKEN: u32 = 2;
const STARVING: u32 = 4;
const WAITER_SHIFT: u32 = 3;
const ONE_WAITER: u32 = 1 << WAITER_SHIFT;

/// A waiter that waited longer than this switches the mutex to starvation
/// mode (Go's `starvationThresholdNs`).
const STARVATION_THRESHOLD: Duration = Duration::from_millis(1);

/// Spin rounds before parking, and `pause`s per round (Go's `active_spin`
/// and `active_spin_cnt`).
const ACTIVE_SPIN: u32 = 4;
const ACTIVE_SPIN_CNT: u32 = 30;

fn ncpu() -> usize {
    static NCPU: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *NCPU.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Whether spinning round `iter` can help (Go's `sync_runtime_canSpin`):
/// several CPUs, and for a goroutine another P running (the owner may be
/// on it) and no work queued on its own P.
fn can_spin(iter: u32) -> bool {
    if iter >= ACTIVE_SPIN || ncpu() <= 1 {
        return false;
    }
    let Some(mp) = crate::m::getm() else {
        return true; // a plain thread
    };
    let pp = mp.p();
    let Some(s) = crate::sched::try_sched() else {
        return false;
    };
    if pp.is_null() {
        return false;
    }
    let busy = s.npidle.load(Ordering::Relaxed) + s.nmspinning.load(Ordering::Relaxed) + 1;
    if s.procs() as u32 <= busy {
        return false;
    }
    // SAFETY: Ps live as long as the runtime (the leaked `allp`); a stale
    // `pp` (we may have moved since) only makes the answer approximate.
    unsafe { (*pp).runq.is_empty() }
}

fn do_spin() {
    for _ in 0..ACTIVE_SPIN_CNT {
        std::hint::spin_loop();
    }
}

/// The lock of [`Mutex`] without the data (see the module docs).
struct RawMutex {
    state: AtomicU32,
    sema: Sema,
}

impl RawMutex {
    const fn new() -> RawMutex {
        RawMutex {
            state: AtomicU32::new(0),
            sema: Sema::new(),
        }
    }

    #[inline]
    fn lock(&self, reason: WaitReason) {
        if self
            .state
            .compare_exchange_weak(0, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_slow(reason);
        }
    }

    #[inline]
    fn try_lock(&self) -> bool {
        let old = self.state.load(Ordering::Relaxed);
        old & (LOCKED | STARVING) == 0
            && self
                .state
                .compare_exchange(old, old | LOCKED, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
    }

    #[cold]
    #[inline(never)]
    fn lock_slow(&self, reason: WaitReason) {
        let mut wait_start: Option<Instant> = None;
        let mut starving = false;
        let mut awoke = false;
        let mut iter = 0;
        let mut old = self.state.load(Ordering::Relaxed);
        loop {
            // Spin while the mutex is held in normal mode, if that can help.
            if old & (LOCKED | STARVING) == LOCKED && can_spin(iter) {
                // Tell unlock not to wake a sleeper: we are awake.
                if !awoke
                    && old & WOKEN == 0
                    && old >> WAITER_SHIFT != 0
                    && self
                        .state
                        .compare_exchange_weak(
                            old,
                            old | WOKEN,
                            Ordering::Relaxed,
                            Ordering::Relaxed,
                        )
                        .is_ok()
                {
                    awoke = true;
                }
                do_spin();
                iter += 1;
                old = self.state.load(Ordering::Relaxed);
                continue;
            }
            let mut new = old;
            // A starving mutex is not ours to take: it goes to the queue.
            if old & STARVING == 0 {
                new |= LOCKED;
            }
            if old & (LOCKED | STARVING) != 0 {
                new += ONE_WAITER;
            }
            // Switch to starvation mode, unless it was unlocked meanwhile
            // (then unlock would find STARVING with no owner to hand over
            // from).
            if starving && old & LOCKED != 0 {
                new |= STARVING;
            }
            if awoke {
                if new & WOKEN == 0 {
                    crate::fatal("sync: inconsistent mutex state (woken bit lost)");
                }
                new &= !WOKEN;
            }
            match self
                .state
                .compare_exchange_weak(old, new, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => {
                    if old & (LOCKED | STARVING) == 0 {
                        return; // took it
                    }
                    let lifo = wait_start.is_some();
                    let start = *wait_start.get_or_insert_with(Instant::now);
                    self.sema.acquire(lifo, reason);
                    starving = starving || start.elapsed() > STARVATION_THRESHOLD;
                    old = self.state.load(Ordering::Acquire);
                    if old & STARVING != 0 {
                        // Handed to us: LOCKED is clear and we still count
                        // as a waiter. Take it and leave the count at once.
                        if old & (LOCKED | WOKEN) != 0 || old >> WAITER_SHIFT == 0 {
                            crate::fatal("sync: inconsistent mutex state (starvation hand-off)");
                        }
                        let mut delta = LOCKED.wrapping_sub(ONE_WAITER);
                        if !starving || old >> WAITER_SHIFT == 1 {
                            // Back to normal mode: we did not wait long, or
                            // nobody is left behind us.
                            delta = delta.wrapping_sub(STARVING);
                        }
                        self.state.fetch_add(delta, Ordering::Acquire);
                        return;
                    }
                    awoke = true;
                    iter = 0;
                }
                Err(cur) => old = cur,
            }
        }
    }

    #[inline]
    fn unlock(&self) {
        let new = self
            .state
            .fetch_sub(LOCKED, Ordering::Release)
            .wrapping_sub(LOCKED);
        if new != 0 {
            self.unlock_slow(new);
        }
    }

    #[cold]
    #[inline(never)]
    fn unlock_slow(&self, new: u32) {
        if new.wrapping_add(LOCKED) & LOCKED == 0 {
            crate::fatal("sync: unlock of unlocked mutex");
        }
        if new & STARVING != 0 {
            // Hand ownership to the first waiter; LOCKED stays clear, it
            // sets it itself. New arrivals see STARVING and queue.
            self.sema.release(true);
            return;
        }
        let mut old = new;
        loop {
            // Nobody to wake, or somebody already took the mutex, is awake,
            // or switched it to starvation mode: they will take care.
            if old >> WAITER_SHIFT == 0 || old & (LOCKED | WOKEN | STARVING) != 0 {
                return;
            }
            let new = (old - ONE_WAITER) | WOKEN;
            match self
                .state
                .compare_exchange_weak(old, new, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => {
                    self.sema.release(false);
                    return;
                }
                Err(cur) => old = cur,
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Mutex<T>.

/// A mutual-exclusion lock whose waiters park: a goroutine waiting for it
/// frees its thread for other goroutines (a plain thread blocks). Go's
/// `sync.Mutex`, with its two modes: normal mode favours throughput (a
/// running locker may overtake parked ones); once a waiter has waited
/// 1ms the mutex switches to starvation mode and is handed over in FIFO
/// order. See the module docs.
///
/// Unlike `std::sync::Mutex` there is **no poisoning**: a panic while the
/// lock is held just unlocks it (the guard is dropped during unwinding),
/// and the next locker sees the data as the panicking code left it. As in
/// Go, a guard may be dropped on another goroutine or thread than the one
/// that locked (it is `Send` when `T: Send`).
///
/// ```no_run
/// use std::sync::Arc;
/// let total = gort::run(|| {
///     let m = Arc::new(gort::sync::Mutex::new(0u64));
///     let hs: Vec<_> = (0..100)
///         .map(|_| {
///             let m = m.clone();
///             gort::spawn(move || *m.lock() += 1)
///         })
///         .collect();
///     hs.into_iter().for_each(|h| h.join().unwrap());
///     let v = *m.lock();
///     v
/// });
/// assert_eq!(total, 100);
/// ```
pub struct Mutex<T: ?Sized> {
    raw: RawMutex,
    data: UnsafeCell<T>,
}

// SAFETY: the mutex hands out access to `T` to one party at a time, so it
// may be shared (and moved) between threads when `T` may be moved.
unsafe impl<T: ?Sized + Send> Send for Mutex<T> {}
// SAFETY: shared `&Mutex<T>` only gives `&mut T` to the lock holder, one party
// at a time, so `T: Send` suffices (as for std's Mutex).
unsafe impl<T: ?Sized + Send> Sync for Mutex<T> {}

/// Access to the data of a locked [`Mutex`]; unlocks when dropped.
#[must_use = "if unused the Mutex will immediately unlock"]
pub struct MutexGuard<'a, T: ?Sized> {
    lock: &'a Mutex<T>,
    /// Opts out of the auto traits; the right ones are implemented below.
    _not_auto: PhantomData<*const ()>,
}

// SAFETY: the guard is a `&mut T` with an unlock attached; the mutex does
// not care which party unlocks it.
unsafe impl<T: ?Sized + Send> Send for MutexGuard<'_, T> {}
// SAFETY: sharing the guard shares `&T`.
unsafe impl<T: ?Sized + Sync> Sync for MutexGuard<'_, T> {}

impl<T> Mutex<T> {
    /// A new unlocked mutex holding `value`.
    pub const fn new(value: T) -> Mutex<T> {
        Mutex {
            raw: RawMutex::new(),
            data: UnsafeCell::new(value),
        }
    }

    /// Consumes the mutex and returns its data.
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: ?Sized> Mutex<T> {
    /// Locks the mutex, parking the goroutine (or blocking the thread)
    /// until it is free.
    ///
    /// Locking a mutex the caller already holds deadlocks, as in Go.
    /// Inside `gort::syscall::blocking` a goroutine has no P to give up, so
    /// there it waits like a plain thread (this holds for every wait in
    /// this module).
    #[inline]
    pub fn lock(&self) -> MutexGuard<'_, T> {
        self.raw.lock(WaitReason::SyncMutexLock);
        MutexGuard {
            lock: self,
            _not_auto: PhantomData,
        }
    }

    /// Locks the mutex if it is free right now (and not being handed to a
    /// starving waiter).
    #[inline]
    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        self.raw.try_lock().then(|| MutexGuard {
            lock: self,
            _not_auto: PhantomData,
        })
    }

    /// The data, through an exclusive borrow (no locking needed).
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }
}

impl<T: Default> Default for Mutex<T> {
    fn default() -> Mutex<T> {
        Mutex::new(T::default())
    }
}

impl<T> From<T> for Mutex<T> {
    fn from(value: T) -> Mutex<T> {
        Mutex::new(value)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Mutex");
        match self.try_lock() {
            Some(g) => d.field("data", &&*g),
            None => d.field("data", &format_args!("<locked>")),
        };
        d.finish_non_exhaustive()
    }
}

impl<T: ?Sized> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard proves we hold the lock.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard proves we hold the lock, exclusively.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for MutexGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        self.lock.raw.unlock();
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Display> fmt::Display for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}

// ---------------------------------------------------------------------------
// RwLock<T>.

/// More than any number of readers (Go's `rwmutexMaxReaders`).
const MAX_READERS: i32 = 1 << 30;

struct RawRwLock {
    /// Held by a writer for its whole write section (excludes writers).
    w: RawMutex,
    writer_sem: Sema,
    reader_sem: Sema,
    /// Readers inside or queued; minus `MAX_READERS` while a writer is in
    /// or waiting to get in.
    reader_count: AtomicI32,
    /// Readers a waiting writer still waits for.
    reader_wait: AtomicI32,
}

impl RawRwLock {
    const fn new() -> RawRwLock {
        RawRwLock {
            w: RawMutex::new(),
            writer_sem: Sema::new(),
            reader_sem: Sema::new(),
            reader_count: AtomicI32::new(0),
            reader_wait: AtomicI32::new(0),
        }
    }

    #[inline]
    fn read(&self) {
        if self.reader_count.fetch_add(1, Ordering::SeqCst) + 1 < 0 {
            // A writer is in or waiting: it goes first.
            self.reader_sem.acquire(false, WaitReason::SyncRWMutexRLock);
        }
    }

    fn try_read(&self) -> bool {
        let mut c = self.reader_count.load(Ordering::Relaxed);
        loop {
            if c < 0 {
                return false;
            }
            match self.reader_count.compare_exchange_weak(
                c,
                c + 1,
                Ordering::SeqCst,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(cur) => c = cur,
            }
        }
    }

    #[inline]
    fn read_unlock(&self) {
        let r = self.reader_count.fetch_sub(1, Ordering::SeqCst) - 1;
        if r < 0 {
            self.read_unlock_slow(r);
        }
    }

    #[cold]
    #[inline(never)]
    fn read_unlock_slow(&self, r: i32) {
        if r + 1 == 0 || r + 1 == -MAX_READERS {
            crate::fatal("sync: read unlock of unlocked RwLock");
        }
        // A writer waits; the last reader it waits for lets it in.
        if self.reader_wait.fetch_sub(1, Ordering::SeqCst) - 1 == 0 {
            self.writer_sem.release(false);
        }
    }

    fn write(&self) {
        self.w.lock(WaitReason::SyncRWMutexLock);
        // Announce the writer: new readers queue from now on.
        let r = self.reader_count.fetch_sub(MAX_READERS, Ordering::SeqCst);
        // Wait for the readers already inside.
        if r != 0 && self.reader_wait.fetch_add(r, Ordering::SeqCst) + r != 0 {
            self.writer_sem.acquire(false, WaitReason::SyncRWMutexLock);
        }
    }

    fn try_write(&self) -> bool {
        if !self.w.try_lock() {
            return false;
        }
        if self
            .reader_count
            .compare_exchange(0, -MAX_READERS, Ordering::SeqCst, Ordering::Relaxed)
            .is_err()
        {
            self.w.unlock();
            return false;
        }
        true
    }

    fn write_unlock(&self) {
        // Let readers in again.
        let r = self.reader_count.fetch_add(MAX_READERS, Ordering::SeqCst) + MAX_READERS;
        if r >= MAX_READERS {
            crate::fatal("sync: write unlock of unlocked RwLock");
        }
        // Release the readers that queued behind us.
        for _ in 0..r {
            self.reader_sem.release(false);
        }
        self.w.unlock();
    }
}

/// A reader-writer lock whose waiters park (Go's `sync.RWMutex`): any
/// number of readers or one writer. Writers are preferred: once a writer
/// waits, new readers wait behind it, so a stream of readers cannot starve
/// writers. No poisoning (see [`Mutex`]). Taking a read lock while holding
/// one can deadlock if a writer arrives in between, as in Go.
pub struct RwLock<T: ?Sized> {
    raw: RawRwLock,
    data: UnsafeCell<T>,
}

// SAFETY: readers share `&T` (needs `T: Sync`), writers get `&mut T`
// from any thread (needs `T: Send`).
unsafe impl<T: ?Sized + Send> Send for RwLock<T> {}
// SAFETY: several threads may hold `&T` at once through read guards (needs `T:
// Sync`) and one may get `&mut T` (needs `T: Send`).
unsafe impl<T: ?Sized + Send + Sync> Sync for RwLock<T> {}

/// Shared access to the data of a read-locked [`RwLock`].
#[must_use = "if unused the RwLock will immediately unlock"]
pub struct RwLockReadGuard<'a, T: ?Sized> {
    lock: &'a RwLock<T>,
    _not_auto: PhantomData<*const ()>,
}

// SAFETY: a read guard is a `&T` with an unlock attached.
unsafe impl<T: ?Sized + Sync> Send for RwLockReadGuard<'_, T> {}
// SAFETY: sharing a read guard shares only `&T`, which `T: Sync` allows.
unsafe impl<T: ?Sized + Sync> Sync for RwLockReadGuard<'_, T> {}

/// Exclusive access to the data of a write-locked [`RwLock`].
#[must_use = "if unused the RwLock will immediately unlock"]
pub struct RwLockWriteGuard<'a, T: ?Sized> {
    lock: &'a RwLock<T>,
    _not_auto: PhantomData<*const ()>,
}

// SAFETY: a write guard is a `&mut T` with an unlock attached.
unsafe impl<T: ?Sized + Send> Send for RwLockWriteGuard<'_, T> {}
// SAFETY: sharing it shares `&T`.
unsafe impl<T: ?Sized + Sync> Sync for RwLockWriteGuard<'_, T> {}

impl<T> RwLock<T> {
    /// A new unlocked lock holding `value`.
    pub const fn new(value: T) -> RwLock<T> {
        RwLock {
            raw: RawRwLock::new(),
            data: UnsafeCell::new(value),
        }
    }

    /// Consumes the lock and returns its data.
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: ?Sized> RwLock<T> {
    /// Locks for reading, parking while a writer holds or waits for the
    /// lock.
    #[inline]
    pub fn read(&self) -> RwLockReadGuard<'_, T> {
        self.raw.read();
        RwLockReadGuard {
            lock: self,
            _not_auto: PhantomData,
        }
    }

    /// Locks for reading if no writer holds or waits for the lock.
    pub fn try_read(&self) -> Option<RwLockReadGuard<'_, T>> {
        self.raw.try_read().then(|| RwLockReadGuard {
            lock: self,
            _not_auto: PhantomData,
        })
    }

    /// Locks for writing, parking until the writer before it and every
    /// reader inside have left.
    pub fn write(&self) -> RwLockWriteGuard<'_, T> {
        self.raw.write();
        RwLockWriteGuard {
            lock: self,
            _not_auto: PhantomData,
        }
    }

    /// Locks for writing if nobody holds the lock right now.
    pub fn try_write(&self) -> Option<RwLockWriteGuard<'_, T>> {
        self.raw.try_write().then(|| RwLockWriteGuard {
            lock: self,
            _not_auto: PhantomData,
        })
    }

    /// The data, through an exclusive borrow (no locking needed).
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }
}

impl<T: Default> Default for RwLock<T> {
    fn default() -> RwLock<T> {
        RwLock::new(T::default())
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("RwLock");
        match self.try_read() {
            Some(g) => d.field("data", &&*g),
            None => d.field("data", &format_args!("<locked>")),
        };
        d.finish_non_exhaustive()
    }
}

impl<T: ?Sized> Deref for RwLockReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: a read lock is held: no writer until the guard drops.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for RwLockReadGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        self.lock.raw.read_unlock();
    }
}

impl<T: ?Sized> Deref for RwLockWriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the write lock is held: exclusive access.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> DerefMut for RwLockWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the write lock is held: exclusive access.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for RwLockWriteGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.raw.write_unlock();
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLockReadGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLockWriteGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

// ---------------------------------------------------------------------------
// Condvar.

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
        let gp = crate::sched::getg();
        if !gp.is_null() {
            // SAFETY: the current goroutine is alive; owner write.
            unsafe { (*gp).timed_wait.set(true) };
        }
        self.wait_ticket(t);
        mutex.raw.lock(WaitReason::SyncMutexLock);
        let guard = MutexGuard {
            lock: mutex,
            _not_auto: PhantomData,
        };
        if !gp.is_null() {
            let gp = crate::sched::getg();
            // SAFETY: the goroutine is running again (it is the current G) and
            // writes its own field.
            unsafe { (*gp).timed_wait.set(false) };
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

// ---------------------------------------------------------------------------
// WaitGroup.

struct WgInner {
    /// Counter (high 32 bits, signed) and number of waiters (low 32).
    state: AtomicU64,
    sema: Sema,
}

/// Waits for a collection of goroutines (or threads) to finish (Go's
/// `sync.WaitGroup`): `add` the number of tasks, each calls `done`, and
/// `wait` parks until the counter is zero.
///
/// The handle is cheap to clone (an `Arc` inside); clones share one
/// counter, so give each task its own clone. As in Go, calls to `add`
/// with a positive delta that start when the counter is zero must happen
/// before `wait`, and a group may be reused only after every `wait` of the
/// previous round has returned.
///
/// ```no_run
/// gort::run(|| {
///     let wg = gort::sync::WaitGroup::new();
///     for _ in 0..10 {
///         wg.add(1);
///         let wg = wg.clone();
///         gort::spawn(move || wg.done());
///     }
///     wg.wait();
/// });
/// ```
#[derive(Clone)]
pub struct WaitGroup {
    inner: Arc<WgInner>,
}

impl WaitGroup {
    /// A new group with counter zero.
    pub fn new() -> WaitGroup {
        WaitGroup {
            inner: Arc::new(WgInner {
                state: AtomicU64::new(0),
                sema: Sema::new(),
            }),
        }
    }

    /// Adds `delta` (which may be negative) to the counter; when it reaches
    /// zero, every `wait` returns.
    ///
    /// # Panics
    /// If the counter goes negative (`sync: negative WaitGroup counter`),
    /// if `delta` does not fit the 32-bit counter, or on misuse Go also
    /// detects (`add` racing with the `wait` of a finishing round).
    pub fn add(&self, delta: isize) {
        let Ok(d) = i32::try_from(delta) else {
            panic!("sync: WaitGroup delta {delta} out of range");
        };
        let inner = &*self.inner;
        let inc = ((d as i64) << 32) as u64;
        let state = inner
            .state
            .fetch_add(inc, Ordering::SeqCst)
            .wrapping_add(inc);
        let v = (state >> 32) as i32;
        let w = state as u32;
        if v < 0 {
            panic!("sync: negative WaitGroup counter");
        }
        if w != 0 && d > 0 && v == d {
            panic!("sync: WaitGroup misuse: add called concurrently with wait");
        }
        if v > 0 || w == 0 {
            return;
        }
        // Counter zero with waiters: nobody may change the state now but
        // us (adds and waits at zero are misuse).
        if inner.state.load(Ordering::SeqCst) != state {
            panic!("sync: WaitGroup misuse: add called concurrently with wait");
        }
        inner.state.store(0, Ordering::SeqCst);
        for _ in 0..w {
            inner.sema.release(false);
        }
    }

    /// Decrements the counter by one.
    ///
    /// # Panics
    /// If the counter goes negative.
    pub fn done(&self) {
        self.add(-1);
    }

    /// Parks until the counter is zero (returns at once if it is).
    ///
    /// # Panics
    /// If the group was reused before this wait returned.
    pub fn wait(&self) {
        let inner = &*self.inner;
        let mut state = inner.state.load(Ordering::SeqCst);
        loop {
            if (state >> 32) as i32 == 0 {
                return;
            }
            match inner.state.compare_exchange_weak(
                state,
                state + 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => {
                    inner.sema.acquire(false, WaitReason::SyncWaitGroupWait);
                    if inner.state.load(Ordering::SeqCst) != 0 {
                        panic!("sync: WaitGroup is reused before previous wait has returned");
                    }
                    return;
                }
                Err(cur) => state = cur,
            }
        }
    }

    /// The counter now (racy: for diagnostics).
    pub fn count(&self) -> usize {
        ((self.inner.state.load(Ordering::SeqCst) >> 32) as i32).max(0) as usize
    }
}

impl Default for WaitGroup {
    fn default() -> WaitGroup {
        WaitGroup::new()
    }
}

impl fmt::Debug for WaitGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitGroup")
            .field("count", &self.count())
            .finish()
    }
}

// ---------------------------------------------------------------------------
// Once.

const ONCE_INCOMPLETE: u8 = 0;
const ONCE_DONE: u8 = 1;
const ONCE_POISONED: u8 = 2;

/// Runs a closure exactly once (Go's `sync.Once`). Callers that arrive
/// while the first one runs it park until it has finished, so when
/// `call_once` returns the closure has completed and its effects are
/// visible.
///
/// **A panic in the closure poisons the `Once`** (as `std::sync::Once`,
/// unlike Go, which marks it done): the panic propagates to the caller that
/// ran it, and every later or waiting `call_once` panics too, since the
/// initialisation they rely on never finished. `is_completed` stays false.
pub struct Once {
    state: AtomicU8,
    m: RawMutex,
}

/// The caller that runs the closure; its drop records the outcome and
/// unlocks.
struct OnceRunner<'a> {
    once: &'a Once,
    /// Still true when dropped by unwinding out of the closure.
    poison: bool,
}

impl Drop for OnceRunner<'_> {
    fn drop(&mut self) {
        let s = if self.poison {
            ONCE_POISONED
        } else {
            ONCE_DONE
        };
        self.once.state.store(s, Ordering::Release);
        self.once.m.unlock();
    }
}

impl Once {
    /// A new `Once` that has not run.
    pub const fn new() -> Once {
        Once {
            state: AtomicU8::new(ONCE_INCOMPLETE),
            m: RawMutex::new(),
        }
    }

    /// Runs `f` if no call of this `Once` has run it yet; otherwise waits
    /// for the call that runs it to finish (parking the goroutine).
    ///
    /// # Panics
    /// If `f` panics (the panic propagates), and in every call after the
    /// `Once` was poisoned by such a panic.
    // `f` is called from this (inlined) function, so that the frames under
    // it are the caller's: a long `f` stays preemptible.
    #[inline(always)]
    pub fn call_once<F: FnOnce()>(&self, f: F) {
        if self.state.load(Ordering::Acquire) == ONCE_DONE {
            return;
        }
        if let Some(mut runner) = self.begin() {
            f();
            runner.poison = false;
        }
    }

    /// The slow path: `Some` if the caller must run the closure (holding
    /// the internal mutex), `None` if it has been run.
    #[cold]
    #[inline(never)]
    fn begin(&self) -> Option<OnceRunner<'_>> {
        self.m.lock(WaitReason::SyncOnce);
        match self.state.load(Ordering::Acquire) {
            ONCE_INCOMPLETE => Some(OnceRunner {
                once: self,
                poison: true,
            }),
            ONCE_DONE => {
                self.m.unlock();
                None
            }
            _ => {
                self.m.unlock();
                panic!("gort::sync::Once instance has previously been poisoned");
            }
        }
    }

    /// Whether a `call_once` has completed (without panicking).
    pub fn is_completed(&self) -> bool {
        self.state.load(Ordering::Acquire) == ONCE_DONE
    }
}

impl Default for Once {
    fn default() -> Once {
        Once::new()
    }
}

impl fmt::Debug for Once {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Once")
            .field("completed", &self.is_completed())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_constants_are_disjoint() {
        assert_eq!(LOCKED | WOKEN | STARVING, 0b111);
        assert_eq!(ONE_WAITER, 8);
    }

    #[test]
    fn ticket_order_wraps() {
        assert!(ticket_before(1, 2));
        assert!(!ticket_before(2, 2));
        assert!(ticket_before(u32::MAX, 0));
        assert!(!ticket_before(0, u32::MAX));
    }

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

    #[test]
    fn small_mutex() {
        // Go's is 8 bytes; the waiters live in the shared table.
        assert_eq!(std::mem::size_of::<Mutex<()>>(), 8);
        assert_eq!(std::mem::align_of::<SemaRoot>(), 128);
    }

    #[test]
    fn mutex_on_threads_before_the_runtime() {
        // Plain threads only: must work without a runtime.
        let m = Arc::new(Mutex::new(0u64));
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        *m.lock() += 1;
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(*m.lock(), 40_000);
    }
}

// ---------------------------------------------------------------------------
// Semaphore and Barrier.

/// A counting semaphore (tokio's and Go's `x/sync/semaphore` idea): up to
/// `permits` holders at once; `acquire` parks the goroutine (or blocks a
/// plain thread) until a permit is free. Waiters are served in FIFO
/// order. Built on the same semaphore table as [`Mutex`].
///
/// ```no_run
/// gort::run(|| {
///     static LIMIT: gort::sync::Semaphore = gort::sync::Semaphore::new(4);
///     let hs: Vec<_> = (0..100)
///         .map(|_| gort::spawn(|| {
///             let _permit = LIMIT.acquire(); // at most 4 inside at once
///         }))
///         .collect();
///     hs.into_iter().for_each(|h| h.join().unwrap());
/// });
/// ```
pub struct Semaphore {
    sema: Sema,
}

impl Semaphore {
    /// A semaphore with `permits` free permits.
    pub const fn new(permits: u32) -> Semaphore {
        Semaphore {
            sema: Sema::with_count(permits),
        }
    }

    /// Takes a permit, waiting for one if none is free. The permit goes
    /// back when the returned guard drops.
    pub fn acquire(&self) -> SemaphorePermit<'_> {
        self.sema.acquire(false, WaitReason::SyncSemacquire);
        SemaphorePermit { sem: self }
    }

    /// Takes a permit if one is free now.
    pub fn try_acquire(&self) -> Option<SemaphorePermit<'_>> {
        // `then`, not `then_some`: a permit made and dropped on failure
        // would release a token nobody took.
        self.sema
            .try_acquire()
            .then(|| SemaphorePermit { sem: self })
    }

    /// Adds `n` permits (waking as many waiters).
    pub fn add_permits(&self, n: u32) {
        for _ in 0..n {
            self.sema.release(false);
        }
    }

    /// Free permits now (racy: for diagnostics).
    pub fn available_permits(&self) -> usize {
        self.sema.count.load(Ordering::SeqCst) as usize
    }
}

impl std::fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Semaphore")
            .field("available", &self.available_permits())
            .finish()
    }
}

/// A permit of a [`Semaphore`], given back on drop.
#[must_use = "the permit is given back at once if it is not kept"]
pub struct SemaphorePermit<'a> {
    sem: &'a Semaphore,
}

impl SemaphorePermit<'_> {
    /// Keeps the permit taken for good (the semaphore has one less).
    pub fn forget(self) {
        std::mem::forget(self)
    }
}

impl Drop for SemaphorePermit<'_> {
    fn drop(&mut self) {
        self.sem.sema.release(false);
    }
}

impl std::fmt::Debug for SemaphorePermit<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SemaphorePermit").finish_non_exhaustive()
    }
}

/// Lets `n` parties wait until all of them have arrived, like
/// `std::sync::Barrier`, parking goroutines (plain threads block). Reusable:
/// after all `n` arrive, the next `n` waits form a new round.
pub struct Barrier {
    n: usize,
    state: Mutex<(usize, u64)>,
    cv: Condvar,
}

/// What [`Barrier::wait`] returns: one party per round is the leader.
#[derive(Debug, Clone, Copy)]
pub struct BarrierWaitResult(bool);

impl BarrierWaitResult {
    /// Whether this party was the last to arrive (one per round).
    pub fn is_leader(&self) -> bool {
        self.0
    }
}

impl Barrier {
    /// A barrier for `n` parties (`0` behaves as `1`).
    pub fn new(n: usize) -> Barrier {
        Barrier {
            n,
            state: Mutex::new((0, 0)),
            cv: Condvar::new(),
        }
    }

    /// Waits until `n` parties (this one included) have called `wait`.
    pub fn wait(&self) -> BarrierWaitResult {
        let mut st = self.state.lock();
        st.0 += 1;
        if st.0 < self.n {
            let round = st.1;
            while st.1 == round {
                st = self.cv.wait(st);
            }
            return BarrierWaitResult(false);
        }
        *st = (0, st.1.wrapping_add(1));
        self.cv.notify_all();
        BarrierWaitResult(true)
    }
}

impl std::fmt::Debug for Barrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Barrier").field("n", &self.n).finish()
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
