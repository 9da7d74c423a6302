//! The execution tracer: what every goroutine, M and P did over time, as a
//! Chrome Trace Event JSON file that Perfetto UI (ui.perfetto.dev) and
//! `chrome://tracing` open as they are (docs/design.md, "Execution tracer").
//!
//! ```no_run
//! gort::exectrace::start("trace.json").expect("start the tracer");
//! gort::run(|| { /* ... */ });
//! gort::exectrace::stop().expect("write the trace");
//! ```
//!
//! Or from the environment: `GORT_TRACE=trace.json` traces from the
//! runtime's start to the process's exit; with `GORT_TRACE_FLIGHT=16MB` (or
//! `500ms`) the tracer is a **flight recorder** instead: it keeps only the
//! last 16 MB (or 500ms) of events in memory and writes them to the path on
//! demand ([`snapshot`]), on `SIGQUIT`, on a deadlock report and when a
//! panic comes out of `gort::run`.
//!
//! # What is in a trace
//!
//! - One track per M (`M1`, `M2`, …) with a slice per goroutine run
//!   (`G7`), from the moment the M switches to it to the moment it switches
//!   back, labelled with why it stopped (`yield`, `preempted`, `exit`, the
//!   wait reason of a park such as `chan receive`); syscalls
//!   (`syscall::blocking`) are slices nested in the goroutine's.
//! - One track per P with the goroutines it ran (and on which M).
//! - Wake-ups (and spawns) as small `wake G7` / `spawn G7` slices on the
//!   waker's track, with a flow arrow to the woken goroutine's next run.
//!   Wake-ups by the netpoller are `netpoll wake G7`.
//! - Instants for preemptions (`preempt async`, `preempt cooperative`) on
//!   the M that served them, sysmon's preemption requests and syscall
//!   retakes on the `sysmon` track, and deadlock reports (global).
//!
//! # How (the hot path)
//!
//! Each event site is one relaxed load of a static flag and a predictable
//! branch while tracing is off. While it is on, the thread (an M, sysmon,
//! or a plain thread waking a goroutine) appends a 16-byte record — a
//! timestamp and one packed word — to its own chunk of 4096 records: no
//! lock, no shared cache line. A full chunk goes to the global list under a
//! lock (once per 4096 events). `stop` (or a snapshot) collects the chunks,
//! sorts the records by time, pairs wake-ups with the runs they caused, and
//! writes JSON, off the hot path.
//!
//! Timestamps come from the CPU's time-stamp counter (`rdtsc`) when the
//! kernel itself trusts it as its clock (clocksource `tsc`: invariant and
//! synchronised across CPUs), else from `CLOCK_MONOTONIC` (the runtime's
//! `nanotime`); on aarch64 from the virtual counter (`cntvct_el0`). Ticks
//! are converted to nanoseconds since the runtime's start by calibrating
//! against `nanotime` at start and at the end.

use crate::g::G;
use crate::lock::Mutex;
use crate::p::P;
use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// Tracing is on: the one flag every event site reads.
static ON: AtomicBool = AtomicBool::new(false);
/// Bumped by every `start`: a thread whose buffer belongs to an older
/// trace starts a fresh chunk.
static GEN: AtomicU64 = AtomicU64::new(0);
/// Timestamps come from the TSC (x86_64) rather than nanotime.
#[cfg(target_arch = "x86_64")]
static USE_TSC: AtomicBool = AtomicBool::new(false);

/// Records per chunk (64 KiB chunks).
const CHUNK_RECS: usize = 4096;
/// Bytes per record.
const REC_BYTES: usize = 16;

// Record kinds (the low 8 bits of the packed word). The 16-bit argument
// sits above them, the goroutine id (40 bits) above that.
const K_START: u64 = 1; // arg: P id
const K_STOP: u64 = 2; // arg: STOP_* or STOP_PARK + wait reason
const K_WAKE: u64 = 3; // arg: 0 ready, 1 netpoll
const K_CREATE: u64 = 4;
const K_PREEMPT_ASYNC: u64 = 5;
const K_PREEMPT_COOP: u64 = 6;
const K_SYSCALL_ENTER: u64 = 7; // arg: P id
const K_SYSCALL_EXIT: u64 = 8; // arg: P id now held, or NO_P
const K_RETAKE_PREEMPT: u64 = 9; // arg: P id; g: its goroutine (racy)
const K_RETAKE_SYSCALL: u64 = 10; // arg: P id
const K_DEADLOCK: u64 = 11;
const K_RETAKE_BLOCKED: u64 = 12; // arg: P id; g: the goroutine blocked in the kernel

const STOP_YIELD: u64 = 0;
const STOP_PREEMPT: u64 = 1;
const STOP_EXIT: u64 = 2;
const STOP_NO_P: u64 = 3;
const STOP_PARK: u64 = 16;
const NO_P: u64 = 0xffff;

/// Why a goroutine switched back to its M (for `go_stop`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Stop {
    Yield,
    Park,
    Exit,
    Preempt,
    /// Back from a syscall, found no P: queued globally.
    NoP,
}

#[derive(Clone, Copy)]
#[repr(C)]
struct Rec {
    ts: u64,
    w: u64,
}

struct Chunk {
    /// Records written (the owner stores with Release after each record;
    /// a collector reads with Acquire and copies that many).
    len: AtomicUsize,
    recs: Box<[Cell<Rec>]>,
}

// SAFETY: records below `len` are written once, before `len` covers them
// (release), and only read after (acquire); the owner thread alone writes
// records at or above `len`.
unsafe impl Sync for Chunk {}
// SAFETY: a chunk is reached by another thread only through `Sync` access
// (above); moving it moves its boxed records along.
unsafe impl Send for Chunk {}

impl Chunk {
    fn new() -> Box<Chunk> {
        Box::new(Chunk {
            len: AtomicUsize::new(0),
            recs: (0..CHUNK_RECS)
                .map(|_| Cell::new(Rec { ts: 0, w: 0 }))
                .collect(),
        })
    }

    fn copy_out(&self, track: usize, out: &mut Vec<(Rec, usize)>) {
        let n = self.len.load(Ordering::Acquire).min(CHUNK_RECS);
        out.extend(self.recs[..n].iter().map(|r| (r.get(), track)));
    }
}

/// What a thread's track is called.
#[derive(Clone, Debug)]
enum Who {
    M(u64),
    Sysmon,
    Thread(i32),
}

