// The floor under one async preemption on this machine: what a bare
// signal costs the thread it interrupts, with nothing of gort's in it.
// See README, "Cost of one async preemption".
//
//   gcc -O2 -pthread benches/signal_roundtrip.c -o /tmp/signal_roundtrip && /tmp/signal_roundtrip
//
// The main thread spins reading the TSC; a second thread sends it SIGURG
// with tgkill every 100µs (an empty SA_SIGINFO|SA_ONSTACK|SA_RESTART
// handler on an alternate stack, as gort installs). Every gap of more
// than 1µs between two TSC reads is a delivery (kernel entry, the
// signal frame with the full XSAVE area, the handler, sigreturn) or
// other interference (timer ticks, the sender's wake-ups on a shared
// core). Prints the count and percentiles of those gaps.
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <x86intrin.h>

#define SIGNALS 20000
#define MAX_GAPS (1 << 20)

static volatile int stop;
static pid_t spinner;
static double gaps[MAX_GAPS];

static void handler(int sig, siginfo_t *info, void *ctx) {
    (void)sig;
    (void)info;
    (void)ctx;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void *sender(void *arg) {
    (void)arg;
    struct timespec every = {0, 100000};
    for (int i = 0; i < SIGNALS; i++) {
        nanosleep(&every, NULL);
        syscall(SYS_tgkill, getpid(), spinner, SIGURG);
    }
    stop = 1;
    return NULL;
}

static double elapsed_ns(struct timespec a, struct timespec b) {
    return (b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec);
}

int main(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = handler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
    stack_t ss = {.ss_sp = malloc(65536), .ss_size = 65536};
    sigaltstack(&ss, NULL);
    sigaction(SIGURG, &sa, NULL);
    spinner = gettid();

    // TSC ticks per ns, over 200ms.
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    unsigned long long c0 = __rdtsc();
    do
        clock_gettime(CLOCK_MONOTONIC, &t1);
    while (elapsed_ns(t0, t1) < 2e8);
    double ghz = (__rdtsc() - c0) / elapsed_ns(t0, t1);

    pthread_t t;
    pthread_create(&t, NULL, sender, NULL);
    int n = 0;
    unsigned long long prev = __rdtsc();
    while (!stop) {
        unsigned long long now = __rdtsc();
        double gap = (now - prev) / ghz;
        if (gap > 1000 && n < MAX_GAPS)
            gaps[n++] = gap;
        prev = now;
    }
    pthread_join(t, NULL);
    qsort(gaps, n, sizeof gaps[0], by_value);
    printf("%d signals, %d gaps over 1us: p10 %.0f ns, p50 %.0f ns, p90 %.0f ns\n",
           SIGNALS, n, gaps[n / 10], gaps[n / 2], gaps[n * 9 / 10]);
    return 0;
}
