/*
 * Stand-alone test of asm/aarch64/preempt.S (gort_async_preempt) and of the
 * injection in src/arch/aarch64.rs (inject_async_preempt).
 *
 * Built and run by tests/aarch64/run.sh (static, under qemu-aarch64 on other
 * hosts).  The main thread runs harness_spin (asm, below), which loops:
 *
 *   1. harness_fill computes values unique to the iteration for x0-x17,
 *      x19-x30, q0-q31 (all 128 bits), NZCV, FPSR and FPCR; the asm loads
 *      them (NZCV/FPSR/FPCR first, then the vectors, then the general
 *      registers);
 *   2. a hold loop counts x28 down to 0 and x27 up (flags untouched);
 *   3. the asm stores every register again and harness_check compares
 *      (x28 must be 0, x27 must have grown by the count).
 *
 * Loads and stores are separated by `b .+4`, so under qemu (which delivers
 * signals between translation blocks) preemption also lands between them,
 * with registers half loaded or half stored, not only in the hold loop.
 *
 * A second thread sends SIGURG with tgkill, SIGNALS times, each after the
 * previous one was handled (and its preemption finished) plus a random
 * delay.  The handler mirrors src/signal.rs + arch::inject_async_preempt:
 * if the pc is in harness_spin (standing in for "a preemptible goroutine"),
 * it runs inject(), a line-by-line mirror of the Rust inject_async_preempt
 * (keep the two in step).  The goroutine then enters the real trampoline,
 * which calls this file's gort_async_preempt2 (asm): that calls
 * harness_preempt2_body and then clobbers every register it can -- x0-x17,
 * x19-x29 (callee-saved ones too, on purpose: the trampoline must not
 * depend on them), q0-q31, NZCV, FPSR and FPCR -- before returning.
 *
 * harness_preempt2_body
 *   - counts the preemption;
 *   - walks the stack with _Unwind_Backtrace (libgcc, static) and checks it
 *     goes through the trampoline into harness_spin at exactly the
 *     interrupted pc, sees there the interrupted x0-x30 and sp (CFA), and
 *     goes on to main and the end of the stack: this proves the CFI;
 *   - switches this thread to the other of two alternate signal stacks, as
 *     if the goroutine had moved to another M; the next handler checks it
 *     runs on the new one (rt_sigreturn on the copied frame would bring
 *     back the old one without the trampoline's sigaltstack refresh).
 *
 * Exit status 0 and a one-line summary on success; on a mismatch a message
 * naming the register (or the unwinding step), and exit status 1.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>
#include <unwind.h>

#if !defined(__aarch64__)
#error "this harness is for aarch64 only"
#endif

#define SIGNALS 20000
#define HOLD_ITERS 20000u        /* hold-loop length (plus k % 64) */
#define ALT_SIZE (64u * 1024u)
#define WAIT_LIMIT_NS (30ull * 1000000000ull)

/* See switch_harness.c: hidden, so C references resolve directly. */
#define HIDDEN __attribute__((visibility("hidden")))

/* The code under test (asm/aarch64/preempt.S). */
HIDDEN void gort_async_preempt(void);
HIDDEN void gort_async_preempt_end(void);

/* This file's asm (below). */
HIDDEN uint64_t harness_spin(void);
HIDDEN void harness_spin_end(void);
HIDDEN void harness_hold(void);
HIDDEN void harness_hold_end(void);
void gort_async_preempt2(void);

/* ---- mirror of inject_async_preempt (src/arch/aarch64.rs) --------------- */

#define SIGINFO_SIZE 128u
#define UCONTEXT_SIZE 4560u
#define SIGFRAME_SIZE (SIGINFO_SIZE + UCONTEXT_SIZE)
#define RESERVED_OFFSET 464u
#define RESERVED_SIZE 4096u
#define GAP 64u
#define RECORD_SIZE 16u
#define TRAMPOLINE_FRAME_SIZE (RECORD_SIZE + SIGFRAME_SIZE + GAP) /* 4768 */