/// A thread's tracing state (leaked: lives as long as the process).
struct ThreadBuf {
    /// Index in `State::threads` (the track).
    track: usize,
    /// The trace generation this buffer's chunk belongs to (owner).
    gen: Cell<u64>,
    /// The chunk being filled (owner swaps it; collectors read it).
    chunk: AtomicPtr<Chunk>,
    /// The timestamp of this thread's latest record (owner).
    last_ts: Cell<u64>,
    /// This M did something slow since its latest record: its next run
    /// start reads the clock (owner). See `go_start`.
    dirty: Cell<bool>,
}

// SAFETY: `gen`, `last_ts` and `dirty` are touched only by the owner
// thread; `chunk` is atomic.
unsafe impl Sync for ThreadBuf {}

thread_local! {
    static TB: Cell<*const ThreadBuf> = const { Cell::new(std::ptr::null()) };
}

/// How much the flight recorder keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    /// About this many bytes of records (16 bytes per event; the chunks
    /// being filled come on top: up to 64 KiB per thread).
    Bytes(usize),
    /// The events of the last this long before the snapshot.
    Duration(Duration),
}

enum Mode {
    File,
    Flight(Window),
}

struct Session {
    mode: Mode,
    path: PathBuf,
    /// The output file (full mode: created at start).
    file: Option<File>,
    /// Calibration at start: (ticks, nanotime).
    t0: (u64, u64),
    /// Full chunks, oldest first, with their track.
    full: VecDeque<(Box<Chunk>, usize)>,
    /// Flight recorder: events at or before this tick were dropped.
    cut: u64,
}

