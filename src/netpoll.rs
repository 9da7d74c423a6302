//! The netpoller: goroutines wait for file descriptors to become readable
//! or writable without holding a thread (docs/design.md, "Netpoller and
//! network I/O").
//!
//! # Shape (Go's `netpoll.go` + `netpoll_epoll.go`)
//!
//! One epoll instance for the process, created on first use. Every fd the
//! runtime watches is registered once, when it is opened, for read and
//! write readiness, **edge-triggered** (`EPOLLET`): the kernel reports a
//! transition to ready once, and the goroutine doing I/O keeps calling
//! `read`/`write` until `EAGAIN` before it waits again. So no re-arming
//! syscall per wait, and the fd stays registered until it is closed.
//!
//! Each fd has a `PollDesc` with two semaphores, `rg` (reader) and `wg`
//! (writer). Each holds one of
//!
//! | value    | meaning                                                  |
//! |----------|----------------------------------------------------------|
//! | `NONE`   | nobody waits, no readiness seen since the last consume   |
//! | `READY`  | readiness arrived with nobody waiting: next wait returns |
//! | `WAIT`   | a goroutine is about to park                             |
//! | a `*G`   | that goroutine is parked, waiting                        |
//!
//! The waiting goroutine moves `NONE → WAIT`, then, on g0 once its context
//! is saved, `WAIT → G` (the park commit). An event (or a close, or a
//! deadline) moves whatever is there to `READY` (event) or `NONE` (close,
//! deadline); if it found a G, that G is runnable now. If the commit finds
//! the word changed meanwhile, the park is cancelled and the goroutine
//! re-checks. Either way the goroutine then retries its I/O: readiness is
//! a hint, `EAGAIN` is the truth, so spurious wake-ups cost one syscall and
//! are harmless.
//!
//! # Who polls
//!
//! - A spinning M, before it steals, polls without blocking when someone
//!   waits on the network (Go's `findRunnable`).
//! - The last M with nothing to do gives up its P and blocks in
//!   `epoll_pwait2` until an event or the earliest timer (`LASTPOLL` = 0
//!   while it does, so only one M blocks there). Adding an earlier timer,
//!   or shutting down, breaks the wait through an eventfd.
//! - sysmon polls without blocking when nobody polled for 10ms (every P
//!   busy with long-running goroutines).
//!
//! What a poll returns enters the run queues through `injectglist`, which
//! also starts Ms for idle Ps.
//!
//! # Descriptors are never freed
//!
//! A `PollDesc` is reused, not freed (Go's `pollCache`): an event for a
//! closed fd may already sit in another M's `epoll_wait` result when the fd
//! closes. Each reuse bumps the descriptor's `seq`, which rides in the
//! epoll data next to the pointer, so a stale event is dropped.
//!
//! # Plain threads
//!
//! A thread that is not a goroutine (or a goroutine inside
//! `syscall::blocking`, which holds no P) waits with `poll(2)` on the fd
//! itself, in slices of at most `THREAD_POLL_SLICE` so that a close is
//! noticed.

use crate::g::{GList, WaitReason, G};
use crate::lock::Mutex;
use crate::timer::TimerTask;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const NONE: usize = 0;
const READY: usize = 1;
const WAIT: usize = 2;

/// Which half of a descriptor an operation waits on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Mode {
    Read,
    Write,
}

/// How long a plain thread waits in `poll(2)` before re-checking `closing`.
const THREAD_POLL_SLICE: Duration = Duration::from_millis(50);

/// Events fetched per `epoll_wait`.
const EVENTS: usize = 128;

/// Epoll data of the eventfd that breaks a blocking poll (a real descriptor
/// is a pointer, never this).
const BREAK_TOKEN: u64 = 1;

/// Bits of the epoll data holding the descriptor's address; the `seq` tag
/// sits above them. User-space addresses on x86_64 and aarch64 (48-bit VA)
/// fit; `alloc_desc` checks.
const ADDR_BITS: u32 = 48;

