//! x86_64: the first frame of a goroutine stack.
//!
//! ```text
//!   top (16-aligned)  ->  +--------------------------+
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
//! rsp = top, which is 16-aligned, as `gort_gstart` needs before its call.

use super::{gort_gstart, EntryFn};

/// Bytes of callee-saved state `gort_switch` keeps on a suspended stack.
pub(crate) const SWITCH_FRAME_SIZE: usize = 64;

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
    let sp = top - SWITCH_FRAME_SIZE;
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
