//! `select`: the runtime half of `gort::select!` (cases, locking every
//! channel in address order, parking on one claim), and the macro.
//!
//! Part of `gort::chan`; the design is in that module's docs.

use super::claim::*;
use super::error::*;
use super::queue::*;
use super::*;
use crate::g::WaitReason;
use std::cell::Cell;
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

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