/// The per-fd state (see the module docs).
pub(crate) struct PollDesc {
    fd: AtomicI32,
    /// Bumped every time the descriptor is reused: tags epoll events.
    seq: AtomicU32,
    rg: AtomicUsize,
    wg: AtomicUsize,
    /// The fd is being closed: every wait fails with "closed".
    closing: AtomicBool,
    /// Arming number of the current read / write deadline timer; bumping
    /// it disarms (the timer entry stays in its heap, dead).
    rtimer: AtomicU64,
    wtimer: AtomicU64,
}

impl PollDesc {
    fn sema(&self, mode: Mode) -> &AtomicUsize {
        match mode {
            Mode::Read => &self.rg,
            Mode::Write => &self.wg,
        }
    }

    fn timer_seq(&self, mode: Mode) -> &AtomicU64 {
        match mode {
            Mode::Read => &self.rtimer,
            Mode::Write => &self.wtimer,
        }
    }

    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }
}

struct Poller {
    epfd: RawFd,
    breakfd: RawFd,
}

static POLLER: once_cell::sync::OnceCell<Poller> = once_cell::sync::OnceCell::new();
/// Free descriptors for reuse.
static FREE: Mutex<Vec<&'static PollDesc>> = Mutex::new(Vec::new());
/// Goroutines parked in `wait` (they keep check_dead quiet, and make idle
/// Ms poll).
static WAITERS: AtomicU32 = AtomicU32::new(0);
/// nanotime of the last poll, or 0 while an M is blocked in one (the
/// poller's seat: at most one M blocks in `epoll_pwait2`). Starts at 1:
/// "polled at the start". Only the functions below touch it.
static LASTPOLL: AtomicU64 = AtomicU64::new(1);

/// Whether an M is blocked in the netpoller now.
pub(crate) fn blocking_poller_present() -> bool {
    LASTPOLL.load(Ordering::SeqCst) == 0
}

/// Whether a spinning M should poll without blocking: someone waits on
/// the network and no M is blocked polling already.
pub(crate) fn want_nonblocking_poll() -> bool {
    waiters() > 0 && LASTPOLL.load(Ordering::Relaxed) != 0
}

/// Takes the poller's seat if someone waits on the network and nobody
/// holds it: the caller then blocks in `netpoll` and calls `leave_seat`.
pub(crate) fn take_blocking_seat() -> bool {
    waiters() > 0 && LASTPOLL.swap(0, Ordering::SeqCst) != 0
}

/// Gives the seat back after a blocking poll (and dates the poll).
pub(crate) fn leave_seat() {
    LASTPOLL.store(crate::timer::nanotime().max(1), Ordering::SeqCst);
}

/// sysmon: whether nobody polled for longer than `every` and no M is
/// blocked polling; if so, claims the poll (dating it now) and the caller
/// polls without blocking.
pub(crate) fn claim_overdue_poll(every: std::time::Duration) -> bool {
    let last = LASTPOLL.load(Ordering::SeqCst);
    let now = crate::timer::nanotime();
    last != 0
        && now.saturating_sub(last) > every.as_nanos() as u64
        && LASTPOLL
            .compare_exchange(last, now.max(1), Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
}
/// While an M is blocked in a poll: the nanotime it will wake by
/// (u64::MAX: only an event or a break wakes it).
static POLL_UNTIL: AtomicU64 = AtomicU64::new(0);
/// A break was written to the eventfd and not consumed yet.
static BREAK_PENDING: AtomicBool = AtomicBool::new(false);
/// epoll_pwait2 is missing (kernel < 5.11): use epoll_wait's milliseconds.
static NO_PWAIT2: AtomicBool = AtomicBool::new(false);

fn poller() -> io::Result<&'static Poller> {
    POLLER.get_or_try_init(|| {
        // SAFETY: plain syscalls creating new descriptors.
        let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if epfd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: eventfd creates a new descriptor; no memory is passed.
        let breakfd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if breakfd < 0 {
            let e = io::Error::last_os_error();
            // SAFETY: epfd is ours and unused.
            unsafe { libc::close(epfd) };
            return Err(e);
        }
        // Level-triggered: a break stays visible until the blocking poller
        // reads it, even if a non-blocking poll sees it first.
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: BREAK_TOKEN,
        };
        // SAFETY: both fds are ours; `ev` is a valid epoll_event.
        if unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, breakfd, &mut ev) } < 0 {
            let e = io::Error::last_os_error();
            // SAFETY: both are ours and unused.
            unsafe {
                libc::close(breakfd);
                libc::close(epfd);
            }
            return Err(e);
        }
        Ok(Poller { epfd, breakfd })
    })
}

