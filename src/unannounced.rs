//! Unannounced blocking (docs/design.md, "Unannounced blocking"): a
//! goroutine that blocks in the kernel without `syscall::blocking`
//! (std::fs, `std::thread::sleep`, a contended `std::sync::Mutex`, a
//! blocking `std::net` socket, ...) loses its P to another M, as an
//! announced syscall would, and takes one back when it next enters the
//! runtime.
//!
//! # Detection (sysmon, from outside; the thread is never disturbed)
//!
//! A P whose `schedtick` has not moved is watched through its M's
//! thread CPU clock (`pthread_getcpuclockid`, ~0.25µs a read). A clock
//! that has not advanced for `Config::unannounced_handoff` (200µs by default)
//! means the thread has not run: it sits in the kernel, or waits for a
//! CPU. `/proc/self/task/TID/syscall` (kept open, read with `pread`) then
//! tells which: the number of the system call it is blocked in, or
//! `running` (runnable, or on a CPU). Only the first case is handed off;
//! a page fault (`-1`) or a stop is not.
//!
//! # The handoff and its race with the goroutine coming back
//!
//! sysmon and the M agree through the P's status word:
//!
//! 1. sysmon CASes `P_RUNNING` → `p_blocked(m)`;
//! 2. it probes `/proc/.../syscall`: the kernel reports a syscall number
//!    only for a thread that stayed off the CPU while it looked
//!    (`task_current_syscall` waits for the task to be inactive and checks
//!    it did not switch meanwhile). Whatever the thread does next comes
//!    after the probe, hence after the CAS, and whatever it stored before
//!    it blocked (`m.locks`) is visible to sysmon (the context switch);
//! 3. if the thread is blocked in a syscall, runs no runtime code
//!    (`m.locks == 0` and a goroutine in `m.curg`: g0 clears `curg` before
//!    anything else) and still runs the same goroutine, sysmon commits
//!    with a CAS `p_blocked(m)` → `P_IDLE` and hands the P off
//!    (`handoff_p`); otherwise it CASes it back.
//!
//! The M, at every entry into runtime code from goroutine code
//! (`LockedM::acquire` when `locks` goes 0 → 1, after raising it;
//! `mcall`, whose g0 side clears `curg` first; `entersyscall`), checks
//! (`check_p`): its P's status is `P_RUNNING` and its `m` is this M —
//! plain loads, no fence, no RMW. Either the check runs after the probe
//! (then it sees `p_blocked(m)`, and CASes it back to `P_RUNNING` —
//! exactly one of it and sysmon's commit wins — or it sees the P gone) or
//! before it, and then when sysmon probed the thread was running, or in
//! the runtime (`locks` raised or `curg` cleared before any system call
//! it could block in), and sysmon backs off. Another M's `p_blocked`
//! with `m` still this M is a stale attempt that sysmon undoes: still ours.
//!
//! # Without a P
//!
//! A goroutine that lost its P keeps running on its M (it never changes M
//! in the middle of libc code). Runtime calls that only need a P for a
//! local queue (spawn, waking a goroutine, timers) use the global ones.
//! At its next switch to the scheduler (`mcall`: park, yield, exit,
//! preemption) it takes an idle P, else does what `exitsyscall` does: it
//! queues itself globally and its M parks (a locked goroutine keeps its
//! M). sysmon watches such Ms: once the thread runs user code again it is
//! asked to yield (cooperatively, and by signal unless it is back in the
//! kernel), so the Ms running goroutines settle back to the Ps.

use crate::g::{G, G_RUNNING};
use crate::m::M;
use crate::p::{p_blocked, P, P_IDLE, P_RUNNING};
use crate::sched::Sched;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Ps sysmon took from goroutines blocked in the kernel outside
/// `syscall::blocking` (stats).
pub(crate) static HANDOFFS: AtomicU64 = AtomicU64::new(0);

// ---------------------------------------------------------------------------
// Stall injection (debug builds, for tests).

