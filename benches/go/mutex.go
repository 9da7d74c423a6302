package main

import (
	"sync"
	"time"
)

// mutexGoroutines is the number of goroutines contending for the mutex
// (MUTEX_GOROUTINES in benches/compare.rs).
const mutexGoroutines = 8

// mutex: mutexGoroutines goroutines each do n times lock, increment a
// shared counter, unlock, on one sync.Mutex; the main goroutine waits for
// them (a WaitGroup, as gort joins the handles) and checks the total.
// ns/op = elapsed / (mutexGoroutines * n), per lock/unlock pair.
func mutexContended(n uint64) (time.Duration, uint64) {
	var mu sync.Mutex
	var counter uint64
	var wg sync.WaitGroup
	start := time.Now()
	wg.Add(mutexGoroutines)
	for g := 0; g < mutexGoroutines; g++ {
		go func() {
			for i := uint64(0); i < n; i++ {
				mu.Lock()
				counter++
				mu.Unlock()
			}
			wg.Done()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if counter != mutexGoroutines*n {
		panic("mutex: wrong total")
	}
	return elapsed, mutexGoroutines * n
}

func init() {
	workloads["mutex"] = workload{defaultN: 200000, run: mutexContended}
}