/// Whether any fd was ever registered (else there is nothing to poll).
pub(crate) fn inited() -> bool {
    POLLER.get().is_some()
}

/// Goroutines parked waiting for the network.
pub(crate) fn waiters() -> u32 {
    WAITERS.load(Ordering::SeqCst)
}

fn alloc_desc() -> &'static PollDesc {
    if let Some(pd) = FREE.lock().pop() {
        return pd;
    }
    let pd: &'static PollDesc = Box::leak(Box::new(PollDesc {
        fd: AtomicI32::new(-1),
        seq: AtomicU32::new(0),
        rg: AtomicUsize::new(NONE),
        wg: AtomicUsize::new(NONE),
        closing: AtomicBool::new(false),
        rtimer: AtomicU64::new(0),
        wtimer: AtomicU64::new(0),
    }));
    let addr = pd as *const PollDesc as u64;
    if addr >> ADDR_BITS != 0 || addr == BREAK_TOKEN {
        crate::fatal("netpoll: descriptor address does not fit the epoll tag");
    }
    pd
}

fn tag(pd: &PollDesc) -> u64 {
    let seq = pd.seq.load(Ordering::Relaxed) as u64 & ((1 << (64 - ADDR_BITS)) - 1);
    (pd as *const PollDesc as u64) | (seq << ADDR_BITS)
}

/// Registers `fd` (already non-blocking) with the poller.
pub(crate) fn open(fd: RawFd) -> io::Result<&'static PollDesc> {
    let p = poller()?;
    let pd = alloc_desc();
    pd.fd.store(fd, Ordering::Relaxed);
    pd.rg.store(NONE, Ordering::Relaxed);
    pd.wg.store(NONE, Ordering::Relaxed);
    pd.closing.store(false, Ordering::Release);
    let mut ev = libc::epoll_event {
        events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
        u64: tag(pd),
    };
    // SAFETY: `fd` is the caller's open descriptor; `ev` is valid.
    if unsafe { libc::epoll_ctl(p.epfd, libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
        let mut e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EPERM) {
            // epoll's way of saying "always ready": regular files and
            // directories, whose reads block in the kernel instead.
            e = io::Error::new(
                io::ErrorKind::Unsupported,
                "this fd cannot be watched by the netpoller (a regular file or \
                 directory?): use gort::syscall::blocking for its I/O",
            );
        }
        free_desc(pd);
        return Err(e);
    }
    Ok(pd)
}

fn free_desc(pd: &'static PollDesc) {
    pd.fd.store(-1, Ordering::Relaxed);
    pd.seq.fetch_add(1, Ordering::Release);
    FREE.lock().push(pd);
}

/// Marks `pd` closing and wakes whoever waits on it (they see "closed").
/// Call before `close`.
pub(crate) fn evict(pd: &'static PollDesc) {
    pd.closing.store(true, Ordering::SeqCst);
    // Disarm deadline timers: they would only find nobody to wake.
    pd.rtimer.fetch_add(1, Ordering::AcqRel);
    pd.wtimer.fetch_add(1, Ordering::AcqRel);
    let mut list = GList::new();
    for mode in [Mode::Read, Mode::Write] {
        if let Some(gp) = unblock(pd, mode, false) {
            list.push_back(gp);
        }
    }
    ready_list(list);
}

