//! `M`: an OS thread that runs goroutines while it holds a P.
//!
//! Every M has a scheduler stack (`g0`: the pthread's own stack, where
//! `schedule` loops) and a signal stack (installed with `sigaltstack` in
//! `minit`, so the SIGSEGV of a goroutine stack overflow can be reported
//! and the SIGURG handler's frame walk has room). Ms are created on demand
//! by `startm`, live for the rest of the process, and park on their `park`
//! note when idle.
//!
//! # Thread creation (docs/design.md, "Threads")
//!
//! `newm` calls `pthread_create` with every signal blocked, so no signal can
//! land on the new thread before it has a signal stack and TLS. On the new
//! thread `minit` records `gettid()` as `procid` (the `tgkill` target),
//! installs the signal stack, sets the per-M TLS pointer, then restores the
//! runtime's signal mask. We use pthreads, not a raw `clone(2)`: Ms run
//! arbitrary Rust (malloc, `println!`, panics), which needs glibc's thread
//! control block for errno, malloc arenas and TLS destructors.
//!
//! # TLS and migration
//!
//! A goroutine may resume on another M after any switch. LLVM may keep a
//! TLS address in a register across a call (llvm#98479), so code on a G
//! stack reads the current M only through `getm()`, an out-of-line function
//! the optimiser cannot see through, and never keeps the result across a
//! switch.

use crate::g::G;
use crate::note::Note;
use crate::p::P;
use std::cell::{Cell, UnsafeCell};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU32, Ordering};

/// What g0 must do with the G that just switched to it (the argument of
/// Go's `mcall`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum After {
    /// Nothing recorded (a bug if seen after a switch).
    Nothing,
    /// `yield_now`: requeue the G at the tail of the local queue.
    Yield,
    /// Park: mark the G waiting and run `park_fn`; if that returns false,
    /// resume the G at once.
    Park,
    /// The G's task ended: free its stack and the G.
    Exit,
    /// Preempted (by sysmon's request): requeue on the global queue.
    Preempt,
    /// Returning from a syscall found no P: queue the G globally and park
    /// this M.
    ExitSyscall,
    /// Park, from a goroutine whose M lost its P (unannounced blocking):
    /// run `park_fn` first (it releases what the parker holds, such as a
    /// channel's lock), then find the M a P or stop it.
    ParkWithoutP,
}