_Static_assert(sizeof(ucontext_t) == UCONTEXT_SIZE, "ucontext size");
_Static_assert(offsetof(ucontext_t, uc_stack) == 16, "uc_stack");
_Static_assert(offsetof(ucontext_t, uc_mcontext) == 176, "uc_mcontext");
_Static_assert(offsetof(ucontext_t, uc_mcontext.__reserved) == RESERVED_OFFSET,
               "__reserved");
_Static_assert(sizeof(siginfo_t) == SIGINFO_SIZE, "siginfo size");

#define K_FPSIMD_MAGIC 0x46508001u
#define K_ESR_MAGIC 0x45535201u
#define K_EXTRA_MAGIC 0x45585401u
#define K_SVE_MAGIC 0x53564501u
#define K_TPIDR2_MAGIC 0x54504902u
#define K_ZA_MAGIC 0x54366345u
#define K_FPMR_MAGIC 0x46504d52u
#define K_POE_MAGIC 0x504f4530u
#define K_GCS_MAGIC 0x47435300u
#define K_SVE_SIG_FLAG_SM 1u
#define K_GCS_ENABLED 1u
#define K_PSR_BTYPE_MASK 0xc00u

static int records_copyable(const unsigned char *rec)
{
    size_t off = 0;
    int fpsimd = 0;
    while (off + 8 <= RESERVED_SIZE) {
        uint32_t magic = *(const uint32_t *)(rec + off);
        size_t size = *(const uint32_t *)(rec + off + 4);
        if (magic == 0)
            return size == 0 && fpsimd;
        if (size < 16 || size % 16 != 0 || size > RESERVED_SIZE - off)
            return 0;
        int ok;
        switch (magic) {
        case K_FPSIMD_MAGIC:
            fpsimd = 1;
            ok = 1;
            break;
        case K_ESR_MAGIC:
        case K_TPIDR2_MAGIC:
        case K_FPMR_MAGIC:
        case K_POE_MAGIC:
            ok = 1;
            break;
        case K_SVE_MAGIC:
            ok = (*(const uint16_t *)(rec + off + 10) & K_SVE_SIG_FLAG_SM) == 0;
            break;
        case K_ZA_MAGIC:
            ok = size == 16;
            break;
        case K_GCS_MAGIC:
            ok = size >= 32 && (*(const uint64_t *)(rec + off + 16) & K_GCS_ENABLED) == 0;
            break;
        case K_EXTRA_MAGIC:
        default:
            ok = 0;
            break;
        }
        if (!ok)
            return 0;
        off += size;
    }
    return 0;
}

static int inject(ucontext_t *uc)
{
    uint64_t sp = uc->uc_mcontext.sp;
    uint64_t pc = uc->uc_mcontext.pc;
    uint64_t fp = uc->uc_mcontext.regs[29];
    if (sp % 16 != 0)
        return 0;
    if (!records_copyable((const unsigned char *)uc + RESERVED_OFFSET))
        return 0;
    uint64_t frame = sp - GAP - SIGFRAME_SIZE;
    uint64_t record = frame - RECORD_SIZE;
    memcpy((void *)(uintptr_t)(frame + SIGINFO_SIZE), uc, UCONTEXT_SIZE);
    ((uint64_t *)(uintptr_t)record)[0] = fp;
    ((uint64_t *)(uintptr_t)record)[1] = pc;
    uc->uc_mcontext.regs[29] = record;
    uc->uc_mcontext.sp = record;
    uc->uc_mcontext.pc = (uint64_t)(uintptr_t)gort_async_preempt;
    uc->uc_mcontext.pstate &= ~(uint64_t)K_PSR_BTYPE_MASK;
    return 1;
}

/* ---- shared state ------------------------------------------------------- */

