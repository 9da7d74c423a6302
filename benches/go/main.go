// Command gortbench is the Go side of the gort-vs-Go comparison run by
// compare.sh. It mirrors benches/compare.rs: same workloads, same arguments,
// same method, same output lines:
//
//	gortbench <workload> [n=<N>] [runs=<R>] [dir=<DIR>]
//
// Throughput workloads do one warm-up run, then print the best of `runs`:
//
//	spawn_join procs=1 n=1000000 ns_per_op=123.4
//
// Scheduling-latency workloads (lateness, lateness_syscall, fairness,
// handoff, lateness_pipes, walk_hash) run once and print their own fields
// after the common ones:
//
//	lateness procs=2 slice_us=10000 n=300 p50_us=… p99_us=… max_us=…
//
// slice_us is Go's forcePreemptNS (10ms), which Go cannot change; gort's
// side takes a slice_us= argument, this one does not. dir= is walk_hash's
// tree.
//
// The number of Ps comes from GOMAXPROCS (compare.sh sets it). Each
// workload lives in its own file and registers itself in `workloads`.
//
// GORTBENCH_TRACE=path runs the whole command under Go's execution tracer
// (runtime/trace, written to path): to compare the tracers' costs, as
// gort's side does with GORT_TRACE.
package main

import (
	"fmt"
	"math"
	"os"
	"runtime"
	"runtime/trace"
	"sort"
	"strconv"
	"strings"
	"time"
)

// A workload has either run (throughput: runs its work once with parameter
// n and returns the elapsed time and the number of operations done) or once
// (runs once and returns its result fields, "key=value ...").
type workload struct {
	defaultN uint64
	run      func(n uint64) (time.Duration, uint64)
	once     func(n uint64) string
}

// forcePreemptNS is Go's time slice (runtime/proc.go), in µs.
const forcePreemptUS = 10000

var workloads = map[string]workload{}

func usage() {
	var names []string
	for name := range workloads {
		names = append(names, name)
	}
	sort.Strings(names)
	fmt.Fprintf(os.Stderr, "usage: gortbench <workload> [n=<N>] [runs=<R>] [dir=<DIR>]\nworkloads: %s\n",
		strings.Join(names, ", "))
	os.Exit(2)
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "gortbench: "+format+"\n", args...)
	usage()
}

func main() {
	var name string
	var n uint64
	runs := uint64(5)
	for _, arg := range os.Args[1:] {
		var err error
		switch {
		case strings.HasPrefix(arg, "n="):
			n, err = strconv.ParseUint(arg[2:], 10, 64)
		case strings.HasPrefix(arg, "runs="):
			runs, err = strconv.ParseUint(arg[5:], 10, 64)
		case strings.HasPrefix(arg, "dir="):
			walkDir = arg[4:]
		case name == "":
			name = arg
		default:
			fail("unexpected argument %q", arg)
		}
		if err != nil {
			fail("bad argument %q", arg)
		}
	}
	w, ok := workloads[name]
	if !ok {
		fail("unknown workload %q", name)
	}
	if n == 0 {
		n = w.defaultN
	}
	if runs == 0 {
		fail("runs must be at least 1")
	}
	if path := os.Getenv("GORTBENCH_TRACE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			fail("GORTBENCH_TRACE: %v", err)
		}
		if err := trace.Start(f); err != nil {
			fail("GORTBENCH_TRACE: %v", err)
		}
		defer func() {
			trace.Stop()
			f.Close()
		}()
	}

	if w.once != nil {
		fields := w.once(n)
		fmt.Printf("%s procs=%d slice_us=%d n=%d %s\n", name, runtime.GOMAXPROCS(0), forcePreemptUS, n, fields)
		return
	}
	w.run(n) // warm-up
	best := math.Inf(1)
	for r := uint64(0); r < runs; r++ {
		elapsed, ops := w.run(n)
		best = math.Min(best, float64(elapsed.Nanoseconds())/float64(ops))
	}
	fmt.Printf("%s procs=%d n=%d ns_per_op=%.1f\n", name, runtime.GOMAXPROCS(0), n, best)
}
