package main

import (
	"runtime"
	"sync"
	"time"
)

// yield_pingpong: two goroutines each call runtime.Gosched n times; the
// main goroutine waits for both (a WaitGroup, as gort joins both handles).
// ns/op = elapsed / (2n), per yield.
func yieldPingpong(n uint64) (time.Duration, uint64) {
	start := time.Now()
	var wg sync.WaitGroup
	wg.Add(2)
	side := func() {
		for i := uint64(0); i < n; i++ {
			runtime.Gosched()
		}
		wg.Done()
	}
	go side()
	go side()
	wg.Wait()
	return time.Since(start), 2 * n
}

func init() {
	workloads["yield_pingpong"] = workload{defaultN: 1000000, run: yieldPingpong}
}
