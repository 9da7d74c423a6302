//! Preemption: the rules for when a goroutine may be stopped, the request
//! flags, the cooperative check, and the asynchronous path's Rust half.
//!
//! # Two ways to stop a goroutine
//!
//! sysmon asks for a preemption with `preempt_one`: it sets `G::preempt`,
//! makes the goroutine's stack guard `STACK_PREEMPT`, and (unless async
//! preemption is off) sends SIGURG to the goroutine's M.
//!
//! 1. **Cooperative** (Go's stackguard0). `check()` — called by hand or
//!    injected by `#[gort::preemptible]` at function entry and loop
//!    back-edges — compares the stack pointer with the per-M TLS word
//!    `gort_tls_stackguard`. Normally that word is the running goroutine's
//!    stack limit plus a margin, so one comparison catches an impending
//!    stack overflow; a request makes it `STACK_PREEMPT`, above any stack
//!    address, so the same comparison fails and `morestack` yields.
//! 2. **Asynchronous.** The SIGURG handler checks `want_async_preempt` and
//!    `is_async_safe_point` — which walks the goroutine's frames from the
//!    signal stack, through the kernel's signal frame (see `symbols`), and
//!    refuses if any is code that may hold thread-affine state — and then
//!    rewrites the signal context so the goroutine enters the asm
//!    trampoline, which saves every register and calls
//!    `gort_async_preempt2` to yield. Refused requests stay pending.
//!
//! # Safe points (docs/design.md, "Preemption")
//!
//! Never preempted: the runtime itself (`m.locks > 0`, or any frame in
//! gort's own code), a goroutine inside `preempt::disable`, a goroutine in
//! `syscall::blocking`, code outside the executable's own text (libc,
//! the vDSO, ld.so), code in `std` (its stdout lock is reentrant per thread,
//! its `thread_local!` accessors hand out per-thread references) including
//! std code inlined into user functions (found through DWARF), the global
//! allocator, non-Rust code linked into the program, a goroutine that is
//! unwinding a panic (`std::thread::panicking()`), one whose sp is not on
//! its own stack, and one without `ASYNC_PREEMPT_STACK_NEED` bytes of stack
//! left.
//! A request that cannot be served stays pending: the next cooperative check
//! serves it, and sysmon re-sends the signal while the goroutine keeps its
//! processor (at most one signal in flight per M).
//!
//! An alternative would be to preempt in the signal handler itself, by
//! switching stacks there; but then the goroutine's saved state would live
//! on the signal stack, and the handler would run scheduler code that takes
//! locks, which is not async-signal-safe.

use crate::arch;
use crate::g::G;
use crate::m::{getm, After, LockedM, M};
use std::sync::atomic::{AtomicU64, Ordering};

/// A stack guard above every real stack address: `sp < STACK_PREEMPT`
/// always holds, so a check that sees it takes the slow path.
pub(crate) const STACK_PREEMPT: usize = usize::MAX - 0xfff;

/// Bytes above the stack's low end where the cooperative check reports an
/// overflow: enough for the report itself and the frames of functions that
/// do not check.
pub(crate) const STACK_GUARD_MARGIN: usize = 8 * 1024;

/// Preemptions served, by kind (for stats and tests).
pub(crate) static COOPERATIVE: AtomicU64 = AtomicU64::new(0);
pub(crate) static ASYNC: AtomicU64 = AtomicU64::new(0);
/// Signals that found the goroutine at an unsafe point.
pub(crate) static REJECTED: AtomicU64 = AtomicU64::new(0);

/// The explicit cooperative preemption check (Go's stackguard0 prologue).
///
/// Costs one TLS load and one comparison when nothing is asked. If sysmon
/// asked this goroutine to yield, it yields here; if the goroutine is about
/// to overflow its stack, the process ends with a clear message. Outside
/// goroutines it does nothing.
#[inline(always)]
pub fn check() {
    let sp = arch::current_sp();
    if sp < arch::load_stackguard() {
        morestack(sp);
    }
}

/// The slow path of `check`: a preemption request or a stack overflow.
#[cold]
#[inline(never)]
fn morestack(sp: usize) {
    let Some(mp) = getm() else { return };
    let Some(g) = mp.curg_ref() else {
        return;
    };
    if let Some(stack) = g.stack.get() {
        // Only an sp inside this goroutine's guard range or the margin
        // above it is an overflow: code may run on a stack of its own
        // (the `stacker` crate), anywhere in memory.
        if sp >= stack.lo - crate::stack::GUARD_SIZE && sp < stack.lo + STACK_GUARD_MARGIN {
            crate::signal::report_overflow(g.id(), stack.hi - stack.lo, sp);
        }
    }
    // Not on a foreign stack (code running on a stack of its own, such as
    // the `stacker` crate's, may keep its stack bounds in a thread-local),
    // and not while unwinding (see `is_async_safe_point`).
    let own_stack = g.stack.get().is_none_or(|s| sp > s.lo && sp <= s.hi);
    if g.preempt.load(Ordering::Acquire)
        && can_preempt(mp, g)
        && own_stack
        && !std::thread::panicking()
    {
        COOPERATIVE.fetch_add(1, Ordering::Relaxed);
        crate::exectrace::preempted(g, false); // exectrace
        gopreempt();
    }
}

