//! aarch64: the first frame of a goroutine stack.
//!
//! ```text
//!   top (16-aligned)  ->  +--------------------------+
//!                         | pad = 0                  |  sp + 168
//!                         | FPCR = 0                 |  sp + 160
//!                         | d8..d15 = 0              |  sp + 96 .. sp + 152
//!                         | x21..x28 = 0             |  sp + 32 .. sp + 88
//!                         | x20 = arg                |  sp + 24
//!                         | x19 = entry              |  sp + 16
//!                         | x30 = gort_gstart        |  sp + 8
//!   sp (returned)     ->  | x29 = 0                  |  sp + 0
//!                         +--------------------------+
//! ```
//! `gort_switch` loads this frame and `ret`s into `gort_gstart` with
//! sp = top, which `gort_gstart` keeps for its call (sp must stay
//! 16-aligned at all times on aarch64). FPCR 0 is the Linux default: round
//! to nearest, no flush-to-zero, no default NaN.

use super::{gort_gstart, EntryFn};

/// Bytes of callee-saved state `gort_switch` keeps on a suspended stack:
/// x29, x30, x19-x28, d8-d15, FPCR and one pad word (22 words).
pub(crate) const SWITCH_FRAME_SIZE: usize = 176;

const _: () = assert!(SWITCH_FRAME_SIZE.is_multiple_of(16));

/// Word indices into the frame (offset / 8); the rest stay 0.
const X29: usize = 0;
const X30: usize = 1;
const X19: usize = 2;
const X20: usize = 3;

/// Builds the first frame on a fresh stack and returns the stack pointer to
/// hand to `gort_switch`.
///
/// # Safety
/// `top` must be the 16-aligned upper end of a writable stack with at least
/// `SWITCH_FRAME_SIZE` bytes below it.
pub(crate) unsafe fn init_stack(top: usize, entry: EntryFn, arg: *mut u8) -> usize {
    debug_assert_eq!(top % 16, 0);
    let sp = top - SWITCH_FRAME_SIZE;
    let mut words = [0u64; SWITCH_FRAME_SIZE / 8];
    words[X29] = 0; // ends the frame-pointer chain
    words[X30] = gort_gstart as *const () as usize as u64; // resume address
    words[X19] = entry as usize as u64;
    words[X20] = arg as u64;
    // SAFETY: the caller guarantees [sp, top) is writable stack memory, and
    // sp is 16-aligned (top is, and the frame size is a multiple of 16).
    unsafe { (sp as *mut [u64; SWITCH_FRAME_SIZE / 8]).write(words) };
    sp
}

// ---------------------------------------------------------------------------
// Preemption support: the stack-guard word, the interrupted context, and
// the trampoline injection (see asm/aarch64/preempt.S and tls.S).
//
// The trampoline resumes the goroutine through rt_sigreturn on a copy of the
// kernel's signal frame that `inject_async_preempt` puts on the goroutine
// stack (aarch64 has no free register to jump back with). The layout and the
// contract are at the top of preempt.S; tests/aarch64/preempt_harness.c
// mirrors `inject_async_preempt` and checks every register survives.

use std::arch::asm;
use std::mem::{offset_of, size_of};

/// `struct rt_sigframe { siginfo_t info; struct ucontext uc; }`, as the
/// kernel's rt_sigreturn reads it at sp.
const SIGINFO_SIZE: usize = 128;
const UCONTEXT_SIZE: usize = 4560;
const SIGFRAME_SIZE: usize = SIGINFO_SIZE + UCONTEXT_SIZE;
/// `uc_mcontext.__reserved` (the FPSIMD/SVE/... records) within ucontext.
const RESERVED_OFFSET: usize = 464;
const RESERVED_SIZE: usize = 4096;
/// Spare bytes left below the interrupted sp (there is no red zone).
const GAP: usize = 64;
/// The frame record { x29, pc } below the copy.
const RECORD_SIZE: usize = 16;
/// Bytes `inject_async_preempt` writes below the interrupted sp (preempt.S's
/// CFA_OFF; its offsets assume exactly this layout).
const TRAMPOLINE_FRAME_SIZE: usize = RECORD_SIZE + SIGFRAME_SIZE + GAP;

const _: () = assert!(size_of::<libc::ucontext_t>() == UCONTEXT_SIZE);
const _: () = assert!(offset_of!(libc::ucontext_t, uc_mcontext) == 176);
const _: () = assert!(offset_of!(libc::mcontext_t, pstate) == 272);
const _: () = assert!(RESERVED_OFFSET + RESERVED_SIZE == UCONTEXT_SIZE);
const _: () = assert!(SIGFRAME_SIZE.is_multiple_of(16) && TRAMPOLINE_FRAME_SIZE == 4768);

