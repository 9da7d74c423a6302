package main

import (
	"sync"
	"time"
)

// spawn_join: the main goroutine starts n goroutines, goroutine i producing
// 2*i+1; it then waits for all of them and checks the sum (n*n).
// ns/op = elapsed / n.
//
// The Go equivalent of gort's JoinHandle: a results slice that goroutine i
// writes at index i, plus one sync.WaitGroup the main goroutine waits on,
// then it reads the slice. That is the idiomatic Go way to collect results
// and does the same work: spawn, compute, publish the value, wake the
// waiter, collect. It is the cheaper choice for Go (8 bytes and no
// allocation per result, one wait instead of n); a channel per goroutine,
// the literal analogue of a handle, would cost Go an allocation and a
// channel operation each. So the ratio measured against it is conservative:
// it never flatters gort.
func spawnJoin(n uint64) (time.Duration, uint64) {
	start := time.Now()
	results := make([]uint64, n)
	var wg sync.WaitGroup
	wg.Add(int(n))
	for i := uint64(0); i < n; i++ {
		go func(i uint64) {
			results[i] = 2*i + 1
			wg.Done()
		}(i)
	}
	wg.Wait()
	var sum uint64
	for _, v := range results {
		sum += v
	}
	elapsed := time.Since(start)
	if sum != n*n {
		panic("spawn_join: wrong sum")
	}
	return elapsed, n
}

func init() {
	workloads["spawn_join"] = workload{defaultN: 1000000, run: spawnJoin}
}