/// Whether `stall_point` may block (set by `inject_runtime_stalls`).
static STALLS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Turns stall injection on or off. Debug builds only (a release build
/// ignores it): at the points where a thread in the runtime could block
/// in the kernel for reasons of its own — a page fault on a cold stack, a
/// runtime lock, or, under qemu-user, the emulator's own locks at any
/// instruction — one pass in four sleeps 150µs in `nanosleep`, so sysmon
/// sees a thread sitting in a system call there, as it does in the rare
/// real case, and the handoff races with the runtime thousands of times a
/// second.
pub(crate) fn inject_runtime_stalls(on: bool) {
    STALLS.store(on, Ordering::Relaxed);
}

/// A point in the runtime where a stall is injected when asked for.
#[inline(always)]
pub(crate) fn stall_point(mp: &M) {
    if cfg!(debug_assertions) && STALLS.load(Ordering::Relaxed) && mp.fastrand() & 3 == 0 {
        let ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 150_000,
        };
        // SAFETY: nanosleep reads `ts` only; a null remainder is allowed.
        unsafe { libc::nanosleep(&ts, std::ptr::null_mut()) };
    }
}

// ---------------------------------------------------------------------------
// The M's side.

/// Whether `mp` still owns the P it points to; if sysmon is taking it,
/// takes it back; if it is gone, clears `mp.p` (the caller then works
/// without a P). The caller raised `mp.locks` first, or is about to
/// switch to g0 (see module docs).
#[inline(always)]
pub(crate) fn check_p(mp: &'static M) -> bool {
    // Costs no instruction: keeps the compiler from sinking the caller's
    // `locks` store below these loads. (The hardware may still delay it,
    // which is fine: sysmon commits only for a thread blocked in a
    // syscall, and entering the kernel orders it.)
    std::sync::atomic::compiler_fence(Ordering::SeqCst);
    let Some(p) = mp.p_ref() else {
        return false;
    };
    if p.status.load(Ordering::Acquire) == P_RUNNING
        && std::ptr::eq(p.m.load(Ordering::Relaxed), mp)
    {
        return true;
    }
    check_p_slow(mp, p)
}

/// Whether `mp` still owns `p`, taking it back from sysmon if it can.
/// The P is gone only once sysmon committed (`P_IDLE`, then `m` cleared,
/// then maybe another owner). Any other status with `m` still this M is
/// ours: `P_RUNNING` (sysmon backed off), or another M's `p_blocked` —
/// sysmon read `m` just before this M took the P, and it backs off when
/// it sees `m` changed (it CASes the status back then).
#[cold]
#[inline(never)]
fn check_p_slow(mp: &'static M, p: &P) -> bool {
    let tag = p_blocked(mp);
    loop {
        let st = p.status.load(Ordering::Acquire);
        if st == tag {
            if p.status
                .compare_exchange(tag, P_RUNNING, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                unmark(mp);
                return true;
            }
            continue;
        }
        if st != P_IDLE && std::ptr::eq(p.m.load(Ordering::Relaxed), mp) {
            return true;
        }
        break; // handed off
    }
    mp.p.store(std::ptr::null_mut(), Ordering::Relaxed);
    false
}

/// For a goroutine that lost its P and is about to switch to g0, whose
/// code needs one: takes an idle P, if any.
#[cold]
#[inline(never)]
pub(crate) fn take_idle_p(mp: &'static M) -> bool {
    let s = crate::sched::sched();
    if !crate::sched::try_acquire_idle_p(s, mp) {
        return false;
    }
    unmark(mp);
    true
}

/// Clears the "blocked in the kernel" mark of the goroutine on `mp`.
fn unmark(mp: &M) {
    if let Some(g) = mp.curg_ref() {
        if g.blocked_since.load(Ordering::Relaxed) != 0 {
            g.blocked_since.store(0, Ordering::Relaxed);
        }
    }
}

/// Records this thread's CPU clock in `mp` (on the M's thread, in minit).
pub(crate) fn minit(mp: &M) {
    let mut id: libc::clockid_t = 0;
    // SAFETY: pthread_self is the calling thread; `id` is a valid out slot.
    if unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut id) } == 0 {
        mp.cpuclock.store(id, Ordering::Release);
    }
}

// ---------------------------------------------------------------------------
// sysmon's side.

