/*
 * Stand-alone test of asm/aarch64/switch.S (gort_switch, gort_gstart).
 *
 * Built and run by tests/aarch64/run.sh (static, under qemu-aarch64 on other
 * hosts).  Three contexts -- the main thread and two coroutines A and B on
 * mmap'd stacks -- pass control around a ring main -> A -> B -> main, ROUNDS
 * times.  Every switch goes through harness_switch (asm, below), which
 *
 *   1. loads fresh values, unique to that switch, into x19-x28, x29, d8-d15
 *      and FPCR (rounding mode, FZ, DN, AHP bits),
 *   2. calls gort_switch,
 *   3. when this context is resumed, stores those registers to memory
 *      straight away (before any compiler-generated code runs),
 *
 * and the C caller compares what came back with what went in, along with sp
 * (unchanged across the switch, 16-aligned).  Since each switch's values are
 * different and the context that runs in between loads its own, any register
 * gort_switch fails to save or restore shows up as a mismatch, named.
 *
 * The first time a coroutine runs, coro_entry (asm, below) records the
 * registers gort_gstart handed it: the harness checks it was called from
 * gort_gstart (return address just before its `brk`), with the argument in
 * x0, x29 = 0, sp = the top of its stack, and the rest of the initial frame
 * (x19 = entry, x20 = arg, other callee-saved registers and FPCR 0).
 *
 * Exit status 0 and a one-line summary on success; otherwise a message
 * naming the context, switch and register, and exit status 1.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#if !defined(__aarch64__)
#error "this harness is for aarch64 only"
#endif

#define ROUNDS 100000u
#define STACK_SIZE (256u * 1024u)
#define GUARD_SIZE (64u * 1024u) /* >= any page size aarch64 Linux uses */

/* ---- the code under test (asm/aarch64/switch.S) ------------------------ */

/*
 * The asm symbols are global but hidden, and declared so here: a C reference
 * to a *local* asm label goes through a GOT relocation against .text plus an
 * addend, which GNU ld resolves without the addend (to the wrong function).
 */
#define HIDDEN __attribute__((visibility("hidden")))

HIDDEN void gort_switch(uint64_t *save_sp, uint64_t next_sp);
HIDDEN void gort_gstart(void);

/*
 * Mirror of init_stack in src/arch/aarch64.rs -- keep the two in step.
 * 176-byte frame, lowest address first (see the diagram in switch.S):
 *   word 0 x29 = 0, word 1 x30 = gort_gstart, word 2 x19 = entry,
 *   word 3 x20 = arg, words 4-11 x21-x28 = 0, words 12-19 d8-d15 = 0,
 *   word 20 FPCR = 0, word 21 pad = 0.
 */
#define SWITCH_FRAME_SIZE 176u

static uint64_t init_stack(uint64_t top, void (*entry)(void *), void *arg)
{
    uint64_t sp = top - SWITCH_FRAME_SIZE;
    uint64_t *w = (uint64_t *)sp;
    memset(w, 0, SWITCH_FRAME_SIZE);
    w[0] = 0;
    w[1] = (uint64_t)(uintptr_t)gort_gstart;
    w[2] = (uint64_t)(uintptr_t)entry;
    w[3] = (uint64_t)(uintptr_t)arg;
    return sp;
}

/* ---- register images ---------------------------------------------------- */

/* Slots of a register image, shared by the asm helpers below. */
enum {
    R_X19 = 0,          /* x19..x28 in slots 0..9 */
    R_X29 = 10,
    R_D8 = 11,          /* d8..d15 in slots 11..18 */
    R_FPCR = 19,
    R_SP_BEFORE = 20,   /* out only: sp just before the call to gort_switch */
    R_SP_AFTER = 21,    /* out only: sp just after it returned */
    R_X0 = 22,          /* entry record only */
    R_X30 = 23,         /* entry record only */
    R_SP = 24,          /* entry record only */
    R_COUNT = 25,
};

static const char *const reg_name[R_COUNT] = {
    "x19", "x20", "x21", "x22", "x23", "x24", "x25", "x26", "x27", "x28",
    "x29 (fp)",
    "d8", "d9", "d10", "d11", "d12", "d13", "d14", "d15",
    "FPCR", "sp before switch", "sp after switch",
    "x0 (argument)", "x30 (return address)", "sp",
};

