//! The gort side of the gort-vs-Go comparison (`benches/go/compare.sh`).
//!
//! ```text
//! cargo bench --bench compare -- <workload> [n=<N>] [runs=<R>] [slice_us=<US>] [dir=<DIR>]
//! GORT_MAXPROCS=2 target/release/deps/compare-* spawn_join n=1000000
//! GORT_MAXPROCS=2 target/release/deps/compare-* lateness slice_us=100
//! ```
//!
//! `benches/go/` has the Go programs doing the same work, with the same
//! arguments and output. Keep the two sides in step when changing either.
//!
//! The number of procs comes from `GORT_MAXPROCS` (default: all CPUs);
//! `slice_us` sets the time slice through `Builder::time_slice` (default
//! 10ms, Go's forcePreemptNS, which Go cannot change).
//!
//! # Throughput workloads
//!
//! Run once to warm up (Gs, stacks and heap get allocated), then `runs`
//! times (default 5), and print the best run as one line:
//!
//! ```text
//! spawn_join procs=1 n=1000000 ns_per_op=123.4
//! ```
//!
//! - `spawn_join`: the main goroutine spawns `n` goroutines, goroutine `i`
//!   returning `2*i + 1`; it keeps the handles, then joins them all and
//!   checks the sum (`n*n`). ns/op = elapsed / n.
//! - `yield_pingpong`: two goroutines each call `yield_now` `n` times; the
//!   main goroutine joins both. ns/op = elapsed / (2n), per yield.
//! - `mutex`: 8 goroutines each lock a `gort::sync::Mutex`, increment a
//!   shared counter and unlock, `n` times; ns/op per lock/unlock pair.
//! - `chan_pingpong`: `n` round trips between the main goroutine and an
//!   echo goroutine over two unbuffered channels; ns/op per round trip.
//! - `chan_buffered`: one producer goroutine sends `n` values through a
//!   channel of capacity 1024 to the main goroutine; ns/op per value.
//! - `timers_after` / `timers_sleep`: `n` goroutines each wait 1–10ms
//!   (`time::after(d).recv()` / `time::sleep(d)`), all joined; ns/op =
//!   elapsed / n.
//! - `tcp_echo`: an echo server on 127.0.0.1 (one goroutine per
//!   connection) and `TCP_ECHO_CLIENTS` client goroutines, each doing `n`
//!   round trips of `TCP_ECHO_MSG` bytes (write, then read the echo in
//!   full), `TCP_NODELAY` on both ends (Go's default); connecting is
//!   included. ns/op = elapsed / (clients × n), per round trip.
//!
//! # Scheduling-latency workloads
//!
//! One run each (`runs` is ignored), printing the same leading fields plus
//! the workload's own, e.g.
//!
//! ```text
//! lateness procs=2 slice_us=10000 n=300 p50_us=… p99_us=… max_us=…
//! ```
//!
//! - `lateness`: `SPINNERS` goroutines spin (a tight loop with no calls,
//!   reading a stop flag) so that every P is busy, and a sleeper does `n`
//!   times: take `t0`, `gort::time::sleep(1ms)` (Go: `time.Sleep`), take
//!   the wake time once it runs again; lateness = wake − t0 − 1ms.
//!   Percentiles in µs.
//! - `lateness_syscall`: the same with the sleep done as a blocking 1ms
//!   `nanosleep` system call on both sides (gort: `syscall::blocking`; Go:
//!   `syscall.Nanosleep`): the sleeper must get a P back after the call.
//!   gort's line adds the split `kernel_*` (back from the kernel, before
//!   asking for a P) and `pwait_*` (waiting for a P).
//! - `fairness`: `SPINNERS` goroutines run the same loop, each counting its
//!   own iterations, for `n` milliseconds (meant for procs=1); then the
//!   main goroutine stops them. Prints each one's share of all iterations
//!   (ideal: 1/SPINNERS) and min share / max share.
//! - `handoff`: `n` times (after `HANDOFF_WARMUP` unrecorded rounds, which
//!   create the Ms): goroutine A spawns B (queued on A's P), takes
//!   `t_enter` and enters a 50ms blocking `nanosleep`; B takes `t_run` as
//!   its first action. Latency = t_run − t_enter: how long a runnable
//!   goroutine waits for the P of a goroutine blocked in a syscall (meant
//!   for procs=1, where only the handoff can run B). Percentiles in µs.
//!
//! - `lateness_pipes`: the `lateness` sleeper beside `PIPE_READERS`
//!   goroutines that read their pipes one byte at a time with plain
//!   blocking `std` reads (not `syscall::blocking`: unannounced), a plain
//!   thread writing a byte to every pipe every 2ms (meant for procs=1,
//!   where every read that blocks holds the only P until sysmon hands it
//!   off). Go's side reads with `syscall.Read` on blocking pipes (an
//!   announced syscall) and writes from a goroutine.
//! - `walk_hash`: a walker goroutine walks `dir=` (default `/usr/share`)
//!   with `std::fs::read_dir`, recursing into directories, skipping
//!   symbolic links and anything not a regular file, ignoring errors, and
//!   sends the paths of the first `n` regular files (directory order)
//!   into a `gort::chan` channel of capacity `WALK_CHAN_CAP`;
//!   `WALK_WORKERS` goroutines take paths from it, read each file whole
//!   with plain `std::fs::read` (not `syscall::blocking`: unannounced, on
//!   a cold page cache a disk wait that holds the P until sysmon hands it
//!   off) and hash it with FNV-1a 64; beside them the `lateness` sleeper
//!   sleeps 1ms in a loop until the workers are done. Adds `files=`
//!   (files read), `bytes=`, `wall_ms=` (start to the last worker done),
//!   the sleeper's lateness percentiles and `hash=` (the XOR of the
//!   per-file hashes: the same on both sides for the same tree). Go's
//!   side reads with `os.ReadFile` (announced syscalls). Meant to be run
//!   on a cold page cache: `benches/go/walk.sh`.
//! - `timers_lateness`: `n` goroutines spawned at once, goroutine `i`
//!   sleeping 1–100ms (`late_duration`) with `gort::time::sleep` (Go:
//!   `time.Sleep`) and recording how late it woke; lateness percentiles
//!   and `wall_ms=` (first spawn to last wake-up).
//!   `timers_barrier`: the same with every goroutine sleeping 50ms, so
//!   the timers fire together.
//! - `park_rss`: `n` goroutines parked on one channel's receive; the
//!   resident memory (`bytes_per_goroutine=`) and page-table memory
//!   (`page_table_bytes_per_goroutine=`, not in RSS) they add, per
//!   goroutine.
//!
//! Before the spinning workloads start, the main goroutine waits until
//! asynchronous preemption is active (the code map is built in the
//! background at start-up, tens of ms): these workloads measure the
//! steady state, and Go's runtime has signal preemption from its first
//! instruction. The wait is printed on stderr with gort's counters.
//!
//! Without a workload (plain `cargo bench`, or `cargo test --all-targets`)
//! it runs every workload once with a small `n`, as a smoke test.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// How a workload runs and reports.
#[derive(Clone, Copy)]
enum Kind {
    /// Runs the work once and returns (elapsed, operations done); the best
    /// of `runs` is reported as ns/op.
    Throughput(fn(u64) -> (Duration, u64)),
    /// Runs once and returns its own result fields (`key=value ...`).
    Once(fn(u64) -> String),
}

