//! The scheduler: `Sched`, the schedule loop, finding work, stealing, and
//! starting and stopping Ms.
//!
//! # Model (Go's, docs/design.md, "Scheduler")
//!
//! G = goroutine, M = OS thread, P = processor (the right to run Gs; there
//! are `procs` of them). An M runs Gs only while it holds a P. Each M loops
//! in `schedule` on its own scheduler stack (g0): find a runnable G, switch
//! to it, and when the G switches back, do what it asked for (`After`):
//! requeue it, park it, or free it. Doing that work on g0, after the G's
//! registers are saved, is what makes parking race-free: nobody can resume a
//! G whose context is still being written.
//!
//! # Spinning Ms
//!
//! An M with a P and nothing to run "spins": it looks for work to steal
//! before giving up its P. At most half of the busy Ps may have a spinning
//! M (Go's bound), so idle Ps do not burn CPU. Whoever makes a G runnable
//! calls `wakep`, which starts a spinning M only if there is an idle P and
//! no M is spinning already. The last spinning M to stop re-checks every
//! run queue after it stops counting as spinning; the submitter checks
//! `nmspinning` after publishing its G; SeqCst on both sides means at least
//! one of them sees the other, so no runnable G is stranded while Ps idle.
//!
//! # Rejected approaches
//!
//! - One global queue under a lock (contention on every spawn and yield).
//! - Handing each new G directly to an idle M (a futex wake per spawn,
//!   thread ping-pong; Go's design notes call this out too).
//! - Yield implemented as a direct G-to-G switch: cheaper by one switch, but
//!   then requeueing the yielding G would race with its own context save.

use crate::arch;
use crate::g::{
    GList, Task, WaitReason, G, G_DEAD, G_IDLE, G_RUNNABLE, G_RUNNING, G_SYSCALL, G_WAITING,
};
use crate::lock::Mutex;
use crate::m::{getm, setm, After, LockedM, M};
use crate::note::Note;
use crate::p::{P, P_IDLE, P_RUNNING};
use crate::preempt::{STACK_GUARD_MARGIN, STACK_PREEMPT};
use crate::runtime::Config;
use crate::stack::{Stack, StackPool, CACHE_MAX};
use std::panic::Location;
use std::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// Per-P free G list capacity; beyond it half goes to the global list.
const GFREE_MAX: usize = 64;

/// Spawning yields while the global run queue holds more goroutines than
/// this. Spawns are cheap and a goroutine's first run is not (a fresh
/// stack's page fault, a new region's guards: ~3µs on a VM), so a loop
/// spawning 100,000 goroutines outran the Ps by far and piled up a
/// backlog; a goroutine woken meanwhile (a timer, a channel) that
/// overflowed its P's queue waited behind all of it — 100 ms at p99 for
/// 100,000 sleepers. Go's spawner pays for the new stack itself and so
/// never gets far ahead. Yielding keeps the stacks lazy (a goroutine that
/// has not run has none, so spawn-then-join reuses a few) and bounds the
/// wait behind the backlog to about this many first runs.
const SPAWN_BACKLOG: usize = 2048;

/// Scheduler stack (g0) of an M: the pthread stack.
const G0_STACK_SIZE: usize = 512 * 1024;

/// Process-wide scheduler state.
pub(crate) struct Sched {
    config: Config,
    allp: Box<[P]>,
    /// Global run queue, idle Ps and idle Ms.
    lock: Mutex<SchedLocked>,
    /// Mirror of the global run queue length, for lock-free peeking.
    runqsize: AtomicUsize,
    npidle: AtomicU32,
    nmspinning: AtomicU32,
    nmidle: AtomicU32,
    /// Locked Ms asleep waiting for their goroutine (check_dead counts them
    /// as idle).
    nmidlelocked: AtomicU32,
    /// Every M ever created (never freed).
    allm: Mutex<Vec<&'static M>>,
    mcount: AtomicU32,
    /// Every G ever created (never freed).
    allg: Mutex<Vec<&'static G>>,
    gfree: Mutex<Vec<*mut G>>,
    stacks: StackPool,
    goidgen: AtomicU64,
    /// Goroutines alive (spawned and not yet exited).
    ngoroutines: AtomicU64,
    spawned: AtomicU64,
    /// The process's signal mask at start, restored on every new M.
    init_sigmask: libc::sigset_t,
    /// When the runtime started (schedtrace prints times relative to it).
    start_time: std::time::Instant,
    /// sysmon sleeps here: deeply while every P is idle, briefly otherwise.
    sysmon_note: Note,
    /// sysmon is in its deep sleep; whoever makes a P busy wakes it.
    sysmonwait: AtomicBool,
    /// A P entered a syscall with work queued behind it: sysmon should
    /// look soon.
    sysmon_kicked: AtomicBool,
    /// Async preemption is on (configured, and the code map is built).
    async_preempt: AtomicBool,
    /// An idle M is sleeping until the earliest timer (at most one).
    timer_waiter: AtomicBool,
}

struct SchedLocked {
    runq: GList,
    /// Idle Ps, linked through `P::link`.
    pidle: *mut P,
    /// Idle Ms.
    midle: Vec<&'static M>,
}

// SAFETY: the raw pointers in SchedLocked point at Ps (in the leaked
// `allp`) and Gs (never freed); they are only used under the lock.
unsafe impl Send for SchedLocked {}
// SAFETY: `allg` and `gfree` hold pointers to Gs that live forever, handed
// out under their locks.
unsafe impl Sync for Sched {}
// SAFETY: the scheduler is a leaked static; its fields are atomics or behind
// locks, so handing `&Sched` (or the value, once, at start-up) to another
// thread is sound.
unsafe impl Send for Sched {}

static SCHED: once_cell::sync::OnceCell<Sched> = once_cell::sync::OnceCell::new();
static STARTED: AtomicBool = AtomicBool::new(false);

/// The scheduler, if the runtime was started.
pub(crate) fn try_sched() -> Option<&'static Sched> {
    SCHED.get()
}

/// The scheduler; only call where the runtime is known to run.
pub(crate) fn sched() -> &'static Sched {
    match SCHED.get() {
        Some(s) => s,
        None => crate::fatal("gort runtime used before it was started"),
    }
}

/// Starts the scheduler with `config`, then `rest` (the signal handlers,
/// the panic hook and sysmon: the caller above the scheduler wires them).
/// Returns false if it was already started (by anyone), in which case
/// nothing changes.
///
/// Everything happens inside the cell's initialiser, so a concurrent
/// caller (several threads calling `gort::run` at once) blocks until the
/// runtime is complete, and nobody sees a half-started one.
pub(crate) fn start(config: Config, rest: impl FnOnce()) -> bool {
    let mut fresh = false;
    SCHED.get_or_init(|| {
        fresh = true;
        let s = Sched::new(config);
        rest();
        s
    });
    if fresh {
        STARTED.store(true, Ordering::Release);
    }
    fresh
}

/// Blocks until the runtime is started (for sysmon's thread).
pub(crate) fn wait_sched() -> &'static Sched {
    SCHED.wait()
}