struct State {
    threads: Vec<(&'static ThreadBuf, Who)>,
    session: Option<Session>,
    /// Boxed: threads hold their chunk by address.
    #[allow(clippy::vec_box)]
    pool: Vec<Box<Chunk>>,
}

static STATE: Mutex<State> = Mutex::new(State {
    threads: Vec::new(),
    session: None,
    pool: Vec::new(),
});

/// Wait-reason names by discriminant (filled as parks are traced).
static REASONS: [AtomicPtr<&'static str>; 64] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; 64];

// ---------------------------------------------------------------------------
// Event sites (called from the scheduler; each is one flag test when off).

#[inline(always)]
fn on() -> bool {
    ON.load(Ordering::Relaxed)
}

/// `g` starts running on this M, holding `pp`.
///
/// One clock read per switch instead of two: when the M went straight from
/// the previous goroutine's stop to this start (the local run queue's fast
/// path: a few dozen ns of g0 bookkeeping), the start takes the stop's
/// timestamp. Every slower path in between (looking beyond the local run
/// queue, stealing, sleeping, polling, waking or creating an M, a locked
/// M's hand-off) marks the thread dirty (`m_dirty`, and stops that lead to
/// them), and then the start reads the clock.
#[inline(always)]
pub(crate) fn go_start(g: &G, pp: Option<&P>) {
    if on() {
        let p = pp.map_or(NO_P, |p| p.id as u64);
        emit_start(p, g.id());
    }
}

/// The M is about to do something that may take a while before its next
/// goroutine start (see `go_start`).
#[inline(always)]
pub(crate) fn m_dirty() {
    if on() {
        let tb = TB.with(|c| c.get());
        // SAFETY: a non-null TB is this thread's leaked buffer.
        if let Some(tb) = unsafe { tb.as_ref() } {
            tb.dirty.set(true);
        }
    }
}

/// `g` switched back to this M.
#[inline(always)]
pub(crate) fn go_stop(g: &G, why: Stop) {
    if on() {
        go_stop_slow(g, why);
    }
}

#[inline(never)]
fn go_stop_slow(g: &G, why: Stop) {
    let arg = match why {
        Stop::Yield => STOP_YIELD,
        // These go on to wake or park Ms, or free stacks to the global
        // pool: the next start reads the clock.
        Stop::Preempt => {
            m_dirty();
            STOP_PREEMPT
        }
        Stop::Exit => {
            m_dirty();
            STOP_EXIT
        }
        Stop::NoP => {
            m_dirty();
            STOP_NO_P
        }
        Stop::Park => {
            let r = g.waitreason.get();
            let d = (r as usize).min(REASONS.len() - 1);
            if REASONS[d].load(Ordering::Relaxed).is_null() {
                // A &'static &'static str: one leak per reason, ever.
                let name: &'static &'static str = Box::leak(Box::new(r.as_str()));
                REASONS[d].store(name as *const _ as *mut _, Ordering::Relaxed);
            }
            STOP_PARK + d as u64
        }
    };
    emit_at(K_STOP, arg, g.id(), true);
}

/// `g` is made runnable by the calling thread (before it is queued).
#[inline(always)]
pub(crate) fn wake(g: &G) {
    if on() {
        emit(K_WAKE, 0, g.id());
    }
}

/// The netpoller (run by the calling thread) made `gp` runnable.
#[inline(always)]
pub(crate) fn wake_netpoll(gp: *mut G) {
    if on() {
        // SAFETY: Gs are never freed.
        emit(K_WAKE, 1, unsafe { (*gp).id() });
    }
}

/// The calling thread spawned `g` (before it is queued).
#[inline(always)]
pub(crate) fn create(g: &G) {
    if on() {
        emit(K_CREATE, 0, g.id());
    }
}

/// The running goroutine `g` is being preempted (by signal or at a
/// cooperative check), next to the counters `stats()` reads.
#[inline(always)]
pub(crate) fn preempted(g: &G, by_signal: bool) {
    if on() {
        let k = if by_signal {
            K_PREEMPT_ASYNC
        } else {
            K_PREEMPT_COOP
        };
        emit(k, 0, g.id());
    }
}

/// `g` enters `syscall::blocking`, leaving `p` in `P_SYSCALL`.
#[inline(always)]
pub(crate) fn syscall_enter(g: &G, p: &P) {
    if on() {
        emit(K_SYSCALL_ENTER, p.id as u64, g.id());
    }
}

/// `g` is back from its syscall holding `pp` (null: none; it queues).
#[inline(always)]
pub(crate) fn syscall_exit(g: &G, pp: Option<&P>) {
    if on() {
        let p = pp.map_or(NO_P, |p| p.id as u64);
        emit(K_SYSCALL_EXIT, p, g.id());
    }
}

/// sysmon asked the goroutine on `pp` (run by `mp`) to stop.
#[inline(always)]
pub(crate) fn retake_preempt(pp: &P, mp: &crate::m::M) {
    if on() {
        // (The id may be a newer goroutine's.)
        let gid = mp.curg_ref().map_or(0, |g| g.id());
        emit(K_RETAKE_PREEMPT, pp.id as u64, gid);
    }
}

/// sysmon took `pp` back from a syscall.
#[inline(always)]
pub(crate) fn retake_syscall(pp: &P) {
    if on() {
        emit(K_RETAKE_SYSCALL, pp.id as u64, 0);
    }
}

/// sysmon took `pp` from the M of `g`, blocked in the kernel outside
/// `syscall::blocking` (an unannounced handoff).
#[inline(always)]
pub(crate) fn retake_blocked(pp: &P, g: &G) {
    if on() {
        emit(K_RETAKE_BLOCKED, pp.id as u64, g.id());
    }
}

/// A deadlock is being reported. With `fatal` the process exits next:
/// a full trace is finished; a flight recorder writes its window.
pub(crate) fn deadlock(fatal: bool) {
    if on() {
        emit(K_DEADLOCK, 0, 0);
        if fatal {
            finish_before_exit();
        } else {
            flight_dump();
        }
    }
}

/// SIGQUIT is about to end the process.
pub(crate) fn sigquit() {
    if on() {
        finish_before_exit();
    }
}

/// A panic is coming out of `gort::run`.
pub(crate) fn panic_in_run() {
    if on() {
        flight_dump();
    }
}

fn finish_before_exit() {
    let flight = matches!(
        STATE.lock().session.as_ref().map(|s| &s.mode),
        Some(Mode::Flight(_))
    );
    let r = if flight { snapshot() } else { stop() };
    if let Err(e) = r {
        crate::signal::write_stderr(format!("gort: execution trace: {e}\n").as_bytes());
    }
}

fn flight_dump() {
    let flight = matches!(
        STATE.lock().session.as_ref().map(|s| &s.mode),
        Some(Mode::Flight(_))
    );
    if flight {
        if let Err(e) = snapshot() {
            crate::signal::write_stderr(format!("gort: execution trace: {e}\n").as_bytes());
        }
    }
}

// ---------------------------------------------------------------------------
// Recording.

#[inline(always)]
fn ticks() -> u64 {
    #[cfg(target_arch = "x86_64")]
    if USE_TSC.load(Ordering::Relaxed) {
        // SAFETY: rdtsc only reads the time-stamp counter (enabled for
        // user space whenever the kernel uses it as its clocksource).
        return unsafe { core::arch::x86_64::_rdtsc() };
    }
    #[cfg(target_arch = "aarch64")]
    {
        let v: u64;
        // SAFETY: reads the virtual counter, which Linux lets user space
        // read on every aarch64 system it runs on.
        unsafe { std::arch::asm!("mrs {}, cntvct_el0", out(reg) v, options(nomem, nostack)) };
        return v;
    }
    #[allow(unreachable_code)]
    crate::timer::nanotime()
}

/// Appends one record to the calling thread's chunk.
#[inline(never)]
fn emit(kind: u64, arg: u64, gid: u64) {
    emit_at(kind, arg, gid, true)
}

/// A run start: reads the clock only if the thread is dirty.
#[inline(never)]
fn emit_start(arg: u64, gid: u64) {
    emit_at(K_START, arg, gid, false)
}

#[inline(always)]
fn emit_at(kind: u64, arg: u64, gid: u64, stamp: bool) {
    let w = kind | (arg & 0xffff) << 8 | (gid & 0xff_ffff_ffff) << 24;
    let mut tb = TB.with(|c| c.get());
    // SAFETY: a non-null TB is this thread's leaked buffer.
    if tb.is_null() || unsafe { (*tb).gen.get() } != GEN.load(Ordering::Relaxed) {
        tb = match attach() {
            Some(t) => t,
            None => return,
        };
    }
    // SAFETY: a non-null TB is this thread's leaked buffer, never freed; only
    // this thread writes its chunk at or past len.
    let tb = unsafe { &*tb };
    // SAFETY: the chunk pointer is ours and live (set by attach/rotate).
    let ch = unsafe { &*tb.chunk.load(Ordering::Relaxed) };
    let n = ch.len.load(Ordering::Relaxed);
    let ts = if stamp || tb.dirty.get() {
        tb.dirty.set(false);
        ticks()
    } else {
        tb.last_ts.get()
    };
    tb.last_ts.set(ts);
    ch.recs[n].set(Rec { ts, w });
    ch.len.store(n + 1, Ordering::Release);
    // A recycled chunk is cold: fetch the line 16 records (4 lines) ahead
    // now, so the stores there do not wait for memory.
    #[cfg(target_arch = "x86_64")]
    if n % 4 == 0 {
        let ahead = ch.recs.as_ptr().wrapping_add(n + 16) as *const i8;
        // SAFETY: a prefetch is only a hint; it never faults, even past
        // the chunk's end.
        unsafe { core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(ahead) };
    }
    if n + 1 == CHUNK_RECS {
        rotate(tb);
    }
}

/// Gives the calling thread a buffer for the current trace (registering
/// the thread on first use). None if tracing stopped meanwhile.
#[cold]
fn attach() -> Option<*const ThreadBuf> {
    let mut st = STATE.lock();
    let gen = GEN.load(Ordering::Relaxed);
    st.session.as_ref()?;
    let mut tb = TB.with(|c| c.get());
    if tb.is_null() {
        let who = match crate::m::getm() {
            Some(m) => Who::M(m.id),
            None if thread_name() == "gort-sysmon" => Who::Sysmon,
            None => Who::Thread(crate::thread::gettid()),
        };
        let new: &'static ThreadBuf = Box::leak(Box::new(ThreadBuf {
            track: st.threads.len(),
            gen: Cell::new(gen),
            chunk: AtomicPtr::new(Box::into_raw(Chunk::new())),
            last_ts: Cell::new(0),
            dirty: Cell::new(true),
        }));
        st.threads.push((new, who));
        TB.with(|c| c.set(new));
        tb = new;
    } else {
        // A chunk from an older trace: its records are stale.
        // SAFETY: our own buffer.
        let t = unsafe { &*tb };
        // SAFETY: our own chunk; collectors only read it under STATE,
        // which we hold.
        unsafe {
            (*t.chunk.load(Ordering::Relaxed))
                .len
                .store(0, Ordering::Release)
        };
        t.gen.set(gen);
        t.dirty.set(true);
    }
    Some(tb)
}

