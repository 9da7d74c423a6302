// Wake-up latency of a sleeping thread on this machine: the floor under
// gort's (and Go's) syscall handoff, which wakes two threads in a row
// (sysmon, then the M that takes the P). See README, "Benchmarks".
//
//   gcc -O2 -pthread benches/wake_latency.c -o /tmp/wake_latency && /tmp/wake_latency
//
// Thread B sleeps on a futex; every IDLE_US, thread A stamps t0, wakes B
// and then sleeps itself (as an M entering a blocking syscall does); B
// stamps t1 as soon as it runs. Prints percentiles of t1 - t0 over ROUNDS.
#define _GNU_SOURCE
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define ROUNDS 2000
#define IDLE_US 5000

static _Atomic int word;
static _Atomic long woke_at;

static long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000L + t.tv_nsec;
}

static void *sleeper(void *arg) {
    (void)arg;
    for (;;) {
        while (atomic_load(&word) == 0)
            syscall(SYS_futex, &word, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
        atomic_store(&woke_at, now_ns());
        atomic_store(&word, 0);
    }
    return NULL;
}

static int cmp(const void *a, const void *b) {
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

int main(void) {
    static long lat[ROUNDS];
    pthread_t th;
    pthread_create(&th, NULL, sleeper, NULL);
    for (int i = 0; i < ROUNDS; i++) {
        usleep(IDLE_US);
        atomic_store(&woke_at, 0);
        long t0 = now_ns();
        atomic_store(&word, 1);
        syscall(SYS_futex, &word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
        usleep(1000); // the waker blocks too
        lat[i] = atomic_load(&woke_at) - t0;
    }
    qsort(lat, ROUNDS, sizeof lat[0], cmp);
    printf("futex wake -> sleeper runs: p50 %.1fus p90 %.1fus p99 %.1fus max %.1fus\n",
           lat[ROUNDS / 2] / 1e3, lat[ROUNDS * 9 / 10] / 1e3, lat[ROUNDS * 99 / 100] / 1e3,
           lat[ROUNDS - 1] / 1e3);
    return 0;
}
