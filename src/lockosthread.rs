//! `lock_os_thread`: wiring a goroutine to its OS thread (Go's
//! `LockOSThread`), for thread-affine code. The scheduler honours it:
//! while a goroutine is locked, only its M runs it and its M runs nothing
//! else (`sched`: `startlockedm`, `stoplockedm`).

use crate::g::G;
use crate::m::M;
use std::sync::atomic::Ordering;

/// Runs `f` with the calling M and its running goroutine, with preemption
/// held off so the goroutine stays on this M meanwhile. Does nothing
/// outside a goroutine.
fn with_current_g(f: impl FnOnce(&'static M, &G, *mut G)) {
    let Some(lm) = crate::m::LockedM::acquire() else {
        return;
    };
    let mp = lm.m();
    // `lm` keeps the goroutine on this M meanwhile.
    if let Some(g) = mp.curg_ref() {
        f(mp, g, mp.curg());
    }
}

/// Wires the calling goroutine to its current OS thread: until a matching
/// `unlock_os_thread`, it runs only on this thread, and no other goroutine
/// runs on it. Calls nest. Outside a goroutine it does nothing (a plain
/// thread is its own).
pub fn lock_os_thread() {
    with_current_g(|mp, g, gp| {
        g.locked.set(g.locked.get() + 1);
        g.lockedm.store(mp as *const M as *mut M, Ordering::Release);
        mp.lockedg.store(gp, Ordering::Release);
    });
}

/// Undoes one `lock_os_thread`; the last one lets the goroutine move
/// again. Unbalanced calls are ignored.
pub fn unlock_os_thread() {
    with_current_g(|mp, g, _| {
        let n = g.locked.get();
        if n == 0 {
            return;
        }
        g.locked.set(n - 1);
        if n == 1 {
            g.lockedm.store(std::ptr::null_mut(), Ordering::Release);
            mp.lockedg.store(std::ptr::null_mut(), Ordering::Release);
        }
    });
}