/*
 * void harness_switch(uint64_t *save_sp, uint64_t next_sp,
 *                     const uint64_t in[R_FPCR + 1], uint64_t out[R_COUNT]);
 *
 * An ordinary AAPCS64 function to its C caller: it saves and restores the
 * caller's x19-x30, d8-d15 and FPCR itself.  In between it loads in[] into
 * x19-x29, d8-d15 and FPCR, calls gort_switch(save_sp, next_sp), and on
 * return immediately stores the same registers (and sp) into out[].  The
 * out pointer lives in this function's own frame, found through sp, which
 * gort_switch must give back unchanged.
 */
__asm__(
    ".text\n"
    ".p2align 4\n"
    ".globl harness_switch\n"
    ".hidden harness_switch\n"
    ".type harness_switch, %function\n"
    "harness_switch:\n"
    "    .cfi_startproc\n"
    /* Own frame: caller's x29/x30, x19-x28, d8-d15, FPCR, out pointer. */
    "    stp x29, x30, [sp, #-176]!\n"
    "    .cfi_def_cfa_offset 176\n"
    "    .cfi_offset x29, -176\n"
    "    .cfi_offset x30, -168\n"
    "    mov x29, sp\n"
    "    stp x19, x20, [sp, #16]\n"
    "    stp x21, x22, [sp, #32]\n"
    "    stp x23, x24, [sp, #48]\n"
    "    stp x25, x26, [sp, #64]\n"
    "    stp x27, x28, [sp, #80]\n"
    "    stp d8, d9, [sp, #96]\n"
    "    stp d10, d11, [sp, #112]\n"
    "    stp d12, d13, [sp, #128]\n"
    "    stp d14, d15, [sp, #144]\n"
    "    mrs x9, fpcr\n"
    "    stp x9, x3, [sp, #160]\n"          /* caller FPCR, out pointer */
    /* Load the test values. */
    "    ldp x19, x20, [x2, #0]\n"
    "    ldp x21, x22, [x2, #16]\n"
    "    ldp x23, x24, [x2, #32]\n"
    "    ldp x25, x26, [x2, #48]\n"
    "    ldp x27, x28, [x2, #64]\n"
    "    ldr x29, [x2, #80]\n"
    "    ldp d8, d9, [x2, #88]\n"
    "    ldp d10, d11, [x2, #104]\n"
    "    ldp d12, d13, [x2, #120]\n"
    "    ldp d14, d15, [x2, #136]\n"
    "    ldr x9, [x2, #152]\n"
    "    msr fpcr, x9\n"
    "    mov x9, sp\n"
    "    str x9, [x3, #160]\n"              /* out[R_SP_BEFORE] */
    /* The switch (x0, x1 still hold save_sp, next_sp). */
    "    bl gort_switch\n"
    /* Resumed: record everything before anything else can touch it. */
    "    mov x10, sp\n"
    "    ldr x9, [sp, #168]\n"              /* out pointer */
    "    stp x19, x20, [x9, #0]\n"
    "    stp x21, x22, [x9, #16]\n"
    "    stp x23, x24, [x9, #32]\n"
    "    stp x25, x26, [x9, #48]\n"
    "    stp x27, x28, [x9, #64]\n"
    "    str x29, [x9, #80]\n"
    "    stp d8, d9, [x9, #88]\n"
    "    stp d10, d11, [x9, #104]\n"
    "    stp d12, d13, [x9, #120]\n"
    "    stp d14, d15, [x9, #136]\n"
    "    mrs x11, fpcr\n"
    "    str x11, [x9, #152]\n"
    "    str x10, [x9, #168]\n"             /* out[R_SP_AFTER] */
    /* Give the caller its registers back. */
    "    ldr x9, [sp, #160]\n"
    "    msr fpcr, x9\n"
    "    ldp d8, d9, [sp, #96]\n"
    "    ldp d10, d11, [sp, #112]\n"
    "    ldp d12, d13, [sp, #128]\n"
    "    ldp d14, d15, [sp, #144]\n"
    "    ldp x19, x20, [sp, #16]\n"
    "    ldp x21, x22, [sp, #32]\n"
    "    ldp x23, x24, [sp, #48]\n"
    "    ldp x25, x26, [sp, #64]\n"
    "    ldp x27, x28, [sp, #80]\n"
    "    ldp x29, x30, [sp], #176\n"
    "    .cfi_def_cfa_offset 0\n"
    "    .cfi_restore x29\n"
    "    .cfi_restore x30\n"
    "    ret\n"
    "    .cfi_endproc\n"
    ".size harness_switch, . - harness_switch\n");

HIDDEN void harness_switch(uint64_t *save_sp, uint64_t next_sp,
                           const uint64_t *in, uint64_t *out);