struct Workload {
    name: &'static str,
    default_n: u64,
    /// `n` for the smoke test.
    smoke_n: u64,
    kind: Kind,
}

const WORKLOADS: &[Workload] = &[
    Workload {
        name: "spawn_join",
        default_n: 1_000_000,
        smoke_n: 1000,
        kind: Kind::Throughput(spawn_join),
    },
    Workload {
        name: "yield_pingpong",
        default_n: 1_000_000,
        smoke_n: 1000,
        kind: Kind::Throughput(yield_pingpong),
    },
    Workload {
        name: "lateness",
        default_n: 300,
        smoke_n: 5,
        kind: Kind::Once(lateness),
    },
    Workload {
        name: "lateness_syscall",
        default_n: 300,
        smoke_n: 5,
        kind: Kind::Once(lateness_syscall),
    },
    Workload {
        name: "lateness_pipes",
        default_n: 300,
        smoke_n: 5,
        kind: Kind::Once(lateness_pipes),
    },
    Workload {
        name: "walk_hash",
        // A file limit: more than the files of the default tree.
        default_n: 1_000_000,
        smoke_n: 200,
        kind: Kind::Once(walk_hash),
    },
    Workload {
        name: "fairness",
        default_n: 2000,
        smoke_n: 50,
        kind: Kind::Once(fairness),
    },
    Workload {
        name: "handoff",
        default_n: 50,
        smoke_n: 2,
        kind: Kind::Once(handoff),
    },
    Workload {
        name: "mutex",
        default_n: 200_000,
        smoke_n: 1000,
        kind: Kind::Throughput(mutex_contended),
    },
    Workload {
        name: "chan_pingpong",
        default_n: 1_000_000,
        smoke_n: 1000,
        kind: Kind::Throughput(chan_pingpong),
    },
    Workload {
        name: "chan_buffered",
        default_n: 2_000_000,
        smoke_n: 1000,
        kind: Kind::Throughput(chan_buffered),
    },
    Workload {
        name: "timers_after",
        default_n: 100_000,
        smoke_n: 1000,
        kind: Kind::Throughput(timers_after),
    },
    Workload {
        name: "timers_sleep",
        default_n: 100_000,
        smoke_n: 1000,
        kind: Kind::Throughput(timers_sleep),
    },
    Workload {
        name: "timers_lateness",
        default_n: 100_000,
        smoke_n: 1000,
        kind: Kind::Once(timers_lateness),
    },
    Workload {
        name: "timers_barrier",
        default_n: 100_000,
        smoke_n: 1000,
        kind: Kind::Once(timers_barrier),
    },
    Workload {
        name: "park_rss",
        default_n: 100_000,
        smoke_n: 1000,
        kind: Kind::Once(park_rss),
    },
    Workload {
        name: "tcp_echo",
        default_n: 20_000,
        smoke_n: 50,
        kind: Kind::Throughput(tcp_echo),
    },
];