/// The calling thread's name (as set by `set_thread_name`).
fn thread_name() -> String {
    let mut buf = [0u8; 16];
    // SAFETY: PR_GET_NAME writes at most 16 bytes, NUL-terminated.
    unsafe {
        libc::prctl(
            libc::PR_GET_NAME,
            buf.as_mut_ptr() as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    let n = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// The calling thread's chunk is full: hand it over, take a fresh one.
#[cold]
fn rotate(tb: &ThreadBuf) {
    let mut st = STATE.lock();
    let fresh = st.pool.pop().unwrap_or_else(Chunk::new);
    fresh.len.store(0, Ordering::Relaxed);
    let old = tb.chunk.swap(Box::into_raw(fresh), Ordering::AcqRel);
    // SAFETY: `old` came from Box::into_raw and this thread was its only
    // writer; nobody else frees a thread's current chunk.
    let old = unsafe { Box::from_raw(old) };
    let st = &mut *st;
    let Some(sess) = st.session.as_mut() else {
        st.pool.push(old);
        return;
    };
    if tb.gen.get() != GEN.load(Ordering::Relaxed) {
        st.pool.push(old);
        return;
    }
    sess.full.push_back((old, tb.track));
    if let Mode::Flight(w) = sess.mode {
        trim(sess, &mut st.pool, w);
    }
    // The lock (and maybe an allocation) took time.
    tb.dirty.set(true);
}

/// Full mode: the thread that drains full chunks into a spill file (so
/// they can be reused) until `stop` reads them back.
struct Writer {
    quit: std::sync::Arc<AtomicBool>,
    handle: std::thread::JoinHandle<io::Result<File>>,
}

static WRITER: Mutex<Option<Writer>> = Mutex::new(None);

/// Names given with `Spawn::name` to goroutines spawned while a trace
/// runs, by goroutine id, for the labels (`G7 worker-3`). Named spawns
/// are opt-in and few; the map lives until the next `start`.
static GNAMES: std::sync::Mutex<Option<HashMap<u64, std::sync::Arc<str>>>> =
    std::sync::Mutex::new(None);

/// A goroutine was spawned with a name (called only for named spawns).
pub(crate) fn named(g: &G, name: &std::sync::Arc<str>) {
    if on() {
        GNAMES
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(HashMap::new)
            .insert(g.id(), name.clone());
    }
}

/// `G7`, or `G7 name` for a named goroutine, escaped for a JSON string.
fn glabel(names: &HashMap<u64, std::sync::Arc<str>>, g: u64) -> String {
    match names.get(&g) {
        None => format!("G{g}"),
        Some(n) => {
            let mut out = format!("G{g} ");
            for c in n.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                    c => out.push(c),
                }
            }
            out
        }
    }
}

/// How often the writer drains.
const WRITER_PERIOD: Duration = Duration::from_millis(5);

fn spawn_writer(spill: File) -> io::Result<Writer> {
    let quit = std::sync::Arc::new(AtomicBool::new(false));
    let q = quit.clone();
    let handle = std::thread::Builder::new()
        .name("gort-trace".into())
        .spawn(move || {
            let _rt = crate::deadlock::runtime_thread();
            let mut out = BufWriter::with_capacity(1 << 20, spill);
            loop {
                let done = q.load(Ordering::Acquire);
                let chunks = {
                    let mut st = STATE.lock();
                    st.session
                        .as_mut()
                        .map(|s| std::mem::take(&mut s.full))
                        .unwrap_or_default()
                };
                for (c, track) in &chunks {
                    let n = c.len.load(Ordering::Acquire).min(CHUNK_RECS);
                    out.write_all(&(*track as u64).to_ne_bytes())?;
                    out.write_all(&(n as u64).to_ne_bytes())?;
                    // SAFETY: Cell<Rec> has Rec's layout (two u64s, no
                    // padding); the chunk is full and handed over, so
                    // nobody writes it while we read.
                    let bytes = unsafe {
                        std::slice::from_raw_parts(c.recs.as_ptr() as *const u8, n * REC_BYTES)
                    };
                    out.write_all(bytes)?;
                }
                if !chunks.is_empty() {
                    STATE.lock().pool.extend(chunks.into_iter().map(|(c, _)| c));
                }
                if done {
                    break;
                }
                std::thread::sleep(WRITER_PERIOD);
            }
            out.into_inner().map_err(|e| e.into_error())
        })?;
    Ok(Writer { quit, handle })
}

/// Reads the writer's spill file back.
fn read_spill(mut f: File) -> io::Result<Vec<(Rec, usize)>> {
    use std::io::{Seek, SeekFrom};
    f.seek(SeekFrom::Start(0))?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes)?;
    let word = |b: &[u8]| u64::from_ne_bytes(b[..8].try_into().expect("8 bytes"));
    let mut out = Vec::new();
    let mut at = 0;
    while at + 16 <= bytes.len() {
        let track = word(&bytes[at..]) as usize;
        let n = word(&bytes[at + 8..]) as usize;
        at += 16;
        for _ in 0..n {
            if at + REC_BYTES > bytes.len() {
                break;
            }
            let rec = Rec {
                ts: word(&bytes[at..]),
                w: word(&bytes[at + 8..]),
            };
            out.push((rec, track));
            at += REC_BYTES;
        }
    }
    Ok(out)
}

/// Drops the flight recorder's oldest chunks beyond its window.
#[allow(clippy::vec_box)] // chunks are held by address: they stay boxed
fn trim(sess: &mut Session, pool: &mut Vec<Box<Chunk>>, w: Window) {
    let chunk_bytes = CHUNK_RECS * REC_BYTES;
    loop {
        let over = match w {
            Window::Bytes(b) => sess.full.len() * chunk_bytes > b.max(chunk_bytes),
            Window::Duration(d) => {
                // Keep a chunk while its newest record is in the window
                // measured from the newest full chunk.
                let newest = sess
                    .full
                    .back()
                    .map_or(0, |(c, _)| c.recs[CHUNK_RECS - 1].get().ts);
                let oldest_last = sess
                    .full
                    .front()
                    .map_or(u64::MAX, |(c, _)| c.recs[CHUNK_RECS - 1].get().ts);
                sess.full.len() > 1
                    && newest.saturating_sub(oldest_last) > ns_to_ticks(sess, d.as_nanos() as u64)
            }
        };
        if !over {
            return;
        }
        let Some((c, _)) = sess.full.pop_front() else {
            return;
        };
        let last = c.recs[CHUNK_RECS - 1].get().ts;
        sess.cut = sess.cut.max(last);
        pool.push(c);
    }
}