/*
 * coro_entry: what init_stack names as the entry function.  gort_gstart
 * calls it with x0 = arg (the coroutine's struct ctx).  It stores x19-x29,
 * d8-d15, FPCR, x0, x30 and sp into entry_rec (a fixed global, so a wrong
 * x0 is reported rather than written through), then tail-calls
 * coro_main(arg) with x30 untouched.
 */
HIDDEN uint64_t entry_rec[R_COUNT];

__asm__(
    ".text\n"
    ".p2align 4\n"
    ".globl coro_entry\n"
    ".hidden coro_entry\n"
    ".type coro_entry, %function\n"
    "coro_entry:\n"
    "    .cfi_startproc\n"
    "    adrp x10, entry_rec\n"
    "    add x10, x10, :lo12:entry_rec\n"
    "    stp x19, x20, [x10, #0]\n"
    "    stp x21, x22, [x10, #16]\n"
    "    stp x23, x24, [x10, #32]\n"
    "    stp x25, x26, [x10, #48]\n"
    "    stp x27, x28, [x10, #64]\n"
    "    str x29, [x10, #80]\n"
    "    stp d8, d9, [x10, #88]\n"
    "    stp d10, d11, [x10, #104]\n"
    "    stp d12, d13, [x10, #120]\n"
    "    stp d14, d15, [x10, #136]\n"
    "    mrs x9, fpcr\n"
    "    str x9, [x10, #152]\n"
    "    mov x9, sp\n"
    "    stp x0, x30, [x10, #176]\n"        /* R_X0, R_X30 */
    "    str x9, [x10, #192]\n"             /* R_SP */
    "    b coro_main\n"
    "    .cfi_endproc\n"
    ".size coro_entry, . - coro_entry\n");

HIDDEN void coro_entry(void *arg);

/* ---- contexts ------------------------------------------------------------ */

struct ctx {
    const char *name;
    uint64_t sp;                 /* saved stack pointer while suspended */
    struct ctx *next;            /* who this context switches to */
    uint64_t stack_top;
    unsigned started;
};

static struct ctx ctx_main = {.name = "main"};
static struct ctx ctx_a = {.name = "A"};
static struct ctx ctx_b = {.name = "B"};

static uint64_t switch_no;   /* global count of switches, 1-based */
static struct ctx *last_from; /* the context that made the latest switch */
static uint64_t checks;      /* register comparisons that passed */

static void fail(void)
{
    fflush(stdout);
    exit(1);
}

/* splitmix64: a distinct, well-mixed value per (switch, register slot). */
static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15u;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9u;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebu;
    return x ^ (x >> 31);
}

/*
 * FPCR bits the harness cycles through: AHP (26), DN (25), FZ (24) and
 * RMode (23:22).  All are read/write whenever FP is implemented.
 */
#define FPCR_TEST_SHIFT 22
#define FPCR_TEST_MASK (0x1fu << FPCR_TEST_SHIFT)

static void switch_to_next(struct ctx *self)
{
    uint64_t in[R_FPCR + 1], out[R_COUNT];
    uint64_t n = ++switch_no;

    for (int i = R_X19; i <= R_X29; i++)
        in[i] = mix(n * 64 + (uint64_t)i);
    for (int i = R_D8; i < R_D8 + 8; i++)
        in[i] = mix(n * 64 + (uint64_t)i);
    /* Consecutive switches get consecutive FPCR patterns, so the pattern a
     * context resumes with (set two switches earlier) always differs. */
    in[R_FPCR] = ((n % 31u) + 1u) << FPCR_TEST_SHIFT;
    memset(out, 0, sizeof out);
    last_from = self;

    harness_switch(&self->sp, self->next->sp, in, out);

    for (int i = R_X19; i <= R_FPCR; i++) {
        if (out[i] != in[i]) {
            printf("FAIL: context %s, switch #%" PRIu64 ": %s not preserved "
                   "across gort_switch: expected 0x%016" PRIx64 ", got 0x%016"
                   PRIx64 "\n", self->name, n, reg_name[i], in[i], out[i]);
            fail();
        }
        checks++;
    }
    if (out[R_SP_AFTER] != out[R_SP_BEFORE]) {
        printf("FAIL: context %s, switch #%" PRIu64 ": sp changed across "
               "gort_switch: %#" PRIx64 " -> %#" PRIx64 "\n", self->name, n,
               out[R_SP_BEFORE], out[R_SP_AFTER]);
        fail();
    }
    if (out[R_SP_AFTER] % 16 != 0) {
        printf("FAIL: context %s, switch #%" PRIu64 ": sp %#" PRIx64
               " not 16-aligned after gort_switch\n", self->name, n,
               out[R_SP_AFTER]);
        fail();
    }
}