static pid_t main_tid;
static _Atomic uint64_t handled;     /* SIGURGs the handler saw */
static _Atomic uint64_t injected;    /* ... that it redirected */
static _Atomic uint64_t refused;     /* ... in harness_spin, inject said no */
static _Atomic uint64_t completed;   /* trampoline runs (preempt2 calls) */
static _Atomic uint64_t outside_hold; /* injections outside the hold loop */
static _Atomic uint64_t in_tramp;    /* signals that found the trampoline */
static _Atomic uint64_t fills;       /* iterations started */
static _Atomic uint64_t alt_errors;  /* handler ran on a stale altstack */
static _Atomic int done;
static _Atomic uint32_t seen_magic[16]; /* record kinds in signal frames */

static unsigned char *alt_stacks[2];
static _Atomic int cur_alt;

/* The interrupted state of the latest injection (main thread only). */
static uint64_t rec_x[31], rec_sp, rec_pc;

static void note_records(const unsigned char *rec)
{
    for (size_t off = 0; off + 8 <= RESERVED_SIZE;) {
        uint32_t magic = *(const uint32_t *)(rec + off);
        uint32_t size = *(const uint32_t *)(rec + off + 4);
        if (magic == 0 || size < 8)
            return;
        for (int i = 0; i < 16; i++) {
            uint32_t m = 0;
            if (atomic_compare_exchange_strong(&seen_magic[i], &m, magic) || m == magic)
                break;
        }
        off += size;
    }
}

static void on_sigurg(int sig, siginfo_t *si, void *ctx)
{
    (void)sig;
    (void)si;
    ucontext_t *uc = ctx;
    unsigned char here;
    uintptr_t lo = (uintptr_t)alt_stacks[atomic_load(&cur_alt)];
    if ((uintptr_t)&here < lo || (uintptr_t)&here >= lo + ALT_SIZE)
        atomic_fetch_add(&alt_errors, 1);
    note_records((const unsigned char *)uc + RESERVED_OFFSET);

    uint64_t pc = uc->uc_mcontext.pc;
    if (pc >= (uintptr_t)harness_spin && pc < (uintptr_t)harness_spin_end) {
        for (int i = 0; i < 31; i++)
            rec_x[i] = uc->uc_mcontext.regs[i];
        rec_sp = uc->uc_mcontext.sp;
        rec_pc = pc;
        if (inject(uc)) {
            atomic_fetch_add(&injected, 1);
            if (pc < (uintptr_t)harness_hold || pc >= (uintptr_t)harness_hold_end)
                atomic_fetch_add(&outside_hold, 1);
        } else {
            atomic_fetch_add(&refused, 1);
        }
    } else if (pc >= (uintptr_t)gort_async_preempt && pc <= (uintptr_t)gort_async_preempt_end) {
        atomic_fetch_add(&in_tramp, 1);
    }
    atomic_fetch_add(&handled, 1);
}

/* ---- register images ---------------------------------------------------- */

struct regs {
    uint64_t x[31];
    uint64_t pad0;
    uint64_t nzcv, fpsr, fpcr, pad1;
    unsigned __int128 q[32];
};
/* Offsets used by the asm below (image at sp + 176 and sp + 976). */
_Static_assert(offsetof(struct regs, nzcv) == 256, "nzcv");
_Static_assert(offsetof(struct regs, fpsr) == 264, "fpsr");
_Static_assert(offsetof(struct regs, fpcr) == 272, "fpcr");
_Static_assert(offsetof(struct regs, q) == 288, "q");
_Static_assert(sizeof(struct regs) == 800, "size");

static uint64_t fpsr_mask, fpcr_mask;

static uint64_t rotl(uint64_t v, unsigned r)
{
    r &= 63;
    return r ? (v << r) | (v >> (64 - r)) : v;
}

