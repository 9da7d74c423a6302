package main

import (
	"fmt"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// Shared by the scheduling-latency workloads (lateness.go, fairness.go,
// handoff.go), mirroring the helpers in benches/compare.rs.

// spinners is the number of spinning goroutines in lateness and fairness.
const spinners = 4

// spin is the spinning loop: no calls, one load of stop and one add per
// iteration, the same body as compare.rs's `spin` (atomic.LoadUint32 is a
// plain load on amd64; it also keeps the compiler from hoisting the load
// and removing the loop). Go puts no preemption check in loops, so only a
// preemption signal can take the P from it.
//
//go:noinline
func spin(stop *uint32) uint64 {
	var n uint64
	for atomic.LoadUint32(stop) == 0 {
		n++
	}
	return n
}

// startSpinners starts `spinners` goroutines running spin; each sends its
// count on the returned channel when stopped.
func startSpinners(stop *uint32) <-chan uint64 {
	counts := make(chan uint64, spinners)
	for i := 0; i < spinners; i++ {
		go func() { counts <- spin(stop) }()
	}
	return counts
}

// percentile is the nearest-rank percentile of sorted v, as in compare.rs.
func percentile(v []time.Duration, p int) time.Duration {
	rank := (p*len(v) + 99) / 100
	if rank < 1 {
		rank = 1
	}
	return v[rank-1]
}

// latencyFields formats "p50_us=… p99_us=… max_us=…" of v.
func latencyFields(v []time.Duration) string {
	sort.Slice(v, func(i, j int) bool { return v[i] < v[j] })
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 }
	return fmt.Sprintf("p50_us=%.1f p99_us=%.1f max_us=%.1f",
		us(percentile(v, 50)), us(percentile(v, 99)), us(v[len(v)-1]))
}

// fairnessFields formats
// "window_ms=… min_share=… max_share=… min_max=… shares=a,b,c,d".
func fairnessFields(counts []uint64, window time.Duration) string {
	var total uint64
	for _, c := range counts {
		total += c
	}
	if total == 0 {
		total = 1
	}
	minS, maxS := 1.0, 0.0
	var list []string
	for _, c := range counts {
		s := float64(c) / float64(total)
		if s < minS {
			minS = s
		}
		if s > maxS {
			maxS = s
		}
		list = append(list, fmt.Sprintf("%.4f", s))
	}
	ratio := 0.0
	if maxS > 0 {
		ratio = minS / maxS
	}
	return fmt.Sprintf("window_ms=%.1f min_share=%.4f max_share=%.4f min_max=%.4f shares=%s",
		float64(window.Nanoseconds())/1e6, minS, maxS, ratio, strings.Join(list, ","))
}

// nanosleep sleeps d in a blocking nanosleep system call: syscall.Nanosleep
// goes through syscall.Syscall, which brackets it with entersyscall and
// exitsyscall (the P may be handed off meanwhile), as gort's
// syscall::blocking does. After an interruption by a signal (SIGURG) it
// sleeps the remainder, as compare.rs does.
func nanosleep(d time.Duration) {
	ts := syscall.NsecToTimespec(int64(d))
	for {
		err := syscall.Nanosleep(&ts, &ts)
		if err == nil {
			return
		}
		if err != syscall.EINTR {
			panic(err)
		}
	}
}
