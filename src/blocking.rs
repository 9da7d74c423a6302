//! `spawn_blocking`: run blocking work on a pool of plain threads.
//!
//! The pool grows on demand up to `MAX_THREADS` (tokio's default) and a
//! thread idle for `IDLE_EXIT` exits. A task beyond the bound waits in the
//! queue for a free thread.
//!
//! While a task runs it keeps the runtime from being judged deadlocked:
//! the task can wake goroutines (send on a channel, unlock a mutex) at any
//! time, which the runtime cannot see coming. `LIVE` counts the tasks for
//! the process-wide check; a `group::Hold` counts them for the spawner's
//! group. Goroutines a task spawns join that group too.

use crate::group::{Hold, ThreadGroup};
use crate::join::JoinHandle;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// Most threads the pool runs at once.
const MAX_THREADS: usize = 512;
/// A pool thread idle this long exits.
const IDLE_EXIT: Duration = Duration::from_secs(10);

type Job = Box<dyn FnOnce() + Send>;

struct Pool {
    queue: VecDeque<Job>,
    /// Threads waiting for a job.
    idle: usize,
    threads: usize,
}

static POOL: Mutex<Pool> = Mutex::new(Pool {
    queue: VecDeque::new(),
    idle: 0,
    threads: 0,
});
static JOBS: Condvar = Condvar::new();
/// Tasks submitted and not yet finished.
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// How many `spawn_blocking` tasks are queued or running.
pub(crate) fn live() -> usize {
    LIVE.load(Ordering::SeqCst)
}

fn pool() -> std::sync::MutexGuard<'static, Pool> {
    POOL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `f` on a thread of a pool for blocking work and returns a handle
/// to join it, like tokio's `spawn_blocking`.
///
/// Use it for work that blocks or computes for long (file I/O, DNS,
/// compression, a C library): it does not occupy a processor, so
/// goroutines keep running meanwhile. Joining the handle from a goroutine
/// parks the goroutine; from a plain thread it blocks the thread.
///
/// While the task runs, deadlock detection counts it as live: goroutines
/// waiting for what it will send are not reported. (A plain
/// `std::thread` gets no such credit: a group whose goroutines wait only
/// for one is reported after a grace of a few hundred milliseconds.)
///
/// The pool has at most 512 threads; more tasks queue. Threads idle for
/// 10 seconds exit. Works with or without the runtime started.
///
/// ```no_run
/// gort::run(|| {
///     let (tx, rx) = gort::chan::channel(1);
///     gort::spawn_blocking(move || {
///         let text = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
///         tx.send(text).ok();
///     });
///     let host = rx.recv().unwrap();
///     # let _ = host;
/// });
/// ```
///
/// The handle's [`id`](JoinHandle::id) is 0: the task is not a goroutine.
pub fn spawn_blocking<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let hold = Hold::current();
    LIVE.fetch_add(1, Ordering::SeqCst);
    let (task, handle) = crate::join::packet(f);
    submit(Box::new(move || {
        {
            let _group = ThreadGroup::enter(hold.group());
            // Catches the task's panic and wakes the joiner.
            crate::g::Task::run(task);
        }
        // Only now, after the joiner was woken: it is runnable (live) by
        // the time the task stops counting.
        drop(hold);
        LIVE.fetch_sub(1, Ordering::SeqCst);
    }));
    handle
}

fn submit(job: Job) {
    let mut p = pool();
    p.queue.push_back(job);
    if p.queue.len() <= p.idle {
        drop(p);
        JOBS.notify_one();
        return;
    }
    if p.threads >= MAX_THREADS {
        return; // a busy thread takes it when done
    }
    p.threads += 1;
    drop(p);
    let spawned = std::thread::Builder::new()
        .name("gort-blocking".into())
        .spawn(worker);
    if let Err(e) = spawned {
        let mut p = pool();
        p.threads -= 1;
        if p.threads == 0 {
            panic!("gort::spawn_blocking: cannot create a thread: {e}");
        }
    }
}

fn worker() {
    let _rt = crate::deadlock::runtime_thread();
    let mut p = pool();
    loop {
        if let Some(job) = p.queue.pop_front() {
            drop(p);
            job();
            p = pool();
            continue;
        }
        p.idle += 1;
        let (q, timeout) = JOBS
            .wait_timeout(p, IDLE_EXIT)
            .unwrap_or_else(|e| e.into_inner());
        p = q;
        p.idle -= 1;
        if timeout.timed_out() && p.queue.is_empty() {
            p.threads -= 1;
            return;
        }
    }
}