HIDDEN void harness_fill(uint64_t k, struct regs *e)
{
    uint64_t base = (k + 1) * 0x9e3779b97f4a7c15ull;
    atomic_fetch_add(&fills, 1);
    memset(e, 0, sizeof *e);
    for (unsigned i = 0; i < 31; i++)
        e->x[i] = rotl(base, i * 7) ^ (0x0101010101010101ull * i) ^ ((uint64_t)i << 56);
    e->x[18] = 0;                           /* not loaded: the platform register */
    e->x[28] = HOLD_ITERS + (k % 64);       /* the hold loop's counter */
    e->nzcv = ((k * 5 + 3) & 0xf) << 28;
    e->fpsr = (base ^ (base >> 29)) & fpsr_mask;
    e->fpcr = (rotl(base, 17) ^ (k << 22)) & fpcr_mask;
    for (unsigned i = 0; i < 32; i++) {
        uint64_t lo = rotl(base, 2 * i + 1) + i;
        uint64_t hi = ~base ^ (0x1111111111111111ull * (i & 15)) ^ ((uint64_t)i << 40);
        e->q[i] = ((unsigned __int128)hi << 64) | lo;
    }
}

static void fail_header(uint64_t k)
{
    fprintf(stderr,
            "aarch64 preempt harness: FAIL at iteration %" PRIu64
            " (%" PRIu64 " preemptions so far): ",
            k, atomic_load(&completed));
}

HIDDEN void harness_check(uint64_t k, const struct regs *e, const struct regs *o)
{
    for (unsigned i = 0; i < 31; i++) {
        if (i == 18)
            continue;
        uint64_t want = e->x[i];
        if (i == 28)
            want = 0;
        else if (i == 27)
            want = e->x[27] + e->x[28];
        if (o->x[i] != want) {
            fail_header(k);
            fprintf(stderr, "x%u = %#" PRIx64 ", expected %#" PRIx64 "\n", i, o->x[i], want);
            exit(1);
        }
    }
    static const char *names[3] = {"NZCV", "FPSR", "FPCR"};
    const uint64_t *ov = &o->nzcv, *ev = &e->nzcv;
    for (int i = 0; i < 3; i++) {
        if (ov[i] != ev[i]) {
            fail_header(k);
            fprintf(stderr, "%s = %#" PRIx64 ", expected %#" PRIx64 "\n", names[i], ov[i], ev[i]);
            exit(1);
        }
    }
    for (unsigned i = 0; i < 32; i++) {
        if (o->q[i] != e->q[i]) {
            fail_header(k);
            fprintf(stderr, "q%u = %#018" PRIx64 "%016" PRIx64 ", expected %#018" PRIx64 "%016" PRIx64 "\n", i,
                    (uint64_t)(o->q[i] >> 64), (uint64_t)o->q[i],
                    (uint64_t)(e->q[i] >> 64), (uint64_t)e->q[i]);
            exit(1);
        }
    }
}

HIDDEN int harness_keep_going(void)
{
    return !atomic_load(&done);
}

/* ---- the trampoline's callee -------------------------------------------- */

struct walk {
    int stage;          /* 0: before the trampoline, 1: next is harness_spin, 2: after */
    int after;          /* frames after harness_spin */
    const char *err;
    char detail[160];
};

