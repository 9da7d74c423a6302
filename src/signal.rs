//! Signals: `sigaction` for the runtime's handlers, the per-M signal
//! stack, the SIGURG handler (preemption requests, tracebacks of running
//! goroutines) and the SIGSEGV handler that turns a goroutine stack
//! overflow into a clear message. (Creating threads with signals blocked
//! is `thread`'s.)
//!
//! The handlers run on the M's signal stack (`SA_ONSTACK`): a goroutine that
//! overflowed its stack has no stack left to run a handler on.
//!
//! A fault that is not a goroutine stack overflow is passed to whatever
//! handler was installed before ours (std installs one for thread stack
//! overflows), or, if that was the default, re-raised with the default
//! action so the process dies as it would have without gort.

use crate::m::{getm, M};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// Size of each M's signal stack.
const SIGSTACK_SIZE: usize = 64 * 1024;

/// Handlers that were installed before ours, for SIGSEGV and SIGBUS.
static mut PREV_SEGV: Option<libc::sigaction> = None;
static mut PREV_BUS: Option<libc::sigaction> = None;
static mut PREV_URG: Option<libc::sigaction> = None;
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Signals the runtime relies on, unblocked on every M.
const RUNTIME_SIGNALS: [libc::c_int; 3] = [libc::SIGSEGV, libc::SIGBUS, libc::SIGURG];

pub(crate) fn unblock_runtime_signals(set: &mut libc::sigset_t) {
    for sig in RUNTIME_SIGNALS {
        // SAFETY: `set` is a valid, initialised sigset_t.
        unsafe { libc::sigdelset(set, sig) };
    }
}

/// This process's id, read once when the handlers are installed: sysmon
/// sends a signal per preemption and the handler checks the sender of
/// each, and `getpid` is a system call (glibc no longer caches it).
static PID: AtomicI32 = AtomicI32::new(0);

fn pid() -> libc::pid_t {
    PID.load(Ordering::Relaxed)
}

/// Installs the runtime's fault handlers (once per process).
pub(crate) fn install_handlers() {
    if INSTALLED.swap(true, Ordering::AcqRel) {
        return;
    }
    // SAFETY: getpid has no preconditions.
    PID.store(unsafe { libc::getpid() }, Ordering::Relaxed);
    // SAFETY: runs once, before any M exists, so nothing reads PREV_* yet;
    // the sigaction structs are fully initialised.
    unsafe {
        PREV_SEGV = Some(install(libc::SIGSEGV, fault_handler));
        PREV_BUS = Some(install(libc::SIGBUS, fault_handler));
        PREV_URG = Some(install(libc::SIGURG, sigurg_handler));
        install(libc::SIGQUIT, sigquit_handler);
    }
}

type Handler = extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void);

/// # Safety
/// Replaces the process-wide disposition of `sig`.
unsafe fn install(sig: libc::c_int, handler: Handler) -> libc::sigaction {
    // SAFETY: zeroed sigaction is valid; we fill the fields we need.
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = handler as usize;
    sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_RESTART;
    // SAFETY: sa_mask is a valid sigset_t inside `sa`.
    unsafe { libc::sigfillset(&mut sa.sa_mask) };
    // SAFETY: an all-zero sigaction is a valid value for the kernel to fill in.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call.
    if unsafe { libc::sigaction(sig, &sa, &mut old) } != 0 {
        crate::fatal(&format!(
            "sigaction({sig}) failed: {}",
            std::io::Error::last_os_error()
        ));
    }
    old
}

/// SIGSEGV/SIGBUS: a goroutine stack overflow gets a clear message and an
/// abort; anything else goes to the previous handler.
extern "C" fn fault_handler(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
    let addr = unsafe { (*info).si_addr() } as usize;
    if let Some(mp) = getm() {
        if let Some(g) = mp.curg_ref() {
            if let Some(stack) = g.stack.get() {
                if stack.guard_contains(addr) {
                    report_overflow(g.id(), stack.hi - stack.lo, addr);
                }
            }
        }
    }
    // SAFETY: PREV_* were written once before any handler could run.
    let prev = unsafe {
        if sig == libc::SIGSEGV {
            (*std::ptr::addr_of!(PREV_SEGV)).as_ref()
        } else {
            (*std::ptr::addr_of!(PREV_BUS)).as_ref()
        }
    };
    match prev {
        Some(p) if p.sa_sigaction != libc::SIG_DFL && p.sa_sigaction != libc::SIG_IGN => {
            forward(Some(p), sig, info, ctx);
        }
        _ => {
            // Default action: restore it and return; the faulting
            // instruction runs again and the kernel kills the process with
            // the right signal (and core dump).
            // SAFETY: resetting a disposition to SIG_DFL is always valid.
            unsafe { libc::signal(sig, libc::SIG_DFL) };
        }
    }
}

