package main

import "time"

// handoffSyscall is the blocking call of handoff: long enough that B always
// runs before it returns (sysmon takes a P back within 20µs–20ms).
const handoffSyscall = 50 * time.Millisecond

// handoffWarmup rounds run first, unrecorded (the first handoff creates an M).
const handoffWarmup = 3

// handoffOnce: goroutine A starts B (queued on A's P, in runnext), takes
// tEnter and enters a blocking nanosleep; B takes tRun as its first action.
// Returns tRun - tEnter: how long a runnable goroutine waits for the P of a
// goroutine blocked in a syscall (with GOMAXPROCS=1 only the handoff can
// run B).
//
// nanosleep (spin.go) is a real blocking system call made through
// syscall.Syscall, which brackets it with entersyscall/exitsyscall (not the
// netpoller), like gort::syscall::blocking around libc::nanosleep.
func handoffOnce() time.Duration {
	base := time.Now()
	tRun := make(chan time.Duration, 1)
	tEnter := make(chan time.Duration, 1)
	go func() {
		go func() { tRun <- time.Since(base) }()
		t := time.Since(base)
		nanosleep(handoffSyscall)
		tEnter <- t
	}()
	enter := <-tEnter
	run := <-tRun
	if run < enter {
		return 0
	}
	return run - enter
}

func handoff(n uint64) string {
	for i := 0; i < handoffWarmup; i++ {
		handoffOnce()
	}
	v := make([]time.Duration, 0, n)
	for i := uint64(0); i < n; i++ {
		v = append(v, handoffOnce())
	}
	return latencyFields(v)
}

func init() {
	workloads["handoff"] = workload{defaultN: 50, once: handoff}
}
