//! `G`: a goroutine — a stack, a saved context, and the task it runs.
//!
//! # Ownership
//!
//! A `G` is allocated once and never freed: when its task ends it goes to a
//! free list (per-P `gfree`, then the global one) and is reused by a later
//! spawn, like Go's `gfput`/`gfget`. Every G ever made is in `Sched::allg`,
//! so dumps and deadlock checks can walk them.
//!
//! Fields marked "owner" are touched only by the M currently running the G
//! (or, while the G is not running, by whoever holds it: a run queue's
//! consumer, the M parking it). `status` is the one field other threads read
//! at any time.
//!
//! # Status transitions
//!
//! ```text
//!   Idle --spawn--> Runnable --execute--> Running --yield--> Runnable
//!                                            |  \--park--> Waiting --ready--> Runnable
//!                                            \--exit--> Dead --gfput--> Idle
//! ```

use crate::stack::Stack;
use std::cell::{Cell, UnsafeCell};
use std::panic::Location;
use std::sync::atomic::{
    AtomicBool, AtomicI64, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};
use std::sync::Arc;

pub(crate) const G_IDLE: u32 = 0;
pub(crate) const G_RUNNABLE: u32 = 1;
pub(crate) const G_RUNNING: u32 = 2;
pub(crate) const G_WAITING: u32 = 3;
pub(crate) const G_DEAD: u32 = 4;
/// In `syscall::blocking`: off its P, which sysmon may hand to another M.
pub(crate) const G_SYSCALL: u32 = 5;

/// The end of the demangled name of a `Task::run` implementation (see
/// `join::PACKET_PREFIX`).
pub(crate) const TASK_RUN_SUFFIX: &str = concat!(" as ", module_path!(), "::Task>::run");

/// What a goroutine runs: the spawned closure plus its result slot.
/// `run` never unwinds (the packet catches panics).
pub(crate) trait Task: Send + Sync {
    fn run(self: Arc<Self>);
    /// The type name of the closure the goroutine runs (for "created by"
    /// in dumps: a closure's type names the function that wrote it).
    fn entry_name(&self) -> &'static str;
}

/// Why a goroutine is waiting (shown in dumps and deadlock reports; the
/// texts are Go's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(dead_code)] // some are for chan, sync and netpoll, being built
pub(crate) enum WaitReason {
    None,
    JoinHandle,
    Sleep,
    ChanSend,
    ChanReceive,
    Select,
    SelectNoCases,
    SyncMutexLock,
    SyncRWMutexRLock,
    SyncRWMutexLock,
    SyncCondWait,
    SyncWaitGroupWait,
    SyncOnce,
    SyncSemacquire,
    IoWait,
    /// `gort::block_on`: a future's waker, which any thread may call.
    Future,
}

impl WaitReason {
    /// Whether a goroutine waiting for this reason can only be woken by
    /// another goroutine (or a `spawn_blocking` task): not by a timer,
    /// the network or a system call. The group checker's "durably
    /// blocked" (Go's testing/synctest).
    pub(crate) fn durable(self) -> bool {
        !matches!(
            self,
            WaitReason::None | WaitReason::Sleep | WaitReason::IoWait | WaitReason::Future
        )
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            WaitReason::None => "",
            WaitReason::JoinHandle => "join",
            WaitReason::Sleep => "sleep",
            WaitReason::ChanSend => "chan send",
            WaitReason::ChanReceive => "chan receive",
            WaitReason::Select => "select",
            WaitReason::SelectNoCases => "select (no cases)",
            WaitReason::SyncMutexLock => "sync.Mutex.Lock",
            WaitReason::SyncRWMutexRLock => "sync.RWMutex.RLock",
            WaitReason::SyncRWMutexLock => "sync.RWMutex.Lock",
            WaitReason::SyncCondWait => "sync.Cond.Wait",
            WaitReason::SyncWaitGroupWait => "sync.WaitGroup.Wait",
            WaitReason::SyncOnce => "sync.Once",
            WaitReason::SyncSemacquire => "semacquire",
            WaitReason::IoWait => "IO wait",
            WaitReason::Future => "future",
        }
    }
}