/// CPU time `mp`'s thread has used (ns), or None before `minit`.
pub(crate) fn thread_cpu_ns(mp: &M) -> Option<u64> {
    let id = mp.cpuclock.load(Ordering::Acquire);
    if id == 0 {
        return None;
    }
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id of a thread of ours (Ms never exit) and a
    // valid out pointer.
    if unsafe { libc::clock_gettime(id, &mut ts) } != 0 {
        return None;
    }
    Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

/// What `/proc/self/task/TID/syscall` says about a thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ThreadState {
    /// Blocked in this system call.
    Syscall(i64),
    /// Running or runnable (or unknown: the file could not be read).
    Running,
    /// Off the CPU, but not in a system call (a page fault, a stop).
    Other,
}

/// sysmon's open `/proc/self/task/TID/syscall` files, by M id, read
/// with `pread` (~1.3µs): runtime-owned fds, one per M, like the epoll fd.
#[derive(Default)]
struct Probe {
    files: Vec<Option<File>>,
}

impl Probe {
    /// What the kernel says `mp`'s thread is doing.
    fn state(&mut self, mp: &M) -> ThreadState {
        let i = mp.id as usize;
        if self.files.len() <= i {
            self.files.resize_with(i + 1, || None);
        }
        if self.files[i].is_none() {
            let tid = mp.procid.load(Ordering::Acquire);
            if tid == 0 {
                return ThreadState::Running;
            }
            self.files[i] = File::open(format!("/proc/self/task/{tid}/syscall")).ok();
        }
        let Some(f) = &self.files[i] else {
            return ThreadState::Running;
        };
        let mut buf = [0u8; 32];
        match f.read_at(&mut buf, 0) {
            Ok(n) => parse_syscall_file(&buf[..n]),
            Err(_) => ThreadState::Running,
        }
    }
}

/// Parses the start of `/proc/PID/task/TID/syscall`: `running`, or the
/// syscall number (-1: not in a syscall) followed by more fields.
fn parse_syscall_file(b: &[u8]) -> ThreadState {
    let text = std::str::from_utf8(b).unwrap_or("");
    let first = text.split_whitespace().next().unwrap_or("");
    match first.parse::<i64>() {
        Ok(nr) if nr >= 0 => ThreadState::Syscall(nr),
        Ok(_) => ThreadState::Other,
        Err(_) => ThreadState::Running,
    }
}

/// The name of system call `nr` of this architecture, for the common
/// blocking ones.
pub(crate) fn syscall_name(nr: i64) -> std::borrow::Cow<'static, str> {
    match SYSCALL_NAMES.iter().find(|(n, _)| *n == nr) {
        Some((_, name)) => (*name).into(),
        None => format!("syscall {nr}").into(),
    }
}

/// Names of the system calls a goroutine commonly blocks in (sockets,
/// pipes, locks, sleeps, processes, and the file system calls of `std::fs`
/// on a cold cache); others print as `syscall N`.
const SYSCALL_NAMES: &[(i64, &str)] = &[
    (libc::SYS_read, "read"),
    (libc::SYS_write, "write"),
    (libc::SYS_readv, "readv"),
    (libc::SYS_writev, "writev"),
    (libc::SYS_pread64, "pread64"),
    (libc::SYS_pwrite64, "pwrite64"),
    (libc::SYS_openat, "openat"),
    (libc::SYS_close, "close"),
    (libc::SYS_futex, "futex"),
    (libc::SYS_nanosleep, "nanosleep"),
    (libc::SYS_clock_nanosleep, "clock_nanosleep"),
    (libc::SYS_ppoll, "ppoll"),
    (libc::SYS_pselect6, "pselect6"),
    (libc::SYS_epoll_pwait, "epoll_pwait"),
    (libc::SYS_recvfrom, "recvfrom"),
    (libc::SYS_recvmsg, "recvmsg"),
    (libc::SYS_sendto, "sendto"),
    (libc::SYS_sendmsg, "sendmsg"),
    (libc::SYS_accept4, "accept4"),
    (libc::SYS_connect, "connect"),
    (libc::SYS_wait4, "wait4"),
    (libc::SYS_waitid, "waitid"),
    (libc::SYS_fsync, "fsync"),
    (libc::SYS_fdatasync, "fdatasync"),
    (libc::SYS_flock, "flock"),
    (libc::SYS_fcntl, "fcntl"),
    (libc::SYS_ioctl, "ioctl"),
    (libc::SYS_splice, "splice"),
    (libc::SYS_copy_file_range, "copy_file_range"),
    (libc::SYS_getdents64, "getdents64"),
    (libc::SYS_newfstatat, "newfstatat"),
    (libc::SYS_statx, "statx"),
    (libc::SYS_fstat, "fstat"),
    (libc::SYS_preadv, "preadv"),
    (libc::SYS_pwritev, "pwritev"),
    (libc::SYS_mkdirat, "mkdirat"),
    (libc::SYS_unlinkat, "unlinkat"),
    (libc::SYS_renameat2, "renameat2"),
    (libc::SYS_ftruncate, "ftruncate"),
    (libc::SYS_fallocate, "fallocate"),
    (libc::SYS_sendfile, "sendfile"),
    (libc::SYS_sync_file_range, "sync_file_range"),
    (libc::SYS_getrandom, "getrandom"),
    (libc::SYS_recvmmsg, "recvmmsg"),
    (libc::SYS_sendmmsg, "sendmmsg"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_stat, "stat"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_lstat, "lstat"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_poll, "poll"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_select, "select"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_epoll_wait, "epoll_wait"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_accept, "accept"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_open, "open"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_pause, "pause"),
];