/// Roughly how many ticks `ns` nanoseconds are (calibrated so far).
fn ns_to_ticks(sess: &Session, ns: u64) -> u64 {
    let (t0, n0) = sess.t0;
    let (t1, n1) = (ticks(), crate::timer::nanotime());
    if n1 <= n0 + 1_000_000 || t1 <= t0 {
        return ns; // too early to tell: assume 1 tick per ns
    }
    (ns as f64 * (t1 - t0) as f64 / (n1 - n0) as f64) as u64
}

// ---------------------------------------------------------------------------
// Control.

/// Starts tracing into `path` (a Chrome Trace Event JSON file, written
/// when [`stop`] is called; with `GORT_TRACE`, at exit). The file is
/// created now, so an unwritable path fails here. Starts the runtime (from
/// the environment) if it is not running yet.
///
/// Errors: a trace is already running, or `path` cannot be created.
pub fn start(path: impl AsRef<Path>) -> io::Result<()> {
    begin(path.as_ref(), Mode::File)
}

/// Starts the flight recorder: events are kept in memory, only the last
/// `window` of them; [`snapshot`] writes them to `path` (created now, to
/// check it can be), as do `SIGQUIT`, a deadlock report and a panic
/// coming out of `gort::run`.
pub fn start_flight(path: impl AsRef<Path>, window: Window) -> io::Result<()> {
    begin(path.as_ref(), Mode::Flight(window))
}

fn begin(path: &Path, mode: Mode) -> io::Result<()> {
    if let Mode::Flight(Window::Bytes(0)) | Mode::Flight(Window::Duration(Duration::ZERO)) = mode {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "gort: a flight recorder's window must not be empty",
        ));
    }
    crate::runtime::ensure_started();
    let mut st = STATE.lock();
    if st.session.is_some() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "gort: an execution trace is already running (call gort::exectrace::stop first)",
        ));
    }
    let file = File::create(path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("gort: cannot create the trace file {}: {e}", path.display()),
        )
    })?;
    choose_clock();
    *GNAMES.lock().unwrap_or_else(|e| e.into_inner()) = None;
    // Full mode: a writer drains full chunks into a spill file beside the
    // trace (unlinked at once: only our descriptor keeps it).
    let spill = match mode {
        Mode::File => {
            let name = path
                .file_name()
                .map_or_else(|| "trace".into(), |n| n.to_string_lossy().into_owned());
            let spill_path = path.with_file_name(format!(".{name}.gort-spill"));
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&spill_path)
                .map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("gort: cannot create {}: {e}", spill_path.display()),
                    )
                })?;
            let _ = std::fs::remove_file(&spill_path);
            Some(f)
        }
        Mode::Flight(_) => None,
    };
    st.session = Some(Session {
        file: match mode {
            Mode::File => Some(file),
            Mode::Flight(_) => None,
        },
        mode,
        path: path.to_path_buf(),
        t0: (ticks(), crate::timer::nanotime()),
        full: VecDeque::new(),
        cut: 0,
    });
    drop(st);
    if let Some(f) = spill {
        match spawn_writer(f) {
            Ok(w) => *WRITER.lock() = Some(w),
            Err(e) => {
                STATE.lock().session = None;
                return Err(e);
            }
        }
    }
    GEN.fetch_add(1, Ordering::Relaxed);
    ON.store(true, Ordering::Release);
    Ok(())
}

/// Picks the timestamp source (see the module docs).
fn choose_clock() {
    #[cfg(target_arch = "x86_64")]
    {
        let cs = std::fs::read_to_string(
            "/sys/devices/system/clocksource/clocksource0/current_clocksource",
        )
        .unwrap_or_default();
        USE_TSC.store(cs.trim() == "tsc", Ordering::Relaxed);
    }
}

/// Stops tracing. A full trace is written to its file now; a flight
/// recorder is discarded (call [`snapshot`] first to keep it). Errors if
/// no trace is running or the file cannot be written.
pub fn stop() -> io::Result<()> {
    ON.store(false, Ordering::SeqCst);
    let writer = WRITER.lock().take();
    let spilled: io::Result<Vec<(Rec, usize)>> = match writer {
        Some(w) => {
            w.quit.store(true, Ordering::Release);
            w.handle
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the trace writer thread panicked")))
                .and_then(read_spill)
        }
        None => Ok(Vec::new()),
    };
    let (sess, mut recs, names, end) = {
        let mut st = STATE.lock();
        let Some(mut sess) = st.session.take() else {
            return Err(io::Error::other("gort: no execution trace is running"));
        };
        let recs = collect(&st, &sess);
        let names: Vec<Who> = st.threads.iter().map(|(_, w)| w.clone()).collect();
        let full = std::mem::take(&mut sess.full);
        st.pool.extend(full.into_iter().map(|(c, _)| c));
        (sess, recs, names, (ticks(), crate::timer::nanotime()))
    };
    let file = match sess.file {
        Some(ref f) => f.try_clone()?,
        None => return Ok(()),
    };
    // (The session is gone either way: a failed trace does not block the
    // next one.)
    let spilled = spilled.map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("gort: cannot write the trace {}: {e}", sess.path.display()),
        )
    })?;
    recs.extend(spilled);
    write_json(file, &sess, recs, &names, end, None).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("gort: cannot write the trace {}: {e}", sess.path.display()),
        )
    })
}

