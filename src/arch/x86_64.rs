//! x86_64: the first frame of a goroutine stack.
//!
//! ```text
//!   top (16-aligned)  ->  +--------------------------+
//!                         | 16 bytes, unused         |  sp + 64
//!                         | return addr: gort_gstart |  sp + 56
//!                         | rbp = 0                  |  sp + 48
//!                         | rbx = 0                  |  sp + 40
//!                         | r12 = entry              |  sp + 32
//!                         | r13 = arg                |  sp + 24
//!                         | r14 = 0                  |  sp + 16
//!                         | r15 = 0                  |  sp + 8
//!   sp (returned)     ->  | MXCSR 0x1f80, FCW 0x37f  |  sp + 0
//!                         +--------------------------+
//! ```
//! `gort_switch` pops this frame and `ret`s into `gort_gstart` with
//! rsp = top - 16, which is 16-aligned, as `gort_gstart` needs before its
//! call. The unused 16 bytes keep `gort_gstart`'s return-address slot off
//! the last word of the stack mapping: perf's DWARF unwinder (libunwind
//! `access_mem`) refuses to read the last word of its stack copy, and would
//! otherwise lose the bottom frame of every goroutine.

use super::{gort_gstart, EntryFn};

/// Bytes of callee-saved state `gort_switch` keeps on a suspended stack.
pub(crate) const SWITCH_FRAME_SIZE: usize = 64;

/// Unused bytes at the top of every goroutine stack (see module docs).
const TOP_GAP: usize = 16;

/// Default MXCSR: all exceptions masked, round to nearest.
const MXCSR_DEFAULT: u64 = 0x1f80;
/// Default x87 control word: all exceptions masked, 64-bit precision.
const FCW_DEFAULT: u64 = 0x037f;

/// Builds the first frame on a fresh stack and returns the stack pointer to
/// hand to `gort_switch`.
///
/// # Safety
/// `top` must be the 16-aligned upper end of a writable stack with at least
/// `SWITCH_FRAME_SIZE` bytes below it.
pub(crate) unsafe fn init_stack(top: usize, entry: EntryFn, arg: *mut u8) -> usize {
    debug_assert_eq!(top % 16, 0);
    let sp = top - TOP_GAP - SWITCH_FRAME_SIZE;
    let frame = sp as *mut u64;
    let words: [u64; 8] = [
        MXCSR_DEFAULT | (FCW_DEFAULT << 32),
        0,                                        // r15
        0,                                        // r14
        arg as u64,                               // r13
        entry as *const () as usize as u64,       // r12
        0,                                        // rbx
        0,                                        // rbp: ends the frame-pointer chain
        gort_gstart as *const () as usize as u64, // return address
    ];
    for (i, w) in words.iter().enumerate() {
        // SAFETY: the caller guarantees [sp, top) is writable stack memory.
        unsafe { frame.add(i).write(*w) };
    }
    sp
}

// ---------------------------------------------------------------------------
// Preemption support: the stack-guard word, the interrupted context, and
// the trampoline injection (see asm/x86_64/preempt.S and tls.S).

use std::arch::asm;

/// Bytes the trampoline needs below the interrupted stack pointer: the
/// red-zone gap and saved registers (~300), the XSAVE area (up to ~11 KiB
/// with AMX tiles), and Rust frames of the preemption check including the
/// DWARF unwinder (a few KiB). Generous on purpose.
pub(crate) const ASYNC_PREEMPT_STACK_NEED: usize = 32 * 1024;

extern "C" {
    fn gort_async_preempt();
    fn gort_async_preempt_end();
    static mut gort_xsave_size: u64;
    static mut gort_use_xsave: u8;
}

/// The current stack pointer.
#[inline(always)]
pub(crate) fn current_sp() -> usize {
    let sp: usize;
    // SAFETY: reads rsp; no memory access.
    unsafe { asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags)) };
    sp
}

