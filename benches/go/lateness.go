package main

import (
	"sync/atomic"
	"time"
)

// lateness: `spinners` goroutines spin so that every P is busy, and a
// sleeper does n times: take t0, time.Sleep(1ms), take the wake time once
// it runs again; lateness = wake - t0 - 1ms. Percentiles in µs.
//
// The sleep is a runtime timer: it fires when a P next looks at its timers
// (in schedule, i.e. when preemption stops a spinner), as gort::time::sleep.
func lateness(n uint64) string {
	return withSpinners(n, sleep1ms)
}

// lateness_syscall: the same with the sleep done as a blocking 1ms
// nanosleep system call (gort: syscall::blocking): the sleeper must get a
// P back after the call (if sysmon took it meanwhile).
func latenessSyscall(n uint64) string {
	return withSpinners(n, func() { nanosleep(time.Millisecond) })
}

// lateBy runs sleep, meant to take 1ms, and returns how much longer it
// took (0 if it did not).
func lateBy(sleep func()) time.Duration {
	t0 := time.Now()
	sleep()
	d := time.Since(t0) - time.Millisecond
	if d < 0 {
		d = 0
	}
	return d
}

func sleep1ms() { time.Sleep(time.Millisecond) }

// withSpinners runs the sleeper loop (n times sleep) while `spinners`
// goroutines keep every P busy; returns the lateness fields.
func withSpinners(n uint64, sleep func()) string {
	var stop uint32
	counts := startSpinners(&stop)
	late := make(chan []time.Duration)
	go func() {
		v := make([]time.Duration, 0, n)
		for i := uint64(0); i < n; i++ {
			v = append(v, lateBy(sleep))
		}
		late <- v
	}()
	v := <-late
	atomic.StoreUint32(&stop, 1)
	for i := 0; i < spinners; i++ {
		<-counts
	}
	return latencyFields(v)
}

func init() {
	workloads["lateness"] = workload{defaultN: 300, once: lateness}
	workloads["lateness_syscall"] = workload{defaultN: 300, once: latenessSyscall}
}