/// Writes the flight recorder's window to its path (replacing what was
/// there). Tracing goes on. Errors if no flight recorder is running.
pub fn snapshot() -> io::Result<()> {
    let (recs, names, path, cut, t0, window) = {
        let st = STATE.lock();
        let Some(sess) = st.session.as_ref() else {
            return Err(io::Error::other("gort: no flight recorder is running"));
        };
        let Mode::Flight(w) = sess.mode else {
            return Err(io::Error::other(
                "gort: the running trace is not a flight recorder",
            ));
        };
        let recs = collect(&st, sess);
        let names: Vec<Who> = st.threads.iter().map(|(_, w)| w.clone()).collect();
        (recs, names, sess.path.clone(), sess.cut, sess.t0, w)
    };
    let end = (ticks(), crate::timer::nanotime());
    let sess = Session {
        mode: Mode::Flight(window),
        path: path.clone(),
        file: None,
        t0,
        full: VecDeque::new(),
        cut,
    };
    let file = File::create(&path)?;
    let keep_from = match window {
        Window::Duration(d) => Some(end.1.saturating_sub(d.as_nanos() as u64)),
        Window::Bytes(_) => None,
    };
    write_json(file, &sess, recs, &names, end, keep_from).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("gort: cannot write the trace {}: {e}", path.display()),
        )
    })
}

/// Whether a trace (full or flight recorder) is running.
pub fn is_running() -> bool {
    on()
}

/// Every record of the session: full chunks, then each thread's current
/// chunk (STATE held by the caller).
fn collect(st: &State, sess: &Session) -> Vec<(Rec, usize)> {
    let mut out = Vec::with_capacity((sess.full.len() + st.threads.len()) * CHUNK_RECS);
    for (c, track) in &sess.full {
        c.copy_out(*track, &mut out);
    }
    let gen = GEN.load(Ordering::Relaxed);
    for (tb, _) in &st.threads {
        if tb.gen.get() != gen {
            continue; // stale (the owner resets it on its next event)
        }
        // SAFETY: a thread's current chunk is only freed by rotate, under
        // STATE, which we hold.
        let c = unsafe { &*tb.chunk.load(Ordering::Acquire) };
        c.copy_out(tb.track, &mut out);
    }
    out.retain(|(r, _)| r.ts > sess.cut);
    out
}

/// `GORT_TRACE` / `GORT_TRACE_FLIGHT`, checked before the runtime starts.
pub(crate) struct EnvPlan {
    path: PathBuf,
    window: Option<Window>,
}

/// Reads the environment. Bad values are errors naming the variable.
pub(crate) fn from_env() -> Result<Option<EnvPlan>, crate::runtime::Error> {
    let path = match std::env::var_os("GORT_TRACE") {
        None => return Ok(None),
        Some(p) if p.is_empty() => return Ok(None),
        Some(p) => PathBuf::from(p),
    };
    let window = match std::env::var("GORT_TRACE_FLIGHT") {
        Err(std::env::VarError::NotPresent) => None,
        Ok(v) if v.trim().is_empty() => None,
        Ok(v) => Some(
            parse_window(&v).ok_or_else(|| crate::runtime::Error::BadEnv {
                var: "GORT_TRACE_FLIGHT",
                value: v.clone(),
                expected: "a size (64KB, 16MB, 1GB) or a duration (500ms, 2s)",
            })?,
        ),
        Err(std::env::VarError::NotUnicode(v)) => {
            return Err(crate::runtime::Error::BadEnv {
                var: "GORT_TRACE_FLIGHT",
                value: v.to_string_lossy().into_owned(),
                expected: "a size (64KB, 16MB, 1GB) or a duration (500ms, 2s)",
            })
        }
    };
    // Fail now, with the variable's name, rather than at the first event.
    if let Err(e) = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
    {
        let expected: &'static str =
            Box::leak(format!("a path where the trace file can be created ({e})").into_boxed_str());
        return Err(crate::runtime::Error::BadEnv {
            var: "GORT_TRACE",
            value: path.display().to_string(),
            expected,
        });
    }
    Ok(Some(EnvPlan { path, window }))
}

/// `16MB`, `64KB`, `1GB`, `4096B` or `500ms`, `2s`, `100us`.
pub(crate) fn parse_window(v: &str) -> Option<Window> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = v.split_at(split);
    let n: u64 = num.parse().ok()?;
    if n == 0 {
        return None;
    }
    let w = match unit.trim() {
        "B" => Window::Bytes(n as usize),
        "KB" | "KiB" => Window::Bytes((n as usize).checked_mul(1 << 10)?),
        "MB" | "MiB" => Window::Bytes((n as usize).checked_mul(1 << 20)?),
        "GB" | "GiB" => Window::Bytes((n as usize).checked_mul(1 << 30)?),
        "us" | "µs" => Window::Duration(Duration::from_micros(n)),
        "ms" => Window::Duration(Duration::from_millis(n)),
        "s" => Window::Duration(Duration::from_secs(n)),
        _ => return None,
    };
    Some(w)
}

/// Starts what `from_env` found (the runtime is up).
pub(crate) fn start_from_env(plan: EnvPlan) {
    let r = match plan.window {
        None => start(&plan.path),
        Some(w) => start_flight(&plan.path, w),
    };
    match r {
        Ok(()) => {
            if plan.window.is_none() {
                extern "C" fn at_exit() {
                    if on() {
                        if let Err(e) = stop() {
                            crate::signal::write_stderr(
                                format!("gort: execution trace: {e}\n").as_bytes(),
                            );
                        }
                    }
                }
                // SAFETY: registers a plain function to run at exit().
                unsafe { libc::atexit(at_exit) };
            }
        }
        Err(e) => crate::signal::write_stderr(format!("gort: GORT_TRACE: {e}\n").as_bytes()),
    }
}

// ---------------------------------------------------------------------------
// Formatting (off the hot path).

struct Slice {
    g: u64,
    start: u64,
    p: u64,
    flow_in: u64,
}

fn track_tid(i: usize) -> u64 {
    i as u64 + 1
}

const P_TID_BASE: u64 = 100_000;