static _Unwind_Reason_Code walk_frame(struct _Unwind_Context *ctx, void *arg)
{
    struct walk *w = arg;
    int before = 0;
    uintptr_t ip = _Unwind_GetIPInfo(ctx, &before);
    if (ip == 0)
        return _URC_NORMAL_STOP;
    uintptr_t pc = before ? ip : ip - 1;
    switch (w->stage) {
    case 0:
        if (pc >= (uintptr_t)gort_async_preempt && pc <= (uintptr_t)gort_async_preempt_end) {
            w->stage = 1;
            /* The CFA of gort_async_preempt2 = the trampoline's sp. */
            if (_Unwind_GetCFA(ctx) != rec_sp - TRAMPOLINE_FRAME_SIZE) {
                w->err = "trampoline sp";
                return _URC_NORMAL_STOP;
            }
        }
        break;
    case 1:
        w->stage = 2;
        if (!before) {
            w->err = "interrupted frame not marked as a signal frame's pc";
            return _URC_NORMAL_STOP;
        }
        if (ip != rec_pc) {
            w->err = "interrupted pc";
            snprintf(w->detail, sizeof w->detail, "unwound %#" PRIxPTR ", interrupted %#" PRIx64, ip, rec_pc);
            return _URC_NORMAL_STOP;
        }
        if (ip < (uintptr_t)harness_spin || ip >= (uintptr_t)harness_spin_end) {
            w->err = "frame after the trampoline is not harness_spin";
            return _URC_NORMAL_STOP;
        }
        if (_Unwind_GetCFA(ctx) != rec_sp) {
            w->err = "interrupted sp (the trampoline's CFA)";
            snprintf(w->detail, sizeof w->detail, "unwound %#" PRIxPTR ", interrupted %#" PRIx64,
                     (uintptr_t)_Unwind_GetCFA(ctx), rec_sp);
            return _URC_NORMAL_STOP;
        }
        for (int r = 0; r < 31; r++) {
            uint64_t v = _Unwind_GetGR(ctx, r);
            if (v != rec_x[r]) {
                w->err = "interrupted register";
                snprintf(w->detail, sizeof w->detail, "x%d unwound %#" PRIx64 ", interrupted %#" PRIx64, r, v,
                         rec_x[r]);
                return _URC_NORMAL_STOP;
            }
        }
        break;
    default:
        w->after++;
        break;
    }
    return _URC_NO_REASON;
}

HIDDEN void harness_preempt2_body(void)
{
    struct walk w = {0};
    _Unwind_Reason_Code rc = _Unwind_Backtrace(walk_frame, &w);
    if (!w.err && w.stage != 2)
        w.err = w.stage == 0 ? "never reached the trampoline" : "stopped at the trampoline";
    if (!w.err && w.after < 1)
        w.err = "nothing after harness_spin";
    if (!w.err && rc != _URC_END_OF_STACK)
        w.err = "did not end cleanly";
    if (w.err) {
        fprintf(stderr,
                "aarch64 preempt harness: FAIL in preemption %" PRIu64 ": _Unwind_Backtrace: %s %s (rc %d)\n",
                atomic_load(&completed) + 1, w.err, w.detail, (int)rc);
        exit(1);
    }

    /* Move to the other alternate signal stack, as if on another M.
     * SIGURG is blocked meanwhile so the handler's check sees a
     * consistent pair. */
    sigset_t urg, old;
    sigemptyset(&urg);
    sigaddset(&urg, SIGURG);
    pthread_sigmask(SIG_BLOCK, &urg, &old);
    int next = !atomic_load(&cur_alt);
    stack_t ss = {.ss_sp = alt_stacks[next], .ss_size = ALT_SIZE, .ss_flags = 0};
    if (sigaltstack(&ss, NULL) != 0) {
        perror("sigaltstack");
        exit(1);
    }
    atomic_store(&cur_alt, next);
    pthread_sigmask(SIG_SETMASK, &old, NULL);

    atomic_fetch_add(&completed, 1);
}

/* ---- the signal sender -------------------------------------------------- */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void wait_for(_Atomic uint64_t *counter, uint64_t target, const char *what)
{
    uint64_t start = now_ns();
    while (atomic_load(counter) < target) {
        if (now_ns() - start > WAIT_LIMIT_NS) {
            fprintf(stderr, "aarch64 preempt harness: FAIL: stuck waiting for %s (%" PRIu64 " < %" PRIu64 ")\n",
                    what, atomic_load(counter), target);
            _exit(1);
        }
        sched_yield();
    }
}