impl Sched {
    fn new(config: Config) -> Sched {
        let allp: Box<[P]> = (0..config.procs).map(P::new).collect();
        // Chain every P on the idle list.
        let mut pidle: *mut P = std::ptr::null_mut();
        for pp in allp.iter().rev() {
            pp.link.set(pidle);
            pidle = pp as *const P as *mut P;
        }
        let mut init_sigmask: libc::sigset_t = unsafe_zeroed_sigset();
        // SAFETY: reads the calling thread's mask into a valid sigset_t.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, std::ptr::null(), &mut init_sigmask) };
        crate::signal::unblock_runtime_signals(&mut init_sigmask);
        Sched {
            stacks: StackPool::new(config.stack_size),
            npidle: AtomicU32::new(config.procs as u32),
            config,
            allp,
            lock: Mutex::new(SchedLocked {
                runq: GList::new(),
                pidle,
                midle: Vec::new(),
            }),
            runqsize: AtomicUsize::new(0),
            nmspinning: AtomicU32::new(0),
            nmidle: AtomicU32::new(0),
            nmidlelocked: AtomicU32::new(0),
            allm: Mutex::new(Vec::new()),
            mcount: AtomicU32::new(0),
            allg: Mutex::new(Vec::new()),
            gfree: Mutex::new(Vec::new()),
            goidgen: AtomicU64::new(0),
            ngoroutines: AtomicU64::new(0),
            spawned: AtomicU64::new(0),
            init_sigmask,
            start_time: std::time::Instant::now(),
            sysmon_note: Note::new(),
            sysmonwait: AtomicBool::new(false),
            sysmon_kicked: AtomicBool::new(false),
            async_preempt: AtomicBool::new(false),
            timer_waiter: AtomicBool::new(false),
        }
    }

    pub(crate) fn procs(&self) -> usize {
        self.allp.len()
    }

    // What the modules around the scheduler (sysmon, deadlock detection,
    // traces, stats, maintenance) may see and do; the lists and queues
    // themselves change only in this module. The counters are read SeqCst:
    // sysmon and the deadlock check decide on them after the writers'
    // SeqCst updates (see "Spinning Ms"); on x86_64 that is a plain load.

    /// The settings the runtime started with.
    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    /// Every P, indexed by id (they live as long as the process).
    pub(crate) fn allp(&self) -> &[P] {
        &self.allp
    }

    /// Goroutines in the global run queue (the lock-free mirror).
    pub(crate) fn global_runq_len(&self) -> usize {
        self.runqsize.load(Ordering::SeqCst)
    }

    /// Ps on the idle list.
    pub(crate) fn idle_ps(&self) -> usize {
        self.npidle.load(Ordering::SeqCst) as usize
    }

    /// Every P is idle.
    pub(crate) fn all_ps_idle(&self) -> bool {
        self.idle_ps() == self.procs()
    }

    /// Ms looking for work.
    pub(crate) fn spinning_ms(&self) -> usize {
        self.nmspinning.load(Ordering::SeqCst) as usize
    }

    /// Ms asleep on the idle list, and locked Ms asleep waiting for their
    /// goroutine.
    pub(crate) fn idle_ms(&self) -> (usize, usize) {
        (
            self.nmidle.load(Ordering::SeqCst) as usize,
            self.nmidlelocked.load(Ordering::SeqCst) as usize,
        )
    }

    /// Ms created so far (sysmon not counted).
    pub(crate) fn thread_count(&self) -> usize {
        self.mcount.load(Ordering::SeqCst) as usize
    }

    /// Goroutines alive, and spawned since start.
    pub(crate) fn goroutine_counts(&self) -> (u64, u64) {
        (
            self.ngoroutines.load(Ordering::Relaxed),
            self.spawned.load(Ordering::Relaxed),
        )
    }

    /// Time since the runtime started.
    pub(crate) fn since_start(&self) -> std::time::Duration {
        self.start_time.elapsed()
    }