fn write_json(
    file: File,
    sess: &Session,
    mut recs: Vec<(Rec, usize)>,
    names: &[Who],
    end: (u64, u64),
    keep_from_ns: Option<u64>,
) -> io::Result<()> {
    // Ticks to ns since the runtime started.
    let (t0, n0) = sess.t0;
    let (mut t1, mut n1) = end;
    if n1 < n0 + 10_000_000 {
        // Too short to calibrate well: wait until 10ms have passed.
        std::thread::sleep(Duration::from_nanos(n0 + 10_000_000 - n1));
        t1 = ticks();
        n1 = crate::timer::nanotime();
    }
    let scale = if t1 > t0 {
        (n1 - n0) as f64 / (t1 - t0) as f64
    } else {
        1.0
    };
    let to_ns = |t: u64| -> u64 {
        let d = t as f64 - t0 as f64;
        (n0 as f64 + d * scale).max(0.0) as u64
    };
    let end_ns = to_ns(end.0);
    for (r, _) in recs.iter_mut() {
        r.ts = to_ns(r.ts);
    }
    // Wakes before the runs they cause when stamps tie.
    recs.sort_by_key(|(r, _)| {
        let k = r.w & 0xff;
        (r.ts, u64::from(k != K_WAKE && k != K_CREATE))
    });
    if let Some(from) = keep_from_ns {
        recs.retain(|(r, _)| r.ts >= from);
    }
    let begin_ns = recs.first().map_or(end_ns, |(r, _)| r.ts);

    let mut out = BufWriter::with_capacity(1 << 20, file);
    writeln!(out, "{{\"displayTimeUnit\":\"ns\",\"traceEvents\":[")?;
    writeln!(
        out,
        "{{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":1,\"args\":{{\"name\":\"gort threads (Ms)\"}}}},"
    )?;
    writeln!(
        out,
        "{{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":2,\"args\":{{\"name\":\"gort processors (Ps)\"}}}},"
    )?;
    for (i, who) in names.iter().enumerate() {
        let (name, order) = match who {
            Who::M(id) => (format!("M{id}"), *id as i64),
            Who::Sysmon => ("sysmon".to_string(), -1),
            Who::Thread(tid) => (format!("thread {tid}"), 1_000_000 + i as i64),
        };
        writeln!(
            out,
            "{{\"ph\":\"M\",\"name\":\"thread_name\",\"pid\":1,\"tid\":{},\"args\":{{\"name\":\"{name}\"}}}},",
            track_tid(i)
        )?;
        writeln!(
            out,
            "{{\"ph\":\"M\",\"name\":\"thread_sort_index\",\"pid\":1,\"tid\":{},\"args\":{{\"sort_index\":{order}}}}},",
            track_tid(i)
        )?;
    }
    let procs = crate::sched::try_sched().map_or(0, |s| s.procs());
    for p in 0..procs {
        writeln!(
            out,
            "{{\"ph\":\"M\",\"name\":\"thread_name\",\"pid\":2,\"tid\":{},\"args\":{{\"name\":\"P{p}\"}}}},",
            P_TID_BASE + p as u64
        )?;
    }

    let mut run: Vec<Option<Slice>> = (0..names.len()).map(|_| None).collect();
    let mut sys: Vec<Option<(u64, u64)>> = vec![None; names.len()];
    let mut pslice: HashMap<u64, (u64, u64, usize)> = HashMap::new(); // p -> (g, start, track)
    let mut pending_flow: HashMap<u64, u64> = HashMap::new();
    let mut next_flow = 1u64;
    let gnames = GNAMES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .unwrap_or_default();
    let mut w = JsonEvents {
        out: &mut out,
        gnames,
    };

    for (r, track) in &recs {
        let (ts, kind) = (r.ts, r.w & 0xff);
        let arg = (r.w >> 8) & 0xffff;
        let g = r.w >> 24;
        let tid = track_tid(*track);
        match kind {
            K_START => {
                if let Some(s) = run[*track].take() {
                    // Its stop was lost (before a cut): end it here.
                    w.run_slice(tid, &s, ts, "unknown")?;
                }
                let flow_in = pending_flow.remove(&g).unwrap_or(0);
                run[*track] = Some(Slice {
                    g,
                    start: ts,
                    p: arg,
                    flow_in,
                });
                if arg != NO_P {
                    close_p(&mut w, &mut pslice, arg, ts)?;
                    pslice.insert(arg, (g, ts, *track));
                }
            }
            K_STOP => {
                let why = stop_name(arg);
                let s = run[*track].take().unwrap_or(Slice {
                    g,
                    start: begin_ns,
                    p: NO_P,
                    flow_in: 0,
                });
                if let Some((st, _)) = sys[*track].take() {
                    w.syscall_slice(tid, g, st, ts, NO_P)?;
                }
                w.run_slice(tid, &s, ts, &why)?;
                if s.p != NO_P {
                    close_p(&mut w, &mut pslice, s.p, ts)?;
                }
            }
            K_WAKE | K_CREATE => {
                let id = next_flow;
                next_flow += 1;
                pending_flow.insert(g, id);
                let name = match (kind, arg) {
                    (K_CREATE, _) => "spawn",
                    (_, 1) => "netpoll wake",
                    _ => "wake",
                };
                let label = glabel(&w.gnames, g);
                w.raw(format_args!(
                    "{{\"ph\":\"X\",\"cat\":\"wake\",\"name\":\"{name} {label}\",\"pid\":1,\"tid\":{tid},\"ts\":{},\"dur\":0,\"bind_id\":{id},\"flow_out\":true,\"args\":{{\"g\":{g}}}}}",
                    Us(ts)
                ))?;
            }
            K_PREEMPT_ASYNC | K_PREEMPT_COOP => {
                let name = if kind == K_PREEMPT_ASYNC {
                    "preempt async"
                } else {
                    "preempt cooperative"
                };
                w.instant(tid, ts, name, "preempt", g, "t")?;
            }
            K_SYSCALL_ENTER => {
                sys[*track] = Some((ts, g));
                close_p(&mut w, &mut pslice, arg, ts)?;
                if let Some(s) = run[*track].as_mut() {
                    s.p = NO_P;
                }
            }
            K_SYSCALL_EXIT => {
                let st = sys[*track].take().map_or(begin_ns, |(st, _)| st);
                w.syscall_slice(tid, g, st, ts, arg)?;
                if arg != NO_P {
                    if let Some(s) = run[*track].as_mut() {
                        s.p = arg;
                    }
                    close_p(&mut w, &mut pslice, arg, ts)?;
                    pslice.insert(arg, (g, ts, *track));
                }
            }
            K_RETAKE_PREEMPT => {
                w.raw(format_args!(
                    "{{\"ph\":\"i\",\"s\":\"t\",\"cat\":\"sysmon\",\"name\":\"retake: preempt P{arg}\",\"pid\":1,\"tid\":{tid},\"ts\":{},\"args\":{{\"p\":{arg},\"g\":{g}}}}}",
                    Us(ts)
                ))?;
            }
            K_RETAKE_SYSCALL => {
                w.raw(format_args!(
                    "{{\"ph\":\"i\",\"s\":\"t\",\"cat\":\"sysmon\",\"name\":\"retake: handoff P{arg} from syscall\",\"pid\":1,\"tid\":{tid},\"ts\":{},\"args\":{{\"p\":{arg}}}}}",
                    Us(ts)
                ))?;
            }
            K_RETAKE_BLOCKED => {
                w.raw(format_args!(
                    "{{\"ph\":\"i\",\"s\":\"t\",\"cat\":\"sysmon\",\"name\":\"retake: handoff P{arg} from G{g} blocked in the kernel\",\"pid\":1,\"tid\":{tid},\"ts\":{},\"args\":{{\"p\":{arg},\"g\":{g}}}}}",
                    Us(ts)
                ))?;
            }
            K_DEADLOCK => {
                w.instant(tid, ts, "deadlock", "deadlock", 0, "g")?;
            }
            _ => {}
        }
    }
    // Still running at the end.
    for (track, s) in run.iter().enumerate() {
        if let Some(s) = s {
            if let Some((st, g)) = sys[track] {
                w.syscall_slice(track_tid(track), g, st, end_ns.max(st), NO_P)?;
            }
            w.run_slice(track_tid(track), s, end_ns.max(s.start), "running")?;
        }
    }
    let ps: Vec<u64> = pslice.keys().copied().collect();
    for p in ps {
        close_p(&mut w, &mut pslice, p, end_ns)?;
    }
    writeln!(
        out,
        "{{\"ph\":\"M\",\"name\":\"gort_trace_end\",\"pid\":1,\"args\":{{\"end_us\":{},\"clock\":\"{}\"}}}}\n]}}",
        Us(end_ns),
        clock_name()
    )?;
    out.flush()
}

