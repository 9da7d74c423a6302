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

/// Bytes of callee-saved state `gort_switch` keeps on a suspended stack:
/// MXCSR/FCW, r15, r14, r13, r12, rbx, rbp and the return address (8
/// words, in that order from the lowest address; asm/x86_64/switch.S).
pub(crate) const SWITCH_FRAME_SIZE: usize = 64;

/// Words of the frame `init_stack` builds: the whole frame, no more.
const FRAME_WORDS: usize = 8;
const _: () = assert!(FRAME_WORDS * 8 == SWITCH_FRAME_SIZE);
const _: () = assert!((TOP_GAP + SWITCH_FRAME_SIZE).is_multiple_of(16));

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
    let words: [u64; FRAME_WORDS] = [
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
/// red-zone gap and saved registers (~280; the vector state goes to the
/// M's save area), and the Rust frames from `gort_async_preempt2` to the
/// switch to g0 (a few hundred bytes; the frame walk runs in the signal
/// handler, on the signal stack). tests/preempt_sound.rs measures the
/// whole: 680 bytes optimised, about 1.5 KiB unoptimised.
pub(crate) const ASYNC_PREEMPT_STACK_NEED: usize = 4 * 1024;

extern "C" {
    fn gort_async_preempt();
    fn gort_async_preempt_end();
    static mut gort_xsave_size: u64;
    static mut gort_use_xsave: u8;
}

/// XSAVE state components the CPU may have (bits of XCR0; AMX tile data
/// is 18).
const XSAVE_COMPONENTS: usize = 64;

/// For each XSAVE state component i >= 2: the end of its slot in the
/// standard-format area (offset + size, from CPUID leaf 0xD sub-leaf i);
/// 0 for components the CPU does not have. Written once by
/// `init_cpu_features`, read-only afterwards.
static XSAVE_COMPONENT_END: std::sync::OnceLock<[u32; XSAVE_COMPONENTS]> =
    std::sync::OnceLock::new();

/// Size of the legacy FXSAVE region plus the XSAVE header: the least an
/// XSAVE image holds.
const XSAVE_MIN: usize = 576;

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

/// Reads the CPU's vector-state features for the trampoline. Idempotent;
/// the first call (from the first M's `minit`, before any preemption
/// signal can be sent) does the work.
pub(crate) fn init_cpu_features() {
    XSAVE_COMPONENT_END.get_or_init(|| {
        use std::arch::x86_64::{__cpuid, __cpuid_count};
        let leaf1 = __cpuid(1);
        let osxsave = leaf1.ecx & (1 << 27) != 0;
        let mut ends = [0u32; XSAVE_COMPONENTS];
        let (use_xsave, size) = if osxsave {
            // Leaf 0xD exists when OSXSAVE is set. EBX of sub-leaf 0 is the
            // XSAVE area size for the features enabled in XCR0; EAX/EDX of
            // sub-leaf 0 the components the CPU supports; sub-leaf i gives
            // component i's size (EAX) and standard-format offset (EBX).
            let d = __cpuid_count(0xd, 0);
            let supported = d.eax as u64 | (d.edx as u64) << 32;
            for (i, end) in ends.iter_mut().enumerate().skip(2) {
                if supported & (1 << i) != 0 {
                    let c = __cpuid_count(0xd, i as u32);
                    *end = c.ebx + c.eax;
                }
            }
            (1u8, (d.ebx as u64).max(XSAVE_MIN as u64).div_ceil(64) * 64)
        } else {
            (0u8, 512)
        };
        // SAFETY: runs once (OnceLock), before any M has a save area and so
        // before any preemption signal can be acted on; read-only after.
        unsafe {
            gort_xsave_size = size;
            gort_use_xsave = use_xsave;
        }
        ends
    });
}

/// Gives the calling thread (a new M) its vector-state save area, where
/// the trampoline saves the state of a goroutine it interrupts.
pub(crate) fn minit_preempt() {
    init_cpu_features();
    // SAFETY: written once above, read-only now.
    let size = unsafe { gort_xsave_size } as usize;
    let layout = std::alloc::Layout::from_size_align(size, 64).expect("XSAVE area layout");
    // SAFETY: the layout has a non-zero size. Zeroed: the XSAVE header must
    // be (the trampoline zeroes it again anyway).
    let area = unsafe { std::alloc::alloc_zeroed(layout) };
    if area.is_null() {
        std::alloc::handle_alloc_error(layout);
    }
    // SAFETY: initial-exec TLS write of a word defined in asm/x86_64/tls.S,
    // on the thread that owns it; the area lives for the M's life (Ms never
    // exit).
    unsafe {
        asm!(
            "mov {t}, qword ptr [rip + gort_tls_xsave_area@GOTTPOFF]",
            "mov qword ptr fs:[{t}], {a}",
            t = out(reg) _,
            a = in(reg) area,
            options(nostack, preserves_flags),
        )
    };
}

/// This M's save area (null on threads that are not Ms).
fn current_xsave_area() -> *mut u8 {
    let a: *mut u8;
    // SAFETY: initial-exec TLS read of a word defined in asm/x86_64/tls.S.
    unsafe {
        asm!(
            "mov {a}, qword ptr [rip + gort_tls_xsave_area@GOTTPOFF]",
            "mov {a}, qword ptr fs:[{a}]",
            a = out(reg) a,
            options(nostack, readonly, preserves_flags),
        )
    };
    a
}

/// How many bytes of the save area `area` the state just saved there
/// occupies: the legacy region and header, plus every component XSAVE
/// marked in use (XSTATE_BV) — usually a few hundred bytes to 2.7 KiB, not
/// the 11 KiB the area is sized for. Components not in use are restored
/// to their initial state by XRSTOR without being read.
///
/// # Safety
/// `area` must be an M's save area holding a state the trampoline saved.
unsafe fn saved_state_len(area: *const u8) -> usize {
    // SAFETY: written once by init_cpu_features, read-only now.
    if unsafe { gort_use_xsave } == 0 {
        return 512;
    }
    let ends = XSAVE_COMPONENT_END.get().expect("cpu features initialised");
    // SAFETY: the caller guarantees an XSAVE image; XSTATE_BV is its
    // 8-byte-aligned word at offset 512.
    let in_use = unsafe { area.add(512).cast::<u64>().read() };
    let mut len = XSAVE_MIN;
    for (i, &end) in ends.iter().enumerate().skip(2) {
        if in_use & (1 << i) != 0 {
            len = len.max(end as usize);
        }
    }
    len
}

/// Trampoline side, before the goroutine yields: moves the vector state
/// the trampoline saved into `area` (this M's) to the goroutine's own
/// buffer, so the M's area is free for the next goroutine it interrupts.
///
/// # Safety
/// `area` must be the save area the trampoline passed, holding the state
/// of the goroutine whose buffer `save` is.
pub(crate) unsafe fn stash_vector_state(area: *mut u8, save: &mut Vec<u8>) {
    // SAFETY: as the caller guarantees.
    let len = unsafe { saved_state_len(area) };
    save.clear();
    // SAFETY: the area is at least gort_xsave_size >= len bytes.
    save.extend_from_slice(unsafe { std::slice::from_raw_parts(area, len) });
}

/// Trampoline side, after the goroutine is resumed (maybe on another M):
/// copies its vector state back into the current M's save area and
/// returns that area for the trampoline to restore from.
pub(crate) fn unstash_vector_state(save: &[u8]) -> *mut u8 {
    let area = current_xsave_area();
    // SAFETY: the M's area has room for any saved state (gort_xsave_size
    // bytes) and does not overlap the goroutine's heap buffer. Nothing else
    // uses the area until the trampoline has restored from it: a new
    // preemption signal is refused while the pc is in gort's code or the
    // trampoline.
    unsafe { std::ptr::copy_nonoverlapping(save.as_ptr(), area, save.len()) };
    area
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

/// The registers an unwind starts from, in a signal context.
///
/// # Safety
/// `uc` must be the ucontext the kernel passed to an SA_SIGINFO handler.
pub(crate) unsafe fn ctx_unwind_regs(uc: *mut libc::ucontext_t) -> crate::traceback::Regs {
    // SAFETY: caller guarantees a valid ucontext.
    let gregs = unsafe { &(*uc).uc_mcontext.gregs };
    crate::traceback::Regs {
        pc: gregs[libc::REG_RIP as usize] as u64,
        sp: gregs[libc::REG_RSP as usize] as u64,
        fp: gregs[libc::REG_RBP as usize] as u64,
        lr: 0,
    }
}

/// The registers an unwind of a suspended goroutine starts from, read
/// through `word` from the frame `gort_switch` left at `sp` (see
/// asm/x86_64/switch.S): the resume address at +56, rbp at +48, and the
/// stack pointer after the resume's `ret`.
pub(crate) fn saved_context(
    sp: usize,
    word: impl Fn(usize) -> Option<usize>,
) -> Option<crate::traceback::Regs> {
    Some(crate::traceback::Regs {
        pc: word(sp + 56)? as u64,
        sp: (sp + SWITCH_FRAME_SIZE) as u64,
        fp: word(sp + 48)? as u64,
        lr: 0,
    })
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
