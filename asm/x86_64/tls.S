/*
 * Per-thread (per-M) words the runtime reads from inline asm, where the
 * compiler cannot cache their address across a goroutine switch
 * (llvm#98479).
 *
 * gort_tls_stackguard: the limit the cooperative preemption check compares
 * the stack pointer with (preempt::check). 0 on threads that are not
 * running a goroutine (the check never fires there); the running
 * goroutine's stack limit; or STACK_PREEMPT (above any stack address) when
 * a preemption is requested. Accessed through the initial-exec TLS model
 * (GOTTPOFF), which also works when gort is linked into a shared object.
 */
#include "common.h"

    .section .tbss, "awT", @nobits
    .globl gort_tls_stackguard
    .hidden gort_tls_stackguard
    .type gort_tls_stackguard, @object
    .size gort_tls_stackguard, 8
    .p2align 3
gort_tls_stackguard:
    .zero 8

/* gort_tls_xsave_area: this M's vector-state save area (64-aligned,
 * gort_xsave_size bytes, header zeroed), where the preemption trampoline
 * saves the interrupted goroutine's XSAVE state instead of on the
 * goroutine's stack. Set by minit on every M; 0 elsewhere (no goroutine is
 * ever preempted there). */
    .globl gort_tls_xsave_area
    .hidden gort_tls_xsave_area
    .type gort_tls_xsave_area, @object
    .size gort_tls_xsave_area, 8
    .p2align 3
gort_tls_xsave_area:
    .zero 8

/* Settings the preemption trampoline reads (written once at start-up by
 * arch::init_cpu_features, before any preemption signal is sent). */
    .data
    .globl gort_xsave_size
    .hidden gort_xsave_size
    .p2align 3
gort_xsave_size:
    .quad 512
    .globl gort_use_xsave
    .hidden gort_use_xsave
gort_use_xsave:
    .byte 0