fn clock_name() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    if USE_TSC.load(Ordering::Relaxed) {
        return "tsc";
    }
    #[cfg(target_arch = "aarch64")]
    return "cntvct";
    #[allow(unreachable_code)]
    "monotonic"
}

fn close_p(
    w: &mut JsonEvents<'_>,
    pslice: &mut HashMap<u64, (u64, u64, usize)>,
    p: u64,
    ts: u64,
) -> io::Result<()> {
    if let Some((g, start, track)) = pslice.remove(&p) {
        let m = track_tid(track);
        let label = glabel(&w.gnames, g);
        w.raw(format_args!(
            "{{\"ph\":\"X\",\"cat\":\"p\",\"name\":\"{label}\",\"pid\":2,\"tid\":{},\"ts\":{},\"dur\":{},\"args\":{{\"g\":{g},\"track\":{m}}}}}",
            P_TID_BASE + p,
            Us(start),
            Us(ts.saturating_sub(start))
        ))?;
    }
    Ok(())
}

fn stop_name(arg: u64) -> String {
    match arg {
        STOP_YIELD => "yield".into(),
        STOP_PREEMPT => "preempted".into(),
        STOP_EXIT => "exit".into(),
        STOP_NO_P => "syscall exit, no P".into(),
        a if a >= STOP_PARK => {
            let d = (a - STOP_PARK) as usize;
            let name = REASONS
                .get(d)
                .map(|r| r.load(Ordering::Relaxed))
                .filter(|p| !p.is_null())
                // SAFETY: entries are leaked &'static str boxes.
                .map_or("park", |p| unsafe { *p });
            name.to_string()
        }
        _ => "?".into(),
    }
}

/// Nanoseconds printed as microseconds with three decimals.
struct Us(u64);

impl std::fmt::Display for Us {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:03}", self.0 / 1000, self.0 % 1000)
    }
}

struct JsonEvents<'a> {
    out: &'a mut BufWriter<File>,
    gnames: HashMap<u64, std::sync::Arc<str>>,
}

impl JsonEvents<'_> {
    fn raw(&mut self, a: std::fmt::Arguments<'_>) -> io::Result<()> {
        self.out.write_fmt(a)?;
        self.out.write_all(b",\n")
    }

    fn run_slice(&mut self, tid: u64, s: &Slice, end: u64, why: &str) -> io::Result<()> {
        let g = s.g;
        let flow = if s.flow_in != 0 {
            format!(",\"bind_id\":{},\"flow_in\":true", s.flow_in)
        } else {
            String::new()
        };
        let label = glabel(&self.gnames, g);
        self.raw(format_args!(
            "{{\"ph\":\"X\",\"cat\":\"run\",\"name\":\"{label}\",\"pid\":1,\"tid\":{tid},\"ts\":{},\"dur\":{}{flow},\"args\":{{\"g\":{g},\"end\":\"{why}\"}}}}",
            Us(s.start),
            Us(end.saturating_sub(s.start))
        ))
    }

    fn syscall_slice(&mut self, tid: u64, g: u64, start: u64, end: u64, p: u64) -> io::Result<()> {
        let p = if p == NO_P { -1 } else { p as i64 };
        self.raw(format_args!(
            "{{\"ph\":\"X\",\"cat\":\"syscall\",\"name\":\"syscall\",\"pid\":1,\"tid\":{tid},\"ts\":{},\"dur\":{},\"args\":{{\"g\":{g},\"p_after\":{p}}}}}",
            Us(start),
            Us(end.saturating_sub(start))
        ))
    }

    fn instant(
        &mut self,
        tid: u64,
        ts: u64,
        name: &str,
        cat: &str,
        g: u64,
        scope: &str,
    ) -> io::Result<()> {
        self.raw(format_args!(
            "{{\"ph\":\"i\",\"s\":\"{scope}\",\"cat\":\"{cat}\",\"name\":\"{name}\",\"pid\":1,\"tid\":{tid},\"ts\":{},\"args\":{{\"g\":{g}}}}}",
            Us(ts)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows() {
        assert_eq!(parse_window("16MB"), Some(Window::Bytes(16 << 20)));
        assert_eq!(parse_window("64KB"), Some(Window::Bytes(64 << 10)));
        assert_eq!(
            parse_window("500ms"),
            Some(Window::Duration(Duration::from_millis(500)))
        );
        assert_eq!(
            parse_window(" 2s "),
            Some(Window::Duration(Duration::from_secs(2)))
        );
        for bad in ["", "MB", "0MB", "12", "1.5MB", "-1s", "3 parsecs"] {
            assert_eq!(parse_window(bad), None, "{bad}");
        }
    }

    #[test]
    fn us_format() {
        assert_eq!(Us(1_234_567).to_string(), "1234.567");
        assert_eq!(Us(5).to_string(), "0.005");
    }
}