/// Unregisters `pd`'s fd and recycles `pd`. Nobody may wait on it any more
/// (after `evict`, and after every operation on the fd has returned); the
/// caller closes the fd afterwards.
pub(crate) fn close(pd: &'static PollDesc) {
    let fd = pd.fd.load(Ordering::Relaxed);
    if let Some(p) = POLLER.get() {
        let mut ev = libc::epoll_event { events: 0, u64: 0 };
        // SAFETY: fd is still open (the caller closes it after this).
        // Failure (fd never registered) changes nothing.
        unsafe { libc::epoll_ctl(p.epfd, libc::EPOLL_CTL_DEL, fd, &mut ev) };
    }
    free_desc(pd);
}

/// Moves `pd`'s `mode` semaphore to READY (`ioready`) or NONE, returning
/// the goroutine that was parked on it, if any (now the caller's to
/// ready). Go's `netpollunblock`.
fn unblock(pd: &PollDesc, mode: Mode, ioready: bool) -> Option<*mut G> {
    let sema = pd.sema(mode);
    loop {
        let old = sema.load(Ordering::Acquire);
        if old == READY {
            return None;
        }
        if old == NONE && !ioready {
            return None;
        }
        let new = if ioready { READY } else { NONE };
        if sema
            .compare_exchange(old, new, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            if old == NONE || old == WAIT {
                return None;
            }
            WAITERS.fetch_sub(1, Ordering::SeqCst);
            return Some(old as *mut G);
        }
    }
}

/// The error of an operation on a closed (or closing) fd.
pub(crate) fn closed_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "use of closed file or network connection",
    )
}

/// The error of an operation whose timeout passed.
pub(crate) fn timeout_error() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "i/o timeout")
}

/// Waits until `pd`'s fd may be ready for `mode` (the caller then retries
/// its operation), or fails: closed, or `deadline` passed.
pub(crate) fn wait(pd: &'static PollDesc, mode: Mode, deadline: Option<Instant>) -> io::Result<()> {
    if pd.is_closing() {
        return Err(closed_error());
    }
    if deadline.is_some_and(|d| Instant::now() >= d) {
        return Err(timeout_error());
    }
    if crate::sched::must_block_thread() {
        return thread_wait(pd, mode, deadline);
    }
    let sema = pd.sema(mode);
    // NONE → WAIT, or consume a READY.
    loop {
        let old = sema.load(Ordering::Acquire);
        if old == READY {
            sema.store(NONE, Ordering::Release);
            return Ok(());
        }
        if old != NONE {
            crate::fatal("netpoll: two goroutines wait on the same fd and direction at once");
        }
        if sema
            .compare_exchange(NONE, WAIT, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            break;
        }
    }
    // A close or a deadline that came before WAIT was set found nobody:
    // look again now that it is set (after this, they will find WAIT or G).
    let expired = deadline.is_some_and(|d| Instant::now() >= d);
    if pd.is_closing() || expired {
        let _ = sema.compare_exchange(WAIT, NONE, Ordering::AcqRel, Ordering::Acquire);
        return Err(if expired {
            timeout_error()
        } else {
            closed_error()
        });
    }
    let armed = deadline.map(|d| arm_deadline(pd, mode, d));
    let sema_addr = sema as *const AtomicUsize;
    crate::sched::park(WaitReason::IoWait, &mut |gp| {
        // SAFETY: descriptors are never freed.
        let sema = unsafe { &*sema_addr };
        // Count first: once the commit succeeds, a poller on another M
        // may wake (and uncount) this goroutine at once.
        WAITERS.fetch_add(1, Ordering::SeqCst);
        if sema
            .compare_exchange(WAIT, gp as usize, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            return true;
        }
        // An event, close or deadline came meanwhile: don't sleep.
        WAITERS.fetch_sub(1, Ordering::SeqCst);
        false
    });
    // Woken (or never parked): consume the state. READY means an event;
    // NONE a close or deadline, which the caller's next wait reports
    // after its retry fails. WAIT (cancelled park that found WAIT) cannot
    // happen: only the commit above moves WAIT.
    let _ = sema.swap(NONE, Ordering::AcqRel);
    if let Some(p) = armed {
        pd.timer_seq(mode).fetch_add(1, Ordering::AcqRel);
        crate::timer::stopped(p);
    }
    Ok(())
}