/// A P sysmon watches for unannounced blocking: its CPU clock when last
/// seen to move.
#[derive(Clone, Copy)]
pub(crate) struct Watch {
    m: *const M,
    cpu: u64,
    /// When `cpu` was read (nanotime): the thread has not run since, if
    /// the clock still reads `cpu`.
    since: u64,
    warned: bool,
}

impl Default for Watch {
    fn default() -> Watch {
        Watch {
            m: std::ptr::null(),
            cpu: 0,
            since: 0,
            warned: false,
        }
    }
}

/// An M whose P sysmon took while its goroutine sat in the kernel, until
/// the M holds a P again.
struct Lost {
    m: &'static M,
    g: *mut G,
    cpu: u64,
    warned: bool,
}

/// Work waits for `pp` itself: a goroutine in its local queue, or an
/// overdue timer (the ticker beside cold-cache file readers).
fn local_work_waits(pp: &P, now: u64) -> bool {
    !pp.runq.is_empty() || crate::timer::timer_overdue(pp, now)
}

/// The goroutine `mp` runs, if it runs goroutine code outside the runtime:
/// not g0 (the scheduler's own waits), no runtime lock or section
/// (`locks`), status running. Only such a thread's P is ever taken.
fn in_user_code(mp: &M) -> Option<(*mut G, &'static G)> {
    let g = mp.curg_ref()?;
    (mp.locks.get() == 0 && g.status() == G_RUNNING).then_some((mp.curg(), g))
}

/// The handoff delay (ns) of a P that has work waiting, when it is
/// shorter than the configured one: Go hands off an announced syscall's P
/// after one sysmon round when work waits for it. With 200µs, a 1ms ticker
/// beside 8 cold-cache file readers on 2 Ps woke 0.9ms late at the median,
/// 0.3ms with 100µs (Go: 0.4ms).
const URGENT_HANDOFF_NS: u64 = 50_000;

/// sysmon's state for this module.
pub(crate) struct Monitor {
    probe: Probe,
    lost: Vec<Lost>,
    /// Hand off after this long in the kernel (None: never).
    handoff: Option<u64>,
    /// Print a line when a goroutine has been in the kernel this long.
    warn: Option<u64>,
}

/// What `Monitor::watch` found out about a P's thread.
pub(crate) struct Seen {
    /// The thread's CPU clock moved since the last round (it may be
    /// running user code now).
    pub(crate) ran: bool,
    /// sysmon should look again at this time (nanotime), if not before.
    pub(crate) look_at: Option<u64>,
    /// sysmon handed the P off.
    pub(crate) handed_off: bool,
}

impl Monitor {
    pub(crate) fn new(s: &Sched) -> Monitor {
        let ns = |d: Duration| d.as_nanos().min(u64::MAX as u128) as u64;
        Monitor {
            probe: Probe::default(),
            lost: Vec::new(),
            handoff: s.config().unannounced_handoff.map(ns),
            warn: s.config().debug.blockwarn_ms.map(|ms| ms * 1_000_000),
        }
    }