/// Record magics in `__reserved` (arch/arm64/include/uapi/asm/sigcontext.h).
const FPSIMD_MAGIC: u32 = 0x4650_8001;
const ESR_MAGIC: u32 = 0x4553_5201;
const EXTRA_MAGIC: u32 = 0x4558_5401;
const SVE_MAGIC: u32 = 0x5356_4501;
const TPIDR2_MAGIC: u32 = 0x5450_4902;
const ZA_MAGIC: u32 = 0x5436_6345;
const FPMR_MAGIC: u32 = 0x4650_4d52;
const POE_MAGIC: u32 = 0x504f_4530;
const GCS_MAGIC: u32 = 0x4743_5300;
/// sve_context.flags: the state is streaming-mode (SME) state.
const SVE_SIG_FLAG_SM: u16 = 1;
/// gcs_context.features_enabled: PR_SHADOW_STACK_ENABLE.
const GCS_ENABLED: u64 = 1;
/// PSTATE.BTYPE (bits 11:10).
const PSR_BTYPE_MASK: u64 = 0xc00;

/// Bytes the trampoline needs below the interrupted stack pointer: the
/// 4768-byte frame copy, and the Rust frames from `gort_async_preempt2` to
/// the switch to g0 (a few hundred bytes; the frame walk runs in the
/// signal handler, on the signal stack).
pub(crate) const ASYNC_PREEMPT_STACK_NEED: usize = 8 * 1024;

extern "C" {
    fn gort_async_preempt();
    fn gort_async_preempt_end();
}

/// The current stack pointer.
#[inline(always)]
pub(crate) fn current_sp() -> usize {
    let sp: usize;
    // SAFETY: reads sp; no memory access.
    unsafe { asm!("mov {}, sp", out(reg) sp, options(nomem, nostack, preserves_flags)) };
    sp
}

/// This thread's `gort_tls_stackguard`. Never cached across calls: the
/// asm is not `pure`, so it runs every time it is reached.
#[inline(always)]
pub(crate) fn load_stackguard() -> usize {
    let g: usize;
    // SAFETY: initial-exec TLS read of a word defined in asm/aarch64/tls.S.
    unsafe {
        asm!(
            "mrs {g}, tpidr_el0",
            "adrp {t}, :gottprel:gort_tls_stackguard",
            "ldr {t}, [{t}, :gottprel_lo12:gort_tls_stackguard]",
            "ldr {g}, [{g}, {t}]",
            g = out(reg) g,
            t = out(reg) _,
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
            "mrs {a}, tpidr_el0",
            "adrp {t}, :gottprel:gort_tls_stackguard",
            "ldr {t}, [{t}, :gottprel_lo12:gort_tls_stackguard]",
            "add {a}, {a}, {t}",
            a = out(reg) a,
            t = out(reg) _,
            options(nostack, readonly, preserves_flags),
        )
    };
    a as *mut usize
}

/// Nothing to detect: rt_sigreturn restores whatever vector state the
/// kernel saved.
pub(crate) fn init_cpu_features() {}

/// Nothing to set up: the vector state travels in the copied signal frame.
pub(crate) fn minit_preempt() {}

/// Nothing to move: the vector state is in the copied signal frame on the
/// goroutine's stack (the trampoline passes a null area).
///
/// # Safety
/// No requirement on aarch64 (x86_64 needs the trampoline's area).
pub(crate) unsafe fn stash_vector_state(_area: *mut u8, _save: &mut Vec<u8>) {}

/// Nothing to restore from: the trampoline ignores the result.
pub(crate) fn unstash_vector_state(_save: &[u8]) -> *mut u8 {
    std::ptr::null_mut()
}

/// The interrupted pc and sp of a signal context.
///
/// # Safety
/// `uc` must be the ucontext the kernel passed to an SA_SIGINFO handler.
pub(crate) unsafe fn ctx_pc_sp(uc: *mut libc::ucontext_t) -> (usize, usize) {
    // SAFETY: caller guarantees a valid ucontext.
    let mc = unsafe { &(*uc).uc_mcontext };
    (mc.pc as usize, mc.sp as usize)
}

/// The registers an unwind starts from, in a signal context.
///
/// # Safety
/// `uc` must be the ucontext the kernel passed to an SA_SIGINFO handler.
pub(crate) unsafe fn ctx_unwind_regs(uc: *mut libc::ucontext_t) -> crate::traceback::Regs {
    // SAFETY: caller guarantees a valid ucontext.
    let mc = unsafe { &(*uc).uc_mcontext };
    crate::traceback::Regs {
        pc: mc.pc,
        sp: mc.sp,
        fp: mc.regs[29],
        lr: mc.regs[30],
    }
}

