package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// park_rss: n goroutines each blocked on a receive from one channel; the
// resident memory they add, per goroutine, once all are parked, and the
// page tables (not in RSS), as gort's side measures them. Then the channel is closed and they end.
func rssBytes() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		panic(err)
	}
	pages, err := strconv.ParseUint(strings.Fields(string(b))[1], 10, 64)
	if err != nil {
		panic(err)
	}
	return pages * uint64(os.Getpagesize())
}

func pteBytes() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		panic(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmPTE:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				panic(err)
			}
			return kb * 1024
		}
	}
	panic("no VmPTE")
}

func parkRss(n uint64) string {
	before, pteBefore := rssBytes(), pteBytes()
	ch := make(chan struct{})
	var wg sync.WaitGroup
	var started atomic.Uint64
	wg.Add(int(n))
	for i := uint64(0); i < n; i++ {
		go func() {
			started.Add(1)
			<-ch
			wg.Done()
		}()
	}
	for started.Load() < n {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	after, pteAfter := rssBytes(), pteBytes()
	close(ch)
	wg.Wait()
	return fmt.Sprintf("bytes_per_goroutine=%.0f page_table_bytes_per_goroutine=%.0f rss_before_mb=%.1f rss_parked_mb=%.1f",
		float64(after-before)/float64(n), float64(pteAfter-pteBefore)/float64(n), float64(before)/1e6, float64(after)/1e6)
}

func init() {
	workloads["park_rss"] = workload{defaultN: 100000, once: parkRss}
}
