//! Claims: who completes a blocked channel operation (or a whole
//! `select`), and how to wake its party; `Blocker`, one blocked party.
//!
//! Part of `gort::chan`; the design is in that module's docs.

use crate::g::WaitReason;
use crate::note::Note;
use crate::timer::TimerTask;
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Nobody has decided the blocked operation yet.
pub(super) const WAITING: usize = 0;
/// The deadline decided it.
pub(super) const TIMED_OUT: usize = usize::MAX;

/// How to wake a blocked party.
#[derive(Clone, Copy)]
pub(super) enum Party {
    Unset,
    /// A goroutine parked by `sched::park`.
    Goroutine(*mut crate::g::G),
    /// A thread sleeping on a note (on its stack).
    Note(*const Note),
}

/// The decision word of one blocked operation (see the module docs).
pub(crate) struct Claim {
    pub(super) state: AtomicUsize,
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
    pub(super) fn new() -> Claim {
        Claim {
            state: AtomicUsize::new(WAITING),
            party: Cell::new(Party::Unset),
            timer_p: AtomicUsize::new(usize::MAX),
        }
    }

    pub(super) fn try_win(&self, outcome: usize) -> bool {
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
    pub(super) unsafe fn wake(this: *const Claim) {
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
pub(super) fn wake_opt(w: Option<*const Claim>) {
    if let Some(c) = w {
        // SAFETY: the claim was won by this thread under a channel lock
        // that is released now; see `Claim::wake`.
        unsafe { Claim::wake(c) };
    }
}

/// The blocked party's side: everything it needs on its stack while its
/// nodes are queued. Must not move once a node points at it (it is only
/// ever used in place, through `&self`).
pub(super) struct Blocker {
    note: Note,
    /// The claim of untimed waits and of threads.
    local: Claim,
    /// The claim of a goroutine's timed wait, shared with its timer.
    timed: Option<Arc<Claim>>,
    thread: bool,
    deadline: Option<Instant>,
}

impl Blocker {
    pub(super) fn new(deadline: Option<Instant>) -> Blocker {
        let thread = crate::sched::must_block_thread();
        Blocker {
            note: Note::new(),
            local: Claim::new(),
            timed: (!thread && deadline.is_some()).then(|| Arc::new(Claim::new())),
            thread,
            deadline,
        }
    }

    pub(super) fn claim(&self) -> *const Claim {
        match &self.timed {
            Some(c) => Arc::as_ptr(c),
            None => &self.local,
        }
    }

    /// Blocks until the claim is decided and returns the outcome. The
    /// caller's nodes are queued and `held` holds their channels' locks;
    /// they are released once the caller can be woken (module docs, 1).
    pub(super) fn block<H>(&self, reason: WaitReason, held: H) -> usize {
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
            let me = crate::sched::current_g();
            if let Some(g) = me {
                g.timed_wait.set(timed);
            }
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
                // Running again (maybe on another M): still the same G,
                // writing its own field.
                if let Some(g) = me {
                    g.timed_wait.set(false);
                }
            }
        }
        claim.state.load(Ordering::Acquire)
    }

    /// After the wait: a timed goroutine woken by a real wake-up leaves a
    /// dead timer entry behind; tell its heap.
    pub(super) fn finish(&self, outcome: usize) {
        if let Some(c) = &self.timed {
            if outcome != TIMED_OUT && outcome != WAITING {
                crate::timer::stopped(c.timer_p.load(Ordering::Relaxed));
            }
        }
    }
}
