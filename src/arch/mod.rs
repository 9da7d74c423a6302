//! Per-architecture pieces: the assembly symbols, the layout of a suspended
//! context, and the first frame of a goroutine stack.
//!
//! Each architecture module exports the same small API:
//! - `init_stack(top, entry, arg) -> sp`: build the frame `gort_switch`
//!   resumes the first time, so that the goroutine starts in `gort_gstart`,
//!   which calls `entry(arg)` with the ABI's alignment.
//! - `SWITCH_FRAME_SIZE`: bytes `gort_switch` keeps on a suspended stack.

#[cfg(target_arch = "x86_64")]
mod x86_64;
#[cfg(target_arch = "x86_64")]
pub(crate) use self::x86_64::*;

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "aarch64")]
pub(crate) use self::aarch64::*;

/// The function a new goroutine starts in (on its own stack).
pub(crate) type EntryFn = unsafe extern "C" fn(arg: *mut u8) -> !;

extern "C" {
    /// Saves the callee-saved state on the current stack, stores the stack
    /// pointer to `*save_sp`, then resumes the context whose stack pointer is
    /// `next_sp`. Returns when some other `gort_switch` resumes the saved
    /// context. Contract in full at the top of `asm/<arch>/switch.S`.
    pub(crate) fn gort_switch(save_sp: *mut usize, next_sp: usize);

    /// The bottom frame of every goroutine stack (see switch.S).
    pub(crate) fn gort_gstart();
}
