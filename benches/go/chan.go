package main

import (
	"fmt"
	"sync"
	"time"
)

// chan_pingpong: an echo goroutine receives on one unbuffered channel and
// sends each value back on another; the main goroutine does n round trips.
// ns/op = elapsed / n, per round trip (two rendezvous).
func chanPingpong(n uint64) (time.Duration, uint64) {
	ping := make(chan uint64)
	pong := make(chan uint64)
	start := time.Now()
	done := make(chan struct{})
	go func() {
		for v := range ping {
			pong <- v
		}
		close(done)
	}()
	for i := uint64(0); i < n; i++ {
		ping <- i
		if v := <-pong; v != i {
			panic(fmt.Sprintf("chan_pingpong: got %d, want %d", v, i))
		}
	}
	close(ping)
	<-done
	return time.Since(start), n
}

// chanBufferedCap is CHAN_BUFFERED_CAP in benches/compare.rs.
const chanBufferedCap = 1024

// chan_buffered: a producer goroutine sends 0..n on a channel of capacity
// chanBufferedCap, then closes it; the main goroutine receives until
// closed and checks the sum. ns/op = elapsed / n, per value.
func chanBuffered(n uint64) (time.Duration, uint64) {
	c := make(chan uint64, chanBufferedCap)
	start := time.Now()
	go func() {
		for i := uint64(0); i < n; i++ {
			c <- i
		}
		close(c)
	}()
	var sum uint64
	for v := range c {
		sum += v
	}
	elapsed := time.Since(start)
	if sum != n*(n-1)/2 {
		panic("chan_buffered: wrong sum")
	}
	return elapsed, n
}

// timerDuration is timer_duration in benches/compare.rs: 1–10ms.
func timerDuration(i uint64) time.Duration {
	return time.Duration(1000+(i*7919)%9001) * time.Microsecond
}

// timers_after: n goroutines, each receiving from time.After(timerDuration(i));
// the main goroutine waits for all (a WaitGroup, as gort joins the
// handles). ns/op = elapsed / n.
func timersAfter(n uint64) (time.Duration, uint64) {
	start := time.Now()
	var wg sync.WaitGroup
	wg.Add(int(n))
	for i := uint64(0); i < n; i++ {
		go func(i uint64) {
			<-time.After(timerDuration(i))
			wg.Done()
		}(i)
	}
	wg.Wait()
	return time.Since(start), n
}

// timers_sleep: as timers_after, with time.Sleep(timerDuration(i)).
func timersSleep(n uint64) (time.Duration, uint64) {
	start := time.Now()
	var wg sync.WaitGroup
	wg.Add(int(n))
	for i := uint64(0); i < n; i++ {
		go func(i uint64) {
			time.Sleep(timerDuration(i))
			wg.Done()
		}(i)
	}
	wg.Wait()
	return time.Since(start), n
}

func init() {
	workloads["chan_pingpong"] = workload{defaultN: 1000000, run: chanPingpong}
	workloads["chan_buffered"] = workload{defaultN: 2000000, run: chanBuffered}
	workloads["timers_after"] = workload{defaultN: 100000, run: timersAfter}
	workloads["timers_sleep"] = workload{defaultN: 100000, run: timersSleep}
}
