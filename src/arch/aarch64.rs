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
