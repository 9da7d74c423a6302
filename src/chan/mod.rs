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

mod claim;
mod error;
mod queue;
mod select;

use crate::lock::Mutex;
use crate::timer::TimerTask;
use queue::*;
use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use error::{
    RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError,
};
pub use select::MAX_SELECT_CASES;
#[doc(hidden)]
pub use select::{__select, RecvCase, SelectCase, SelectMode, SendCase};

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