static void *signaller(void *arg)
{
    (void)arg;
    pid_t pid = getpid();
    uint64_t rnd = 0x2545f4914f6cdd1dull;
    for (uint64_t i = 0; i < SIGNALS; i++) {
        if (syscall(SYS_tgkill, pid, main_tid, SIGURG) != 0) {
            perror("tgkill");
            _exit(1);
        }
        wait_for(&handled, i + 1, "the handler");
        wait_for(&completed, atomic_load(&injected), "the trampoline");
        /* Let the loop start its next iteration (so the signal does not
         * find the goroutine still on its way back out of the trampoline),
         * then a random pause so that it lands anywhere in that iteration. */
        wait_for(&fills, atomic_load(&fills) + 1, "the next iteration");
        rnd ^= rnd << 13;
        rnd ^= rnd >> 7;
        rnd ^= rnd << 17;
        for (volatile uint64_t d = rnd % HOLD_ITERS; d > 0; d--)
            ;
    }
    atomic_store(&done, 1);
    return NULL;
}

/* ---- main --------------------------------------------------------------- */

static uint64_t probe_fpcr(uint64_t want)
{
    uint64_t got;
    __asm__ volatile("msr fpcr, %1\n\tmrs %0, fpcr\n\tmsr fpcr, xzr" : "=&r"(got) : "r"(want));
    return got;
}

static uint64_t probe_fpsr(uint64_t want)
{
    uint64_t got;
    __asm__ volatile("msr fpsr, %1\n\tmrs %0, fpsr\n\tmsr fpsr, xzr" : "=&r"(got) : "r"(want));
    return got;
}

static const char *magic_name(uint32_t m)
{
    switch (m) {
    case K_FPSIMD_MAGIC: return "fpsimd";
    case K_ESR_MAGIC: return "esr";
    case K_EXTRA_MAGIC: return "extra";
    case K_SVE_MAGIC: return "sve";
    case K_TPIDR2_MAGIC: return "tpidr2";
    case K_ZA_MAGIC: return "za";
    case K_FPMR_MAGIC: return "fpmr";
    case K_POE_MAGIC: return "poe";
    case K_GCS_MAGIC: return "gcs";
    default: return "?";
    }
}

int main(void)
{
    /* Only bits that are writable here (RMode, FZ, DN, AHP, FZ16; the
     * cumulative exception flags and QC), never the trap enables. */
    fpcr_mask = probe_fpcr((3ull << 22) | (1ull << 24) | (1ull << 25) | (1ull << 26) | (1ull << 19));
    fpsr_mask = probe_fpsr(0x1full | (1ull << 7) | (1ull << 27));

    for (int i = 0; i < 2; i++) {
        alt_stacks[i] = aligned_alloc(16, ALT_SIZE);
        if (!alt_stacks[i]) {
            perror("aligned_alloc");
            return 1;
        }
    }
    stack_t ss = {.ss_sp = alt_stacks[0], .ss_size = ALT_SIZE, .ss_flags = 0};
    if (sigaltstack(&ss, NULL) != 0) {
        perror("sigaltstack");
        return 1;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigurg;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGURG, &sa, NULL) != 0) {
        perror("sigaction");
        return 1;
    }

    main_tid = (pid_t)syscall(SYS_gettid);
    pthread_t t;
    if (pthread_create(&t, NULL, signaller, NULL) != 0) {
        fprintf(stderr, "pthread_create failed\n");
        return 1;
    }
    uint64_t iterations = harness_spin();
    pthread_join(t, NULL);

    uint64_t h = atomic_load(&handled), inj = atomic_load(&injected), c = atomic_load(&completed);
    uint64_t ref = atomic_load(&refused), alt = atomic_load(&alt_errors);
    uint64_t outside = atomic_load(&outside_hold), tramp = atomic_load(&in_tramp);
    char recs[160] = "";
    for (int i = 0; i < 16 && atomic_load(&seen_magic[i]); i++) {
        strncat(recs, i ? "," : "", sizeof recs - strlen(recs) - 1);
        strncat(recs, magic_name(atomic_load(&seen_magic[i])), sizeof recs - strlen(recs) - 1);
    }
    int ok = 1;
    if (h != SIGNALS) {
        fprintf(stderr, "FAIL: %" PRIu64 " signals handled, %d sent\n", h, SIGNALS);
        ok = 0;
    }
    if (c != inj) {
        fprintf(stderr, "FAIL: %" PRIu64 " injections but %" PRIu64 " trampoline runs\n", inj, c);
        ok = 0;
    }
    if (ref != 0) {
        fprintf(stderr, "FAIL: inject refused %" PRIu64 " times (signal frame records: %s)\n", ref, recs);
        ok = 0;
    }
    if (inj * 10 < h * 8) {
        fprintf(stderr, "FAIL: only %" PRIu64 " of %" PRIu64 " signals led to a preemption (%" PRIu64
                " found the trampoline)\n", inj, h, tramp);
        ok = 0;
    }
    if (alt) {
        fprintf(stderr, "FAIL: %" PRIu64 " handlers ran on a stale alternate signal stack\n", alt);
        ok = 0;
    }
    if (!ok)
        return 1;
    printf("aarch64 preempt harness: %" PRIu64 " preemptions (%" PRIu64 " signals; %" PRIu64
           " outside the hold loop; %" PRIu64 " iterations), all registers preserved, unwinding"
           " reached harness_spin every time (signal frame records: %s)\n",
           c, h, outside, iterations, recs);
    return 0;
}