/// Whether the running goroutine may be stopped now, as far as the
/// runtime's own state goes (not where its pc is).
fn can_preempt(mp: &M, g: &G) -> bool {
    mp.locks.get() == 0 && g.preempt_off.get() == 0 && g.status() == crate::g::G_RUNNING
}

/// Yields the current goroutine for a preemption: it goes to the global
/// run queue (as in Go), so another P may pick it up.
fn gopreempt() {
    crate::sched::mcall(After::Preempt);
}

/// Asks the goroutine running on `mp` to stop (sysmon's `preemptone`).
/// Best effort: by the time the request lands the M may run another
/// goroutine, which is then preempted instead (harmless). Returns whether
/// this is a new request (not a repeat of a pending one).
pub(crate) fn preempt_one(mp: &M, async_ok: bool) -> bool {
    let Some(g) = mp.curg_ref() else {
        return false;
    };
    let repeat = g.preempt.swap(true, Ordering::AcqRel);
    g.stackguard0.store(STACK_PREEMPT, Ordering::Release);
    // (Set once by the M's `minit`, before it runs any goroutine.)
    let slot = mp.stackguard_slot.load(Ordering::Acquire);
    if !slot.is_null() {
        // SAFETY: the slot is the M's TLS word, valid for the M's life (Ms
        // never exit); it is only ever accessed as a whole word.
        unsafe { std::ptr::write_volatile(slot, STACK_PREEMPT) };
    }
    if async_ok {
        // The first signal lets the code map's DWARF refinement run.
        crate::symbols::want_refinement();
        if !mp.signal_pending.swap(true, Ordering::AcqRel) {
            crate::signal::tgkill_preempt(mp);
        } else {
            // The last signal was never taken by our handler: maybe
            // someone replaced it (falls back to cooperative checks).
            crate::signal::check_sigurg_handler();
        }
    }
    !repeat
}

/// Guard returned by [`disable`]: while it lives, the goroutine is not
/// preempted (neither by signal nor at cooperative checks). It may still
/// block or yield on its own.
#[must_use = "preemption is re-enabled when the guard is dropped"]
pub struct NoPreempt {
    g: *mut G,
}

/// Disables preemption of the current goroutine until the guard drops.
/// Nests. Outside goroutines it does nothing.
pub fn disable() -> NoPreempt {
    let gp = crate::sched::getg();
    if !gp.is_null() {
        // SAFETY: the current G is alive while it runs; preempt_off is only
        // touched by the G itself (and read by its M's signal handler).
        unsafe { (*gp).preempt_off.set((*gp).preempt_off.get() + 1) };
    }
    NoPreempt { g: gp }
}

impl Drop for NoPreempt {
    fn drop(&mut self) {
        if self.g.is_null() {
            return;
        }
        // SAFETY: as in `disable`; the guard is !Send, so this runs on the
        // same goroutine.
        let g = unsafe { &*self.g };
        let n = g.preempt_off.get() - 1;
        g.preempt_off.set(n);
        if n == 0 && g.preempt.load(Ordering::Acquire) {
            // A request came while disabled: serve it now.
            check();
        }
    }
}

// ---------------------------------------------------------------------------
// Asynchronous preemption (called from the SIGURG handler and trampoline).

/// Handler side: whether the goroutine on `mp` should be preempted by
/// signal now, judging by runtime state only.
pub(crate) fn want_async_preempt(mp: &M, g: &G) -> bool {
    crate::sched::async_preempt_enabled() && g.preempt.load(Ordering::Acquire) && can_preempt(mp, g)
}

/// Handler side (on the signal stack): whether the goroutine `g`,
/// interrupted at `pc`/`sp`, may be stopped there: it runs on its own stack
/// with room for the trampoline, is not unwinding a panic, and every frame
/// from `pc` down to its entry is code that may be preempted (the frame
/// walk in `symbols`). The trampoline then only saves state and yields.
pub(crate) fn is_async_safe_point(g: &G, pc: usize, sp: usize) -> bool {
    let Some(stack) = g.stack.get() else {
        return false;
    };
    if sp <= stack.lo || sp > stack.hi || sp - stack.lo < arch::ASYNC_PREEMPT_STACK_NEED {
        return false;
    }
    if arch::in_trampoline(pc) || !crate::symbols::pc_is_preemptible(pc) {
        return false;
    }
    // A goroutine that is unwinding runs landing pads (user code) with
    // std's per-thread panic count raised: it must finish on this M.
    // (`panicking` reads an atomic, and a const thread-local only if a
    // panic is in progress somewhere: no allocation, no lock.)
    if std::thread::panicking() {
        return false;
    }
    crate::symbols::interrupted_stack_is_preemptible(pc, stack.hi - stack.lo)
}

