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

mod condvar;
mod mutex;
mod once;
mod rwlock;
mod sema;
mod semaphore;
mod waitgroup;

pub use condvar::{Condvar, WaitTimeoutResult};
pub use mutex::{Mutex, MutexGuard};
pub use once::Once;
pub use rwlock::{RwLock, RwLockReadGuard, RwLockWriteGuard};
pub(crate) use sema::Sema;
pub use semaphore::{Barrier, BarrierWaitResult, Semaphore, SemaphorePermit};
pub use waitgroup::WaitGroup;