#[repr(C)]
pub(crate) struct G {
    /// Saved stack pointer while not running (owner). Written by
    /// `gort_switch` when the G switches out.
    pub(crate) sched_sp: UnsafeCell<usize>,
    /// The stack, taken from the P's cache when the G first runs (owner).
    pub(crate) stack: Cell<Option<Stack>>,
    /// Goroutine id, unique for the process lifetime (owner writes on spawn).
    pub(crate) id: AtomicU64,
    pub(crate) status: AtomicU32,
    /// Whether `name` holds a name (owner; saves a lock on every spawn).
    pub(crate) named: AtomicBool,
    /// The wait about to start has a timer (set by the owner before
    /// `park`, e.g. a channel operation with a timeout).
    pub(crate) timed_wait: Cell<bool>,
    /// The group (`gort::run`) this G belongs to, 0 for none (written by
    /// `newproc` before the G is queued; read by the group checker).
    /// (These fields sit beside the ones `newproc` writes anyway: on the
    /// same cache lines.)
    pub(crate) group: AtomicU64,
    /// The group's shared state (`group::GroupState`; null for none),
    /// copied with `group` at spawn.
    pub(crate) gstate: AtomicPtr<crate::group::GroupState>,
    /// Stack size asked for with `gort::Spawn::stack_size` (rounded to
    /// pages), or 0 for the runtime's (owner; set at spawn).
    pub(crate) stack_size: Cell<usize>,
    /// `(parks << 1) | durable`: bumped by the owner at every park, with
    /// whether that wait can only end by another goroutine of the runtime
    /// (see `group`). Read by the group checker.
    pub(crate) park_mark: AtomicU64,
    /// The task to run; taken by the G's entry (owner).
    pub(crate) task: UnsafeCell<Option<Arc<dyn Task>>>,
    /// Intrusive link for the global run queue and free lists (holder).
    pub(crate) schedlink: Cell<*mut G>,
    /// Why the G waits (owner).
    pub(crate) waitreason: Cell<WaitReason>,
    /// Goroutine-local storage (`gort::local!`; owner only).
    pub(crate) locals: UnsafeCell<crate::local::Locals>,
    /// Where `spawn` was called (owner writes on spawn).
    pub(crate) spawn_site: Cell<&'static Location<'static>>,
    /// A preemption was requested (sysmon sets, the G clears when it
    /// yields or is rescheduled).
    pub(crate) preempt: AtomicBool,
    /// The stack limit the cooperative check compares with: the stack's low
    /// end plus a margin, or `STACK_PREEMPT` when preemption is requested.
    /// Copied into the M's TLS word whenever the G is switched in.
    pub(crate) stackguard0: AtomicUsize,
    /// Nesting depth of `preempt::disable` (owner; read by its M's signal
    /// handler).
    pub(crate) preempt_off: Cell<u32>,
    /// The M this G is locked to by `lock_os_thread` (null if none).
    pub(crate) lockedm: AtomicPtr<crate::m::M>,
    /// Nesting depth of `lock_os_thread` (owner).
    pub(crate) locked: Cell<u32>,
    /// When the G last parked (nanotime; owner writes before parking,
    /// dumps read it racily).
    pub(crate) wait_since: AtomicU64,
    /// The vector state of the G while it is async-preempted (x86_64; the
    /// preemption trampoline's caller moves it here from the M's save area
    /// and back). Grow-only, reused (owner).
    pub(crate) vector_save: UnsafeCell<Vec<u8>>,
    /// `Task::entry_name` of the task (owner writes on spawn).
    pub(crate) entry_name: Cell<&'static str>,
    /// The goroutine that spawned this one (0: a plain thread).
    pub(crate) parent_id: AtomicU64,
    /// The main goroutine of a `run`: its panic is printed by `run`
    /// (owner; see panics.rs).
    pub(crate) run_main: Cell<bool>,
    /// While sysmon sees the G blocked in the kernel outside
    /// `syscall::blocking`: when that began (nanotime; 0 otherwise), and
    /// the system call's number. Written by sysmon (and cleared by the G's
    /// M when it takes a P back); read by dumps.
    pub(crate) blocked_since: AtomicU64,
    pub(crate) blocked_nr: AtomicI64,
    /// The name given with `gort::Spawn::name` (dumps read it).
    pub(crate) name: crate::lock::Mutex<Option<Arc<str>>>,
}

// SAFETY: a G is handed between threads only through the scheduler's queues
// and parking protocol, which give one owner at a time (see module docs).
unsafe impl Send for G {}
// SAFETY: fields read by other threads (status, ids, the preemption words, the
// park mark) are atomics or locks; the rest are touched only by the G's current
// owner (see module docs).
unsafe impl Sync for G {}