/* ---- asm: the loop under preemption, and gort_async_preempt2 ------------ */

/*
 * uint64_t harness_spin(void): returns the number of iterations.
 * Frame (1776 bytes): x29/x30 at 0, x19-x28 at 16, d8-d15 at 96, k at 160,
 * expected image at 176, observed image at 976 (struct regs).
 */
__asm__(
    ".text\n"
    ".p2align 4\n"
    ".globl harness_spin\n"
    ".hidden harness_spin\n"
    ".type harness_spin, %function\n"
    "harness_spin:\n"
    ".cfi_startproc\n"
    "sub sp, sp, #1776\n"
    ".cfi_def_cfa_offset 1776\n"
    "stp x29, x30, [sp, #0]\n"
    ".cfi_offset x29, -1776\n"
    ".cfi_offset x30, -1768\n"
    "stp x19, x20, [sp, #16]\n"
    "stp x21, x22, [sp, #32]\n"
    "stp x23, x24, [sp, #48]\n"
    "stp x25, x26, [sp, #64]\n"
    "stp x27, x28, [sp, #80]\n"
    ".irp n, 19,20,21,22,23,24,25,26,27,28\n"
    ".cfi_offset x\\n, -1776 + 16 + 8 * (\\n - 19)\n"
    ".endr\n"
    "stp d8, d9, [sp, #96]\n"
    "stp d10, d11, [sp, #112]\n"
    "stp d12, d13, [sp, #128]\n"
    "stp d14, d15, [sp, #144]\n"
    ".irp n, 8,9,10,11,12,13,14,15\n"
    ".cfi_offset d\\n, -1776 + 96 + 8 * (\\n - 8)\n"
    ".endr\n"
    "str xzr, [sp, #160]\n"
    "1:\n"
    "ldr x0, [sp, #160]\n"
    "add x1, sp, #176\n"
    "bl harness_fill\n"
    "ldr x0, [sp, #176 + 256]\n"
    "msr nzcv, x0\n"
    "ldr x0, [sp, #176 + 264]\n"
    "msr fpsr, x0\n"
    "ldr x0, [sp, #176 + 272]\n"
    "msr fpcr, x0\n"
    ".irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31\n"
    "ldr q\\n, [sp, #176 + 288 + 16 * \\n]\n"
    "b .+4\n"
    ".endr\n"
    ".irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,19,20,21,22,23,24,25,26,27,28,29,30\n"
    "ldr x\\n, [sp, #176 + 8 * \\n]\n"
    "b .+4\n"
    ".endr\n"
    ".globl harness_hold\n"
    ".hidden harness_hold\n"
    "harness_hold:\n"
    "add x27, x27, #1\n"
    "sub x28, x28, #1\n"
    "cbnz x28, harness_hold\n"
    ".globl harness_hold_end\n"
    ".hidden harness_hold_end\n"
    "harness_hold_end:\n"
    ".irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,19,20,21,22,23,24,25,26,27,28,29,30\n"
    "str x\\n, [sp, #976 + 8 * \\n]\n"
    "b .+4\n"
    ".endr\n"
    ".irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31\n"
    "str q\\n, [sp, #976 + 288 + 16 * \\n]\n"
    "b .+4\n"
    ".endr\n"
    "mrs x0, nzcv\n"
    "str x0, [sp, #976 + 256]\n"
    "mrs x0, fpsr\n"
    "str x0, [sp, #976 + 264]\n"
    "mrs x0, fpcr\n"
    "str x0, [sp, #976 + 272]\n"
    "msr fpcr, xzr\n"
    "ldr x0, [sp, #160]\n"
    "add x1, sp, #176\n"
    "add x2, sp, #976\n"
    "bl harness_check\n"
    "ldr x0, [sp, #160]\n"
    "add x0, x0, #1\n"
    "str x0, [sp, #160]\n"
    "bl harness_keep_going\n"
    "cbnz w0, 1b\n"
    "ldr x0, [sp, #160]\n"
    "ldp d8, d9, [sp, #96]\n"
    "ldp d10, d11, [sp, #112]\n"
    "ldp d12, d13, [sp, #128]\n"
    "ldp d14, d15, [sp, #144]\n"
    "ldp x19, x20, [sp, #16]\n"
    "ldp x21, x22, [sp, #32]\n"
    "ldp x23, x24, [sp, #48]\n"
    "ldp x25, x26, [sp, #64]\n"
    "ldp x27, x28, [sp, #80]\n"
    "ldp x29, x30, [sp, #0]\n"
    "add sp, sp, #1776\n"
    ".cfi_def_cfa_offset 0\n"
    ".cfi_restore x29\n"
    ".cfi_restore x30\n"
    "ret\n"
    ".cfi_endproc\n"
    ".size harness_spin, . - harness_spin\n"
    ".globl harness_spin_end\n"
    ".hidden harness_spin_end\n"
    "harness_spin_end:\n"
    "nop\n"

    /* void gort_async_preempt2(void): the body, then clobber everything
     * except sp, x18 and the return address. */
    ".p2align 4\n"
    ".globl gort_async_preempt2\n"
    ".type gort_async_preempt2, %function\n"
    "gort_async_preempt2:\n"
    ".cfi_startproc\n"
    "stp x29, x30, [sp, #-16]!\n"
    ".cfi_def_cfa_offset 16\n"
    ".cfi_offset x29, -16\n"
    ".cfi_offset x30, -8\n"
    "mov x29, sp\n"
    "bl harness_preempt2_body\n"
    ".irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31\n"
    "movi v\\n\\().16b, #0xa5\n"
    ".endr\n"
    "mov x0, #0x30000000\n"          /* NZCV = 0011 */
    "msr nzcv, x0\n"
    "movz x0, #0x009f\n"             /* every cumulative flag, and QC */
    "movk x0, #0x0800, lsl #16\n"
    "msr fpsr, x0\n"
    "movz x0, #0x07c0, lsl #16\n"    /* RMode = towards zero, FZ, DN, AHP */
    "msr fpcr, x0\n"
    "mov x0, #0xbad\n"
    ".irp n, 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,19,20,21,22,23,24,25,26,27,28\n"
    "add x\\n, x0, #\\n\n"
    ".endr\n"
    "ldp x29, x30, [sp], #16\n"
    ".cfi_def_cfa_offset 0\n"
    ".cfi_restore x29\n"
    ".cfi_restore x30\n"
    "mov x29, #0xbad0\n"
    "ret\n"
    ".cfi_endproc\n"
    ".size gort_async_preempt2, . - gort_async_preempt2\n");