pub(crate) fn report_overflow(id: u64, size: usize, addr: usize) -> ! {
    let mut buf = [0u8; 256];
    let mut w = crate::trace::FixedBuf::new(&mut buf);
    use std::fmt::Write;
    let _ = write!(
        w,
        "goroutine {id} stack overflow (stack size {size} bytes, fault at {addr:#x})\n\
         fatal error: stack overflow\n"
    );
    write_stderr(w.as_bytes());
    // SAFETY: abort is async-signal-safe.
    unsafe { libc::abort() }
}

/// Set by the SIGQUIT handler; sysmon prints the dump (the handler cannot:
/// it may not lock or allocate).
static SIGQUIT: AtomicBool = AtomicBool::new(false);

/// sysmon: whether SIGQUIT arrived since the last call.
pub(crate) fn take_sigquit() -> bool {
    SIGQUIT.swap(false, Ordering::AcqRel)
}

/// SIGQUIT, as in Go: sysmon dumps every goroutine and exits with code 2.
/// The handler itself only sets a flag and wakes sysmon (an atomic store
/// and a futex wake: async-signal-safe).
extern "C" fn sigquit_handler(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    SIGQUIT.store(true, Ordering::Release);
    if let Some(s) = crate::sched::try_sched() {
        s.sysmon_note().wakeup();
    }
}

/// Sends the preemption signal to `mp` (the caller set `signal_pending`).
pub(crate) fn tgkill_preempt(mp: &M) {
    let tid = mp.procid.load(Ordering::Acquire);
    // SAFETY: tgkill with our own pid and a tid of one of our Ms (which
    // never exit) only delivers a signal.
    let r = unsafe { libc::syscall(libc::SYS_tgkill, pid(), tid, libc::SIGURG) };
    if r != 0 {
        mp.signal_pending.store(false, Ordering::Release);
    }
}

/// Sends SIGURG to `mp` to capture its running goroutine's frames (the
/// caller set the M's traceback slot to REQUESTED).
pub(crate) fn tgkill_traceback(mp: &M) {
    let tid = mp.procid.load(Ordering::Acquire);
    // SAFETY: tgkill with our own pid and a tid of one of our Ms (which
    // never exit) only delivers a signal.
    unsafe { libc::syscall(libc::SYS_tgkill, pid(), tid, libc::SIGURG) };
}