/// Runs on the main goroutine.
fn spawn_join(n: u64) -> (Duration, u64) {
    let start = Instant::now();
    let handles: Vec<gort::JoinHandle<u64>> =
        (0..n).map(|i| gort::spawn(move || 2 * i + 1)).collect();
    let sum: u64 = handles
        .into_iter()
        .map(|h| h.join().expect("goroutine panicked"))
        .sum();
    let elapsed = start.elapsed();
    assert_eq!(sum, n * n, "spawn_join: wrong sum");
    (elapsed, n)
}

/// Runs on the main goroutine.
fn yield_pingpong(n: u64) -> (Duration, u64) {
    let start = Instant::now();
    let side = move || {
        for _ in 0..n {
            gort::yield_now();
        }
        black_box(n)
    };
    let a = gort::spawn(side);
    let b = gort::spawn(side);
    let done = a.join().expect("goroutine panicked") + b.join().expect("goroutine panicked");
    let elapsed = start.elapsed();
    assert_eq!(done, 2 * n);
    (elapsed, 2 * n)
}

// ---------------------------------------------------------------------------
// Scheduling-latency workloads.

/// Spinning goroutines in `lateness` and `fairness`.
const SPINNERS: usize = 4;
/// The sleep of `lateness`.
const SLEEP: Duration = Duration::from_millis(1);
/// The blocking call of `handoff`: long enough that B always runs before
/// it returns (Go's sysmon takes a P back within 20µs–20ms).
const HANDOFF_SYSCALL: Duration = Duration::from_millis(50);
/// Unrecorded `handoff` rounds first (the first handoff creates an M).
const HANDOFF_WARMUP: u64 = 3;

/// The spinning loop: no calls, one relaxed load of `stop` and one add per
/// iteration (the Go side's loop is the same: `atomic.LoadUint32` is a
/// plain load on amd64). The atomic load keeps the compiler from removing
/// or collapsing the loop; returning the count keeps the count. Only a
/// preemption signal can take the P from it.
#[inline(never)]
fn spin(stop: &AtomicBool) -> u64 {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
    }
    n
}

/// Waits until signal preemption is active; returns how long that took.
/// See the module docs.
fn wait_async_preempt() -> Duration {
    let start = Instant::now();
    while !gort::stats().async_preempt && start.elapsed() < Duration::from_secs(5) {
        gort::time::sleep(Duration::from_millis(1));
    }
    start.elapsed()
}

/// Nearest-rank percentile of sorted `v` (the Go side computes the same).
fn percentile(v: &[Duration], p: usize) -> Duration {
    let rank = (p * v.len()).div_ceil(100).max(1);
    v[rank - 1]
}

/// `p50_us=… p99_us=… max_us=…` of `v`.
fn latency_fields(mut v: Vec<Duration>) -> String {
    v.sort();
    let us = |d: Duration| d.as_nanos() as f64 / 1000.0;
    format!(
        "p50_us={:.1} p99_us={:.1} max_us={:.1}",
        us(percentile(&v, 50)),
        us(percentile(&v, 99)),
        us(*v.last().expect("no samples"))
    )
}

/// Starts `SPINNERS` spinning goroutines.
fn start_spinners(stop: &Arc<AtomicBool>) -> Vec<gort::JoinHandle<u64>> {
    (0..SPINNERS)
        .map(|_| {
            let stop = stop.clone();
            gort::spawn(move || spin(&stop))
        })
        .collect()
}

/// Runs `sleeper` on a goroutine while `SPINNERS` goroutines keep every P
/// busy; then stops them. Runs on the main goroutine.
fn with_spinners<T: Send + 'static>(
    workload: &str,
    sleeper: impl FnOnce() -> T + Send + 'static,
) -> T {
    let ready = wait_async_preempt();
    let stop = Arc::new(AtomicBool::new(false));
    let spinners = start_spinners(&stop);
    let start = Instant::now();
    let out = gort::spawn(sleeper).join().expect("sleeper panicked");
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    for h in spinners {
        black_box(h.join().expect("spinner panicked"));
    }
    report_stats(workload, ready);
    eprintln!(
        "# gort {workload}: {:.0} preemption requests/s over {:.0}ms",
        gort::stats().preempt_requests as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1000.0
    );
    out
}

/// Runs on the main goroutine. `n` sleeps of 1ms (`gort::time::sleep`, a
/// runtime timer like Go's `time.Sleep`) while every P spins. The timer
/// fires when a P next looks for work — when preemption stops a spinner —
/// and the sleeper goes to that P's runnext, as in Go.
fn lateness(n: u64) -> String {
    let late = with_spinners("lateness", move || {
        (0..n)
            .map(|_| {
                let t0 = Instant::now();
                gort::time::sleep(SLEEP);
                t0.elapsed().saturating_sub(SLEEP)
            })
            .collect::<Vec<Duration>>()
    });
    latency_fields(late)
}