    /// The handoff delay for a P: shorter when work waits for it.
    fn handoff_for(&self, urgent: bool) -> Option<u64> {
        self.handoff
            .map(|h| if urgent { h.min(URGENT_HANDOFF_NS) } else { h })
    }

    /// How often sysmon should look while a goroutine runs a long time.
    pub(crate) fn period(&self, urgent: bool) -> Option<Duration> {
        match (self.handoff_for(urgent), self.warn) {
            (None, None) => None,
            (a, b) => Some(
                Duration::from_nanos(a.unwrap_or(u64::MAX).min(b.unwrap_or(u64::MAX))).max(
                    if urgent {
                        Duration::from_nanos(URGENT_HANDOFF_NS)
                    } else {
                        crate::MIN_UNANNOUNCED_HANDOFF
                    },
                ),
            ),
        }
    }

    /// How long sysmon may sleep (deeply, every P idle) before a
    /// `blockwarn` report of a goroutine whose P it took is due.
    pub(crate) fn next_warning(&self) -> Option<Duration> {
        let t = self.warn?;
        let now = crate::timer::nanotime();
        self.lost
            .iter()
            .filter(|e| !e.warned)
            .filter_map(|e| {
                // SAFETY: Gs are never freed.
                let since = unsafe { &*e.g }.blocked_since.load(Ordering::Relaxed);
                (since != 0)
                    .then(|| Duration::from_nanos(since.saturating_add(t).saturating_sub(now)))
            })
            .min()
    }

    /// A P's schedtick moved: forget what was seen of its thread.
    pub(crate) fn reset(w: &mut Watch) {
        w.m = std::ptr::null();
    }

    /// Called by retake for a `P_RUNNING` P whose schedtick did not move
    /// this round; `mp` is its M.
    pub(crate) fn watch(
        &mut self,
        s: &'static Sched,
        pp: &'static P,
        mp: &'static M,
        w: &mut Watch,
    ) -> Seen {
        let now = crate::timer::nanotime();
        let urgent = local_work_waits(pp, now);
        let handoff = self.handoff_for(urgent);
        let mut seen = Seen {
            ran: true,
            look_at: None,
            handed_off: false,
        };
        let Some(cpu) = thread_cpu_ns(mp) else {
            return seen;
        };
        if !std::ptr::eq(w.m, mp) || w.cpu != cpu {
            // When to look again: a period from now if the thread ran
            // less than half the time since the last look (it may have
            // just blocked, or waits for a CPU); for one that computes,
            // the round delay will do (sysmon's wake-ups cost CPU: about
            // 20µs each on a VM).
            // The first look at a new goroutine's thread also gets a second
            // one (one wake-up per slice at most for a goroutine that
            // computes).
            if let Some(p) = self.period(urgent) {
                let ran_for = cpu.saturating_sub(w.cpu);
                if !std::ptr::eq(w.m, mp) || ran_for < now.saturating_sub(w.since) / 2 {
                    seen.look_at = Some(now.saturating_add(p.as_nanos() as u64));
                }
            }
            *w = Watch {
                m: mp,
                cpu,
                since: now,
                warned: false,
            };
            return seen;
        }
        // The thread has not run since `w.since`.
        seen.ran = false;
        let idle_for = now.saturating_sub(w.since);
        let due = |t: Option<u64>| t.is_some_and(|t| idle_for >= t);
        let warn_due = due(self.warn) && !w.warned;
        if !due(handoff) && !warn_due {
            let next = [handoff, self.warn]
                .iter()
                .flatten()
                .map(|t| w.since.saturating_add(*t))
                .filter(|t| *t > now)
                .min();
            seen.look_at = next;
            return seen;
        }
        let Some((_, g)) = in_user_code(mp) else {
            return seen;
        };
        if !due(handoff) {
            // Only the warning is due: look without taking anything.
            if let ThreadState::Syscall(nr) = self.probe.state(mp) {
                w.warned = true;
                warn(s, g, nr, idle_for);
            }
            return seen;
        }
        seen.handed_off = self.take(s, pp, mp, w, w.since, warn_due);
        seen
    }

