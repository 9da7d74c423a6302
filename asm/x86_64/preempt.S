/*
 * x86_64 asynchronous preemption trampoline.
 *
 * The SIGURG handler (src/signal.rs, via arch::inject_async_preempt) makes
 * the interrupted goroutine "call" gort_async_preempt: it stores the
 * interrupted rip 136 bytes below the interrupted rsp — below the 128-byte
 * red zone, which a leaf function may be using — sets rsp to that slot and
 * rip to gort_async_preempt. So on entry:
 *
 *     rsp + 136 ->  interrupted rsp (CFA)
 *     rsp + 8   ->  128-byte red zone of the interrupted code (untouched)
 *     rsp       ->  interrupted rip (our "return address")
 *     every other register: exactly as interrupted (rsp is 8-aligned or
 *     worse: the interrupted code may be anywhere, even mid-push)
 *
 * The frame we build (rbp-based, rbp = rsp after `push rbp`):
 *
 *     rbp + 8   ->  interrupted rip   \ an ordinary frame record, so perf's
 *     rbp       ->  interrupted rbp   / frame-pointer walk goes through us
 *     rbp - 8   ->  rflags
 *     rbp - 16  ->  rax, then rbx, rcx, rdx, rsi, rdi, r8 ... r15 (rbp - 120)
 *     below     ->  at most 15 bytes of padding to 16-align the call
 *
 * The vector, x87 and MXCSR state does not go on the goroutine stack (with
 * AVX-512 and AMX it is 11 KiB, more than a small goroutine stack has and
 * more than perf's 8 KiB stack snapshot can unwind through): it is saved
 * (XSAVE, or FXSAVE on CPUs without OSXSAVE) into this M's save area, the
 * TLS word gort_tls_xsave_area, and gort_async_preempt2 moves it to the
 * goroutine if it yields. About 280 bytes of goroutine stack in all.
 *
 * Contract:
 * In:    as above; the handler checked there is room on the goroutine stack
 *        and that gort_tls_xsave_area is set on this thread.
 * Calls: gort_async_preempt2(area, saved) with rdi = the M's save area
 *        holding the interrupted vector state, rsi = rbp - 120 (the saved
 *        GPRs; the interrupted frames lie above them, for its errno
 *        fix-up), rsp 16-aligned and DF clear. It returns
 *        when the goroutine may go on (maybe on another thread, maybe after
 *        other goroutines ran on this one), with rax = the save area to
 *        restore the vector state from (the current M's, holding a copy).
 * Out:   every general-purpose register, rflags and the full vector/x87
 *        state (XRSTOR) are as they were when interrupted; `ret $128` pops
 *        the interrupted rip and moves rsp back over the red-zone gap, so
 *        rsp is the interrupted rsp again and execution continues at rip.
 *
 * CFI: the frame is a signal frame (.cfi_signal_frame: the "return address"
 * is the exact interrupted instruction, not a call's successor); the CFA is
 * the interrupted rsp and every saved register is described, so gdb, perf
 * (--call-graph dwarf) and _Unwind_Backtrace unwind into the interrupted
 * code. (The preemption check walks from the signal handler, before the
 * trampoline is entered; it does not depend on this CFI.)
 */
#include "common.h"

FUNC_BEGIN(gort_async_preempt)
    .cfi_signal_frame
    .cfi_def_cfa %rsp, 136           /* CFA = interrupted rsp */
    .cfi_offset %rip, -136           /* interrupted rip at [rsp] */
    pushq %rbp
    .cfi_def_cfa_offset 144          /* the push moved rsp: CFA = rsp + 144 */
    .cfi_offset %rbp, -144
    movq %rsp, %rbp                  /* frame record: [rbp]=rbp, [rbp+8]=rip */
    .cfi_def_cfa %rbp, 144
    pushfq
    pushq %rax
    .cfi_offset %rax, -160
    pushq %rbx
    .cfi_offset %rbx, -168
    pushq %rcx
    .cfi_offset %rcx, -176
    pushq %rdx
    .cfi_offset %rdx, -184
    pushq %rsi
    .cfi_offset %rsi, -192
    pushq %rdi
    .cfi_offset %rdi, -200
    pushq %r8
    .cfi_offset %r8, -208
    pushq %r9
    .cfi_offset %r9, -216
    pushq %r10
    .cfi_offset %r10, -224
    pushq %r11
    .cfi_offset %r11, -232
    pushq %r12
    .cfi_offset %r12, -240
    pushq %r13
    .cfi_offset %r13, -248
    pushq %r14
    .cfi_offset %r14, -256
    pushq %r15
    .cfi_offset %r15, -264

    /* Vector, x87 and MXCSR state into the M's save area (64-aligned;
     * XSAVE leaves the header's bytes past XSTATE_BV alone, and they must
     * be zero for XRSTOR: zero them). rbx holds the area, saved above. */
    movq gort_tls_xsave_area@GOTTPOFF(%rip), %rbx
    movq %fs:(%rbx), %rbx
    andq $-16, %rsp
    xorl %eax, %eax
    movq %rax, 520(%rbx)
    movq %rax, 528(%rbx)
    movq %rax, 536(%rbx)
    movq %rax, 544(%rbx)
    movq %rax, 552(%rbx)
    movq %rax, 560(%rbx)
    movq %rax, 568(%rbx)
    cmpb $0, gort_use_xsave(%rip)
    je 1f
    movl $-1, %eax                   /* every component XCR0 enables */
    movl $-1, %edx
    xsave64 (%rbx)
    jmp 2f
1:  fxsave64 (%rbx)
2:
    cld                              /* the ABI wants DF = 0 at calls */
    movq %rbx, %rdi
    leaq -120(%rbp), %rsi            /* the saved GPRs, r15 first */
    call gort_async_preempt2         /* rax = the area to restore from */

    cmpb $0, gort_use_xsave(%rip)
    je 3f
    movq %rax, %rcx
    movl $-1, %eax
    movl $-1, %edx
    xrstor64 (%rcx)
    jmp 4f
3:  fxrstor64 (%rax)
4:
    leaq -120(%rbp), %rsp            /* back to the saved GPRs (15 words) */
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rbx
    popq %rax
    popfq
    popq %rbp
    .cfi_def_cfa %rsp, 136
    ret $128                         /* pop rip, then skip the red-zone gap */
FUNC_END(gort_async_preempt)

/* Marks the end of the trampoline for the handler's "is this PC ours". */
    .globl gort_async_preempt_end
    .hidden gort_async_preempt_end
gort_async_preempt_end:
    nop