/// Goroutines reading pipes in `lateness_pipes`.
const PIPE_READERS: usize = 8;

/// Runs on the main goroutine: see `lateness_pipes` in the module docs.
fn lateness_pipes(n: u64) -> String {
    use std::io::{Read, Write};
    let mut readers = Vec::new();
    let mut writers = Vec::new();
    for _ in 0..PIPE_READERS {
        let (r, w) = std::io::pipe().expect("pipe");
        readers.push(r);
        writers.push(w);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let st = stop.clone();
    let feeder = std::thread::spawn(move || {
        while !st.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(2));
            for w in &mut writers {
                let _ = w.write_all(b"x");
            }
        }
        // Dropping the write ends ends the readers (EOF).
    });
    let hs: Vec<_> = readers
        .into_iter()
        .map(|mut r| {
            gort::spawn(move || {
                let mut b = [0u8; 1];
                while r.read(&mut b).is_ok_and(|k| k > 0) {}
            })
        })
        .collect();
    let late: Vec<Duration> = (0..n)
        .map(|_| {
            let t0 = Instant::now();
            gort::time::sleep(SLEEP);
            t0.elapsed().saturating_sub(SLEEP)
        })
        .collect();
    stop.store(true, Ordering::Relaxed);
    feeder.join().expect("feeder thread");
    for h in hs {
        h.join().expect("pipe reader");
    }
    latency_fields(late)
}

/// Worker goroutines reading files in `walk_hash` (`walkWorkers` in
/// benches/go/walk_hash.go).
const WALK_WORKERS: usize = 8;
/// Capacity of the path channel in `walk_hash`.
const WALK_CHAN_CAP: usize = 64;
/// The tree `walk_hash` walks unless `dir=` says otherwise.
const WALK_DEFAULT_DIR: &str = "/usr/share";
/// `dir=`, if given.
static WALK_DIR: OnceLock<PathBuf> = OnceLock::new();

/// FNV-1a, 64 bits (the Go side's `fnv1a` is the same).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Sends the regular files under `dir` into `tx` until `left` reaches 0;
/// false once it has (or the channel is closed): stop walking.
fn walk_tree(dir: &Path, tx: &gort::chan::Sender<PathBuf>, left: &mut u64) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return true;
    };
    for entry in entries.flatten() {
        if *left == 0 {
            return false;
        }
        // The entry's own type (d_type, else lstat): a symbolic link is
        // neither a directory nor a file here.
        let Ok(ty) = entry.file_type() else { continue };
        if ty.is_dir() {
            if !walk_tree(&entry.path(), tx, left) {
                return false;
            }
        } else if ty.is_file() {
            if tx.send(entry.path()).is_err() {
                return false;
            }
            *left -= 1;
        }
    }
    true
}

/// Runs on the main goroutine: see `walk_hash` in the module docs.
fn walk_hash(n: u64) -> String {
    let root = WALK_DIR
        .get()
        .cloned()
        .unwrap_or_else(|| PathBuf::from(WALK_DEFAULT_DIR));
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    // At least one sample, however short the walk.
    let ticker = gort::spawn(move || {
        let mut late = Vec::new();
        loop {
            let t0 = Instant::now();
            gort::time::sleep(SLEEP);
            late.push(t0.elapsed().saturating_sub(SLEEP));
            if d.load(Ordering::Relaxed) {
                return late;
            }
        }
    });
    let start = Instant::now();
    let (tx, rx) = gort::chan::channel::<PathBuf>(WALK_CHAN_CAP);
    let walker = gort::spawn(move || {
        let mut left = n;
        walk_tree(&root, &tx, &mut left);
        // Dropping tx closes the channel: the workers end.
    });
    let workers: Vec<gort::JoinHandle<(u64, u64, u64)>> = (0..WALK_WORKERS)
        .map(|_| {
            let rx = rx.clone();
            gort::spawn(move || {
                let (mut files, mut bytes, mut hash) = (0u64, 0u64, 0u64);
                for path in &rx {
                    // A plain blocking read: no syscall::blocking.
                    if let Ok(data) = std::fs::read(&path) {
                        files += 1;
                        bytes += data.len() as u64;
                        hash ^= fnv1a(&data);
                    }
                }
                (files, bytes, hash)
            })
        })
        .collect();
    drop(rx);
    let (mut files, mut bytes, mut hash) = (0u64, 0u64, 0u64);
    for w in workers {
        let (f, b, h) = w.join().expect("walk_hash: worker panicked");
        files += f;
        bytes += b;
        hash ^= h;
    }
    let wall = start.elapsed();
    done.store(true, Ordering::Relaxed);
    walker.join().expect("walk_hash: walker panicked");
    let late = ticker.join().expect("walk_hash: ticker panicked");
    let s = gort::stats();
    eprintln!(
        "# gort walk_hash: unannounced_handoffs={} syscall_handoffs={} threads={} ticks={}",
        s.unannounced_handoffs,
        s.syscall_handoffs,
        s.threads,
        late.len()
    );
    format!(
        "files={files} bytes={bytes} wall_ms={:.1} {} hash=0x{hash:016x}",
        wall.as_secs_f64() * 1000.0,
        latency_fields(late)
    )
}