    /// `pp`'s goroutine used up its slice (or a timer of the P is
    /// overdue) and its thread, seen running since the last look, sits in
    /// a system call now: if work waits for the P, hands it off at once.
    /// The watch would not: the CPU clock of a thread in a long read of a
    /// cold file keeps moving (the kernel copies between disk waits), so
    /// it never stands still for the handoff delay — a 1ms ticker beside
    /// such readers waited 40ms for its P. Returns whether it handed off.
    /// `now`: nanotime.
    pub(crate) fn take_overstayed(
        &mut self,
        s: &'static Sched,
        pp: &'static P,
        mp: &'static M,
        w: &mut Watch,
        now: u64,
    ) -> bool {
        if self.handoff.is_none() || !(local_work_waits(pp, now) || s.global_runq_len() > 0) {
            return false;
        }
        let since = if std::ptr::eq(w.m, mp) { w.since } else { now };
        self.take(s, pp, mp, w, since, false)
    }

    /// Hands off `pp` from `mp` if its goroutine sits in a system call
    /// outside the runtime (the commit protocol of the module docs);
    /// `since`: when it was first seen there; `warn_due`: print the
    /// blockwarn line too. Returns whether it handed the P off.
    fn take(
        &mut self,
        s: &'static Sched,
        pp: &'static P,
        mp: &'static M,
        w: &mut Watch,
        since: u64,
        warn_due: bool,
    ) -> bool {
        let now = crate::timer::nanotime();
        let Some(cpu) = thread_cpu_ns(mp) else {
            return false;
        };
        let Some((gp, g)) = in_user_code(mp) else {
            return false;
        };
        let tag = p_blocked(mp);
        if pp
            .status
            .compare_exchange(P_RUNNING, tag, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return false;
        }
        if !std::ptr::eq(pp.m.load(Ordering::Acquire), mp) {
            // The P changed hands since we read its M: not this one's.
            let _ = pp
                .status
                .compare_exchange(tag, P_RUNNING, Ordering::SeqCst, Ordering::SeqCst);
            return false;
        }
        let state = self.probe.state(mp);
        let nr = match state {
            ThreadState::Syscall(nr)
                if mp.locks.get() == 0
                    && std::ptr::eq(mp.curg(), gp)
                    && std::ptr::eq(pp.m.load(Ordering::Acquire), mp) =>
            {
                nr
            }
            _ => {
                // Running (maybe waiting for a CPU), in the runtime, or a
                // page fault: leave it (the M may have taken it back
                // already, then this CAS fails, which is fine).
                let _ =
                    pp.status
                        .compare_exchange(tag, P_RUNNING, Ordering::SeqCst, Ordering::SeqCst);
                // Look again a period from now, not every round.
                w.since = now;
                return false;
            }
        };
        g.blocked_nr.store(nr, Ordering::Relaxed);
        g.blocked_since.store(since.max(1), Ordering::Relaxed);
        if pp
            .status
            .compare_exchange(tag, P_IDLE, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            // The goroutine came back and took its P back first (it may
            // have cleared the mark before we set it).
            g.blocked_since.store(0, Ordering::Relaxed);
            return false;
        }
        pp.m.store(std::ptr::null_mut(), Ordering::Release);
        pp.syscalltick.fetch_add(1, Ordering::Relaxed);
        // The trace event goes first: whoever reads the counter (stats())
        // and then a trace finds at least that many handoff events there.
        crate::exectrace::retake_blocked(pp, g); // exectrace
        HANDOFFS.fetch_add(1, Ordering::Release);
        let warned = warn_due || (std::ptr::eq(w.m, mp) && w.warned);
        if warn_due {
            warn(s, g, nr, now.saturating_sub(since));
        }
        self.lost.push(Lost {
            m: mp,
            g: gp,
            cpu,
            warned,
        });
        Monitor::reset(w);
        crate::sched::handoff_p(s, pp);
        true
    }

    /// Whether `mp`'s thread sits in a system call now. sysmon does not
    /// signal such a thread (whose goroutine used up its slice): the
    /// signal would only be rejected, and would cut short a call with a
    /// timeout (EINTR).
    pub(crate) fn in_syscall(&mut self, mp: &M) -> bool {
        matches!(self.probe.state(mp), ThreadState::Syscall(_))
    }

