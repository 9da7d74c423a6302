package main

import (
	"sync/atomic"
	"syscall"
	"time"
)

// lateness_pipes: the lateness sleeper (time.Sleep(1ms), n times) beside
// pipeReaders goroutines that read their pipes one byte at a time with
// syscall.Read on blocking pipes (an announced syscall: entersyscall /
// exitsyscall), while a goroutine writes a byte to every pipe every 2ms.
// gort's side does the reads with plain std reads (unannounced).
const pipeReaders = 8

func latenessPipes(n uint64) string {
	fds := make([][2]int, pipeReaders)
	for i := range fds {
		if err := syscall.Pipe(fds[i][:]); err != nil {
			fail("pipe: %v", err)
		}
	}
	var stop uint32
	fed := make(chan bool)
	go func() {
		one := []byte{'x'}
		for atomic.LoadUint32(&stop) == 0 {
			time.Sleep(2 * time.Millisecond)
			for _, p := range fds {
				syscall.Write(p[1], one)
			}
		}
		for _, p := range fds {
			syscall.Close(p[1])
		}
		fed <- true
	}()
	read := make(chan bool)
	for _, p := range fds {
		go func(fd int) {
			b := make([]byte, 1)
			for {
				k, err := syscall.Read(fd, b)
				if k <= 0 || err != nil {
					break
				}
			}
			syscall.Close(fd)
			read <- true
		}(p[0])
	}
	v := make([]time.Duration, 0, n)
	for i := uint64(0); i < n; i++ {
		v = append(v, lateBy(sleep1ms))
	}
	atomic.StoreUint32(&stop, 1)
	<-fed
	for range fds {
		<-read
	}
	return latencyFields(v)
}

func init() {
	workloads["lateness_pipes"] = workload{defaultN: 300, once: latenessPipes}
}