/// Runs on the main goroutine. `lateness` with the sleep done as a 1ms
/// blocking `nanosleep` system call instead (Go's side:
/// `syscall.Nanosleep`): the sleeper sleeps in the kernel and must then
/// get a P back. (Before gort had timers this was how `lateness` slept.)
///
/// sysmon takes a P from a syscall only after seeing it there on two
/// rounds (gort and Go alike). At the default slice gort's rounds back off
/// to 5ms (Go's to 10ms), so a 1ms call is rarely seen twice: the sleeper
/// keeps its P (idle meanwhile) and gets it straight back, and the lateness
/// is the kernel's oversleep. At a 100µs slice (rounds ≤ 50µs) the P goes
/// to a spinner and the sleeper must win a P back.
///
/// The line adds a split: `kernel_*` is until the thread is back from the
/// kernel (timer slack, waiting for a CPU), `pwait_*` the wait for a P
/// after that; their sum is the lateness.
fn lateness_syscall(n: u64) -> String {
    let (late, kernel, p_wait) = with_spinners("lateness_syscall", move || {
        let mut late = Vec::with_capacity(n as usize);
        let mut kernel = Vec::with_capacity(n as usize);
        let mut p_wait = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let t0 = Instant::now();
            // t_k: back from the kernel, on the M, before asking for a P.
            let t_k = gort::syscall::blocking(|| {
                nanosleep(SLEEP);
                Instant::now()
            });
            let t1 = Instant::now();
            late.push(t1.duration_since(t0).saturating_sub(SLEEP));
            kernel.push(t_k.duration_since(t0).saturating_sub(SLEEP));
            p_wait.push(t1.duration_since(t_k));
        }
        (late, kernel, p_wait)
    });
    format!(
        "{} kernel_{} pwait_{}",
        latency_fields(late),
        latency_fields(kernel).replace(' ', " kernel_"),
        latency_fields(p_wait).replace(' ', " pwait_")
    )
}

/// Runs on the main goroutine. `SPINNERS` goroutines count iterations for
/// `n` ms. With one P the main goroutine's wake-up is a consistent cut:
/// while it runs no spinner does, and any spinner that runs after it sets
/// `stop` sees the flag before counting again.
fn fairness(n: u64) -> String {
    let ready = wait_async_preempt();
    let stop = Arc::new(AtomicBool::new(false));
    let spinners = start_spinners(&stop);
    let start = Instant::now();
    gort::time::sleep(Duration::from_millis(n));
    stop.store(true, Ordering::Relaxed);
    let window = start.elapsed();
    let counts: Vec<u64> = spinners
        .into_iter()
        .map(|h| h.join().expect("spinner panicked"))
        .collect();
    report_stats("fairness", ready);
    fairness_fields(&counts, window)
}

/// `window_ms=… min_share=… max_share=… min_max=… shares=a,b,c,d`.
fn fairness_fields(counts: &[u64], window: Duration) -> String {
    let total: u64 = counts.iter().sum();
    let shares: Vec<f64> = counts
        .iter()
        .map(|&c| c as f64 / total.max(1) as f64)
        .collect();
    let min = shares.iter().copied().fold(f64::INFINITY, f64::min);
    let max = shares.iter().copied().fold(0.0, f64::max);
    let list: Vec<String> = shares.iter().map(|s| format!("{s:.4}")).collect();
    format!(
        "window_ms={:.1} min_share={min:.4} max_share={max:.4} min_max={:.4} shares={}",
        window.as_secs_f64() * 1000.0,
        if max > 0.0 { min / max } else { 0.0 },
        list.join(",")
    )
}

/// A real blocking system call (Go's side: `syscall.Nanosleep`, which
/// enters the syscall state likewise). After an interruption by a signal
/// it sleeps the remainder, as the Go side does.
fn nanosleep(d: Duration) {
    let mut ts = libc::timespec {
        tv_sec: d.as_secs() as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    };
    loop {
        let req = ts;
        // SAFETY: both pointers are to valid timespecs.
        if unsafe { libc::nanosleep(&req, &mut ts) } == 0 {
            return;
        }
        let err = std::io::Error::last_os_error();
        assert_eq!(err.raw_os_error(), Some(libc::EINTR), "nanosleep: {err}");
    }
}

/// One round of `handoff`: returns t_run − t_enter.
fn handoff_once() -> Duration {
    let a = gort::spawn(|| {
        // B waits in this P's run queue while A blocks.
        let b = gort::spawn(Instant::now);
        let t_enter = Instant::now();
        gort::syscall::blocking(|| nanosleep(HANDOFF_SYSCALL));
        (t_enter, b)
    });
    let (t_enter, b) = a.join().expect("A panicked");
    let t_run = b.join().expect("B panicked");
    t_run.saturating_duration_since(t_enter)
}

