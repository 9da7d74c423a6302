package main

import (
	"fmt"
	"sync"
	"time"
)

// timers_lateness: n goroutines, goroutine i sleeping lateDuration(i)
// (1–100ms, spread by a fixed formula) and recording how late it woke;
// timers_barrier: n goroutines all sleeping 50ms from one start, so their
// timers fire at once. Both print the lateness percentiles and the wall
// time from the first spawn to the last wake-up, as gort's side does.
func lateDuration(i uint64) time.Duration {
	return time.Duration(1000+(i*7919)%99001) * time.Microsecond
}

func timersLateness(n uint64, dur func(uint64) time.Duration) string {
	late := make([]time.Duration, n)
	var wg sync.WaitGroup
	wg.Add(int(n))
	start := time.Now()
	for i := uint64(0); i < n; i++ {
		go func(i uint64) {
			d := dur(i)
			t := time.Now()
			time.Sleep(d)
			late[i] = time.Since(t) - d
			wg.Done()
		}(i)
	}
	wg.Wait()
	wall := time.Since(start)
	return fmt.Sprintf("%s wall_ms=%.1f", latencyFields(late), float64(wall.Microseconds())/1000)
}

func init() {
	workloads["timers_lateness"] = workload{defaultN: 100000, once: func(n uint64) string {
		return timersLateness(n, lateDuration)
	}}
	workloads["timers_barrier"] = workload{defaultN: 100000, once: func(n uint64) string {
		return timersLateness(n, func(uint64) time.Duration { return 50 * time.Millisecond })
	}}
}