/// The registers an unwind of a suspended goroutine starts from, read
/// through `word` from the frame `gort_switch` left at `sp` (see
/// asm/aarch64/switch.S): x29 at +0, the resume address (x30) at +8, and
/// the stack pointer after the resume.
pub(crate) fn saved_context(
    sp: usize,
    word: impl Fn(usize) -> Option<usize>,
) -> Option<crate::traceback::Regs> {
    let pc = word(sp + 8)? as u64;
    Some(crate::traceback::Regs {
        pc,
        sp: (sp + SWITCH_FRAME_SIZE) as u64,
        fp: word(sp)? as u64,
        lr: pc,
    })
}

/// Whether `pc` is inside the trampoline itself.
pub(crate) fn in_trampoline(pc: usize) -> bool {
    let lo = gort_async_preempt as *const () as usize;
    let hi = gort_async_preempt_end as *const () as usize;
    (lo..=hi).contains(&pc)
}

/// Whether rt_sigreturn can restore the records in `__reserved` from a copy
/// at another address: no pointers (extra_context), no SME streaming mode
/// or live ZA (the trampoline would run with them on), no enabled GCS (its
/// sigreturn needs a cap token), nothing unknown.
///
/// # Safety
/// `rec` must point to the 4096-byte, 16-aligned `__reserved` area.
unsafe fn records_copyable(rec: *const u8) -> bool {
    let mut off = 0;
    let mut fpsimd = false;
    while off + 8 <= RESERVED_SIZE {
        // SAFETY: off + 8 <= 4096 and off is a multiple of 16 (sizes are
        // checked below), so the header is in bounds and aligned.
        let (magic, size) = unsafe {
            (
                rec.add(off).cast::<u32>().read(),
                rec.add(off + 4).cast::<u32>().read() as usize,
            )
        };
        if magic == 0 {
            return size == 0 && fpsimd;
        }
        if size < 16 || !size.is_multiple_of(16) || size > RESERVED_SIZE - off {
            return false;
        }
        let ok = match magic {
            FPSIMD_MAGIC => {
                fpsimd = true;
                true
            }
            ESR_MAGIC | TPIDR2_MAGIC | FPMR_MAGIC | POE_MAGIC => true,
            SVE_MAGIC => {
                // SAFETY: sve_context.flags, inside the record (size >= 16)
                // and 2-aligned.
                let flags = unsafe { rec.add(off + 10).cast::<u16>().read() };
                flags & SVE_SIG_FLAG_SM == 0
            }
            ZA_MAGIC => size == 16, // header only: ZA off
            GCS_MAGIC if size >= 32 => {
                // SAFETY: gcs_context.features_enabled, inside the record
                // (size >= 32) and 8-aligned.
                let enabled = unsafe { rec.add(off + 16).cast::<u64>().read() };
                enabled & GCS_ENABLED == 0
            }
            // Its datap points into the kernel's frame, after the records.
            EXTRA_MAGIC => false,
            _ => false, // ZT (only with ZA on), anything unknown
        };
        if !ok {
            return false;
        }
        off += size;
    }
    false
}

/// Rewrites the signal context so that, when the handler returns, the
/// goroutine enters `gort_async_preempt`, which later resumes it exactly
/// where it was through rt_sigreturn on a copy of this signal frame.
/// Returns false (and changes nothing) if it cannot: sp not 16-aligned, or
/// a frame record it cannot copy (see `records_copyable`).
///
/// # Safety
/// `uc` must be the handler's ucontext (inside the kernel's rt_sigframe)
/// for a goroutine running on its own stack with at least
/// `ASYNC_PREEMPT_STACK_NEED` bytes free below sp.
pub(crate) unsafe fn inject_async_preempt(uc: *mut libc::ucontext_t) -> bool {
    // SAFETY: caller guarantees a valid ucontext; plain reads.
    let (sp, pc, fp) = unsafe {
        let mc = &(*uc).uc_mcontext;
        (mc.sp as usize, mc.pc, mc.regs[29])
    };
    if !sp.is_multiple_of(16) {
        return false;
    }
    // SAFETY: __reserved is inside the kernel's ucontext (asserted layout).
    if !unsafe { records_copyable((uc as *const u8).add(RESERVED_OFFSET)) } {
        return false;
    }
    let frame = sp - GAP - SIGFRAME_SIZE; // 16-aligned: sp and both sizes are
    let record = frame - RECORD_SIZE;
    // SAFETY: the caller checked the goroutine stack has room below sp, and
    // nothing below sp is live on aarch64 Linux (no red zone). The copy is
    // taken before the context is changed below.
    unsafe {
        std::ptr::copy_nonoverlapping(
            uc as *const u8,
            (frame + SIGINFO_SIZE) as *mut u8,
            UCONTEXT_SIZE,
        );
        (record as *mut [u64; 2]).write([fp, pc]);
        let mc = &mut (*uc).uc_mcontext;
        mc.regs[29] = record as u64;
        mc.sp = record as u64;
        mc.pc = gort_async_preempt as *const () as usize as u64;
        mc.pstate &= !PSR_BTYPE_MASK;
    }
    true
}