/// Runs on the main goroutine.
fn handoff(n: u64) -> String {
    for _ in 0..HANDOFF_WARMUP {
        handoff_once();
    }
    let lat: Vec<Duration> = (0..n).map(|_| handoff_once()).collect();
    report_stats("handoff", Duration::ZERO);
    latency_fields(lat)
}

/// gort's counters on stderr, for diagnosis.
fn report_stats(workload: &str, ready: Duration) {
    let s = gort::stats();
    eprintln!(
        "# gort {workload}: async preemption ready after {:.1}ms; preempt_requests={} \
         preempted_async={} preempted_cooperative={} preempt_rejected={} \
         syscall_handoffs={} threads={}",
        ready.as_secs_f64() * 1000.0,
        s.preempt_requests,
        s.preempted_async,
        s.preempted_cooperative,
        s.preempt_rejected,
        s.syscall_handoffs,
        s.threads
    );
}

// ---------------------------------------------------------------------------
// Driver.

fn usage() -> String {
    let names: Vec<&str> = WORKLOADS.iter().map(|w| w.name).collect();
    format!(
        "usage: compare <workload> [n=<N>] [runs=<R>] [slice_us=<US>] [dir=<DIR>]\n\
         workloads: {}",
        names.join(", ")
    )
}

/// What to run: the workloads with their `n`, the number of runs, and the
/// time slice to configure (None: the default).
struct Plan {
    work: Vec<(&'static Workload, u64)>,
    runs: u32,
    slice: Option<Duration>,
}

fn parse_args() -> Result<Plan, String> {
    let mut workload = None;
    let mut n = None;
    let mut runs = 5u32;
    let mut slice = None;
    // cargo bench passes `--bench`; the rest is ours.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.is_empty() {
        // Smoke test: every workload, small, once.
        return Ok(Plan {
            work: WORKLOADS.iter().map(|w| (w, w.smoke_n)).collect(),
            runs: 1,
            slice: None,
        });
    }
    for arg in args {
        if let Some(v) = arg.strip_prefix("n=") {
            n = Some(v.parse().map_err(|_| format!("bad n: {v:?}"))?);
        } else if let Some(v) = arg.strip_prefix("runs=") {
            runs = v.parse().map_err(|_| format!("bad runs: {v:?}"))?;
        } else if let Some(v) = arg.strip_prefix("slice_us=") {
            let us: u64 = v.parse().map_err(|_| format!("bad slice_us: {v:?}"))?;
            slice = Some(Duration::from_micros(us));
        } else if let Some(v) = arg.strip_prefix("dir=") {
            // walk_hash's tree; set once, before the runtime starts.
            let _ = WALK_DIR.set(PathBuf::from(v));
        } else if workload.is_none() {
            let w = WORKLOADS
                .iter()
                .find(|w| w.name == arg)
                .ok_or_else(|| format!("unknown workload {arg:?}"))?;
            workload = Some(w);
        } else {
            return Err(format!("unexpected argument {arg:?}"));
        }
    }
    let workload = workload.ok_or("no workload given")?;
    let n = n.unwrap_or(workload.default_n);
    if n == 0 || runs == 0 {
        return Err("n and runs must be at least 1".into());
    }
    Ok(Plan {
        work: vec![(workload, n)],
        runs,
        slice,
    })
}

fn main() -> ExitCode {
    let plan = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("compare: {e}\n{}", usage());
            return ExitCode::from(2);
        }
    };
    let slice = plan.slice.unwrap_or(gort::DEFAULT_TIME_SLICE);
    if plan.slice.is_some() {
        if let Err(e) = gort::Builder::new().time_slice(slice).start() {
            eprintln!("compare: {e}");
            return ExitCode::from(2);
        }
    }
    let runs = plan.runs;
    for (workload, n) in plan.work {
        // The whole measurement runs on one main goroutine, as Go's main does.
        match workload.kind {
            Kind::Throughput(run) => {
                let best = gort::run(move || {
                    run(n); // warm-up
                    (0..runs)
                        .map(|_| {
                            let (elapsed, ops) = run(n);
                            elapsed.as_nanos() as f64 / ops as f64
                        })
                        .fold(f64::INFINITY, f64::min)
                });
                println!(
                    "{} procs={} n={} ns_per_op={:.1}",
                    workload.name,
                    gort::stats().procs,
                    n,
                    best
                );
            }
            Kind::Once(run) => {
                let fields = gort::run(move || run(n));
                println!(
                    "{} procs={} slice_us={} n={} {}",
                    workload.name,
                    gort::stats().procs,
                    slice.as_micros(),
                    n,
                    fields
                );
            }
        }
    }
    ExitCode::SUCCESS
}

// ---------------------------------------------------------------------------
// Synchronisation workloads (gort::sync).