/// This thread's `gort_tls_stackguard`. Never cached across calls: the
/// asm is not `pure`, so it runs every time it is reached.
#[inline(always)]
pub(crate) fn load_stackguard() -> usize {
    let g: usize;
    // SAFETY: initial-exec TLS read of a word defined in asm/x86_64/tls.S.
    unsafe {
        asm!(
            "mov {g}, qword ptr [rip + gort_tls_stackguard@GOTTPOFF]",
            "mov {g}, qword ptr fs:[{g}]",
            g = out(reg) g,
            options(nostack, readonly, preserves_flags),
        )
    };
    g
}

/// Address of this thread's `gort_tls_stackguard`, so other threads
/// (sysmon) can store a preemption request into it.
pub(crate) fn stackguard_slot() -> *mut usize {
    let a: usize;
    // SAFETY: computes thread pointer + TLS offset; reads the GOT only.
    unsafe {
        asm!(
            "mov {a}, qword ptr fs:[0]",
            "add {a}, qword ptr [rip + gort_tls_stackguard@GOTTPOFF]",
            a = out(reg) a,
            options(nostack, readonly),
        )
    };
    a as *mut usize
}

/// Reads the CPU's vector-state features for the trampoline (once, before
/// any preemption signal).
pub(crate) fn init_cpu_features() {
    use std::arch::x86_64::{__cpuid, __cpuid_count};
    let leaf1 = __cpuid(1);
    let osxsave = leaf1.ecx & (1 << 27) != 0;
    let (use_xsave, size) = if osxsave {
        // Leaf 0xD exists when OSXSAVE is set. EBX of sub-leaf 0 is the
        // XSAVE area size for the features enabled in XCR0.
        let d = __cpuid_count(0xd, 0);
        (1u8, (d.ebx as u64).max(576).div_ceil(64) * 64)
    } else {
        (0u8, 512)
    };
    // SAFETY: written before the first preemption signal can be sent (the
    // caller, sysmon start-up, runs before any injection); read-only after.
    unsafe {
        gort_xsave_size = size;
        gort_use_xsave = use_xsave;
    }
}

/// The interrupted pc and sp of a signal context.
///
/// # Safety
/// `uc` must be the ucontext the kernel passed to an SA_SIGINFO handler.
pub(crate) unsafe fn ctx_pc_sp(uc: *mut libc::ucontext_t) -> (usize, usize) {
    // SAFETY: caller guarantees a valid ucontext.
    let gregs = unsafe { &(*uc).uc_mcontext.gregs };
    (
        gregs[libc::REG_RIP as usize] as usize,
        gregs[libc::REG_RSP as usize] as usize,
    )
}

/// Whether `pc` is inside the trampoline itself.
pub(crate) fn in_trampoline(pc: usize) -> bool {
    let lo = gort_async_preempt as *const () as usize;
    let hi = gort_async_preempt_end as *const () as usize;
    (lo..=hi).contains(&pc)
}

/// Rewrites the signal context so that, when the handler returns, the
/// goroutine enters `gort_async_preempt` as if the interrupted instruction
/// had called it. Returns false (and changes nothing) if it cannot.
///
/// # Safety
/// `uc` must be the handler's ucontext for a goroutine running on its own
/// stack with at least `ASYNC_PREEMPT_STACK_NEED` bytes free below sp.
pub(crate) unsafe fn inject_async_preempt(uc: *mut libc::ucontext_t) -> bool {
    // SAFETY: caller guarantees a valid ucontext.
    let gregs = unsafe { &mut (*uc).uc_mcontext.gregs };
    let sp = gregs[libc::REG_RSP as usize] as usize;
    let pc = gregs[libc::REG_RIP as usize] as usize;
    // Below the interrupted code's 128-byte red zone (see preempt.S).
    let slot = sp - 128 - 8;
    // SAFETY: the caller checked the stack has room below sp; the slot is
    // below the red zone, so it holds nothing live.
    unsafe { (slot as *mut usize).write(pc) };
    gregs[libc::REG_RSP as usize] = slot as i64;
    gregs[libc::REG_RIP as usize] = gort_async_preempt as *const () as usize as i64;
    true
}
