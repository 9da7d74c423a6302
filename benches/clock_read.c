// The floor under the execution tracer's cost per goroutine switch: one
// read of the time-stamp counter (the tracer's clock on x86_64 when the
// kernel's clocksource is `tsc`). See README, "Execution tracer", Cost.
//
//   gcc -O2 benches/clock_read.c -o /tmp/clock_read && /tmp/clock_read
//
// Three loops of 100M iterations each, 3 times: rdtsc summed (throughput
// of back-to-back reads), rdtsc stored into a small ring (as the tracer
// stores its stamp), and a plain store into the same ring (the loop's own
// cost). Prints ns per iteration for each.
#include <stdint.h>
#include <stdio.h>
#include <time.h>
#include <x86intrin.h>

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

int main(void) {
    const long n = 100000000;
    static volatile uint64_t ring[1024];
    volatile uint64_t sink;
    for (int round = 0; round < 3; round++) {
        double t0 = now_ns();
        uint64_t acc = 0;
        for (long i = 0; i < n; i++)
            acc += __rdtsc();
        sink = acc;
        double t1 = now_ns();
        for (long i = 0; i < n; i++)
            ring[i & 1023] = __rdtsc();
        double t2 = now_ns();
        for (long i = 0; i < n; i++) {
            ring[i & 1023] = (uint64_t)i;
            __asm__ volatile("" ::: "memory");
        }
        double t3 = now_ns();
        printf("rdtsc summed %.2f ns, rdtsc stored %.2f ns, plain store %.2f ns\n",
               (t1 - t0) / n, (t2 - t1) / n, (t3 - t2) / n);
    }
    sink = ring[0];
    (void)sink;
    return 0;
}