/// Goroutines contending in `mutex` (`mutexGoroutines` in
/// benches/go/mutex.go).
const MUTEX_GOROUTINES: u64 = 8;

/// Runs on the main goroutine. `mutex`: `MUTEX_GOROUTINES` goroutines each
/// do `n` times lock, increment a shared counter, unlock, on one
/// `gort::sync::Mutex`; the main goroutine joins them and checks the
/// total. ns/op = elapsed / (`MUTEX_GOROUTINES` × n), per lock/unlock pair.
fn mutex_contended(n: u64) -> (Duration, u64) {
    let m = Arc::new(gort::sync::Mutex::new(0u64));
    let start = Instant::now();
    let handles: Vec<gort::JoinHandle<()>> = (0..MUTEX_GOROUTINES)
        .map(|_| {
            let m = m.clone();
            gort::spawn(move || {
                for _ in 0..n {
                    *m.lock() += 1;
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("goroutine panicked");
    }
    let elapsed = start.elapsed();
    assert_eq!(*m.lock(), MUTEX_GOROUTINES * n, "mutex: wrong total");
    (elapsed, MUTEX_GOROUTINES * n)
}

// ---------------------------------------------------------------------------
// Channel and timer workloads (gort::chan, gort::time; benches/go/chan.go).

/// Runs on the main goroutine. `chan_pingpong`: an echo goroutine receives
/// on one unbuffered channel and sends each value back on another; the
/// main goroutine does `n` round trips. ns/op = elapsed / n, per round
/// trip (two rendezvous).
fn chan_pingpong(n: u64) -> (Duration, u64) {
    let (ping_tx, ping_rx) = gort::chan::channel::<u64>(0);
    let (pong_tx, pong_rx) = gort::chan::channel::<u64>(0);
    let start = Instant::now();
    let echo = gort::spawn(move || {
        for v in &ping_rx {
            pong_tx.send(v).expect("pong closed");
        }
    });
    for i in 0..n {
        ping_tx.send(i).expect("ping closed");
        assert_eq!(pong_rx.recv(), Ok(i), "chan_pingpong: wrong echo");
    }
    drop(ping_tx);
    echo.join().expect("echo panicked");
    (start.elapsed(), n)
}

/// Capacity of the channel in `chan_buffered`.
const CHAN_BUFFERED_CAP: usize = 1024;

/// Runs on the main goroutine. `chan_buffered`: a producer goroutine sends
/// 0..n on a channel of capacity `CHAN_BUFFERED_CAP`, then closes it; the
/// main goroutine receives until closed and checks the sum. ns/op =
/// elapsed / n, per value.
fn chan_buffered(n: u64) -> (Duration, u64) {
    let (tx, rx) = gort::chan::channel::<u64>(CHAN_BUFFERED_CAP);
    let start = Instant::now();
    let producer = gort::spawn(move || {
        for i in 0..n {
            tx.send(i).expect("closed");
        }
    });
    let sum: u64 = rx.iter().sum();
    producer.join().expect("producer panicked");
    let elapsed = start.elapsed();
    assert_eq!(sum, n * (n - 1) / 2, "chan_buffered: wrong sum");
    (elapsed, n)
}

/// The timer duration of goroutine `i` in the timer workloads: 1–10ms,
/// spread by a fixed formula (the Go side uses the same).
fn timer_duration(i: u64) -> Duration {
    Duration::from_micros(1000 + (i * 7919) % 9001)
}

/// Runs on the main goroutine. `timers_after`: spawns `n` goroutines, each
/// receiving from `gort::time::after(timer_duration(i))`; joins them all.
/// ns/op = elapsed / n.
fn timers_after(n: u64) -> (Duration, u64) {
    let start = Instant::now();
    let handles: Vec<gort::JoinHandle<()>> = (0..n)
        .map(|i| {
            gort::spawn(move || {
                gort::time::after(timer_duration(i))
                    .recv()
                    .expect("after delivers");
            })
        })
        .collect();
    for h in handles {
        h.join().expect("goroutine panicked");
    }
    (start.elapsed(), n)
}

/// Runs on the main goroutine. `timers_sleep`: as `timers_after`, with
/// `gort::time::sleep(timer_duration(i))`.
fn timers_sleep(n: u64) -> (Duration, u64) {
    let start = Instant::now();
    let handles: Vec<gort::JoinHandle<()>> = (0..n)
        .map(|i| gort::spawn(move || gort::time::sleep(timer_duration(i))))
        .collect();
    for h in handles {
        h.join().expect("goroutine panicked");
    }
    (start.elapsed(), n)
}

/// The sleep of goroutine `i` in `timers_lateness`: 1–100ms, spread by a
/// fixed formula (the Go side uses the same).
fn late_duration(i: u64) -> Duration {
    Duration::from_micros(1000 + (i * 7919) % 99001)
}

/// Runs on the main goroutine: `n` goroutines, goroutine `i` sleeping
/// `dur(i)` and recording how late it woke. Prints the lateness
/// percentiles and the wall time from the first spawn to the last wake-up.
fn timers_lateness_of(n: u64, dur: fn(u64) -> Duration) -> String {
    let start = Instant::now();
    let handles: Vec<gort::JoinHandle<Duration>> = (0..n)
        .map(|i| {
            gort::spawn(move || {
                let d = dur(i);
                let t = Instant::now();
                gort::time::sleep(d);
                t.elapsed().saturating_sub(d)
            })
        })
        .collect();
    let late: Vec<Duration> = handles
        .into_iter()
        .map(|h| h.join().expect("sleeper panicked"))
        .collect();
    let wall = start.elapsed();
    format!(
        "{} wall_ms={:.1}",
        latency_fields(late),
        wall.as_micros() as f64 / 1000.0
    )
}

/// `timers_lateness`: sleeps of 1–100ms (`late_duration`).
fn timers_lateness(n: u64) -> String {
    timers_lateness_of(n, late_duration)
}

/// `timers_barrier`: every goroutine sleeps 50ms from about the same
/// moment, so the timers fire at once.
fn timers_barrier(n: u64) -> String {
    timers_lateness_of(n, |_| Duration::from_millis(50))
}

/// The process's resident memory in bytes (`/proc/self/statm`).
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|f| f.parse().ok())
        .expect("statm: resident pages");
    // SAFETY: sysconf has no preconditions.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64
}

/// The process's page-table memory in bytes (`VmPTE` in /proc/self/status;
/// not part of RSS).
fn pte_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmPTE:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("status: VmPTE")
        * 1024
}

/// Runs on the main goroutine. `park_rss`: `n` goroutines each blocked on
/// a receive from one channel (no join handles kept: a WaitGroup, as the
/// Go side). Prints the resident memory they add, per goroutine, once all
/// are parked (and the page tables, which RSS leaves out); then closes the
/// channel and waits for them.
fn park_rss(n: u64) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    let (before, pte_before) = (rss_bytes(), pte_bytes());
    let (tx, rx) = gort::chan::channel::<()>(0);
    let wg = Arc::new(gort::sync::WaitGroup::new());
    let started = Arc::new(AtomicU64::new(0));
    wg.add(n as isize);
    for _ in 0..n {
        let (rx, wg, started) = (rx.clone(), wg.clone(), started.clone());
        drop(gort::spawn(move || {
            started.fetch_add(1, Ordering::Relaxed);
            let _ = rx.recv();
            wg.done();
        }));
    }
    drop(rx);
    while started.load(Ordering::Relaxed) < n {
        gort::time::sleep(Duration::from_millis(1));
    }
    // Until the last ones are parked too.
    gort::time::sleep(Duration::from_millis(100));
    let (after, pte_after) = (rss_bytes(), pte_bytes());
    drop(tx);
    wg.wait();
    format!(
        "bytes_per_goroutine={:.0} page_table_bytes_per_goroutine={:.0} rss_before_mb={:.1} rss_parked_mb={:.1}",
        after.saturating_sub(before) as f64 / n as f64,
        pte_after.saturating_sub(pte_before) as f64 / n as f64,
        before as f64 / 1e6,
        after as f64 / 1e6
    )
}