/// The deadline timer of one wait: when it fires (and is still the
/// current arming), it wakes the waiter with nothing ready.
struct Deadline {
    pd: &'static PollDesc,
    mode: Mode,
}

impl TimerTask for Deadline {
    fn fire(self: Arc<Self>, seq: u64) {
        if !self.live(seq) {
            return;
        }
        if let Some(gp) = unblock(self.pd, self.mode, false) {
            let mut list = GList::new();
            list.push_back(gp);
            ready_list(list);
        }
    }

    fn live(&self, seq: u64) -> bool {
        self.pd.timer_seq(self.mode).load(Ordering::Acquire) == seq
    }
}

/// Arms the deadline timer of a wait; returns the P whose heap holds it.
fn arm_deadline(pd: &'static PollDesc, mode: Mode, deadline: Instant) -> usize {
    let seq = pd.timer_seq(mode).fetch_add(1, Ordering::AcqRel) + 1;
    let when = crate::timer::when_after(deadline.saturating_duration_since(Instant::now()));
    crate::timer::add_task(when, Arc::new(Deadline { pd, mode }), seq)
}

/// Makes the goroutines in `list` (woken by the netpoller, a close or a
/// deadline: status still waiting) runnable.
fn ready_list(mut list: GList) {
    while let Some(gp) = list.pop_front() {
        crate::sched::ready(gp);
    }
}

