//! `Waiter`: one blocked party — a goroutine or a plain thread — and the
//! race-free handshake that wakes it. The building block of join handles,
//! channels and the sync primitives.
//!
//! # Protocol
//!
//! The waiter lives on the blocked party's own stack for the duration of
//! `wait`. `wait(publish)` calls `publish` once the party can safely be
//! woken — for a goroutine that is on g0 after its registers are saved (see
//! `sched::park`); for a thread, inline. `publish` makes the waiter
//! reachable (puts its address in a wait queue) and returns true, or
//! returns false to cancel the wait (the condition became true meanwhile).
//!
//! A waker calls `Waiter::wake(ptr, token)`: the first wake wins (CAS on
//! `state`), stores `token` (what happened: which select case, closed, …)
//! and makes the party runnable. After `wake` returns, the waker must not
//! touch the waiter again: the party may have returned and popped it.
//!
//! | state | meaning |
//! |-------|---------|
//! | `WAITING` | published or about to be; nobody woke it yet |
//! | `WOKEN`   | a waker won; `token` is valid |

use crate::g::{WaitReason, G};
use crate::note::Note;
use std::cell::Cell;
use std::sync::atomic::{AtomicU32, Ordering};

const WAITING: u32 = 0;
const WOKEN: u32 = 1;

pub(crate) struct Waiter {
    /// The goroutine to ready, or null for a plain thread (then `note`).
    g: Cell<*mut G>,
    note: Note,
    state: AtomicU32,
    token: Cell<usize>,
}

// SAFETY: fields written by the waker (`token`) are published by the
// `state` CAS (release) and read by the party after it observed WOKEN
// (acquire); `g` is written before publication.
unsafe impl Sync for Waiter {}

impl Waiter {
    pub(crate) fn new() -> Waiter {
        Waiter {
            g: Cell::new(std::ptr::null_mut()),
            note: Note::new(),
            state: AtomicU32::new(WAITING),
            token: Cell::new(0),
        }
    }

    /// Blocks the caller until woken; returns the waker's token, or None
    /// if `publish` cancelled the wait. In a goroutine this parks the
    /// goroutine (not the thread) with `reason`; on a plain thread it
    /// blocks the thread.
    pub(crate) fn wait(
        &self,
        reason: WaitReason,
        publish: &mut dyn FnMut() -> bool,
    ) -> Option<usize> {
        // A goroutine inside `syscall::blocking` holds no P: it blocks its
        // thread, as channels and sync do there.
        if crate::sched::must_block_thread() {
            if !publish() {
                return None;
            }
            self.note.sleep();
        } else {
            // Nothing on this goroutine's stack may be written once
            // `publish` succeeded: a waker may already be running the
            // goroutine on another M. So only the cancel path records
            // anything.
            let mut cancelled = false;
            crate::sched::park(reason, &mut |gp| {
                self.g.set(gp);
                if publish() {
                    return true;
                }
                cancelled = true;
                false
            });
            if cancelled {
                return None;
            }
        }
        debug_assert_eq!(self.state.load(Ordering::Acquire), WOKEN);
        Some(self.token.get())
    }

    /// Wakes the waiter at `this` with `token` if nobody did yet; returns
    /// whether this call won.
    ///
    /// # Safety
    /// `this` must point at a waiter that was published and has not been
    /// woken-and-returned, i.e. the caller found it in a wait queue under
    /// the queue's lock (or equivalent), so it is still alive.
    pub(crate) unsafe fn wake(this: *const Waiter, token: usize) -> bool {
        // SAFETY: the caller guarantees the waiter is alive until it is
        // woken, which only this call can do from here on.
        let w = unsafe { &*this };
        if w.state
            .compare_exchange(WAITING, WOKEN, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false;
        }
        w.token.set(token);
        let gp = w.g.get();
        if gp.is_null() {
            // The thread may return as soon as the note is set: nothing of
            // `w` is touched after this call (futex_wake only uses the
            // address as a key).
            w.note.wakeup();
        } else {
            crate::sched::ready(gp);
        }
        true
    }
}