static void check_entry(struct ctx *c)
{
    const uint64_t *r = entry_rec;
    uint64_t gstart = (uint64_t)(uintptr_t)gort_gstart;
    uint64_t want[R_COUNT] = {0};
    int ok = 1;

    want[R_X19] = (uint64_t)(uintptr_t)coro_entry;
    want[R_X19 + 1] = (uint64_t)(uintptr_t)c;
    want[R_X0] = (uint64_t)(uintptr_t)c;
    want[R_SP] = c->stack_top;
    /* x19-x28, x29, d8-d15, FPCR: exactly the initial frame. */
    for (int i = R_X19; i <= R_FPCR; i++) {
        if (r[i] != want[i]) {
            printf("FAIL: coroutine %s entry: %s = %#" PRIx64
                   ", initial frame says %#" PRIx64 "\n",
                   c->name, reg_name[i], r[i], want[i]);
            ok = 0;
        }
    }
    if (r[R_X0] != want[R_X0]) {
        printf("FAIL: coroutine %s entry: argument x0 = %#" PRIx64
               ", expected %#" PRIx64 "\n", c->name, r[R_X0], want[R_X0]);
        ok = 0;
    }
    if (r[R_SP] != want[R_SP] || r[R_SP] % 16 != 0) {
        printf("FAIL: coroutine %s entry: sp = %#" PRIx64 ", expected the "
               "16-aligned stack top %#" PRIx64 "\n", c->name, r[R_SP],
               want[R_SP]);
        ok = 0;
    }
    /* Called by gort_gstart's blr: x30 points inside it, at the brk that
     * traps should the entry function ever return. */
    if (r[R_X30] <= gstart || r[R_X30] >= gstart + 64 ||
        *(const uint32_t *)(uintptr_t)r[R_X30] != 0xd4200000u /* brk #0 */) {
        printf("FAIL: coroutine %s entry: x30 = %#" PRIx64 " is not the "
               "return address of gort_gstart's call (gort_gstart = %#"
               PRIx64 ")\n", c->name, r[R_X30], gstart);
        ok = 0;
    }
    if (!ok)
        fail();
}

/* Body of both coroutines: check the entry, then keep passing control on.
 * The coroutine starting is the one the latest switch went to; arg is only
 * trusted after check_entry has compared it with that. */
HIDDEN __attribute__((noreturn, used)) void coro_main(void *arg)
{
    struct ctx *self = last_from->next;

    (void)arg;
    check_entry(self);
    self->started++;
    for (;;)
        switch_to_next(self);
}

static void new_coro(struct ctx *c)
{
    size_t len = GUARD_SIZE + STACK_SIZE;
    uint8_t *base = mmap(NULL, len, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (base == MAP_FAILED) {
        perror("mmap");
        exit(1);
    }
    if (mprotect(base, GUARD_SIZE, PROT_NONE) != 0) {
        perror("mprotect");
        exit(1);
    }
    /* Poison the stack so the zeros the entry check expects can only come
     * from the initial frame. */
    memset(base + GUARD_SIZE, 0xa5, STACK_SIZE);
    c->stack_top = (uint64_t)(uintptr_t)(base + len);
    c->sp = init_stack(c->stack_top, coro_entry, c);
}

int main(void)
{
    ctx_main.next = &ctx_a;
    ctx_a.next = &ctx_b;
    ctx_b.next = &ctx_main;
    new_coro(&ctx_a);
    new_coro(&ctx_b);

    for (unsigned i = 0; i < ROUNDS; i++)
        switch_to_next(&ctx_main);

    if (ctx_a.started != 1 || ctx_b.started != 1) {
        printf("FAIL: coroutines started %u and %u times, expected once each\n",
               ctx_a.started, ctx_b.started);
        return 1;
    }
    if (switch_no != 3ull * ROUNDS) {
        printf("FAIL: %" PRIu64 " switches, expected %u\n", switch_no,
               3u * ROUNDS);
        return 1;
    }
    printf("aarch64 switch harness: %u round trips (%" PRIu64 " switches over "
           "3 contexts), all callee-saved registers preserved "
           "(%" PRIu64 " register checks)\n", ROUNDS, switch_no, checks);
    return 0;
}
