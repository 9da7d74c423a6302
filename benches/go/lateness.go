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
// (in schedule, i.e. when preemption stops a spinner). gort has no timers
// yet; its side sleeps in the kernel off its P and must get a P back, which
// preemption governs likewise (see compare.rs).
func lateness(n uint64) string {
	var stop uint32
	counts := startSpinners(&stop)
	late := make(chan []time.Duration)
	go func() {
		v := make([]time.Duration, 0, n)
		for i := uint64(0); i < n; i++ {
			t0 := time.Now()
			time.Sleep(time.Millisecond)
			d := time.Since(t0) - time.Millisecond
			if d < 0 {
				d = 0
			}
			v = append(v, d)
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
}