/// Client goroutines in `tcp_echo`.
const TCP_ECHO_CLIENTS: u64 = 64;
/// Bytes per message in `tcp_echo`.
const TCP_ECHO_MSG: usize = 64;

/// Runs on the main goroutine. `tcp_echo`: see the module docs.
fn tcp_echo(n: u64) -> (Duration, u64) {
    use std::io::{Read, Write};
    let start = Instant::now();
    let listener =
        std::sync::Arc::new(gort::net::TcpListener::bind("127.0.0.1:0").expect("tcp_echo: bind"));
    let addr = listener.local_addr().expect("tcp_echo: local_addr");
    let l = listener.clone();
    let server = gort::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { break };
            c.set_nodelay(true).expect("tcp_echo: nodelay");
            gort::spawn(move || {
                let mut buf = [0u8; TCP_ECHO_MSG];
                while c.read_exact(&mut buf).is_ok() {
                    if c.write_all(&buf).is_err() {
                        break;
                    }
                }
            });
        }
    });
    let clients: Vec<_> = (0..TCP_ECHO_CLIENTS)
        .map(|id| {
            gort::spawn(move || {
                let mut c = gort::net::TcpStream::connect(addr).expect("tcp_echo: connect");
                c.set_nodelay(true).expect("tcp_echo: nodelay");
                let mut msg = [id as u8; TCP_ECHO_MSG];
                let mut back = [0u8; TCP_ECHO_MSG];
                for i in 0..n {
                    msg[0] = i as u8;
                    c.write_all(&msg).expect("tcp_echo: write");
                    c.read_exact(&mut back).expect("tcp_echo: read");
                    assert!(back == msg, "tcp_echo: wrong echo");
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("tcp_echo: client panicked");
    }
    let elapsed = start.elapsed();
    listener.close().expect("tcp_echo: close");
    server.join().expect("tcp_echo: server panicked");
    (elapsed, TCP_ECHO_CLIENTS * n)
}