/// SIGURG: a preemption request from sysmon, or someone else's signal.
///
/// Ours are recognised by the M's `signal_pending` flag (set by the
/// sender) together with `si_code == SI_TKILL` from our own pid; anything
/// else goes to the handler installed before gort's. (Two SIGURGs that
/// arrive together merge into one, as standard signals do; the merged one
/// is treated as ours.)
extern "C" fn sigurg_handler(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // The interrupted code may be between a failing libc call and its read
    // of errno; what the handler calls (the frame walk, a traceback's
    // reads, tgkill) may set errno. Put it back on every way out, so both
    // the interrupted code and the trampoline (which saves it for the
    // goroutine) see the interrupted value.
    struct KeepErrno(libc::c_int);
    impl Drop for KeepErrno {
        fn drop(&mut self) {
            crate::preempt::set_errno(self.0);
        }
    }
    let _errno = KeepErrno(crate::preempt::errno());
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
    let (code, pid) = unsafe { ((*info).si_code, (*info).si_pid()) };
    let from_us = code == libc::SI_TKILL && pid == self::pid();
    let mp = getm();
    // A dump asking for the running goroutine's frames (before anything
    // else: a preemption below may switch the goroutine out).
    let traced = from_us
        && mp.is_some_and(|m| {
            // SAFETY: ctx is the handler's ucontext.
            let r = unsafe { crate::arch::ctx_unwind_regs(ctx as *mut libc::ucontext_t) };
            let g = m.curg_ref();
            crate::traceback::on_signal(
                m,
                g,
                r.pc as usize,
                r.sp as usize,
                r.fp as usize,
                r.lr as usize,
            )
        });
    let ours = from_us && mp.is_some_and(|m| m.signal_pending.swap(false, Ordering::AcqRel));
    if traced && !ours {
        return;
    }
    if !ours {
        // SAFETY: PREV_URG was written once before any handler could run.
        let prev = unsafe { (*std::ptr::addr_of!(PREV_URG)).as_ref() };
        forward(prev, sig, info, ctx);
        return;
    }
    let Some(mp) = mp else { return };
    let Some(g) = mp.curg_ref() else {
        return;
    };
    if !crate::preempt::want_async_preempt(mp, g) {
        return;
    }
    let uc = ctx as *mut libc::ucontext_t;
    // SAFETY: ctx is the handler's ucontext.
    let (pc, sp) = unsafe { crate::arch::ctx_pc_sp(uc) };
    if !crate::preempt::is_async_safe_point(g, pc, sp) {
        crate::preempt::REJECTED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    // SAFETY: is_async_safe_point checked the goroutine runs on its own
    // stack with room for the trampoline below sp.
    if !unsafe { crate::arch::inject_async_preempt(uc) } {
        // (aarch64: a signal frame it cannot copy.) Stays pending.
        crate::preempt::REJECTED.fetch_add(1, Ordering::Relaxed);
    }
}

/// Called by sysmon when a preemption signal it sent earlier is still
/// pending (our handler clears the flag on arrival, whether or not it
/// preempts): if a handler installed after ours took SIGURG without
/// passing it on, says so once on stderr and turns async preemption off
/// for good, so preemption falls back to cooperative checks and
/// `stats().async_preempt` reads false. (A foreign handler that calls the
/// one it replaced keeps everything working and is not reported.)
pub(crate) fn check_sigurg_handler() {
    static REPORTED: AtomicBool = AtomicBool::new(false);
    // SAFETY: zeroed sigaction is valid; a null new action only queries.
    let mut cur: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid (or null) for the call.
    if unsafe { libc::sigaction(libc::SIGURG, std::ptr::null(), &mut cur) } != 0 {
        return;
    }
    if cur.sa_sigaction == sigurg_handler as *const () as usize {
        return;
    }
    if let Some(s) = crate::sched::try_sched() {
        s.set_async_preempt(false);
    }
    if !REPORTED.swap(true, Ordering::AcqRel) {
        write_stderr(
            b"gort: another SIGURG handler replaced gort's and does not call it: \
              asynchronous preemption is off; goroutines are preempted only at \
              cooperative checks (gort::preempt::check, #[gort::preemptible])\n",
        );
    }
}

/// Passes a signal to a previously installed handler (nothing for the
/// default or ignore dispositions: SIGURG's default is to ignore).
fn forward(
    prev: Option<&libc::sigaction>,
    sig: libc::c_int,
    info: *mut libc::siginfo_t,
    ctx: *mut libc::c_void,
) {
    let Some(p) = prev else { return };
    if p.sa_sigaction == libc::SIG_DFL || p.sa_sigaction == libc::SIG_IGN {
        return;
    }
    if p.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: installed as an SA_SIGINFO handler with this signature.
        let h: Handler = unsafe { std::mem::transmute(p.sa_sigaction) };
        h(sig, info, ctx);
    } else {
        // SAFETY: a plain handler takes the signal number only.
        let h: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(p.sa_sigaction) };
        h(sig);
    }
}

/// Writes to fd 2 without locking or allocating (async-signal-safe).
pub(crate) fn write_stderr(mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: writes from a valid buffer to fd 2.
        let n = unsafe { libc::write(2, bytes.as_ptr() as *const libc::c_void, bytes.len()) };
        if n < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return;
        }
        bytes = &bytes[n as usize..];
    }
}

/// Per-M signal setup, on the M's own thread: the signal stack.
pub(crate) fn minit_signals() {
    // SAFETY: anonymous private mapping; no existing memory is affected.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            SIGSTACK_SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        crate::fatal(&format!(
            "cannot map a signal stack: {}",
            std::io::Error::last_os_error()
        ));
    }
    let ss = libc::stack_t {
        ss_sp: base,
        ss_flags: 0,
        ss_size: SIGSTACK_SIZE,
    };
    // SAFETY: `ss` describes memory we own for the life of the thread (Ms
    // never exit).
    if unsafe { libc::sigaltstack(&ss, std::ptr::null_mut()) } != 0 {
        crate::fatal(&format!(
            "sigaltstack failed: {}",
            std::io::Error::last_os_error()
        ));
    }
}
