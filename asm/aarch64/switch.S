/*
 * aarch64 context switch and goroutine entry (AAPCS64, Linux).
 *
 * A suspended context is just a stack pointer.  The stack it points at holds
 * the callee-saved state that gort_switch stored, lowest address first:
 *
 *     saved sp ->  +0    x29 (frame pointer)  \ an ordinary AAPCS64 frame
 *                  +8    x30 (resume address) / record: [fp] = fp, lr
 *                  +16   x19
 *                  +24   x20
 *                  +32   x21
 *                  +40   x22
 *                  +48   x23
 *                  +56   x24
 *                  +64   x25
 *                  +72   x26
 *                  +80   x27
 *                  +88   x28
 *                  +96   d8
 *                  +104  d9
 *                  +112  d10
 *                  +120  d11
 *                  +128  d12
 *                  +136  d13
 *                  +144  d14
 *                  +152  d15
 *                  +160  FPCR (zero-extended to 64 bits)
 *                  +168  pad (keeps the frame a multiple of 16)
 *                  +176  <- sp after the resume (the caller's sp, CFA)
 *
 * src/arch/aarch64.rs builds the same 176-byte frame on a fresh goroutine
 * stack, with x30 = gort_gstart, x19 = entry function, x20 = its argument,
 * x29 = 0, every other slot 0 (FPCR 0 is the Linux default: round to
 * nearest, no flush-to-zero, no default NaN).  The layout is asserted there
 * (SWITCH_FRAME_SIZE) and mirrored by tests/aarch64/switch_harness.c.
 *
 * Only the low 64 bits of v8-v15 (d8-d15) are callee-saved in AAPCS64; the
 * upper halves and v0-v7/v16-v31 are caller-saved, as is FPSR (the
 * cumulative exception flags), so none of those are kept.
 */
#include "common.h"

/*
 * void gort_switch(uintptr_t *save_sp, uintptr_t next_sp)
 *
 * In:    x0  = where to store this context's stack pointer
 *        x1  = a stack pointer saved by gort_switch or built by init_stack
 *        x30 = return address (this context's resume point)
 *        sp  = 0 mod 16 (always true on AArch64 at a call)
 * Saves: x19-x28, x29, x30, d8-d15 and FPCR in a 176-byte frame below sp,
 *        then stores sp (pointing at that frame) to *x0.
 * Out:   runs on the next stack with its x19-x29, d8-d15 and FPCR restored,
 *        and returns to its saved x30 with sp = next_sp + 176.
 *        x0-x18 (x9/x10 are used as scratch), the vector registers beyond
 *        d8-d15 and FPSR are caller-saved and not preserved.  x18 (the
 *        platform register) is not touched.
 *        The stored sp is written before the switch: whoever resumes this
 *        context must only read it after gort_switch has stored it, which
 *        the scheduler guarantees by publishing the G on g0 afterwards.
 */
FUNC_BEGIN(gort_switch)
    /* Frame record first, pre-indexed: allocates the whole frame. */
    stp x29, x30, [sp, #-176]!
    .cfi_def_cfa_offset 176
    .cfi_offset x29, -176
    .cfi_offset x30, -168
    /* Point x29 at the record so a frame-pointer walk (perf -g) taken in
     * here still yields our caller; x29 itself is restored from the frame. */
    mov x29, sp

    /* Callee-saved general registers. */
    stp x19, x20, [sp, #16]
    .cfi_offset x19, -160
    .cfi_offset x20, -152
    stp x21, x22, [sp, #32]
    .cfi_offset x21, -144
    .cfi_offset x22, -136
    stp x23, x24, [sp, #48]
    .cfi_offset x23, -128
    .cfi_offset x24, -120
    stp x25, x26, [sp, #64]
    .cfi_offset x25, -112
    .cfi_offset x26, -104
    stp x27, x28, [sp, #80]
    .cfi_offset x27, -96
    .cfi_offset x28, -88

    /* Callee-saved FP registers (low 64 bits of v8-v15). */
    stp d8, d9, [sp, #96]
    .cfi_offset d8, -80
    .cfi_offset d9, -72
    stp d10, d11, [sp, #112]
    .cfi_offset d10, -64
    .cfi_offset d11, -56
    stp d12, d13, [sp, #128]
    .cfi_offset d12, -48
    .cfi_offset d13, -40
    stp d14, d15, [sp, #144]
    .cfi_offset d14, -32
    .cfi_offset d15, -24

    /* FP control (rounding mode, FZ, DN, AHP); x9 keeps it for later. */
    mrs x9, fpcr
    str x9, [sp, #160]

    /* Publish our stack pointer and become the other context.  (str cannot
     * take sp as its data register, hence the copy through x10.) */
    mov x10, sp
    str x10, [x0]
    mov sp, x1
    /* The new stack has the same frame shape, so the CFI above still
     * describes it: an unwinder stopped here sees the resumed context. */

    /* FPCR: write it only when it differs, since an MSR to FPCR can be
     * slow (self-synchronising) on some cores and it almost never changes. */
    ldr x10, [sp, #160]
    cmp x9, x10
    b.eq 1f
    msr fpcr, x10
1:
    /* FP registers. */
    ldp d8, d9, [sp, #96]
    .cfi_restore d8
    .cfi_restore d9
    ldp d10, d11, [sp, #112]
    .cfi_restore d10
    .cfi_restore d11
    ldp d12, d13, [sp, #128]
    .cfi_restore d12
    .cfi_restore d13
    ldp d14, d15, [sp, #144]
    .cfi_restore d14
    .cfi_restore d15

    /* General registers. */
    ldp x19, x20, [sp, #16]
    .cfi_restore x19
    .cfi_restore x20
    ldp x21, x22, [sp, #32]
    .cfi_restore x21
    .cfi_restore x22
    ldp x23, x24, [sp, #48]
    .cfi_restore x23
    .cfi_restore x24
    ldp x25, x26, [sp, #64]
    .cfi_restore x25
    .cfi_restore x26
    ldp x27, x28, [sp, #80]
    .cfi_restore x27
    .cfi_restore x28

    /* Frame record last, post-indexed: frees the frame. */
    ldp x29, x30, [sp], #176
    .cfi_def_cfa_offset 0
    .cfi_restore x29
    .cfi_restore x30
    ret                             /* to the other context's resume point */
FUNC_END(gort_switch)

/*
 * gort_gstart: the bottom frame of every goroutine stack.
 *
 * Never called: gort_switch "returns" into it the first time a goroutine
 * runs.
 * In:    x19 = entry function (extern "C" fn(*mut u8) -> !)
 *        x20 = its argument
 *        x29 = 0, sp = 0 mod 16 (the top of the stack init_stack built on)
 * Out:   does not return; the entry function ends by switching away for good.
 *
 * CFI: the return address (x30) is marked undefined, which tells gdb, perf
 * and the Rust unwinder that this is the outermost frame, so backtraces
 * inside a goroutine end here cleanly instead of wandering into stack
 * garbage.  x29 = 0 ends frame-pointer walks (perf -g) at the same place.
 */
FUNC_BEGIN(gort_gstart)
    .cfi_undefined x30
    mov x29, xzr                    /* end of the frame-pointer chain */
    mov x0, x20                     /* argument */
    blr x19                         /* entry: never returns */
    brk #0                          /* trap if it ever does */
FUNC_END(gort_gstart)
