/*
 * aarch64 asynchronous preemption trampoline.
 *
 * Mechanism: resume through a copied rt_sigreturn frame.  aarch64 has no
 * register that is free at an arbitrary instruction (x30 is live in leaf
 * functions, x16/x17 may be live too), so the trampoline cannot jump back
 * by itself.  Instead the SIGURG handler (src/signal.rs, through
 * arch::inject_async_preempt) copies the kernel's ucontext onto the
 * goroutine stack, laid out as the `struct rt_sigframe { siginfo; ucontext }`
 * the kernel's rt_sigreturn reads at sp, and the trampoline ends with
 * rt_sigreturn on that copy, which restores every register at once.
 *
 * What inject does (interrupted sp = S, which must be 16-aligned, else
 * inject refuses):
 *
 *     S                 <- interrupted sp = CFA of this frame
 *     S - 64            64-byte gap (aarch64 Linux has no red zone; spare)
 *     S - 64 - 4560     copy of the kernel's ucontext (uc_flags .. the end
 *                       of uc_mcontext.__reserved: FPSIMD/SVE/... records
 *                       and their null terminator), byte for byte
 *     S - 64 - 4688     siginfo slot (128 bytes, not read by the kernel)
 *                       = the rt_sigframe copy, 16-aligned
 *     T = S - 4768      frame record { interrupted x29, interrupted pc }
 *
 * and in the kernel's context: sp = T, x29 = T, pc = gort_async_preempt,
 * PSTATE.BTYPE = 0 (the copy keeps the interrupted PSTATE).  It refuses
 * (returns false) for frames that cannot be replayed from a copy: an
 * extra_context record (it points into the kernel's frame), streaming SVE
 * mode or live ZA/ZT (SME: the trampoline would run in streaming mode), an
 * enabled Guarded Control Stack (rt_sigreturn wants a GCS cap token), or
 * any record it does not know.
 *
 * Contract:
 * In:    sp = x29 = T (16-aligned); [T] = { interrupted x29, interrupted pc }
 *        is an ordinary frame record, so frame-pointer walks (perf -g) go
 *        through us into the interrupted function; every other register is
 *        as interrupted and its authoritative copy is in the frame above.
 * Calls: gort_async_preempt2(x0 = 0: no separate vector save area, the
 *        state is in the copy; x1 = T: the interrupted state and frames
 *        lie from there up, for its errno fix-up) with sp = T (16-aligned).  It may switch to
 *        the scheduler and return later on another thread; it may clobber
 *        any register (callee-saved ones included): nothing is kept in
 *        registers across the call, everything comes back from the copy.
 * Then:  sigaltstack(NULL, &copy.uc.uc_stack): rt_sigreturn also restores
 *        the alternate signal stack from uc_stack, which holds the stack of
 *        the thread we were interrupted on; if we now run on another M that
 *        would hand this M the other M's signal stack.  Refreshing it with
 *        this thread's own makes that restore a no-op.
 * Out:   sp = the copy, x8 = __NR_rt_sigreturn, svc #0.  The kernel restores
 *        x0-x30, sp = S, pc, PSTATE (NZCV, BTYPE, ...), V0-V31 (or the full
 *        SVE Z/P/FFR state if it was live), FPSR, FPCR, TPIDR2/FPMR/POR_EL0
 *        when recorded, and the signal mask of the interrupted code; then
 *        execution continues at the interrupted pc.  Never returns here.
 *
 * CFI: a signal frame (.cfi_signal_frame: the "return address" is the exact
 * interrupted instruction, unwinders must not subtract 1 from it).  The CFA
 * is the interrupted sp (= sp + 4768 while the trampoline runs), x0-x30 are
 * described at their slots in the copied uc_mcontext.regs, and the
 * interrupted pc (uc_mcontext.pc) is given in DWARF column 96, declared the
 * return-address column.  x30 cannot serve as the return column: in a leaf
 * function it still holds the caller's return address, and the unwinder
 * needs both.  96 is the column libgcc itself uses for the pc of kernel
 * signal frames (__LIBGCC_DWARF_ALT_FRAME_RETURN_COLUMN__, the only spare
 * column with a register size in its table), so _Unwind_Backtrace, perf
 * and gdb unwind
 * into the interrupted code and beyond.  (LLVM's libunwind ignores columns
 * above 95 and would stop here.)
 */
#include "common.h"

#define REC_SIZE      16                        /* frame record at T */
#define SIGINFO_SIZE  128
#define UC_SIZE       4560                      /* struct ucontext, arm64 */
#define GAP           64
#define FRAME_OFF     REC_SIZE                  /* rt_sigframe copy: T + 16 */
#define UC_OFF        (FRAME_OFF + SIGINFO_SIZE)        /* T + 144 */
#define UC_STACK_OFF  (UC_OFF + 16)             /* uc_stack: T + 160 */
#define REGS_OFF      (UC_OFF + 176 + 8)        /* uc_mcontext.regs: T + 328 */
#define PC_OFF        (REGS_OFF + 31 * 8 + 8)   /* uc_mcontext.pc: T + 584 */
#define CFA_OFF       (UC_OFF + UC_SIZE + GAP)  /* interrupted sp: T + 4768 */
#define PC_COLUMN     96

#define NR_SIGALTSTACK   132
#define NR_RT_SIGRETURN  139

FUNC_BEGIN(gort_async_preempt)
    .cfi_signal_frame
    .cfi_return_column PC_COLUMN
    .cfi_def_cfa sp, CFA_OFF
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30
    .cfi_offset x\n, REGS_OFF + 8 * \n - CFA_OFF
    .endr
    .cfi_offset PC_COLUMN, PC_OFF - CFA_OFF
    hint #34                        /* bti c (a NOP without BTI) */
    mov x0, xzr                     /* no save area (result ignored) */
    mov x1, sp                      /* the interrupted state starts here */
    bl gort_async_preempt2          /* sp = x29 = T, 16-aligned */

    /* Maybe on another thread now: make rt_sigreturn's altstack restore
     * re-install this thread's own signal stack (see above). */
    mov x0, xzr
    add x1, sp, #UC_STACK_OFF
    mov x8, #NR_SIGALTSTACK
    svc #0

    add sp, sp, #FRAME_OFF          /* sp = the rt_sigframe copy */
    .cfi_adjust_cfa_offset -FRAME_OFF
    mov x8, #NR_RT_SIGRETURN
    svc #0                          /* restores everything; no return */
    brk #0x3e8                      /* rt_sigreturn failed: kernel sends SIGSEGV */
FUNC_END(gort_async_preempt)

/* Marks the end of the trampoline for the handler's "is this PC ours". */
    .globl gort_async_preempt_end
    .hidden gort_async_preempt_end
gort_async_preempt_end:
    nop
