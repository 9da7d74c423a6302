// The floor under a short time slice on this machine: what one signal
// per slice to each of two spinning threads costs them in throughput,
// with nothing of gort's in it. See README, "A short slice costs
// throughput".
//
//   gcc -O2 -pthread benches/slice_signal_cost.c -o /tmp/slice_signal_cost
//   for r in 1 2 3; do for m in "0 1000" "1 1000" "2 1000" "1 100" "2 100"; do
//       /tmp/slice_signal_cost $m; done; done
//
// Two threads spin on an LCG for 3 s and count iterations (as
// examples/preemption's goroutines do). MODE says who interrupts them
// with SIGURG (an empty SA_SIGINFO|SA_ONSTACK|SA_RESTART handler on an
// alternate stack, as gort installs):
//   0  nobody (the baseline);
//   1  a third thread, as gort's sysmon does: it sleeps PERIOD/2 and
//      tgkills one spinner in turn, so each gets one signal per PERIOD;
//   2  each spinner's own POSIX timer (CLOCK_MONOTONIC, SIGEV_THREAD_ID,
//      interval PERIOD): the kernel ends the slice, no third thread wakes.
// A thread-CPU-time timer is not offered: it fires on the scheduler tick
// (CONFIG_HZ=250 here: 4 ms), too coarse for these slices.
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
static volatile int stop;
static pid_t tids[2];
static unsigned long counts[2];
static long period_ns;
static int mode; // 0 none, 1 sysmon, 2 timer
static void handler(int s, siginfo_t *i, void *c) { (void)s; (void)i; (void)c; }
static void *spin(void *arg) {
    long k = (long)arg;
    tids[k] = syscall(SYS_gettid);
    stack_t ss = {.ss_sp = malloc(65536), .ss_size = 65536};
    sigaltstack(&ss, 0);
    if (mode == 2) {
        timer_t t;
        struct sigevent ev = {0};
        ev.sigev_notify = SIGEV_THREAD_ID;
        ev.sigev_signo = SIGURG;
        ev._sigev_un._tid = tids[k];
        timer_create(CLOCK_MONOTONIC, &ev, &t);
        struct itimerspec its = {{0, period_ns}, {0, period_ns}};
        timer_settime(t, 0, &its, 0);
    }
    unsigned long x = 1, n = 0;
    while (!stop) {
        x = x * 6364136223846793005UL + 1442695040888963407UL;
        n++;
    }
    counts[k] = n + (x & 1);
    return 0;
}
int main(int argc, char **argv) {
    if (argc != 3 || atoi(argv[1]) < 0 || atoi(argv[1]) > 2 || atol(argv[2]) < 10 ||
        atol(argv[2]) >= 1000000) {
        fprintf(stderr, "usage: %s MODE(0 none, 1 sysmon thread, 2 per-thread timer) PERIOD_US(10..999999)\n",
                argv[0]);
        return 2;
    }
    mode = atoi(argv[1]);
    period_ns = atol(argv[2]) * 1000;
    double secs = 3;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = handler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
    sigaction(SIGURG, &sa, 0);
    pthread_t th[2];
    for (long k = 0; k < 2; k++) pthread_create(&th[k], 0, spin, (void *)k);
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int turn = 0;
    pid_t pid = getpid();
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        if ((now.tv_sec - t0.tv_sec) + (now.tv_nsec - t0.tv_nsec) / 1e9 > secs) break;
        if (mode == 1) {
            struct timespec d = {0, period_ns / 2};
            nanosleep(&d, 0);
            if (tids[turn]) syscall(SYS_tgkill, pid, tids[turn], SIGURG);
            turn ^= 1;
        } else {
            struct timespec d = {0, 10000000};
            nanosleep(&d, 0);
        }
    }
    stop = 1;
    pthread_join(th[0], 0);
    pthread_join(th[1], 0);
    printf("mode %d period %ld us: %.3e iterations\n", mode, period_ns / 1000, (double)(counts[0] + counts[1]));
    return 0;
}