/// The park callback, run on g0 once the G's context is saved. It publishes
/// the G to whoever will wake it; returning false cancels the park.
pub(crate) type ParkFn = *mut (dyn FnMut(*mut G) -> bool + 'static);

pub(crate) struct M {
    pub(crate) id: u64,
    /// Kernel thread id, for `tgkill` (set by `minit`).
    pub(crate) procid: AtomicI32,
    /// g0's saved stack pointer while a goroutine runs.
    pub(crate) g0_sp: UnsafeCell<usize>,
    /// The goroutine running on this M, or null on g0.
    pub(crate) curg: AtomicPtr<G>,
    /// The P this M holds (null while idle).
    pub(crate) p: AtomicPtr<P>,
    /// The P to acquire when woken from `stopm` or started.
    pub(crate) nextp: AtomicPtr<P>,
    /// Whether this M is spinning (looking for work; counted in
    /// `Sched::nmspinning`). This M, or `startm` while the M is parked;
    /// others read it for schedtrace.
    pub(crate) spinning: AtomicBool,
    /// Where an idle M sleeps.
    pub(crate) park: Note,
    /// Nonzero while runtime code runs on a goroutine stack: no
    /// preemption, and this M may be using its P. Written only by the M's
    /// own thread; sysmon reads it before taking the P of a goroutine
    /// blocked in the kernel (see `unannounced`).
    pub(crate) locks: Locks,
    /// What to do after the current G switches to g0.
    pub(crate) after: Cell<After>,
    pub(crate) park_fn: Cell<Option<ParkFn>>,
    /// What the goroutine had asked of `mcall` when it found its M without
    /// a P and queued itself instead (`After::ExitSyscall`): a yield or a
    /// preemption still ends its run slice as one (traces). `Nothing` for
    /// a plain return from a syscall.
    pub(crate) asked_without_p: Cell<After>,
    /// xorshift state for steal order.
    pub(crate) rng: Cell<u64>,
    /// This thread's `gort_tls_stackguard` word (set once by `minit`);
    /// sysmon stores preemption requests into it, so it is read from
    /// sysmon's thread: an atomic, not a Cell.
    pub(crate) stackguard_slot: AtomicPtr<usize>,
    /// A preemption SIGURG is in flight to this M (at most one).
    pub(crate) signal_pending: AtomicBool,
    /// The G locked to this M by `lock_os_thread` (null if none).
    pub(crate) lockedg: AtomicPtr<G>,
    /// The P held before entering a syscall.
    pub(crate) oldp: Cell<*mut P>,
    /// Where a dump asks this M for its running goroutine's frames.
    pub(crate) traceback: crate::traceback::TracebackSlot,
    /// This thread's CPU-time clock (`pthread_getcpuclockid`; 0 until
    /// `minit`): sysmon reads it to tell a thread that runs from one that
    /// sits in the kernel.
    pub(crate) cpuclock: AtomicI32,
}

/// `M::locks`: a counter only its own thread writes, as plain loads and
/// stores (an atomic so sysmon may read it; no read-modify-write on the
/// hot paths).
pub(crate) struct Locks(AtomicU32);

impl Locks {
    #[inline(always)]
    pub(crate) fn get(&self) -> u32 {
        self.0.load(Ordering::Relaxed)
    }

    #[inline(always)]
    pub(crate) fn set(&self, n: u32) {
        self.0.store(n, Ordering::Relaxed)
    }
}

// SAFETY: Cell fields are touched only by the M's own thread (the docs of
// each say so); fields read by others are atomics.
unsafe impl Sync for M {}
// SAFETY: an M is created once and never freed; moving the reference to another
// thread shares only what `Sync` (above) allows.
unsafe impl Send for M {}

impl M {
    pub(crate) fn new(id: u64) -> M {
        M {
            id,
            procid: AtomicI32::new(0),
            g0_sp: UnsafeCell::new(0),
            curg: AtomicPtr::new(std::ptr::null_mut()),
            p: AtomicPtr::new(std::ptr::null_mut()),
            nextp: AtomicPtr::new(std::ptr::null_mut()),
            spinning: AtomicBool::new(false),
            park: Note::new(),
            // An M starts on g0, in runtime code: g0 runs with `locks`
            // at 1 (see `execute`, `mcall`).
            locks: Locks(AtomicU32::new(1)),
            after: Cell::new(After::Nothing),
            park_fn: Cell::new(None),
            asked_without_p: Cell::new(After::Nothing),
            rng: Cell::new(0x9e37_79b9_7f4a_7c15 ^ id.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1),
            stackguard_slot: AtomicPtr::new(std::ptr::null_mut()),
            signal_pending: AtomicBool::new(false),
            lockedg: AtomicPtr::new(std::ptr::null_mut()),
            oldp: Cell::new(std::ptr::null_mut()),
            traceback: crate::traceback::TracebackSlot::new(),
            cpuclock: AtomicI32::new(0),
        }
    }

    pub(crate) fn curg(&self) -> *mut G {
        self.curg.load(Ordering::Relaxed)
    }

    pub(crate) fn p(&self) -> *mut P {
        self.p.load(Ordering::Relaxed)
    }

    /// The goroutine this M runs, if any.
    pub(crate) fn curg_ref(&self) -> Option<&'static G> {
        // SAFETY: `curg` is null or points at a G, and Gs are never freed.
        unsafe { self.curg().as_ref() }
    }

    /// The P this M holds, if any.
    pub(crate) fn p_ref(&self) -> Option<&'static P> {
        // SAFETY: `p` is null or points into `allp`, which lives forever.
        unsafe { self.p().as_ref() }
    }

    /// The P this M holds, where the caller knows it holds one.
    pub(crate) fn held_p(&self) -> &'static P {
        match self.p_ref() {
            Some(pp) => pp,
            None => crate::fatal("gort: an M that must hold a P holds none"),
        }
    }

    /// The goroutine locked to this M (`lock_os_thread`), if any.
    pub(crate) fn lockedg_ref(&self) -> Option<&'static G> {
        // SAFETY: `lockedg` is null or points at a G, and Gs are never freed.
        unsafe { self.lockedg.load(Ordering::Relaxed).as_ref() }
    }

    pub(crate) fn is_spinning(&self) -> bool {
        self.spinning.load(Ordering::Relaxed)
    }

    pub(crate) fn set_spinning(&self, on: bool) {
        self.spinning.store(on, Ordering::Relaxed)
    }

    pub(crate) fn fastrand(&self) -> u32 {
        let mut x = self.rng.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.set(x);
        (x >> 32) as u32
    }
}

thread_local! {
    static CURRENT_M: Cell<*const M> = const { Cell::new(std::ptr::null()) };
}

/// The M of the calling thread, or None on a thread that is not an M.
///
/// Out of line on purpose (see "TLS and migration" above). Async-signal-safe:
/// a const-initialised thread local without destructor is plain static TLS.
#[inline(never)]
pub(crate) fn getm() -> Option<&'static M> {
    let mp = CURRENT_M.with(|c| c.get());
    // SAFETY: Ms are leaked at creation and never freed.
    unsafe { mp.as_ref() }
}

pub(crate) fn setm(mp: &'static M) {
    CURRENT_M.with(|c| c.set(mp));
}

/// Holds `m.locks` raised while runtime code runs on a goroutine stack.
pub(crate) struct LockedM(&'static M);

impl LockedM {
    /// Enters runtime code. Coming from goroutine code (`locks` was 0, not
    /// on g0),
    /// first makes sure the M still owns its P: sysmon may have handed it
    /// to another M while the goroutine sat in the kernel; then `p()` is
    /// null and the caller works without a P (see `unannounced`).
    #[inline]
    pub(crate) fn acquire() -> Option<LockedM> {
        let mp = getm()?;
        let n = mp.locks.get();
        mp.locks.set(n + 1);
        if n == 0 && !mp.curg().is_null() {
            crate::unannounced::check_p(mp);
            crate::unannounced::stall_point(mp);
        }
        Some(LockedM(mp))
    }

    /// Raises `mp.locks` (the calling thread's M) without `acquire`'s
    /// check of the P: for callers that check it themselves, or that run
    /// while the M deliberately holds no P (entering and leaving a
    /// syscall).
    #[inline]
    pub(crate) fn hold(mp: &'static M) -> LockedM {
        mp.locks.set(mp.locks.get() + 1);
        LockedM(mp)
    }

    pub(crate) fn m(&self) -> &'static M {
        self.0
    }
}

impl Drop for LockedM {
    fn drop(&mut self) {
        self.0.locks.set(self.0.locks.get() - 1);
    }
}