/// Called by the trampoline on the goroutine's stack with every register of
/// the interrupted code saved (x86_64: the vector state in `area`, this
/// M's save area; aarch64: null, the state is in the copied signal frame).
/// `saved` is the lowest word of the interrupted state the trampoline
/// keeps on the goroutine stack (its general registers); the interrupted
/// frames lie above it. Yields if the goroutine's frames allow it. Returns
/// the area the trampoline restores the vector state from: `area` itself
/// if the goroutine did not yield, else the area of the M it resumed on.
#[no_mangle]
extern "C" fn gort_async_preempt2(area: *mut u8, saved: *mut usize) -> *mut u8 {
    let locked = LockedM::acquire();
    let Some(lm) = locked.as_ref() else {
        return area;
    };
    let mp = lm.m();
    let Some(g) = mp.curg_ref() else {
        return area;
    };
    // The handler walked the frames just before this (same thread, no
    // goroutine code ran in between); the runtime state may not have
    // changed either, but re-checking it costs nothing.
    let ok = g.preempt.load(Ordering::Acquire) && g.preempt_off.get() == 0;
    if !ok {
        REJECTED.fetch_add(1, Ordering::Relaxed);
        return area;
    }
    // SAFETY: vector_save is the running G's own (owner field); `area`
    // holds its state, saved by the trampoline just now.
    let save = unsafe { &mut *g.vector_save.get() };
    // SAFETY: `area` is this M's save area, filled by the trampoline with this
    // goroutine's state, and `save` its own buffer (above); neither is touched
    // by another thread meanwhile.
    unsafe { arch::stash_vector_state(area, save) };
    // errno is per thread in glibc: the interrupted code may be between a
    // failing call and its read of errno, and may resume on another M.
    let errno = errno();
    let errno_here = errno_location();
    drop(locked);
    ASYNC.fetch_add(1, Ordering::Relaxed);
    crate::exectrace::preempted(g, true); // exectrace
    gopreempt();
    set_errno(errno);
    let errno_now = errno_location();
    if errno_now != errno_here {
        if let Some(stack) = g.stack.get() {
            // SAFETY: [saved, stack.hi) is this goroutine's own stack above
            // the trampoline's frame: the saved registers and the frames of
            // the interrupted code, all suspended below us until we return;
            // nothing else reads or writes them meanwhile.
            unsafe { rebind_errno_address(saved as usize, stack.hi, errno_here, errno_now) };
        }
    }
    arch::unstash_vector_state(save)
}

/// The interrupted code may hold the address of its old thread's errno
/// (the result of `__errno_location`, not yet dereferenced) in a register
/// or spilled to its frame: unoptimised code keeps it in a stack slot only
/// while it checks the pointer's alignment. After a move to another M it
/// would read or write the old thread's errno, which belongs to whatever
/// runs there now. Rewrites every word of `[lo, hi)` — the saved registers
/// and the interrupted frames — equal to `from` (the old M's errno
/// address) into `to` (this M's). A word can only equal `from` by holding
/// that address: it is a TLS address of another thread, which goroutine
/// code obtains only from `__errno_location` on that thread (a dead slot
/// that still holds it is rewritten harmlessly). The scan covers the used
/// part of the goroutine stack and runs only when the goroutine moved.
///
/// # Safety
///
/// `[lo, hi)` must be memory of the calling goroutine's stack that nothing
/// else uses during the call (frames suspended above the caller's).
unsafe fn rebind_errno_address(lo: usize, hi: usize, from: usize, to: usize) {
    let word = std::mem::size_of::<usize>();
    let mut a = lo.next_multiple_of(word);
    while a + word <= hi {
        let p = a as *mut usize;
        // SAFETY: `p` is an aligned word inside [lo, hi), which the caller
        // guarantees is this goroutine's own idle stack memory.
        unsafe {
            if p.read_volatile() == from {
                p.write_volatile(to);
            }
        }
        a += word;
    }
}

/// The address of the calling thread's errno.
fn errno_location() -> usize {
    // SAFETY: __errno_location has no preconditions.
    unsafe { libc::__errno_location() as usize }
}

/// The calling thread's errno.
pub(crate) fn errno() -> libc::c_int {
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() }
}

/// Sets the calling thread's errno.
pub(crate) fn set_errno(e: libc::c_int) {
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() = e };
}
