package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"
)

// walk_hash: a walker goroutine walks walkDir (dir=, default /usr/share),
// recursing into directories, skipping symbolic links and anything not a
// regular file, ignoring errors, and sends the paths of the first n regular
// files (directory order, unsorted as on gort's side) into a channel of
// capacity walkChanCap; walkWorkers goroutines take paths from it, read
// each file whole with os.ReadFile and hash it with FNV-1a 64; beside them
// the lateness sleeper sleeps 1ms in a loop until the workers are done.
// hash= is the XOR of the per-file hashes. gort's side reads with plain
// std::fs::read (unannounced blocking).
const (
	walkWorkers = 8
	walkChanCap = 64
)

// walkDir is set by the dir= argument.
var walkDir = "/usr/share"

// fnv1a is FNV-1a, 64 bits (gort's side: fnv1a in benches/compare.rs).
func fnv1a(b []byte) uint64 {
	h := uint64(0xcbf29ce484222325)
	for _, c := range b {
		h ^= uint64(c)
		h *= 0x100000001b3
	}
	return h
}

// walkTree sends the regular files under dir into paths until *left
// reaches 0; false once it has: stop walking.
func walkTree(dir string, paths chan<- string, left *uint64) bool {
	f, err := os.Open(dir)
	if err != nil {
		return true
	}
	// File.ReadDir does not sort (os.ReadDir does): directory order, as
	// std::fs::read_dir. Entries read before an error are kept.
	entries, _ := f.ReadDir(-1)
	f.Close()
	for _, e := range entries {
		if *left == 0 {
			return false
		}
		// The entry's own type (d_type, else lstat): a symbolic link is
		// neither a directory nor a regular file here.
		t := e.Type()
		if t.IsDir() {
			if !walkTree(filepath.Join(dir, e.Name()), paths, left) {
				return false
			}
		} else if t.IsRegular() {
			paths <- filepath.Join(dir, e.Name())
			*left--
		}
	}
	return true
}

type walkResult struct{ files, bytes, hash uint64 }

func walkHash(n uint64) string {
	var done uint32
	lateCh := make(chan []time.Duration)
	go func() {
		var v []time.Duration
		// At least one sample, however short the walk.
		for {
			v = append(v, lateBy(sleep1ms))
			if atomic.LoadUint32(&done) != 0 {
				break
			}
		}
		lateCh <- v
	}()
	start := time.Now()
	paths := make(chan string, walkChanCap)
	walked := make(chan bool)
	go func() {
		left := n
		walkTree(walkDir, paths, &left)
		close(paths)
		walked <- true
	}()
	results := make(chan walkResult)
	for i := 0; i < walkWorkers; i++ {
		go func() {
			var r walkResult
			for p := range paths {
				data, err := os.ReadFile(p)
				if err != nil {
					continue
				}
				r.files++
				r.bytes += uint64(len(data))
				r.hash ^= fnv1a(data)
			}
			results <- r
		}()
	}
	var total walkResult
	for i := 0; i < walkWorkers; i++ {
		r := <-results
		total.files += r.files
		total.bytes += r.bytes
		total.hash ^= r.hash
	}
	wall := time.Since(start)
	atomic.StoreUint32(&done, 1)
	<-walked
	late := <-lateCh
	return fmt.Sprintf("files=%d bytes=%d wall_ms=%.1f %s hash=0x%016x",
		total.files, total.bytes, float64(wall.Nanoseconds())/1e6, latencyFields(late), total.hash)
}

func init() {
	// A file limit: more than the files of the default tree.
	workloads["walk_hash"] = workload{defaultN: 1000000, once: walkHash}
}
