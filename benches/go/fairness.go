package main

import (
	"sync/atomic"
	"time"
)

// fairness: `spinners` goroutines run spin, each counting its own
// iterations, for n milliseconds (meant for GOMAXPROCS=1); then the main
// goroutine stops them. Reports each one's share of all iterations (ideal:
// 1/spinners) and min share / max share. With one P the main goroutine's
// wake-up is a consistent cut: no spinner runs while it does, and any that
// runs after it sets stop sees the flag before counting again.
func fairness(n uint64) string {
	var stop uint32
	ch := startSpinners(&stop)
	start := time.Now()
	time.Sleep(time.Duration(n) * time.Millisecond)
	atomic.StoreUint32(&stop, 1)
	window := time.Since(start)
	counts := make([]uint64, 0, spinners)
	for i := 0; i < spinners; i++ {
		counts = append(counts, <-ch)
	}
	return fairnessFields(counts, window)
}

func init() {
	workloads["fairness"] = workload{defaultN: 2000, once: fairness}
}