    /// Calls `f` with every M, under the M list's lock (do not create Ms
    /// in `f`).
    pub(crate) fn with_ms<R>(&self, f: impl FnOnce(&[&'static M]) -> R) -> R {
        f(&self.allm.lock())
    }

    /// Calls `f` with every G ever created (dead and idle ones included),
    /// under the G list's lock (do not spawn in `f`).
    pub(crate) fn with_gs<R>(&self, f: impl FnOnce(&[&'static G]) -> R) -> R {
        f(&self.allg.lock())
    }

    /// The pool of goroutine stacks.
    pub(crate) fn stacks(&self) -> &StackPool {
        &self.stacks
    }

    /// Calls `f` with each idle P and the global free-G list, all under
    /// the sched lock: an idle P belongs to nobody while the lock is held
    /// (taking it off the idle list needs the lock), so `f` may move its
    /// caches out.
    pub(crate) fn drain_idle_ps(&self, mut f: impl FnMut(&P, &mut Vec<*mut G>)) {
        let sl = self.lock.lock();
        let mut pp = sl.pidle;
        // SAFETY: the idle list links Ps of `allp`, which lives forever.
        while let Some(p) = unsafe { pp.as_ref() } {
            f(p, &mut self.gfree.lock());
            pp = p.link.get();
        }
    }

    /// sysmon's sleep note.
    pub(crate) fn sysmon_note(&self) -> &Note {
        &self.sysmon_note
    }

    /// sysmon enters (true) or leaves (false) its deep sleep; while in it,
    /// the first P to become busy wakes it (`wake_sysmon`).
    pub(crate) fn set_sysmon_deep(&self, deep: bool) {
        self.sysmonwait.store(deep, Ordering::SeqCst);
    }

    /// Asks sysmon to look at the Ps soon (a syscall started with work
    /// queued behind it); one wake-up until sysmon takes the kick.
    pub(crate) fn kick_sysmon(&self) {
        if !self.sysmon_kicked.swap(true, Ordering::AcqRel) {
            self.sysmon_note.wakeup();
        }
    }

    /// sysmon's side of `kick_sysmon`: whether a kick came since the last
    /// call.
    pub(crate) fn take_sysmon_kick(&self) -> bool {
        self.sysmon_kicked.swap(false, Ordering::AcqRel)
    }

    /// sysmon is in its deep sleep (for schedtrace).
    pub(crate) fn sysmon_deep(&self) -> bool {
        self.sysmonwait.load(Ordering::Relaxed)
    }

    /// Async preemption is on: configured, and the code map is built.
    pub(crate) fn async_preempt_on(&self) -> bool {
        self.async_preempt.load(Ordering::Acquire)
    }

    /// Turns async preemption on (the code map is ready) or off (a foreign
    /// handler replaced ours).
    pub(crate) fn set_async_preempt(&self, on: bool) {
        self.async_preempt.store(on, Ordering::Release);
    }
}

fn unsafe_zeroed_sigset() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; all-zero is a valid (empty) set.
    unsafe { std::mem::zeroed() }
}

// ---------------------------------------------------------------------------
// Idle P and M lists (sched lock held).

/// Takes a P off the idle list: the caller has exclusive use of it (until
/// it gives it to an M or back to the list).
fn pidleget(sl: &mut SchedLocked, s: &Sched) -> Option<&'static P> {
    // SAFETY: the idle list links Ps of `allp`, which lives forever.
    let pp: &'static P = unsafe { sl.pidle.as_ref()? };
    sl.pidle = pp.link.get();
    s.npidle.fetch_sub(1, Ordering::SeqCst);
    Some(pp)
}

/// Takes an idle P, if any, and makes it the calling M's.
pub(crate) fn try_acquire_idle_p(s: &Sched, mp: &'static M) -> bool {
    let pp = pidleget(&mut s.lock.lock(), s);
    match pp {
        Some(pp) => {
            acquirep(mp, pp);
            true
        }
        None => false,
    }
}

/// The P `startm` (or `startlockedm`) handed the calling M before waking
/// it; `who` names the waiting function in the failure message.
fn take_nextp(mp: &M, who: &str) -> &'static P {
    let pp = mp.nextp.swap(std::ptr::null_mut(), Ordering::Acquire);
    // SAFETY: Ps live forever in `allp`; the hand-over gave us exclusive
    // use of this one.
    match unsafe { pp.as_ref() } {
        Some(pp) => pp,
        None => crate::fatal(&format!("{who}: M woken without a P")),
    }
}

fn pidleput(sl: &mut SchedLocked, s: &Sched, pp: &P) {
    debug_assert!(pp.runq.is_empty(), "pidleput: P with runnable Gs");
    pp.status.store(P_IDLE, Ordering::Release);
    pp.link.set(sl.pidle);
    sl.pidle = pp as *const P as *mut P;
    s.npidle.fetch_add(1, Ordering::SeqCst);
}

// ---------------------------------------------------------------------------
// Global run queue.

/// Puts a batch on the global run queue (sched lock held).
fn globrunqputbatch(sl: &mut SchedLocked, s: &Sched, batch: &mut GList) {
    s.runqsize.fetch_add(batch.len(), Ordering::SeqCst);
    sl.runq.append(batch);
}

/// Takes Gs from the global queue (sched lock held): one to run, and up to
/// a fair share more into `pp`'s local queue (`pp`: the calling M's own
/// P). `max` = 0 means no limit.
fn globrunqget(sl: &mut SchedLocked, s: &Sched, pp: &P, max: usize) -> Option<*mut G> {
    let size = sl.runq.len();
    if size == 0 {
        return None;
    }
    let mut n = (size / s.procs() + 1).min(size);
    if max > 0 {
        n = n.min(max);
    }
    n = n.min(crate::p::RUNQ_SIZE as usize / 2);
    s.runqsize.fetch_sub(n, Ordering::SeqCst);
    let gp = sl.runq.pop_front()?;
    for _ in 1..n {
        let g = sl
            .runq
            .pop_front()
            .expect("global runq shorter than its count");
        // The local queue has room: it is at most half full when we get
        // here from find_runnable... but be safe on overflow.
        // SAFETY: `pp` is the calling M's own P (globrunqget's contract).
        if let Err(mut o) = unsafe { pp.runq.owner() }.put(g, false) {
            s.runqsize.fetch_add(o.batch.len(), Ordering::SeqCst);
            sl.runq.append(&mut o.batch);
        }
    }
    Some(gp)
}

/// Queues `gp` on the P of the calling M (runnext if `next`), or globally
/// if the caller holds no P. Then makes sure some M will run it.
fn runqput_current(gp: *mut G, next: bool) {
    let s = sched();
    let locked = LockedM::acquire();
    let pp = locked
        .as_ref()
        .map(|l| l.m().p())
        .unwrap_or(std::ptr::null_mut());
    // SAFETY: a non-null pp is held by the calling M, which cannot lose
    // it while `locked` prevents preemption.
    put_runnable(s, unsafe { pp.as_ref() }, gp, next);
    drop(locked);
    wakep();
}

/// Queues a runnable `gp` on `pp` (the caller's own P), or on the global
/// queue when the caller holds no P.
fn put_runnable(s: &Sched, pp: Option<&P>, gp: *mut G, next: bool) {
    match pp {
        Some(pp) => runqput(s, pp, gp, next),
        None => globrunqput(&mut s.lock.lock(), s, gp),
    }
}

/// Puts one G on the global run queue (sched lock held).
fn globrunqput(sl: &mut SchedLocked, s: &Sched, gp: *mut G) {
    let mut one = GList::new();
    one.push_back(gp);
    globrunqputbatch(sl, s, &mut one);
}

/// Queues `gp` on `pp`, the calling M's own P (overflow to the global
/// queue).
fn runqput(s: &Sched, pp: &P, gp: *mut G, next: bool) {
    // SAFETY: `pp` is the calling M's own P (this function's contract).
    if let Err(mut o) = unsafe { pp.runq.owner() }.put(gp, next) {
        let mut sl = s.lock.lock();
        globrunqputbatch(&mut sl, s, &mut o.batch);
    }
}

/// Makes the goroutines in `list` (woken by the netpoller, status still
/// waiting) runnable and queues them (Go's `injectglist`). With no P
/// (`pp` None) they all go to the global queue and one M is started per
/// idle P, up to one per goroutine; with a P, as many as there are idle Ps
/// go to the global queue (with an M each) and the rest to `pp`'s queue.
pub(crate) fn injectglist(s: &'static Sched, pp: Option<&P>, mut list: GList) {
    let n = list.len();
    if n == 0 {
        return;
    }
    let mut global = GList::new();
    let mut local = GList::new();
    let to_global = match pp {
        None => n,
        Some(_) => (s.npidle.load(Ordering::SeqCst) as usize).min(n),
    };
    while let Some(gp) = list.pop_front() {
        crate::exectrace::wake_netpoll(gp); // exectrace
                                            // SAFETY: the poller handed us these Gs; nobody else readies them.
        unsafe { (*gp).set_status(G_RUNNABLE) };
        if global.len() < to_global {
            global.push_back(gp);
        } else {
            local.push_back(gp);
        }
    }
    let started = global.len();
    if started > 0 {
        let mut sl = s.lock.lock();
        globrunqputbatch(&mut sl, s, &mut global);
    }
    for _ in 0..started {
        if s.npidle.load(Ordering::SeqCst) == 0 {
            break;
        }
        startm(s, None, false);
    }
    if let Some(pp) = pp {
        while let Some(gp) = local.pop_front() {
            runqput(s, pp, gp, false);
        }
    }
}

// ---------------------------------------------------------------------------
// Starting, stopping and waking Ms.

/// Starts an M for an idle P if there is one and no M is spinning already.
pub(crate) fn wakep() {
    let s = sched();
    fence(Ordering::SeqCst);
    if s.npidle.load(Ordering::SeqCst) == 0 {
        return;
    }
    if !try_claim_spinner(s) {
        return;
    }
    startm(s, None, true);
}

/// Counts an M the caller is about to start as the spinning one, if no M
/// spins yet (one spinner at a time looks for work for everyone). The
/// plain load first keeps the common case, someone spins already, off the
/// CAS and its exclusive cache line. On true the caller must start the M
/// with `startm(.., spinning = true)`.
pub(crate) fn try_claim_spinner(s: &Sched) -> bool {
    s.nmspinning.load(Ordering::SeqCst) == 0
        && s.nmspinning
            .compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
}

/// Runs some M on `pp` (an idle P if None; a given one must be the
/// caller's to give away). With `spinning`, the caller has already counted
/// the new M in `nmspinning`.
pub(crate) fn startm(s: &'static Sched, pp: Option<&'static P>, spinning: bool) {
    let mut sl = s.lock.lock();
    let Some(pp) = pp.or_else(|| pidleget(&mut sl, s)) else {
        drop(sl);
        if spinning {
            s.nmspinning.fetch_sub(1, Ordering::SeqCst);
        }
        return;
    };
    let pp = pp as *const P as *mut P;
    let idle = sl.midle.pop();
    drop(sl);
    match idle {
        Some(mp) => {
            s.nmidle.fetch_sub(1, Ordering::SeqCst);
            mp.nextp.store(pp, Ordering::Release);
            mp.set_spinning(spinning);
            mp.park.wakeup();
        }
        None => newm(s, pp, spinning),
    }
}

/// Parks the calling M (which holds no P) until `startm` hands it a P.
pub(crate) fn stopm(s: &'static Sched, mp: &'static M) {
    debug_assert!(mp.p().is_null());
    {
        let mut sl = s.lock.lock();
        mp.park.clear();
        sl.midle.push(mp);
        s.nmidle.fetch_add(1, Ordering::SeqCst);
    }
    mp.park.sleep();
    // Consume the wakeup: a note is always clear while its M runs, so a
    // later sleep (stopm or stoplockedm) waits for a new one.
    mp.park.clear();
    acquirep(mp, take_nextp(mp, "stopm"));
}

pub(crate) fn acquirep(mp: &'static M, pp: &P) {
    attach_p(mp, pp);
    pp.status.store(P_RUNNING, Ordering::SeqCst);
    wake_sysmon(sched());
}

/// Links `mp` and `pp` both ways (the caller has exclusive use of `pp`).
/// `acquirep` is this plus the status; `exitsyscall`'s fast path sets the
/// status itself, by CAS.
pub(crate) fn attach_p(mp: &'static M, pp: &P) {
    mp.p.store(pp as *const P as *mut P, Ordering::Release);
    pp.m.store(mp as *const M as *mut M, Ordering::Release);
}

/// Wakes sysmon from its deep sleep, if it is in one (a P became busy).
pub(crate) fn wake_sysmon(s: &Sched) {
    if s.sysmonwait.load(Ordering::SeqCst) && s.sysmonwait.swap(false, Ordering::SeqCst) {
        s.sysmon_note.wakeup();
    }
}

fn releasep(mp: &'static M) -> &'static P {
    let pp = mp.p.swap(std::ptr::null_mut(), Ordering::AcqRel);
    assert!(!pp.is_null(), "releasep: M holds no P");
    // SAFETY: Ps live forever in `allp`.
    let pp = unsafe { &*pp };
    pp.m.store(std::ptr::null_mut(), Ordering::Release);
    pp
}

/// Creates a new M that will run on `pp`.
fn newm(s: &'static Sched, pp: *mut P, spinning: bool) {
    let id = s.mcount.fetch_add(1, Ordering::SeqCst) as u64 + 1;
    let mp: &'static M = Box::leak(Box::new(M::new(id)));
    mp.nextp.store(pp, Ordering::Release);
    mp.set_spinning(spinning);
    s.allm.lock().push(mp);
    crate::thread::spawn_thread(G0_STACK_SIZE, mstart, mp as *const M as *mut libc::c_void);
}

/// First function of every new M (on its own pthread).
extern "C" fn mstart(arg: *mut libc::c_void) -> *mut libc::c_void {
    // SAFETY: `arg` is the leaked M passed by newm.
    let mp: &'static M = unsafe { &*(arg as *const M) };
    let s = sched();
    minit(s, mp);
    acquirep(mp, take_nextp(mp, "mstart"));
    schedule(s, mp)
}

fn minit(s: &Sched, mp: &'static M) {
    let tid = crate::thread::gettid();
    mp.procid.store(tid, Ordering::Release);
    mp.stackguard_slot
        .store(arch::stackguard_slot(), Ordering::Release);
    arch::minit_preempt();
    crate::unannounced::minit(mp);
    // An idle M may sleep until the next timer (stopm_until): keep the
    // kernel's default 50µs timer slack from delaying it.
    // SAFETY: PR_SET_TIMERSLACK only affects this thread's timed waits.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1000 as libc::c_ulong, 0, 0, 0) };
    crate::signal::minit_signals();
    setm(mp);
    crate::thread::set_thread_name(&format!("gort-m{}", mp.id));
    // SAFETY: restores a mask computed at runtime start; the signal stack
    // and TLS are in place, so our handlers can run on this thread now.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &s.init_sigmask, std::ptr::null_mut()) };
}

// ---------------------------------------------------------------------------
// The schedule loop (g0).

fn schedule(s: &'static Sched, mp: &'static M) -> ! {
    loop {
        let lockedg = mp.lockedg.load(Ordering::Acquire);
        if !lockedg.is_null() {
            // This M may run only its locked G: wait until someone hands
            // it over with a P (startlockedm).
            crate::exectrace::m_dirty(); // exectrace
            stoplockedm(s, mp);
            execute(s, mp, lockedg, false);
            continue;
        }
        let (gp, inherit) = find_runnable(s, mp);
        if mp.is_spinning() {
            reset_spinning(s, mp);
        }
        // SAFETY: we dequeued gp; Gs are never freed.
        let lockedm = unsafe { (*gp).lockedm.load(Ordering::Acquire) };
        if !lockedm.is_null() && !std::ptr::eq(lockedm, mp) {
            // SAFETY: Ms are never freed.
            startlockedm(s, mp, unsafe { &*lockedm });
            continue;
        }
        execute(s, mp, gp, inherit);
    }
}

/// Gives our P to the M that `gp` is locked to (gp was just dequeued and
/// is what that M will run), then parks this M.
fn startlockedm(s: &'static Sched, mp: &'static M, lockedm: &'static M) {
    let pp = releasep(mp);
    lockedm
        .nextp
        .store(pp as *const P as *mut P, Ordering::Release);
    lockedm.park.wakeup();
    stopm(s, mp);
}

/// Parks an M whose locked G is not running: hands off its P (if any) and
/// sleeps until `startlockedm` brings one.
fn stoplockedm(s: &'static Sched, mp: &'static M) {
    if !mp.p().is_null() {
        let pp = releasep(mp);
        handoff_p(s, pp);
    }
    s.nmidlelocked.fetch_add(1, Ordering::SeqCst);
    mp.park.sleep();
    s.nmidlelocked.fetch_sub(1, Ordering::SeqCst);
    mp.park.clear();
    acquirep(mp, take_nextp(mp, "stoplockedm"));
}

/// Finds a home for a P nobody runs (after a syscall retake or an M
/// locking itself away): an M if there is work or nobody looks for work,
/// else the idle list (Go's `handoffp`).
pub(crate) fn handoff_p(s: &'static Sched, pp: &'static P) {
    if !pp.runq.is_empty() || s.runqsize.load(Ordering::SeqCst) > 0 {
        startm(s, Some(pp), false);
        return;
    }
    if s.npidle.load(Ordering::SeqCst) == 0 && try_claim_spinner(s) {
        startm(s, Some(pp), true);
        return;
    }
    let mut sl = s.lock.lock();
    if s.runqsize.load(Ordering::SeqCst) > 0 {
        drop(sl);
        startm(s, Some(pp), false);
        return;
    }
    pidleput(&mut sl, s, pp);
}

/// The M found work while spinning: stop counting as spinning, and if it
/// was the last spinner, wake another M to keep looking (Go's
/// `resetspinning`).
fn reset_spinning(s: &'static Sched, mp: &'static M) {
    mp.set_spinning(false);
    let n = s.nmspinning.fetch_sub(1, Ordering::SeqCst) - 1;
    if n == 0 {
        wakep();
    }
}

/// Runs `gp` on this M until it switches back, then carries out its
/// request. `inherit`: gp continues the current time slice.
fn execute(s: &'static Sched, mp: &'static M, gp: *mut G, inherit: bool) {
    // SAFETY: we dequeued gp, so we own it until we publish it again.
    let g = unsafe { &*gp };
    let pp = mp.p();
    debug_assert!(!pp.is_null());
    if !inherit {
        // SAFETY: we hold pp.
        // Only the owner writes schedtick (sysmon just reads it), so a
        // plain load and store do; an atomic RMW costs more per switch.
        unsafe {
            let t = &(*pp).schedtick;
            t.store(t.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
        }
    }
    if g.stack.get().is_none() {
        // SAFETY: we hold pp; gp has never run since it was (re)spawned.
        let stack = match g.stack_size.get() {
            0 => stackalloc(s, unsafe { &*pp }),
            n => crate::stack::alloc_sized(n),
        };
        g.stack.set(Some(stack));
        // SAFETY: the stack is ours and unused; hi is page-aligned.
        let sp = unsafe { arch::init_stack(stack.hi, goroutine_entry, gp as *mut u8) };
        // SAFETY: owner write; nobody else touches a runnable G's context.
        unsafe { *g.sched_sp.get() = sp };
    }
    // A fresh start (or time slice) clears any old preemption request.
    g.preempt.store(false, Ordering::Relaxed);
    loop {
        g.set_status(G_RUNNING);
        let guard = match g.stack.get() {
            Some(st) => st.lo + STACK_GUARD_MARGIN,
            None => 0,
        };
        let guard = if g.preempt.load(Ordering::Acquire) {
            STACK_PREEMPT
        } else {
            guard
        };
        g.stackguard0.store(guard, Ordering::Relaxed);
        // SAFETY: our own TLS word (set in minit).
        unsafe {
            mp.stackguard_slot
                .load(Ordering::Relaxed)
                .write_volatile(guard)
        };
        // Goroutine code from here: sysmon may take the P if it blocks in
        // the kernel (unannounced).
        mp.curg.store(gp, Ordering::Release);
        crate::exectrace::go_start(g, mp.p_ref()); // exectrace
                                                   // g0 runs with `locks` at 1, so sysmon never takes the P while
                                                   // this M is in the scheduler; the goroutine starts at 0. (`mcall`
                                                   // raises it again before anything on the way back to g0.)
        debug_assert_eq!(mp.locks.get(), 1, "g0 lock count");
        crate::unannounced::stall_point(mp);
        mp.locks.set(0);
        // SAFETY: g0_sp belongs to this M; sched_sp is gp's saved context,
        // which is complete because gp was handed to us through a queue or
        // park protocol that runs only after its switch finished.
        unsafe { arch::gort_switch(mp.g0_sp.get(), *g.sched_sp.get()) };
        // Back on g0 with `locks` at 1 (raised by `mcall` on this M).
        // Clearing `curg` too tells dumps and sysmon there is no goroutine.
        mp.curg.store(std::ptr::null_mut(), Ordering::Release);
        crate::unannounced::stall_point(mp);
        // SAFETY: our own TLS word: g0 never takes the check's slow path.
        unsafe { mp.stackguard_slot.load(Ordering::Relaxed).write_volatile(0) };
        let after = mp.after.replace(After::Nothing);
        match after {
            After::Yield => {
                crate::exectrace::go_stop(g, crate::exectrace::Stop::Yield); // exectrace
                g.set_status(G_RUNNABLE);
                // Still our P: it only changes hands on g0.
                runqput(s, mp.held_p(), gp, false);
                return;
            }
            After::Park | After::ParkWithoutP => {
                crate::exectrace::go_stop(g, crate::exectrace::Stop::Park); // exectrace
                g.set_status(G_WAITING);
                let f = mp.park_fn.take().expect("park without a park function");
                // SAFETY: the closure lives on gp's stack, which stays put
                // while gp is switched out; it is called once, here.
                let published = unsafe { (*f)(gp) };
                if after == After::ParkWithoutP {
                    // This M has no P. Published, gp is not ours anymore:
                    // find the M a P (back to `schedule`) or stop it.
                    // Cancelled, gp runs again once this M has one.
                    let requeue = (!published).then_some(gp);
                    if p_or_stop(s, mp, requeue) && requeue.is_some() {
                        continue;
                    }
                    return;
                }
                if published {
                    // gp is published: it is not ours anymore.
                    return;
                }
                // Park cancelled: resume gp at once, same time slice.
            }
            After::Exit => {
                crate::exectrace::go_stop(g, crate::exectrace::Stop::Exit); // exectrace
                gdestroy(s, mp, gp);
                return;
            }
            After::Preempt => {
                crate::exectrace::go_stop(g, crate::exectrace::Stop::Preempt); // exectrace
                g.preempt.store(false, Ordering::Relaxed);
                g.set_status(G_RUNNABLE);
                globrunqput(&mut s.lock.lock(), s, gp);
                wakep();
                return;
            }
            After::ExitSyscall => {
                let why = match mp.asked_without_p.replace(After::Nothing) {
                    After::Preempt => crate::exectrace::Stop::Preempt,
                    After::Yield => crate::exectrace::Stop::Yield,
                    _ => crate::exectrace::Stop::NoP,
                };
                crate::exectrace::go_stop(g, why); // exectrace
                if p_or_stop(s, mp, Some(gp)) {
                    continue; // run gp again on the new P
                }
                return;
            }
            After::Nothing => crate::fatal("goroutine switched to the scheduler without a request"),
        }
    }
}

/// This M has no P (back from a syscall, or a park after unannounced
/// blocking), and `requeue` is its goroutine if that must run again: takes
/// an idle P and returns true (the caller runs `requeue` on it, or goes
/// back to `schedule`); else queues `requeue` globally — in the same
/// critical section, so a P that goes idle meanwhile sees it — stops the M
/// until it is handed a P (unless a goroutine is locked to it: `schedule`
/// waits for that one) and returns false.
fn p_or_stop(s: &'static Sched, mp: &'static M, requeue: Option<*mut G>) -> bool {
    if let Some(gp) = requeue {
        // SAFETY: gp is ours until we publish it below.
        unsafe { (*gp).set_status(G_RUNNABLE) };
    }
    let mut sl = s.lock.lock();
    if let Some(pp) = pidleget(&mut sl, s) {
        drop(sl);
        acquirep(mp, pp);
        return true;
    }
    if let Some(gp) = requeue {
        globrunqput(&mut sl, s, gp);
    }
    drop(sl);
    if mp.lockedg.load(Ordering::Acquire).is_null() {
        stopm(s, mp);
    }
    false
}

/// Looks for a runnable G, stealing if allowed; parks the M when there is
/// none. Returns the G and whether it inherits the time slice.
///
/// The common case — no timer on this P, not a fairness round with work
/// in the global queue, a goroutine in the local queue — is taken here,
/// inline; everything else in `find_runnable_slow`, which starts with the
/// same checks. (With the whole search inlined into `schedule`, a change
/// elsewhere that moved the compiler's inlining made yield ping-pong
/// 6–16% slower with the same code on its path.)
#[inline(always)]
fn find_runnable(s: &'static Sched, mp: &'static M) -> (*mut G, bool) {
    // This M holds a P when it looks for work.
    let pp: &'static P = mp.held_p();
    let fairness_round = pp.schedtick.load(Ordering::Relaxed).is_multiple_of(61)
        && s.runqsize.load(Ordering::Relaxed) > 0;
    if pp.timers.timer0.load(Ordering::Relaxed) == u64::MAX && !fairness_round {
        // SAFETY: this M holds pp (above).
        if let Some(r) = unsafe { pp.runq.owner() }.get() {
            return r;
        }
    }
    find_runnable_slow(s, mp)
}

#[inline(never)]
fn find_runnable_slow(s: &'static Sched, mp: &'static M) -> (*mut G, bool) {
    'top: loop {
        // This M holds a P at the top of every round.
        let pp: &'static P = mp.held_p();
        // Expired timers of our P first: what they wake goes to runnext.
        // (The clock is read only when the P has a timer at all.)
        if pp.timers.timer0.load(Ordering::Relaxed) != u64::MAX {
            crate::timer::run_timers(&pp.timers, crate::timer::nanotime());
        }

        // Fairness: now and then take a goroutine from the global queue, so
        // a busy local queue cannot starve it. It joins the back of the
        // local queue rather than jumping it (Go runs it at once): with
        // several goroutines taking turns through the global queue (each
        // preempted one goes there), running the global head early gave
        // one of them an extra slice every 61 (min/max share 0.87–0.95 on
        // one P with 4 spinners).
        if pp.schedtick.load(Ordering::Relaxed).is_multiple_of(61)
            && s.runqsize.load(Ordering::Relaxed) > 0
        {
            let mut sl = s.lock.lock();
            if let Some(gp) = globrunqget(&mut sl, s, pp, 1) {
                drop(sl);
                if pp.runq.is_empty() {
                    return (gp, false);
                }
                runqput(s, pp, gp, false);
            }
        }
        // SAFETY: this M holds pp (above).
        if let Some(r) = unsafe { pp.runq.owner() }.get() {
            return r;
        }
        crate::exectrace::m_dirty(); // exectrace: beyond the fast path
        if s.runqsize.load(Ordering::Relaxed) > 0 {
            let mut sl = s.lock.lock();
            if let Some(gp) = globrunqget(&mut sl, s, pp, 0) {
                return (gp, false);
            }
        }

        // The network, without blocking, if someone waits on it and no M
        // is blocked polling already (Go polls here before stealing too).
        if crate::netpoll::want_nonblocking_poll() {
            let list = crate::netpoll::netpoll(Some(std::time::Duration::ZERO));
            if let Some(gp) = run_first_inject_rest(s, pp, list) {
                return (gp, false);
            }
        }

        // Steal, unless enough Ms are spinning already.
        let procs = s.procs() as u32;
        if mp.is_spinning()
            || 2 * s.nmspinning.load(Ordering::SeqCst) < procs - s.npidle.load(Ordering::SeqCst)
        {
            if !mp.is_spinning() {
                mp.set_spinning(true);
                s.nmspinning.fetch_add(1, Ordering::SeqCst);
            }
            if let Some(gp) = steal_work(s, mp, pp) {
                return (gp, false);
            }
        }

        // Nothing: give up the P. Check the global queue once more under
        // the lock, so a G queued there meanwhile is not stranded.
        let mut sl = s.lock.lock();
        if s.runqsize.load(Ordering::Relaxed) > 0 {
            if let Some(gp) = globrunqget(&mut sl, s, pp, 0) {
                return (gp, false);
            }
        }
        let pp = releasep(mp);
        pidleput(&mut sl, s, pp);
        drop(sl);

        if mp.is_spinning() {
            // Stop counting as spinning *before* the last look, so that a
            // submitter that saw nmspinning > 0 (and so did not wake
            // anyone) is seen by this re-check. See module docs.
            mp.set_spinning(false);
            s.nmspinning.fetch_sub(1, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            let work =
                s.allp.iter().any(|p| !p.runq.is_empty()) || s.runqsize.load(Ordering::SeqCst) > 0;
            if work && try_acquire_idle_p(s, mp) {
                mp.set_spinning(true);
                s.nmspinning.fetch_add(1, Ordering::SeqCst);
                continue 'top;
            }
        }
        // Someone waits on the network and nobody polls: this M becomes
        // the blocking poller, which also sleeps only until the earliest
        // timer.
        if crate::netpoll::take_blocking_seat() {
            if let Some(r) = block_in_netpoll(s, mp) {
                return r;
            }
            continue 'top;
        }
        // With timers pending, one idle M sleeps only until the earliest
        // (Go's netpoll(delay) waiter); sysmon is the backstop for timers
        // added later with an earlier deadline.
        let next = crate::timer::next_timer(s);
        if next != u64::MAX && !s.timer_waiter.swap(true, Ordering::AcqRel) {
            stopm_until(s, mp, next);
            s.timer_waiter.store(false, Ordering::Release);
        } else {
            stopm(s, mp);
        }
    }
}

/// The M (holding no P) blocks in the netpoller until an event, a break,
/// or the earliest timer; then takes an idle P. Returns a G to run (woken
/// by the poll), or None to look for work again (holding a P). Without an
/// idle P, queues what the poll woke globally and parks (stopm).
/// This M holds the poller's seat (`netpoll::take_blocking_seat`).
fn block_in_netpoll(s: &'static Sched, mp: &'static M) -> Option<(*mut G, bool)> {
    // Until the deadline is known, any new timer breaks the poll: one added
    // between reading the earliest timer and publishing it is not missed.
    crate::netpoll::set_poll_until(u64::MAX);
    let next = crate::timer::next_timer(s);
    crate::netpoll::set_poll_until(next);
    let now = crate::timer::nanotime();
    let delay = if next == u64::MAX {
        None
    } else {
        Some(std::time::Duration::from_nanos(next.saturating_sub(now)))
    };
    // A delay of zero would make a non-blocking poll: fine for an overdue
    // timer (the P we take below runs it).
    let list = crate::netpoll::netpoll(delay);
    crate::netpoll::leave_seat();
    let pp = pidleget(&mut s.lock.lock(), s);
    match pp {
        Some(p) => {
            acquirep(mp, p);
            if list.len() == 0 {
                // Woken for a timer, maybe of another (idle) P: run every
                // P's expired timers, as the last steal round would (this
                // M may not be allowed to steal).
                let now = crate::timer::nanotime();
                for victim in s.allp.iter() {
                    if victim.timers.timer0.load(Ordering::Relaxed) <= now {
                        crate::timer::run_timers(&victim.timers, now);
                    }
                }
            }
            run_first_inject_rest(s, p, list).map(|gp| (gp, false))
        }
        None => {
            injectglist(s, None, list);
            stopm(s, mp);
            None
        }
    }
}

/// Of the goroutines a poll woke, returns the first for this M (holding
/// `pp`) to run now and queues the rest (Go's findRunnable does the same).
fn run_first_inject_rest(s: &'static Sched, pp: &P, mut list: GList) -> Option<*mut G> {
    let gp = list.pop_front()?;
    crate::exectrace::wake_netpoll(gp); // exectrace
    injectglist(s, Some(pp), list);
    // SAFETY: the poller handed us gp; nobody else readies it.
    unsafe { (*gp).set_status(G_RUNNABLE) };
    Some(gp)
}

/// `stopm`, but wake up by `deadline` (nanotime) at the latest, then take
/// an idle P so the caller's `find_runnable` runs the expired timers.
fn stopm_until(s: &'static Sched, mp: &'static M, deadline: u64) {
    {
        let mut sl = s.lock.lock();
        mp.park.clear();
        sl.midle.push(mp);
        s.nmidle.fetch_add(1, Ordering::SeqCst);
    }
    let now = crate::timer::nanotime();
    let woken = deadline <= now
        || mp
            .park
            .sleep_timeout(std::time::Duration::from_nanos(deadline - now));
    if !woken || deadline <= now {
        let mut sl = s.lock.lock();
        if let Some(i) = sl.midle.iter().position(|m| std::ptr::eq(*m, mp)) {
            // Timed out, still idle: leave the idle list ourselves.
            sl.midle.swap_remove(i);
            s.nmidle.fetch_sub(1, Ordering::SeqCst);
            let pp = pidleget(&mut sl, s);
            drop(sl);
            if let Some(pp) = pp {
                acquirep(mp, pp);
                return;
            }
            // Every P is busy: they run the timers themselves.
            stopm(s, mp);
            return;
        }
        // startm picked us meanwhile: its wake-up is on the way.
        drop(sl);
        mp.park.sleep();
    }
    mp.park.clear();
    acquirep(mp, take_nextp(mp, "stopm_until"));
}

/// Tries every other P in random order, a few rounds, taking half its
/// queue into `pp` (`mp`'s own P); on the last round also its runnext.
fn steal_work(s: &Sched, mp: &M, pp: &P) -> Option<*mut G> {
    let n = s.procs();
    if n == 1 {
        return None;
    }
    const ROUNDS: usize = 4;
    for round in 0..ROUNDS {
        let steal_next = round == ROUNDS - 1;
        let start = mp.fastrand() as usize % n;
        for i in 0..n {
            let victim = &s.allp[(start + i) % n];
            if steal_next && !std::ptr::eq(victim, pp) {
                // Last round: run the victim's expired timers (an idle P's
                // included); what they wake lands in our queue.
                if victim.timers.timer0.load(Ordering::Relaxed) != u64::MAX
                    && crate::timer::run_timers(&victim.timers, crate::timer::nanotime()) > 0
                {
                    // SAFETY: `pp` is this M's own P (steal_work's contract).
                    if let Some((gp, _)) = unsafe { pp.runq.owner() }.get() {
                        return Some(gp);
                    }
                }
            }
            if std::ptr::eq(victim, pp) || victim.status.load(Ordering::Acquire) == P_IDLE {
                continue;
            }
            // SAFETY: `pp` is this M's own P (steal_work's contract).
            if let Some(gp) = unsafe { pp.runq.owner() }.steal_from(&victim.runq, steal_next) {
                pp.steals.fetch_add(1, Ordering::Relaxed);
                return Some(gp);
            }
        }
        if s.runqsize.load(Ordering::Relaxed) > 0 {
            let mut sl = s.lock.lock();
            if let Some(gp) = globrunqget(&mut sl, s, pp, 0) {
                return Some(gp);
            }
        }
    }
    None
}

// ---------------------------------------------------------------------------
// Stacks and G reuse.

fn stackalloc(s: &Sched, pp: &P) -> Stack {
    // SAFETY: only the owner M touches its P's stack cache.
    let cache = unsafe { &mut *pp.stackcache.get() };
    if cache.is_empty() {
        s.stacks.refill(cache);
    }
    cache.pop().expect("stack cache refill produced nothing")
}

fn stackfree(s: &Sched, pp: &P, stack: Stack) {
    // SAFETY: only the owner M touches its P's stack cache.
    let cache = unsafe { &mut *pp.stackcache.get() };
    cache.push(stack);
    if cache.len() > CACHE_MAX {
        s.stacks.drain_half(cache);
    }
}

/// Frees a G whose task ended (on g0, after its last switch).
fn gdestroy(s: &Sched, mp: &M, gp: *mut G) {
    // SAFETY: gp's task ended and it switched out for the last time: we
    // own it and its stack.
    let g = unsafe { &*gp };
    let pp = mp.held_p();
    g.set_status(G_DEAD);
    if !g
        .lockedm
        .swap(std::ptr::null_mut(), Ordering::AcqRel)
        .is_null()
    {
        // Ended while locked to this M: the M goes back to general use.
        g.locked.set(0);
        mp.lockedg.store(std::ptr::null_mut(), Ordering::Release);
    }
    if let Some(stack) = g.stack.take() {
        if g.stack_size.get() == 0 {
            stackfree(s, pp, stack);
        } else {
            crate::stack::free_sized(stack);
        }
    }
    // SAFETY: owner write.
    unsafe { *g.sched_sp.get() = 0 };
    g.set_status(G_IDLE);
    s.ngoroutines.fetch_sub(1, Ordering::Relaxed);
    // SAFETY: only the owner M touches its P's free list.
    let gfree = unsafe { &mut *pp.gfree.get() };
    gfree.push(gp);
    if gfree.len() > GFREE_MAX {
        let at = gfree.len() / 2;
        s.gfree.lock().extend(gfree.drain(at..));
    }
}

fn gfget(s: &Sched, pp: Option<&P>) -> *mut G {
    if let Some(pp) = pp {
        // SAFETY: only the owner M touches its P's free list.
        let gfree = unsafe { &mut *pp.gfree.get() };
        if gfree.is_empty() {
            let mut global = s.gfree.lock();
            let n = global.len().min(GFREE_MAX / 2);
            let at = global.len() - n;
            gfree.extend(global.drain(at..));
        }
        if let Some(gp) = gfree.pop() {
            return gp;
        }
    } else if let Some(gp) = s.gfree.lock().pop() {
        return gp;
    }
    let gp = Box::into_raw(Box::new(G::new()));
    // SAFETY: `gp` was just allocated (or taken off a free list) and Gs are
    // never freed, so it may be shared for the rest of the process.
    s.allg.lock().push(unsafe { &*gp });
    gp
}

// ---------------------------------------------------------------------------
// Goroutine side: spawn, entry, yield, park, ready, exit.

/// Creates a goroutine running `task` and queues it (Go's `newproc`).
/// Returns its id.
/// `name`: for dumps and panics (`gort::Spawn::name`); `stack_size`:
/// 0 or the runtime's for the default, else rounded bytes (`Spawn::stack_size`).
pub(crate) fn newproc(
    task: Arc<dyn Task>,
    site: &'static Location<'static>,
    name: Option<Arc<str>>,
    stack_size: usize,
) -> u64 {
    let s = sched();
    let locked = LockedM::acquire();
    let pp = locked
        .as_ref()
        .map(|l| l.m().p())
        .unwrap_or(std::ptr::null_mut());
    // SAFETY: a non-null pp is held by this M, which cannot lose it while
    // `locked` prevents preemption.
    let gp = gfget(s, unsafe { pp.as_ref() });
    // SAFETY: a free G is owned by whoever took it off the free list.
    let g = unsafe { &*gp };
    let id = s.goidgen.fetch_add(1, Ordering::Relaxed) + 1;
    g.id.store(id, Ordering::Relaxed);
    g.entry_name.set(task.entry_name());
    crate::panics::unmark(g);
    let parent = getg();
    // SAFETY: the spawning G (if any) is running here and alive.
    let parent_id = unsafe { parent.as_ref() }.map_or(0, |p| p.id());
    g.parent_id.store(parent_id, Ordering::Relaxed);
    // SAFETY: owner write; the G is not queued yet.
    unsafe { *g.task.get() = Some(task) };
    g.spawn_site.set(site);
    g.waitreason.set(WaitReason::None);
    // The spawner's group: its goroutine's (on this M), or the thread's.
    let parent = locked
        .as_ref()
        .map(|l| l.m().curg())
        .unwrap_or(std::ptr::null_mut());
    let group = crate::group::of(parent);
    g.group.store(group.id, Ordering::Relaxed);
    g.gstate.store(group.state_ptr(), Ordering::Relaxed);
    // 0: the runtime's size, from the P's cache.
    g.stack_size.set(if stack_size == s.stacks.size() {
        0
    } else {
        stack_size
    });
    if let Some(n) = &name {
        crate::exectrace::named(g, n); // exectrace
    }
    if g.named.load(Ordering::Relaxed) || name.is_some() {
        g.named.store(name.is_some(), Ordering::Relaxed);
        *g.name.lock() = name;
    }
    g.set_status(G_RUNNABLE);
    crate::exectrace::create(g); // exectrace
    s.ngoroutines.fetch_add(1, Ordering::Relaxed);
    s.spawned.fetch_add(1, Ordering::Relaxed);
    // SAFETY: a non-null pp is held by this M, which cannot lose it while
    // `locked` prevents preemption.
    put_runnable(s, unsafe { pp.as_ref() }, gp, true);
    // See SPAWN_BACKLOG: a goroutine that may yield here (not in a
    // syscall, preemption not disabled) does when the backlog is long —
    // also one whose P sysmon took while it sat in the kernel (it spawns
    // into the global queue; `mcall` finds it a P again).
    let yield_for_backlog = s.runqsize.load(Ordering::Relaxed) > SPAWN_BACKLOG
        && locked.as_ref().is_some_and(|l| {
            l.m()
                .curg_ref()
                .is_some_and(|g| g.status() == G_RUNNING && g.preempt_off.get() == 0)
        });
    drop(locked);
    wakep();
    if yield_for_backlog {
        mcall(After::Yield);
    }
    id
}

/// Where every goroutine starts, on its own stack (called by gort_gstart).
/// The code map finds it by address (`symbols`): an entry frame.
pub(crate) unsafe extern "C" fn goroutine_entry(arg: *mut u8) -> ! {
    let gp = arg as *mut G;
    // SAFETY: the G runs on this stack and owns its task slot.
    let task = unsafe { (*(*gp).task.get()).take() };
    match task {
        // Task::run catches panics and never unwinds.
        Some(t) => t.run(),
        None => crate::fatal("goroutine started without a task"),
    }
    mcall(After::Exit);
    crate::fatal("dead goroutine resumed")
}

/// Switches from the current goroutine to its M's g0, which then carries
/// out `after`. Returns when the goroutine is resumed (maybe on another M).
///
/// Never inlined: between `getm` and the switch, `mp` must stay this
/// thread's M. Inlined into a user function (fat LTO inlines across
/// crates), that window would carry the user function's symbol, and an
/// asynchronous preemption there would resume the goroutine on another M
/// and switch onto the old M's g0 stack. Out of line it is gort's code,
/// which is never preempted.
#[inline(never)]
pub(crate) fn mcall(after: After) {
    let mut mp = getm().expect("mcall outside an M");
    let gp = mp.curg();
    debug_assert!(!gp.is_null(), "mcall on g0");
    // Runtime code from here to g0 and on g0: `locks` raised first, so
    // sysmon, which commits a handoff only for `locks == 0`, cannot take
    // the P between the ownership check below and the switch. (Without
    // it, a thread that blocks in the kernel anywhere in that window —
    // under qemu-user the emulator's own locks do, at any instruction —
    // reached g0 without a P.) The g0 we switch to keeps it at 1; the
    // goroutine resumes at 0, set by the `execute` that resumes it.
    debug_assert_eq!(mp.locks.get(), 0, "mcall with runtime locks held");
    mp.locks.set(1);
    if after != After::ExitSyscall && !crate::unannounced::check_p(mp) {
        match mcall_without_p(mp, gp, after) {
            Some(m) => mp = m,
            None => return,
        }
    }
    // Stall here: sysmon must not take the P between the check and g0.
    crate::unannounced::stall_point(mp);
    mp.after.set(after);
    // SAFETY: we are gp, running on mp; saving into gp's own context slot
    // and resuming mp's g0, which is suspended in execute().
    unsafe { arch::gort_switch((*gp).sched_sp.get(), *mp.g0_sp.get()) };
    // From here on `mp` may be stale: we may run on another M.
}

/// `mcall` for a goroutine whose M lost its P: takes an
/// idle P, else, as exitsyscall, queues the goroutine globally and parks
/// the M until the goroutine is resumed on an M with a P (maybe another
/// one). Returns that M, or None if the request (a yield) is served.
#[cold]
#[inline(never)]
fn mcall_without_p(mut mp: &'static M, gp: *mut G, after: After) -> Option<&'static M> {
    if after == After::Park {
        if crate::unannounced::take_idle_p(mp) {
            return Some(mp);
        }
        // The park closure must run before anything waits for a P: it
        // releases what the parker holds (a channel's lock). Queued
        // runnable with it still pending, the goroutine kept the lock
        // while every M with a P queued on it: a deadlock.
        mp.after.set(After::ParkWithoutP);
        // SAFETY: we are gp, running on mp: saves into gp's own context
        // slot and resumes mp's g0, which is suspended in execute().
        unsafe { arch::gort_switch((*gp).sched_sp.get(), *mp.g0_sp.get()) };
        // Woken (or the park was cancelled) and resumed on an M with a P,
        // at `locks` 0: the park has happened.
        // SAFETY: we are gp; Gs are never freed.
        unsafe { (*gp).blocked_since.store(0, Ordering::Relaxed) };
        return None;
    }
    while !crate::unannounced::take_idle_p(mp) {
        let park_fn = mp.park_fn.take();
        mp.after.set(After::ExitSyscall);
        mp.asked_without_p.set(after);
        // SAFETY: we are gp, running on mp: saves into gp's own context
        // slot and resumes mp's g0, which is suspended in execute().
        unsafe { arch::gort_switch((*gp).sched_sp.get(), *mp.g0_sp.get()) };
        mp = getm().expect("mcall outside an M");
        // Back with a P: no longer "in a syscall" for dumps.
        // SAFETY: we are gp; Gs are never freed.
        unsafe { (*gp).blocked_since.store(0, Ordering::Relaxed) };
        if matches!(after, After::Yield | After::Preempt) {
            // Queued and resumed (at `locks` 0, goroutine code): the
            // yield has happened.
            return None;
        }
        // On to the switch `mcall` was asked for: runtime code again.
        mp.locks.set(1);
        mp.park_fn.set(park_fn);
        if crate::unannounced::check_p(mp) {
            break;
        }
    }
    Some(mp)
}

/// The current goroutine, or null on a thread that is not running one.
pub(crate) fn getg() -> *mut G {
    match getm() {
        Some(mp) => mp.curg(),
        None => std::ptr::null_mut(),
    }
}

/// The current goroutine, or None on a thread that is not running one.
pub(crate) fn current_g() -> Option<&'static G> {
    // SAFETY: the current G, if any, is alive while it runs this (and Gs
    // are never freed).
    unsafe { getg().as_ref() }
}

/// Whether a wait here must block the OS thread instead of parking the
/// goroutine: on a plain thread, and inside `syscall::blocking` (the
/// goroutine holds no P there and its thread already counts as blocked;
/// `park` would panic).
pub(crate) fn must_block_thread() -> bool {
    current_g().is_none_or(|g| g.status() == G_SYSCALL)
}

/// Yields the processor: the current goroutine goes to the back of its P's
/// run queue. Outside a goroutine, yields the OS thread.
#[inline(never)]
pub(crate) fn gosched() {
    if must_block_thread() {
        std::thread::yield_now();
        return;
    }
    mcall(After::Yield);
}

/// Parks the current goroutine. `publish` runs on g0 once the goroutine's
/// context is saved (on an M that may hold no P: after the goroutine lost
/// it in a plain blocking call, see `mcall_without_p`); it must make the G
/// reachable by its waker (who will call `ready`) and return true, or
/// return false to resume at once. It must not touch its captures after
/// the step that publishes the G.
pub(crate) fn park(reason: WaitReason, publish: &mut dyn FnMut(*mut G) -> bool) {
    let mp = getm().expect("park outside an M");
    let gp = mp.curg();
    assert!(!gp.is_null(), "park outside a goroutine");
    // SAFETY: we are gp.
    if unsafe { (*gp).status() } == G_SYSCALL {
        // Every wait checks for this and blocks the thread instead.
        crate::fatal("gort: a goroutine parked inside syscall::blocking (it holds no P)");
    }
    // SAFETY: we are gp.
    unsafe {
        (*gp).waitreason.set(reason);
        // A clock read costs ~35ns here (a third of a channel hand-off);
        // dumps only need minutes: a coarse clock would do.
        (*gp)
            .wait_since
            .store(crate::timer::nanotime_coarse(), Ordering::Relaxed);
        // For the group checker: a new park, and whether it is durable.
        let durable = reason.durable() && !(*gp).timed_wait.get();
        let parks = ((*gp).park_mark.load(Ordering::Relaxed) >> 1) + 1;
        (*gp)
            .park_mark
            .store(parks << 1 | durable as u64, Ordering::Relaxed);
    }
    // SAFETY: erases the closure's lifetime; it stays valid because it
    // lives on gp's stack, and g0 calls it before gp can resume.
    let f: crate::m::ParkFn =
        unsafe { std::mem::transmute(publish as *mut dyn FnMut(*mut G) -> bool) };
    mp.park_fn.set(Some(f));
    mcall(After::Park);
    // SAFETY: we are gp again.
    unsafe { (*gp).waitreason.set(WaitReason::None) };
}

/// Makes a parked goroutine runnable (Go's `ready`). Callable from any
/// thread: a goroutine, g0, or a plain thread.
pub(crate) fn ready(gp: *mut G) {
    // SAFETY: gp was published by `park`; the waker owns the right to ready
    // it once.
    let g = unsafe { &*gp };
    let st = g.status();
    if st != G_WAITING {
        crate::fatal(&format!(
            "ready: goroutine {} has status {st}, not waiting",
            g.id()
        ));
    }
    crate::exectrace::wake(g); // exectrace
    g.set_status(G_RUNNABLE);
    runqput_current(gp, true);
}

/// Whether async preemption is on (config, debug flag and code map).
pub(crate) fn async_preempt_enabled() -> bool {
    try_sched().is_some_and(|s| s.async_preempt_on())
}

/// Whether the runtime has been started.
pub(crate) fn started() -> bool {
    STARTED.load(Ordering::Acquire) || SCHED.get().is_some()
}