impl G {
    pub(crate) fn new() -> G {
        G {
            sched_sp: UnsafeCell::new(0),
            stack: Cell::new(None),
            id: AtomicU64::new(0),
            status: AtomicU32::new(G_IDLE),
            task: UnsafeCell::new(None),
            schedlink: Cell::new(std::ptr::null_mut()),
            waitreason: Cell::new(WaitReason::None),
            spawn_site: Cell::new(Location::caller()),
            preempt: AtomicBool::new(false),
            stackguard0: AtomicUsize::new(0),
            preempt_off: Cell::new(0),
            lockedm: AtomicPtr::new(std::ptr::null_mut()),
            locked: Cell::new(0),
            wait_since: AtomicU64::new(0),
            vector_save: UnsafeCell::new(Vec::new()),
            entry_name: Cell::new(""),
            parent_id: AtomicU64::new(0),
            run_main: Cell::new(false),
            blocked_since: AtomicU64::new(0),
            blocked_nr: AtomicI64::new(-1),
            group: AtomicU64::new(0),
            gstate: AtomicPtr::new(std::ptr::null_mut()),
            park_mark: AtomicU64::new(0),
            timed_wait: Cell::new(false),
            locals: UnsafeCell::new(crate::local::Locals::new()),
            named: AtomicBool::new(false),
            stack_size: Cell::new(0),
            name: crate::lock::Mutex::new(None),
        }
    }

    pub(crate) fn id(&self) -> u64 {
        self.id.load(Ordering::Relaxed)
    }

    pub(crate) fn status(&self) -> u32 {
        self.status.load(Ordering::Acquire)
    }

    pub(crate) fn set_status(&self, s: u32) {
        self.status.store(s, Ordering::Release)
    }
}

/// A FIFO of Gs linked through `schedlink` (the global run queue, batches).
pub(crate) struct GList {
    head: *mut G,
    tail: *mut G,
    len: usize,
}

// SAFETY: the list only holds pointers to Gs that live forever; whoever owns
// the list (under the sched lock) owns the Gs in it.
unsafe impl Send for GList {}

impl GList {
    pub(crate) const fn new() -> GList {
        GList {
            head: std::ptr::null_mut(),
            tail: std::ptr::null_mut(),
            len: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn push_back(&mut self, gp: *mut G) {
        // SAFETY: Gs are never freed; the caller owns `gp`.
        unsafe { (*gp).schedlink.set(std::ptr::null_mut()) };
        if self.tail.is_null() {
            self.head = gp;
        } else {
            // SAFETY: tail is a G in this list, which we own.
            unsafe { (*self.tail).schedlink.set(gp) };
        }
        self.tail = gp;
        self.len += 1;
    }

    pub(crate) fn pop_front(&mut self) -> Option<*mut G> {
        if self.head.is_null() {
            return None;
        }
        let gp = self.head;
        // SAFETY: head is a G in this list, which we own.
        self.head = unsafe { (*gp).schedlink.get() };
        if self.head.is_null() {
            self.tail = std::ptr::null_mut();
        }
        self.len -= 1;
        Some(gp)
    }

    /// Moves all of `other` to the back of this list.
    pub(crate) fn append(&mut self, other: &mut GList) {
        if other.head.is_null() {
            return;
        }
        if self.tail.is_null() {
            self.head = other.head;
        } else {
            // SAFETY: tail is a G in this list, which we own.
            unsafe { (*self.tail).schedlink.set(other.head) };
        }
        self.tail = other.tail;
        self.len += other.len;
        *other = GList::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` fresh Gs, leaked as the runtime's are.
    fn gs(n: usize) -> Vec<*mut G> {
        (0..n).map(|_| Box::into_raw(Box::new(G::new()))).collect()
    }

    fn drain(l: &mut GList) -> Vec<*mut G> {
        std::iter::from_fn(|| l.pop_front()).collect()
    }

    #[test]
    fn glist_is_fifo_and_counts() {
        let g = gs(5);
        let mut l = GList::new();
        assert_eq!(l.len(), 0);
        assert!(l.pop_front().is_none());
        for &gp in &g {
            l.push_back(gp);
        }
        assert_eq!(l.len(), 5);
        assert_eq!(drain(&mut l), g);
        assert_eq!(l.len(), 0);
        // Reusable once empty, and a G popped can be pushed again.
        l.push_back(g[2]);
        l.push_back(g[0]);
        assert_eq!(drain(&mut l), vec![g[2], g[0]]);
    }

    #[test]
    fn glist_append_moves_everything_in_order() {
        let g = gs(6);
        let (mut a, mut b) = (GList::new(), GList::new());
        // Appending an empty list changes nothing; appending to an empty
        // one takes the other whole.
        a.append(&mut b);
        assert_eq!(a.len(), 0);
        for &gp in &g[3..] {
            b.push_back(gp);
        }
        a.append(&mut b);
        assert_eq!((a.len(), b.len()), (3, 0));
        for &gp in &g[..3] {
            b.push_back(gp);
        }
        a.append(&mut b);
        assert_eq!((a.len(), b.len()), (6, 0));
        assert!(b.pop_front().is_none());
        let mut want = g[3..].to_vec();
        want.extend_from_slice(&g[..3]);
        assert_eq!(drain(&mut a), want);
    }
}