    /// Each round: follows the Ms whose P was taken, until they hold one
    /// again. One that runs goroutine code again is asked to yield (its
    /// goroutine then queues for a P); one still in the kernel is left
    /// alone (and reported once, with `blockwarn`).
    pub(crate) fn follow_lost(&mut self, s: &'static Sched, async_ok: bool) {
        let now = crate::timer::nanotime();
        let mut i = 0;
        while i < self.lost.len() {
            let e = &mut self.lost[i];
            let mp = e.m;
            // SAFETY: Gs are never freed.
            let g = unsafe { &*e.g };
            if !std::ptr::eq(mp.curg(), e.g) || holds_p(mp) {
                self.lost.swap_remove(i);
                continue;
            }
            i += 1;
            let since = g.blocked_since.load(Ordering::Relaxed);
            let Some(cpu) = thread_cpu_ns(mp) else {
                continue;
            };
            if cpu != e.cpu {
                e.cpu = cpu;
                match self.probe.state(mp) {
                    ThreadState::Syscall(nr) => {
                        // Back in the kernel: a new blocking call.
                        g.blocked_nr.store(nr, Ordering::Relaxed);
                        g.blocked_since.store(now, Ordering::Relaxed);
                        e.warned = false;
                    }
                    _ => {
                        g.blocked_since.store(0, Ordering::Relaxed);
                        if crate::preempt::preempt_one(mp, async_ok) {
                            crate::sysmon::PREEMPT_REQUESTS.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                continue;
            }
            if let Some(t) = self.warn {
                if since != 0 && !e.warned && now.saturating_sub(since) >= t {
                    e.warned = true;
                    warn(
                        s,
                        g,
                        g.blocked_nr.load(Ordering::Relaxed),
                        now.saturating_sub(since),
                    );
                }
            }
        }
    }
}

/// Whether `mp` holds a P (as far as sysmon can tell).
fn holds_p(mp: &M) -> bool {
    mp.p_ref().is_some_and(|p| {
        p.status.load(Ordering::Acquire) == P_RUNNING
            && std::ptr::eq(p.m.load(Ordering::Acquire), mp)
    })
}

/// The `blockwarn` report: a line, then the goroutine's stack as in a
/// dump. The frames' addresses are taken here (cheap); naming them can
/// take long the first time (reading DWARF), so a short-lived thread does
/// that and prints, and sysmon goes on.
fn warn(s: &Sched, g: &G, nr: i64, for_ns: u64) {
    let mut head = format!(
        "gort: goroutine {}{} blocked in {} for {}ms outside syscall::blocking\n",
        g.id(),
        crate::trace::name_of(g),
        syscall_name(nr),
        for_ns / 1_000_000,
    );
    let trace = crate::traceback::capture_blocked(s, g);
    let mut created = String::new();
    crate::traceback::write_created_by(&mut created, g);
    let print = move || {
        crate::traceback::write_trace(&mut head, &trace);
        head.push_str(&created);
        head.push('\n');
        crate::signal::write_stderr(head.as_bytes());
    };
    if std::thread::Builder::new()
        .name("gort-blockwarn".into())
        .spawn(print)
        .is_err()
    {
        crate::signal::write_stderr(b"gort: cannot start a thread to print a blockwarn report\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscall_file() {
        assert_eq!(parse_syscall_file(b"running\n"), ThreadState::Running);
        assert_eq!(
            parse_syscall_file(b"202 0x7f 0x80 0x0 0x0 0x0 0x0 0x7ffc 0x7f12\n"),
            ThreadState::Syscall(202)
        );
        assert_eq!(
            parse_syscall_file(b"-1 0x7ffc 0x7f12\n"),
            ThreadState::Other
        );
        assert_eq!(parse_syscall_file(b""), ThreadState::Running);
    }

    #[test]
    fn names() {
        assert_eq!(syscall_name(libc::SYS_futex), "futex");
        assert_eq!(syscall_name(libc::SYS_read), "read");
        assert_eq!(syscall_name(libc::SYS_getdents64), "getdents64");
        assert_eq!(syscall_name(100_000), "syscall 100000");
    }
}
