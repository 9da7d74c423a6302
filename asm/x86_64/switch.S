/*
 * x86_64 context switch and goroutine entry (System V ABI, Linux).
 *
 * A suspended context is just a stack pointer.  The stack it points at holds
 * the callee-saved state that gort_switch pushed, lowest address first:
 *
 *     saved sp ->  +0   MXCSR (4 bytes) | x87 control word (2) | pad (2)
 *                  +8   r15
 *                  +16  r14
 *                  +24  r13
 *                  +32  r12
 *                  +40  rbx
 *                  +48  rbp
 *                  +56  return address (where the context resumes)
 *                  +64  <- sp after the resume's `ret`
 *
 * src/arch/x86_64.rs builds the same 64-byte frame on a fresh goroutine
 * stack, with the return address set to gort_gstart, r12 = entry function,
 * r13 = its argument, rbp = 0, and MXCSR/FCW at their ABI defaults
 * (0x1f80 / 0x037f).  The layout is asserted there (SWITCH_FRAME_SIZE).
 */
#include "common.h"

/*
 * void gort_switch(uintptr_t *save_sp, uintptr_t next_sp)
 *
 * In:    rdi = where to store this context's stack pointer
 *        rsi = a stack pointer saved by gort_switch or built by init_stack
 *        rsp = 8 mod 16 (ordinary call), return address on top
 * Saves: rbx, rbp, r12-r15, MXCSR, x87 control word on the current stack,
 *        then stores rsp (pointing at the frame above) to *rdi.
 * Out:   runs on the next stack with its callee-saved registers, MXCSR
 *        control bits and FCW restored (each reloaded only if it differs
 *        from the current one), and returns to its saved return address with
 *        rsp = next_sp + 64.  rax, rcx, rdx, rsi, rdi, r8-r11 and the vector
 *        registers are caller-saved and not preserved (callers expect that).
 *        The stored rsp is written before the switch: whoever resumes this
 *        context must only read it after gort_switch has stored it, which
 *        the scheduler guarantees by publishing the G on g0 afterwards.
 */
FUNC_BEGIN(gort_switch)
    pushq %rbp                      /* callee-saved frame, see diagram */
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset %rbp, 0
    pushq %rbx
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset %rbx, 0
    pushq %r12
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset %r12, 0
    pushq %r13
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset %r13, 0
    pushq %r14
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset %r14, 0
    pushq %r15
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset %r15, 0
    subq $8, %rsp                   /* room for the FP control words */
    .cfi_adjust_cfa_offset 8
    stmxcsr (%rsp)                  /* SSE control/status (rounding, DAZ, FTZ) */
    fnstcw 4(%rsp)                  /* x87 control word (precision, rounding) */

    movq %rsp, (%rdi)               /* publish our stack pointer */
    movq %rsp, %rcx                 /* keep our frame: the current FP words */
    movq %rsi, %rsp                 /* ...and become the other context */
    /* The new stack has the same frame shape, so the CFI above still
     * describes it: an unwinder stopped here sees the resumed context. */

    /* Restore the FP control words only when they differ from the ones in
     * force (ldmxcsr and fldcw are slow, and they almost never differ).
     * Only MXCSR's control bits (15:6) are callee-saved; its status flags
     * (5:0) are caller-saved, so they do not force a reload. */
    movl (%rsp), %eax
    xorl (%rcx), %eax
    testl $0xffc0, %eax
    jz 1f
    ldmxcsr (%rsp)
1:  movzwl 4(%rsp), %eax
    cmpw 4(%rcx), %ax
    je 2f
    fldcw 4(%rsp)
2:  addq $8, %rsp
    .cfi_adjust_cfa_offset -8
    popq %r15
    .cfi_adjust_cfa_offset -8
    .cfi_restore %r15
    popq %r14
    .cfi_adjust_cfa_offset -8
    .cfi_restore %r14
    popq %r13
    .cfi_adjust_cfa_offset -8
    .cfi_restore %r13
    popq %r12
    .cfi_adjust_cfa_offset -8
    .cfi_restore %r12
    popq %rbx
    .cfi_adjust_cfa_offset -8
    .cfi_restore %rbx
    popq %rbp
    .cfi_adjust_cfa_offset -8
    .cfi_restore %rbp
    ret                             /* to the other context's resume point */
FUNC_END(gort_switch)

/*
 * gort_gstart: the bottom frame of every goroutine stack.
 *
 * Never called: gort_switch "returns" into it the first time a goroutine
 * runs.
 * In:    r12 = entry function (extern "C" fn(*mut u8) -> !)
 *        r13 = its argument
 *        rbp = 0, rsp = 0 mod 16 (init_stack aligns the frame for that)
 * Out:   does not return; the entry function ends by switching away for good.
 *
 * CFI: the return address is marked undefined, which tells gdb, perf and
 * the Rust unwinder that this is the outermost frame, so backtraces inside
 * a goroutine end here cleanly instead of wandering into stack garbage.
 * rbp = 0 ends frame-pointer walks (perf -g) at the same place.
 */
FUNC_BEGIN(gort_gstart)
    .cfi_undefined %rip
    xorl %ebp, %ebp                 /* end of the frame-pointer chain */
    movq %r13, %rdi                 /* argument */
    callq *%r12                     /* entry: never returns */
    ud2                             /* trap if it ever does */
FUNC_END(gort_gstart)