/// `wait` for a thread that is not a running goroutine: poll(2) on the fd.
fn thread_wait(pd: &PollDesc, mode: Mode, deadline: Option<Instant>) -> io::Result<()> {
    let events = match mode {
        Mode::Read => libc::POLLIN | libc::POLLRDHUP,
        Mode::Write => libc::POLLOUT,
    };
    loop {
        if pd.is_closing() {
            return Err(closed_error());
        }
        let mut slice = THREAD_POLL_SLICE;
        if let Some(d) = deadline {
            let now = Instant::now();
            if now >= d {
                return Err(timeout_error());
            }
            slice = slice.min(d - now);
        }
        let mut pfd = libc::pollfd {
            fd: pd.fd.load(Ordering::Relaxed),
            events,
            revents: 0,
        };
        // Round up so a sub-millisecond remainder does not spin.
        let ms = slice.as_micros().div_ceil(1000) as libc::c_int;
        // SAFETY: `pfd` is one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n > 0 {
            return Ok(());
        }
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Polling (scheduler and sysmon side).

/// Polls for ready descriptors and returns the goroutines they wake
/// (status still waiting; `injectglist` makes them runnable). `delay`:
/// None blocks until an event or a break; zero does not block.
pub(crate) fn netpoll(delay: Option<Duration>) -> GList {
    let mut list = GList::new();
    let Some(p) = POLLER.get() else {
        return list;
    };
    let blocking = delay != Some(Duration::ZERO);
    // SAFETY: epoll_event is plain data.
    let mut events: [libc::epoll_event; EVENTS] = unsafe { std::mem::zeroed() };
    let n = epoll_wait(p.epfd, &mut events, delay);
    for ev in &events[..n] {
        let data = ev.u64;
        let bits = ev.events;
        if data == BREAK_TOKEN {
            // Only the blocking poller consumes a break (it is the one the
            // break is for); a non-blocking poll leaves it for it.
            if blocking {
                let mut buf = [0u8; 8];
                // SAFETY: reads 8 bytes into `buf` from our eventfd.
                unsafe { libc::read(p.breakfd, buf.as_mut_ptr().cast(), 8) };
                BREAK_PENDING.store(false, Ordering::Release);
            }
            continue;
        }
        let addr = data & ((1 << ADDR_BITS) - 1);
        // SAFETY: the data is a PollDesc address we registered, and
        // descriptors are never freed.
        let pd = unsafe { &*(addr as *const PollDesc) };
        let seq = (data >> ADDR_BITS) as u32;
        let cur = pd.seq.load(Ordering::Acquire) & ((1 << (64 - ADDR_BITS)) - 1);
        if seq != cur {
            continue; // an event for a closed fd whose descriptor was reused
        }
        let r = (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32;
        let w = (libc::EPOLLOUT | libc::EPOLLHUP | libc::EPOLLERR) as u32;
        if bits & r != 0 {
            if let Some(gp) = unblock(pd, Mode::Read, true) {
                list.push_back(gp);
            }
        }
        if bits & w != 0 {
            if let Some(gp) = unblock(pd, Mode::Write, true) {
                list.push_back(gp);
            }
        }
    }
    list
}

/// epoll_pwait2 (nanosecond timeout) or, on kernels without it,
/// epoll_wait with the timeout rounded up to milliseconds. Returns how
/// many events were written (0 on EINTR).
fn epoll_wait(epfd: RawFd, events: &mut [libc::epoll_event], delay: Option<Duration>) -> usize {
    let max = events.len() as libc::c_int;
    if !NO_PWAIT2.load(Ordering::Relaxed) {
        let ts = delay.map(|d| libc::timespec {
            tv_sec: d.as_secs().min(i64::MAX as u64) as libc::time_t,
            tv_nsec: d.subsec_nanos() as libc::c_long,
        });
        let tsp = ts
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: `events` has room for `max` entries; `tsp` is null or
        // points at `ts`; a null sigmask leaves the mask alone.
        let n = unsafe {
            libc::syscall(
                libc::SYS_epoll_pwait2,
                epfd,
                events.as_mut_ptr(),
                max,
                tsp,
                std::ptr::null::<libc::sigset_t>(),
                0usize,
            )
        };
        if n >= 0 {
            return n as usize;
        }
        match io::Error::last_os_error().raw_os_error() {
            Some(libc::ENOSYS) => NO_PWAIT2.store(true, Ordering::Relaxed),
            _ => return 0, // EINTR
        }
    }
    let ms = match delay {
        None => -1,
        Some(d) => d.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int,
    };
    // SAFETY: `events` has room for `max` entries.
    let n = unsafe { libc::epoll_wait(epfd, events.as_mut_ptr(), max, ms) };
    n.max(0) as usize
}

/// Breaks a blocking `netpoll` (at most one write in flight).
pub(crate) fn netpoll_break() {
    let Some(p) = POLLER.get() else { return };
    if BREAK_PENDING.swap(true, Ordering::AcqRel) {
        return;
    }
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from `one` to our eventfd; EAGAIN (counter
    // full) cannot happen with at most one write pending.
    unsafe { libc::write(p.breakfd, (&one as *const u64).cast(), 8) };
}

/// An M became the blocking poller until `until` (nanotime, u64::MAX for
/// no timer): publish it so `timer_added` can break the wait.
pub(crate) fn set_poll_until(until: u64) {
    POLL_UNTIL.store(until, Ordering::SeqCst);
}

/// A timer due at `when` was added: if the blocking poller sleeps past it,
/// break its wait (Go's `wakeNetPoller`).
pub(crate) fn timer_added(when: u64) {
    if LASTPOLL.load(Ordering::SeqCst) == 0 && when < POLL_UNTIL.load(Ordering::SeqCst) {
        netpoll_break();
    }
}
