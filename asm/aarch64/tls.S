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
 * (tpidr_el0 + the GOT's TPREL offset: R_AARCH64_TLSIE_ADR_GOTTPREL_PAGE21 /
 * _LD64_GOTTPREL_LO12_NC), which also works when gort is linked into a
 * shared object; the linker relaxes it to local-exec in executables.
 *
 * aarch64 needs no vector-state settings (the trampoline lets rt_sigreturn
 * restore the vector state), so unlike x86_64 there are no data words here.
 */
#include "common.h"

    .section .tbss, "awT", %nobits
    .globl gort_tls_stackguard
    .hidden gort_tls_stackguard
    .type gort_tls_stackguard, %object
    .size gort_tls_stackguard, 8
    .p2align 3
gort_tls_stackguard:
    .zero 8
