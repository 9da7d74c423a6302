//! System calls that may block: `blocking(f)` brackets `f` with
//! `entersyscall`/`exitsyscall` so the goroutine's P can run other
//! goroutines meanwhile (docs/design.md, "System calls").
//!
//! # The P during a syscall
//!
//! `entersyscall` leaves the P in state `P_SYSCALL`, owned by nobody: the
//! M keeps a pointer (`oldp`) but gives up `m.p`. Then:
//! - the call returns quickly: `exitsyscall` takes the same P back with
//!   one CAS `P_SYSCALL` → `P_RUNNING` (the fast path: no lock, no wakeup);
//! - the call blocks: sysmon sees `syscalltick` unchanged for a round, CASes
//!   the P to `P_IDLE` and hands it to another M (`handoff_p`); on return
//!   `exitsyscall` tries an idle P, and failing that queues the goroutine
//!   on the global run queue and parks the M.
//!
//! Inside `f` the goroutine holds no P and is never preempted; every wait
//! there (channels, sync, join, `time::sleep`, `block_on`, sockets)
//! blocks the thread, as on a plain thread.

use crate::g::{G_RUNNING, G_SYSCALL};
use crate::m::{getm, After, LockedM};
use crate::p::{P_RUNNING, P_SYSCALL};
use std::sync::atomic::Ordering;

/// Runs `f`, a call that may block in the kernel, letting other goroutines
/// use this goroutine's processor meanwhile. Outside a goroutine it just
/// calls `f`. A panic in `f` propagates after the processor is reacquired.
///
/// Inside `f` the goroutine is off its processor: any wait there — a
/// channel, a `sync` lock, a join, `time::sleep`, `block_on`, a socket —
/// blocks the OS thread, as it would on a plain thread, and `yield_now`
/// yields the thread.
pub fn blocking<F, R>(f: F) -> R
where
    F: FnOnce() -> R,
{
    if !entersyscall() {
        return f();
    }
    struct Exit;
    impl Drop for Exit {
        fn drop(&mut self) {
            exitsyscall();
        }
    }
    let _exit = Exit;
    f()
}

/// Returns false if the caller is not a goroutine (nothing to do).
fn entersyscall() -> bool {
    let Some(mp) = getm() else { return false };
    let Some(g) = mp.curg_ref() else {
        return false;
    };
    if g.status() == G_SYSCALL {
        return false; // nested blocking(): already off the P
    }
    let _locked = LockedM::hold(mp);
    g.set_status(G_SYSCALL);
    if !crate::unannounced::check_p(mp) {
        // sysmon took our P while we sat in the kernel before (an
        // unannounced call): nothing to release; exitsyscall finds a P.
        mp.oldp.set(std::ptr::null_mut());
        return true;
    }
    crate::unannounced::stall_point(mp);
    // check_p says this M holds a P.
    let p = mp.held_p();
    crate::exectrace::syscall_enter(g, p); // exectrace
    p.syscalltick.fetch_add(1, Ordering::Relaxed);
    p.syscall_since
        .store(crate::timer::nanotime(), Ordering::Relaxed);
    mp.oldp.set(std::ptr::from_ref(p).cast_mut());
    mp.p.store(std::ptr::null_mut(), Ordering::Release);
    p.m.store(std::ptr::null_mut(), Ordering::Release);
    p.status.store(P_SYSCALL, Ordering::SeqCst);
    let s = crate::sched::sched();
    crate::sched::wake_sysmon(s);
    if !p.runq.is_empty() {
        // Others wait for this P: make sure sysmon looks soon.
        s.kick_sysmon();
    }
    true
}

fn exitsyscall() {
    let mp = getm().expect("exitsyscall off an M");
    let Some(g) = mp.curg_ref() else {
        crate::fatal("gort: exitsyscall outside a goroutine");
    };
    let locked = LockedM::hold(mp);
    let oldp = mp.oldp.replace(std::ptr::null_mut());
    // SAFETY: Ps live forever in allp.
    if let Some(p) = unsafe { oldp.as_ref() } {
        if p.status
            .compare_exchange(P_SYSCALL, P_RUNNING, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            // Back from P_SYSCALL to P_RUNNING by our CAS: only the links
            // to set again (sysmon is awake: it watched the syscall).
            crate::sched::attach_p(mp, p);
            crate::exectrace::syscall_exit(g, Some(p)); // exectrace
            g.set_status(G_RUNNING);
            return;
        }
    }
    // Our P was handed off. Any idle one?
    let s = crate::sched::sched();
    if crate::sched::try_acquire_idle_p(s, mp) {
        crate::exectrace::syscall_exit(g, mp.p_ref()); // exectrace
        g.set_status(G_RUNNING);
        return;
    }
    crate::exectrace::syscall_exit(g, None); // exectrace
    drop(locked); // `mcall` starts at locks 0
                  // No P: g0 queues us globally and parks this M.
    crate::sched::mcall(After::ExitSyscall);
    // Resumed by some M with a P, status Running (set by execute).
}
