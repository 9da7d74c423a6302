//! Goroutine tracebacks: where each goroutine is, for dumps (SIGQUIT,
//! `gort::dump()`, the deadlock report).
//!
//! # Collect cheaply, symbolize lazily
//!
//! A traceback is first a list of code addresses, then names. Addresses are
//! collected by unwinding the goroutine's stack with its DWARF CFI
//! (`.eh_frame`, which every Rust binary keeps, with or without debug info
//! or frame pointers), through the `framehop` crate: it starts from any
//! register set, reads the stack through a callback we control, and does
//! not allocate while unwinding, so it can run in a signal handler.
//! Names, files and lines (inlined frames included) come afterwards, off
//! any signal handler, from the executable's DWARF through `addr2line`.
//!
//! Where the registers come from:
//!
//! - **A goroutine that is not running** (waiting, runnable, preempted) has
//!   its context saved on its own stack by `gort_switch`: the saved stack
//!   pointer leads to the frame that holds the resume address and frame
//!   pointer (see `arch::saved_context`). Its stack may start running on
//!   another M at any moment (a runnable goroutine), so it is copied first
//!   with `process_vm_readv` — which fails with EFAULT instead of faulting
//!   on memory that is gone — and unwound from the copy; a goroutine whose
//!   saved context changed during the copy is reported as having moved.
//! - **A running goroutine** is asked through its M: the dumper sets the
//!   M's `TracebackSlot` to REQUESTED and sends SIGURG; the handler, on that
//!   thread, unwinds from the interrupted context (the goroutine is frozen
//!   while the handler runs) into the slot's fixed buffer, reading only the
//!   goroutine's own stack, and marks it DONE. This is what Go does for
//!   `GOTRACEBACK=all` on SIGQUIT.
//! - **A goroutine in a system call** (`syscall::blocking`) is not
//!   signalled: the signal would cut short calls with timeouts (EINTR).
//!   Its header says so.
//!
//! # How much (`GORT_TRACEBACK`, like Go's `GOTRACEBACK`)
//!
//! `none`: headers only; `single`: frames only for the goroutine that asks
//! for the dump; `all` (default): frames for every goroutine, runtime
//! frames hidden; `system`: every frame, gort's own and the entry glue
//! included.

use crate::g::{G, G_RUNNABLE, G_RUNNING, G_SYSCALL, G_WAITING};
use crate::m::M;
use framehop::{FrameAddress, MustNotAllocateDuringUnwind, Unwinder};
use std::cell::UnsafeCell;
use std::fmt::Write;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// At most this many frames per goroutine (Go prints 100).
pub(crate) const MAX_FRAMES: usize = 100;

/// How long a dump waits for a running goroutine's M to answer.
const CAPTURE_TIMEOUT: Duration = Duration::from_millis(200);

type NativeUnwinder = framehop::UnwinderNative<&'static [u8], MustNotAllocateDuringUnwind>;
type NativeCache = framehop::CacheNative<MustNotAllocateDuringUnwind>;

// ---------------------------------------------------------------------------
// Settings.

/// How much a dump shows (`GORT_TRACEBACK`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Level {
    None,
    Single,
    All,
    System,
}

impl Level {
    /// Parses a `GORT_TRACEBACK` value.
    pub(crate) fn parse(v: &str) -> Result<Level, String> {
        match v {
            "none" | "0" => Ok(Level::None),
            "single" | "" => Ok(Level::Single),
            "all" | "1" => Ok(Level::All),
            "system" | "2" | "crash" => Ok(Level::System),
            _ => Err(format!(
                "GORT_TRACEBACK={v:?}: expected none, single, all or system"
            )),
        }
    }
}

/// The level in force: `GORT_TRACEBACK`, else `all`. A bad value was
/// already rejected when the runtime started (runtime.rs); here it falls
/// back to the default.
pub(crate) fn level() -> Level {
    static LEVEL: OnceLock<Level> = OnceLock::new();
    *LEVEL.get_or_init(|| match std::env::var("GORT_TRACEBACK") {
        Ok(v) => Level::parse(&v).unwrap_or(Level::All),
        Err(_) => Level::All,
    })
}

// ---------------------------------------------------------------------------
// The unwinder: every loaded object's .eh_frame, found in memory.

fn unwinder() -> &'static NativeUnwinder {
    static UNWINDER: OnceLock<NativeUnwinder> = OnceLock::new();
    UNWINDER.get_or_init(|| {
        let mut u = NativeUnwinder::new();
        for m in loaded_objects() {
            u.add_module(m);
        }
        u
    })
}

/// One framehop module per loaded object with unwind information.
fn loaded_objects() -> Vec<framehop::Module<&'static [u8]>> {
    extern "C" fn each(
        info: *mut libc::dl_phdr_info,
        _size: usize,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: dl_iterate_phdr passes a valid info for the duration of
        // the call; `data` is the Vec passed below.
        let (info, out) = unsafe {
            (
                &*info,
                &mut *(data as *mut Vec<framehop::Module<&'static [u8]>>),
            )
        };
        // SAFETY: the object is mapped while we look (objects are not
        // unloaded during a dump: gort never dlcloses, and a program that
        // does is told so in docs/design.md).
        if let Some(m) = unsafe { module_of(info) } {
            out.push(m);
        }
        0
    }
    let mut out: Vec<framehop::Module<&'static [u8]>> = Vec::new();
    // SAFETY: the callback only reads the headers it is given and pushes
    // into `out`, which outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(each), &mut out as *mut _ as *mut libc::c_void) };
    out
}

const PT_LOAD: u32 = 1;
const PT_GNU_EH_FRAME: u32 = 0x6474_e550;
const PF_X: u32 = 1;

/// # Safety
/// `info` must describe an object that stays mapped.
unsafe fn module_of(info: &libc::dl_phdr_info) -> Option<framehop::Module<&'static [u8]>> {
    let bias = info.dlpi_addr;
    // SAFETY: dl_iterate_phdr guarantees dlpi_phnum headers at dlpi_phdr.
    let phdrs = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) };
    let text = phdrs
        .iter()
        .find(|p| p.p_type == PT_LOAD && p.p_flags & PF_X != 0)?;
    let hdr = phdrs.iter().find(|p| p.p_type == PT_GNU_EH_FRAME)?;
    let text_svma = text.p_vaddr..text.p_vaddr + text.p_memsz;
    let hdr_svma = hdr.p_vaddr..hdr.p_vaddr + hdr.p_memsz;
    // SAFETY: PT_GNU_EH_FRAME is mapped read-only for the object's life.
    let hdr_bytes: &'static [u8] = unsafe {
        std::slice::from_raw_parts((bias + hdr.p_vaddr) as *const u8, hdr.p_memsz as usize)
    };
    let eh_frame_avma = eh_frame_address(hdr_bytes, bias + hdr.p_vaddr)?;
    // The .eh_frame section's length is not in the header: walk its records
    // to the zero terminator (or the end of the segment holding it).
    let seg = phdrs.iter().find(|p| {
        p.p_type == PT_LOAD
            && (bias + p.p_vaddr..bias + p.p_vaddr + p.p_memsz).contains(&eh_frame_avma)
    })?;
    let seg_end = bias + seg.p_vaddr + seg.p_memsz;
    let mut at = eh_frame_avma;
    while at + 4 <= seg_end {
        // SAFETY: inside the mapped segment (checked against seg_end).
        let len = unsafe { (at as *const u32).read_unaligned() } as u64;
        if len == 0 || len == 0xffff_ffff {
            break; // terminator (64-bit DWARF lengths do not occur in .eh_frame)
        }
        at += 4 + len;
    }
    let at = at.min(seg_end);
    // SAFETY: [eh_frame_avma, at) lies in the mapped segment.
    let eh_frame: &'static [u8] = unsafe {
        std::slice::from_raw_parts(eh_frame_avma as *const u8, (at - eh_frame_avma) as usize)
    };
    // SAFETY: dlpi_name is a NUL-terminated string ("" for the executable).
    let name = unsafe { std::ffi::CStr::from_ptr(info.dlpi_name) }
        .to_string_lossy()
        .into_owned();
    let eh_svma = eh_frame_avma - bias..at - bias;
    Some(framehop::Module::new(
        if name.is_empty() { "exe".into() } else { name },
        bias + text_svma.start..bias + text_svma.end,
        bias,
        framehop::ExplicitModuleSectionInfo {
            base_svma: 0,
            text_svma: Some(text_svma),
            eh_frame_svma: Some(eh_svma),
            eh_frame: Some(eh_frame),
            eh_frame_hdr_svma: Some(hdr_svma),
            eh_frame_hdr: Some(hdr_bytes),
            ..Default::default()
        },
    ))
}

/// The address of `.eh_frame` from an `.eh_frame_hdr` at `hdr_avma`.
fn eh_frame_address(hdr: &[u8], hdr_avma: u64) -> Option<u64> {
    const DW_EH_PE_PCREL: u8 = 0x10;
    const DW_EH_PE_DATAREL: u8 = 0x30;
    if hdr.len() < 8 || hdr[0] != 1 {
        return None;
    }
    let enc = hdr[1];
    let field = hdr_avma + 4;
    let (value, _) = match enc & 0x0f {
        0x0b => (
            i32::from_le_bytes(hdr[4..8].try_into().ok()?) as i64 as u64,
            4,
        ), // sdata4
        0x03 => (u32::from_le_bytes(hdr[4..8].try_into().ok()?) as u64, 4), // udata4
        0x0c | 0x04 if hdr.len() >= 12 => (u64::from_le_bytes(hdr[4..12].try_into().ok()?), 8),
        _ => return None,
    };
    match enc & 0x70 {
        0 => Some(value),
        DW_EH_PE_PCREL => Some(field.wrapping_add(value)),
        DW_EH_PE_DATAREL => Some(hdr_avma.wrapping_add(value)),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Collected addresses.

/// The code addresses of one goroutine's frames, innermost first.
#[derive(Clone)]
pub(crate) struct Frames {
    pcs: [u64; MAX_FRAMES],
    n: usize,
    /// More frames than `MAX_FRAMES`.
    truncated: bool,
}

impl Frames {
    pub(crate) const fn new() -> Frames {
        Frames {
            pcs: [0; MAX_FRAMES],
            n: 0,
            truncated: false,
        }
    }

    pub(crate) fn pcs(&self) -> &[u64] {
        &self.pcs[..self.n]
    }
}

/// Where an unwind starts: the program counter and the registers the
/// architecture's unwinding needs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Regs {
    pub(crate) pc: u64,
    pub(crate) sp: u64,
    pub(crate) fp: u64,
    /// aarch64: the link register (unused on x86_64).
    pub(crate) lr: u64,
}

/// Unwinds from `regs` into `out`, reading stack words with `read`. The
/// first address is the pc itself; the others are return addresses (stored
/// minus one, so that they fall inside the call instruction: symbolization
/// then names the right line and inlined frame). Does not allocate.
/// Returns whether the walk reached the stack's end (rather than a frame
/// it could not unwind).
fn unwind<F: FnMut(u64) -> Result<u64, ()>>(
    regs: Regs,
    cache: &mut NativeCache,
    read: &mut F,
    out: &mut Frames,
) -> bool {
    out.n = 0;
    out.truncated = false;
    #[cfg(target_arch = "x86_64")]
    let uregs = framehop::x86_64::UnwindRegsX86_64::new(regs.pc, regs.sp, regs.fp);
    #[cfg(target_arch = "aarch64")]
    let uregs = framehop::aarch64::UnwindRegsAarch64::new(regs.lr, regs.sp, regs.fp);
    let mut iter = unwinder().iter_frames(regs.pc, uregs, cache, read);
    loop {
        let frame = match iter.next() {
            Ok(Some(frame)) => frame,
            Ok(None) => return true,
            Err(_) => return false,
        };
        if out.n == MAX_FRAMES {
            out.truncated = true;
            return true;
        }
        out.pcs[out.n] = match frame {
            FrameAddress::InstructionPointer(pc) => pc,
            FrameAddress::ReturnAddress(ra) => u64::from(ra) - 1,
        };
        out.n += 1;
    }
}

// ---------------------------------------------------------------------------
// Running goroutines: captured by their own M in the SIGURG handler.

const SLOT_IDLE: u32 = 0;
const SLOT_REQUESTED: u32 = 1;
const SLOT_DONE: u32 = 2;

/// Per-M mailbox for capturing the running goroutine's frames.
///
/// Protocol: the dumper (holding `DUMP_LOCK`, so one at a time) gives the
/// slot a cache if it has none, stores REQUESTED (Release) and signals the
/// M; the handler on the M sees REQUESTED (Acquire), fills `goid` and
/// `frames`, and stores DONE (Release); the dumper waits for DONE (Acquire),
/// copies the frames out and stores IDLE. A dumper that gives up waiting
/// swaps the state back to IDLE; if that finds DONE instead, the answer
/// came after all. Either way the handler never writes while the dumper
/// reads.
pub(crate) struct TracebackSlot {
    state: AtomicU32,
    goid: AtomicU64,
    frames: UnsafeCell<Frames>,
    cache: UnsafeCell<Option<Box<NativeCache>>>,
}

// SAFETY: `frames` and `cache` are only touched by the side that the
// `state` protocol above gives them to (the dumper while IDLE, the handler
// while REQUESTED).
unsafe impl Sync for TracebackSlot {}

impl TracebackSlot {
    pub(crate) fn new() -> TracebackSlot {
        TracebackSlot {
            state: AtomicU32::new(SLOT_IDLE),
            goid: AtomicU64::new(0),
            frames: UnsafeCell::new(Frames::new()),
            cache: UnsafeCell::new(None),
        }
    }
}

/// SIGURG handler side: captures the running goroutine's frames if a dump
/// asked for them. Returns whether it did (the signal was then ours).
/// Async-signal-safe: no locks, no allocation.
pub(crate) fn on_signal(mp: &M, g: Option<&G>, pc: usize, sp: usize, fp: usize, lr: usize) -> bool {
    let slot = &mp.traceback;
    if slot.state.load(Ordering::Acquire) != SLOT_REQUESTED {
        return false;
    }
    // SAFETY: REQUESTED gives the slot's buffers to this handler (see the
    // protocol on TracebackSlot).
    let (frames, cache) = unsafe { (&mut *slot.frames.get(), &mut *slot.cache.get()) };
    frames.n = 0;
    let mut goid = 0;
    if let (Some(g), Some(cache)) = (g, cache.as_deref_mut()) {
        if let Some(stack) = g.stack.get() {
            if (stack.lo..stack.hi).contains(&sp) {
                goid = g.id();
                let (lo, hi) = (sp as u64, stack.hi as u64);
                let mut read = |addr: u64| -> Result<u64, ()> {
                    if addr >= lo && addr + 8 <= hi && addr.is_multiple_of(8) {
                        // SAFETY: inside the goroutine's own stack, between
                        // the interrupted sp and the top: mapped, and frozen
                        // while this handler runs on its thread.
                        Ok(unsafe { (addr as *const u64).read() })
                    } else {
                        Err(())
                    }
                };
                let regs = Regs {
                    pc: pc as u64,
                    sp: sp as u64,
                    fp: fp as u64,
                    lr: lr as u64,
                };
                unwind(regs, cache, &mut read, frames);
            }
        }
    }
    slot.goid.store(goid, Ordering::Relaxed);
    slot.state.store(SLOT_DONE, Ordering::Release);
    true
}

/// Dumper side: the frames of the goroutine running on `mp`, if it answers
/// in time. Returns (goroutine id, frames).
fn capture_running(mp: &M) -> Option<(u64, Frames)> {
    let slot = &mp.traceback;
    // SAFETY: IDLE: the slot's buffers are ours (DUMP_LOCK is held).
    let cache = unsafe { &mut *slot.cache.get() };
    if cache.is_none() {
        *cache = Some(Box::default());
    }
    slot.state.store(SLOT_REQUESTED, Ordering::Release);
    crate::signal::tgkill_traceback(mp);
    let start = Instant::now();
    loop {
        if slot.state.load(Ordering::Acquire) == SLOT_DONE {
            break;
        }
        if start.elapsed() > CAPTURE_TIMEOUT {
            if slot.state.swap(SLOT_IDLE, Ordering::AcqRel) == SLOT_DONE {
                break; // it answered just now
            }
            return None;
        }
        std::thread::sleep(Duration::from_micros(50));
    }
    // SAFETY: DONE gives the buffers back to us.
    let frames = unsafe { (*slot.frames.get()).clone() };
    let goid = slot.goid.load(Ordering::Relaxed);
    slot.state.store(SLOT_IDLE, Ordering::Release);
    Some((goid, frames))
}

// ---------------------------------------------------------------------------
// Goroutines that are not running: unwound from a copy of their stack.

/// The frames of a goroutine that is not running, from its saved context.
/// None if it started running (or its stack changed) while we read.
fn capture_parked(g: &G, cache: &mut NativeCache) -> Option<Frames> {
    let stack = g.stack.get()?;
    // SAFETY: sched_sp is written by gort_switch on the G's own M; a racy
    // read here is re-checked after the copy.
    let sp = unsafe { *g.sched_sp.get() };
    if !(stack.lo..stack.hi).contains(&sp) {
        return None;
    }
    let len = stack.hi - sp;
    let mut copy = vec![0u8; len];
    if !read_memory(sp, &mut copy) {
        // process_vm_readv is missing (qemu-user answers ENOSYS) or refused:
        // copy by hand. Goroutine stacks are never unmapped (idle ones only
        // get MADV_DONTNEED, which reads back as zeros), and [sp, hi) is
        // above the guard, so these reads cannot fault; a goroutine that
        // runs meanwhile is caught by the re-check below.
        for (i, chunk) in copy.chunks_exact_mut(8).enumerate() {
            // SAFETY: [sp, hi) is mapped stack memory (see above);
            // volatile, since another thread may write it meanwhile.
            let w = unsafe { std::ptr::read_volatile((sp + i * 8) as *const u64) };
            chunk.copy_from_slice(&w.to_le_bytes());
        }
    }
    // SAFETY: sched_sp is written by gort_switch on the G's own M; a racy read
    // of one word is re-checked against the first one.
    let sp_after = unsafe { *g.sched_sp.get() };
    if sp_after != sp || !matches!(g.status(), G_WAITING | G_RUNNABLE) {
        return None;
    }
    let word = |addr: u64| -> Result<u64, ()> {
        let off = addr.checked_sub(sp as u64).ok_or(())? as usize;
        let bytes = copy.get(off..off + 8).ok_or(())?;
        Ok(u64::from_le_bytes(bytes.try_into().unwrap()))
    };
    let regs = crate::arch::saved_context(sp, |a| word(a as u64).ok().map(|w| w as usize))?;
    let mut read = word;
    let mut frames = Frames::new();
    unwind(regs, cache, &mut read, &mut frames);
    Some(frames)
}

/// Where a thread blocked in the kernel entered it: `(sp, pc)` from
/// `/proc/self/task/TID/syscall` ("nr args… sp pc"), None if it is not in
/// a system call.
fn syscall_sp_pc(tid: libc::pid_t) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall")).ok()?;
    let f: Vec<&str> = text.split_whitespace().collect();
    let nr: i64 = f.first()?.parse().ok()?;
    if nr < 0 || f.len() < 9 {
        return None;
    }
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok();
    Some((hex(f[7])?, hex(f[8])?))
}

/// The frames of goroutine `g`, whose M `mp` is blocked in a system call
/// (announced with `syscall::blocking`, or not): unwound from the sp and
/// pc the kernel reports for the thread, over a copy of the goroutine's
/// stack, which does not change while the thread sits in the kernel (the
/// two reads of sp/pc around the copy must agree). No signal, so the call
/// is not interrupted. x86_64 unwinds through libc's syscall wrappers by
/// their CFI; on aarch64 the wrapper's return address is in a register the
/// kernel does not report, so only the innermost frame is certain.
fn capture_in_kernel(mp: &M, g: &G, cache: &mut NativeCache) -> Option<Frames> {
    let tid = mp.procid.load(Ordering::Acquire);
    let stack = g.stack.get()?;
    let (sp, pc) = syscall_sp_pc(tid)?;
    let sp = sp as usize;
    if !(stack.lo..stack.hi).contains(&sp) {
        return None;
    }
    let mut copy = vec![0u8; stack.hi - sp];
    if !read_memory(sp, &mut copy) {
        return None;
    }
    if syscall_sp_pc(tid)? != (sp as u64, pc) || !std::ptr::eq(mp.curg(), g) {
        return None;
    }
    let mut read = |addr: u64| -> Result<u64, ()> {
        let off = addr.checked_sub(sp as u64).ok_or(())? as usize;
        let bytes = copy.get(off..off + 8).ok_or(())?;
        Ok(u64::from_le_bytes(bytes.try_into().unwrap()))
    };
    let regs = Regs {
        pc,
        sp: sp as u64,
        fp: 0,
        lr: 0,
    };
    let mut frames = Frames::new();
    // A whole walk ends in the goroutine's first frame, gort_gstart (a
    // few instructions: its return-address slot points just past its call).
    let gstart = crate::arch::gort_gstart as *const () as u64;
    let whole = |f: &Frames| {
        f.pcs()
            .last()
            .is_some_and(|&pc| (gstart..gstart + 64).contains(&pc))
    };
    unwind(regs, cache, &mut read, &mut frames);
    if whole(&frames) || frames.n == 0 {
        return Some(frames);
    }
    // The walk stopped at a frame that needs the frame pointer, which the
    // kernel does not report (libc and std keep rbp untouched, so it is
    // still that frame's). Find it: the lowest stack word above sp that
    // looks like a frame record — the saved frame pointer (0 or higher up
    // the stack) under a return address into this executable — from which
    // the walk goes on to the stack's end. A word that only looks like one
    // makes a walk that fails, and the next candidate is tried.
    let resume_pc = frames.pcs[frames.n - 1] + u64::from(frames.n > 1);
    // (Not the symbolizer's copy: making that can take long, and sysmon
    // calls this.)
    static TEXT: OnceLock<std::ops::Range<u64>> = OnceLock::new();
    let text = TEXT.get_or_init(|| exe_text().1);
    let hi = (sp + copy.len()) as u64;
    let mut rest = Frames::new();
    for a in (sp as u64..hi.saturating_sub(16)).step_by(8) {
        let (Ok(saved), Ok(ret)) = (read(a), read(a + 8)) else {
            break;
        };
        if !(saved == 0 || (a < saved && saved < hi)) || !text.contains(&ret) {
            continue;
        }
        let regs = Regs {
            pc: resume_pc,
            sp: a,
            fp: a,
            lr: 0,
        };
        unwind(regs, cache, &mut read, &mut rest);
        if rest.n > 1 && whole(&rest) {
            let keep = frames.n - 1;
            let more = rest.n.min(MAX_FRAMES - keep);
            frames.pcs[keep..keep + more].copy_from_slice(&rest.pcs[..more]);
            frames.pcs[keep] = frames.pcs[keep].saturating_sub(u64::from(frames.n > 1));
            frames.n = keep + more;
            break;
        }
    }
    Some(frames)
}

/// The M running `g`, if any.
fn m_of(s: &crate::sched::Sched, g: &G) -> Option<&'static M> {
    let gp = g as *const G as *mut G;
    s.with_ms(|ms| ms.iter().copied().find(|m| m.curg() == gp))
}

/// For sysmon's `blockwarn`: the addresses of `g`'s frames while its
/// thread is blocked in the kernel (cheap: no symbolization).
pub(crate) fn capture_blocked(s: &crate::sched::Sched, g: &G) -> Trace {
    let Some(mp) = m_of(s, g) else {
        return Trace::Missing("no thread found");
    };
    let mut cache: Box<NativeCache> = Box::default();
    match capture_in_kernel(mp, g, &mut cache) {
        Some(f) => Trace::Frames(Box::new(f)),
        None => Trace::Missing("left the system call while its stack was read"),
    }
}

/// Copies `buf.len()` bytes at `addr` of this process into `buf` without
/// faulting on unmapped memory (`process_vm_readv` reports EFAULT instead)
/// and without racing in Rust's memory model with a thread writing them.
fn read_memory(addr: usize, buf: &mut [u8]) -> bool {
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: reads from our own process into `buf`, which is valid for
    // writes of its length; the kernel checks the remote range.
    let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
    n == buf.len() as isize
}

// ---------------------------------------------------------------------------
// Dumps.

/// One goroutine's traceback, addresses only.
pub(crate) enum Trace {
    Frames(Box<Frames>),
    /// A goroutine that has not run yet: the closure it will run.
    NotStarted(&'static str),
    /// Why there are no frames.
    Missing(&'static str),
}

/// Serialises dumps: the per-M slots have one dumper at a time.
static DUMP_LOCK: Mutex<()> = Mutex::new(());

/// Collects the traceback of every goroutine in `gs` (by id): running ones
/// through their Ms, the others from their saved contexts. `asker` is the
/// goroutine that asked for the dump (for `single`).
pub(crate) fn collect(s: &crate::sched::Sched, gs: &[&'static G], asker: u64) -> Vec<(u64, Trace)> {
    let level = level();
    let _guard = DUMP_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut running: Vec<(u64, Frames)> = Vec::new();
    let wanted = |id: u64| match level {
        Level::None => false,
        Level::Single => id == asker,
        _ => true,
    };
    if gs.iter().any(|g| g.status() == G_RUNNING && wanted(g.id())) {
        let ms: Vec<&'static M> = s.with_ms(<[_]>::to_vec);
        for mp in ms {
            if !mp.curg().is_null() {
                if let Some(r) = capture_running(mp) {
                    running.push(r);
                }
            }
        }
    }
    let mut cache: Box<NativeCache> = Box::default();
    gs.iter()
        .map(|g| {
            let id = g.id();
            let trace = if !wanted(id) {
                Trace::Missing("")
            } else {
                match g.status() {
                    G_RUNNING => match running.iter().find(|(gid, _)| *gid == id) {
                        Some((_, f)) => Trace::Frames(Box::new(f.clone())),
                        // Not answering: maybe blocked in the kernel outside
                        // syscall::blocking (such threads get no signal).
                        None => {
                            match m_of(s, g).and_then(|m| capture_in_kernel(m, g, &mut cache)) {
                                Some(f) => Trace::Frames(Box::new(f)),
                                None => {
                                    Trace::Missing("running; its thread did not answer in time")
                                }
                            }
                        }
                    },
                    G_SYSCALL => match m_of(s, g).and_then(|m| capture_in_kernel(m, g, &mut cache))
                    {
                        Some(f) => Trace::Frames(Box::new(f)),
                        None => Trace::Missing("in a system call; its stack could not be read"),
                    },
                    // Not started yet: no stack, nothing to unwind.
                    _ if g.stack.get().is_none() => Trace::NotStarted(g.entry_name.get()),
                    // A runnable goroutine may start running while its stack
                    // is copied: try a few times.
                    _ => match (0..4).find_map(|_| capture_parked(g, &mut cache)) {
                        Some(f) => Trace::Frames(Box::new(f)),
                        None => Trace::Missing("kept running while its stack was read"),
                    },
                }
            };
            (id, trace)
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Symbolization (never in a signal handler).

/// A symbolized frame.
struct Sym {
    function: Option<String>,
    file: Option<String>,
    line: Option<u32>,
}

struct Symbolizer {
    exe: Option<addr2line::Loader>,
    /// The executable's load bias and text range (addresses it covers).
    exe_bias: u64,
    exe_range: std::ops::Range<u64>,
    /// Whether the executable has any symbol names at all.
    has_names: bool,
    /// Lines already worked out, by address.
    cache: std::collections::HashMap<u64, Vec<(String, String)>>,
}

// SAFETY: the Loader is only used under SYMBOLIZER's mutex.
unsafe impl Send for Symbolizer {}

static SYMBOLIZER: OnceLock<Mutex<Symbolizer>> = OnceLock::new();

fn symbolizer() -> &'static Mutex<Symbolizer> {
    SYMBOLIZER.get_or_init(|| {
        let (bias, range) = exe_text();
        let exe = std::fs::read_link("/proc/self/exe")
            .ok()
            .and_then(|p| addr2line::Loader::new(&p).ok());
        let has_names = exe
            .as_ref()
            .is_some_and(|l| l.find_symbol(symbolizer_probe() - bias).is_some());
        Mutex::new(Symbolizer {
            exe,
            exe_bias: bias,
            exe_range: range,
            has_names,
            cache: Default::default(),
        })
    })
}

/// An address inside the executable's own code, to see if it has names.
fn symbolizer_probe() -> u64 {
    collect as *const () as usize as u64
}

/// The executable's load bias and the address range of its code.
fn exe_text() -> (u64, std::ops::Range<u64>) {
    extern "C" fn first(
        info: *mut libc::dl_phdr_info,
        _size: usize,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: a valid info for the call; `data` is the tuple below.
        let (info, out) = unsafe { (&*info, &mut *(data as *mut (u64, std::ops::Range<u64>))) };
        let bias = info.dlpi_addr;
        // SAFETY: dlpi_phnum headers at dlpi_phdr.
        let phdrs = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) };
        if let Some(t) = phdrs
            .iter()
            .find(|p| p.p_type == PT_LOAD && p.p_flags & PF_X != 0)
        {
            *out = (bias, bias + t.p_vaddr..bias + t.p_vaddr + t.p_memsz);
        }
        1 // the first object is the executable
    }
    let mut out = (0u64, 0u64..0u64);
    // SAFETY: the callback writes only through `data`.
    unsafe { libc::dl_iterate_phdr(Some(first), &mut out as *mut _ as *mut libc::c_void) };
    out
}

impl Symbolizer {
    /// `(function, file:line)` for each frame at `pc`, innermost first;
    /// cached, since a dump of many goroutines repeats the same addresses.
    fn lines(&mut self, pc: u64) -> &[(String, String)] {
        if !self.cache.contains_key(&pc) {
            let lines = self
                .frames(pc)
                .into_iter()
                .map(|f| {
                    let name = f.function.unwrap_or_else(|| format!("{pc:#x}"));
                    let loc = match (f.file, f.line) {
                        (Some(file), Some(line)) => format!("{file}:{line}"),
                        (Some(file), None) => file,
                        _ => format!("{pc:#x}"),
                    };
                    (name, loc)
                })
                .collect();
            self.cache.insert(pc, lines);
        }
        &self.cache[&pc]
    }

    /// The frames at `pc`, innermost (inlined) first; at least one. The
    /// outermost (the function the code belongs to) is named from the
    /// symbol table, which has the full path even where the DWARF is only
    /// line tables (whose names are bare: `{closure#0}`, `recv<u32>`).
    fn frames(&self, pc: u64) -> Vec<Sym> {
        let mut out = Vec::new();
        if self.exe_range.contains(&pc) {
            if let Some(l) = &self.exe {
                let probe = pc - self.exe_bias;
                if let Ok(mut it) = l.find_frames(probe) {
                    while let Ok(Some(f)) = it.next() {
                        out.push(Sym {
                            function: f
                                .function
                                .as_ref()
                                .and_then(|n| n.demangle().ok())
                                .map(|n| n.into_owned()),
                            file: f.location.as_ref().and_then(|l| l.file.map(str::to_string)),
                            line: f.location.as_ref().and_then(|l| l.line),
                        });
                    }
                }
                if let Some(last) = out.last_mut() {
                    if let Some(name) = l.find_symbol(probe) {
                        last.function = Some(demangle(name));
                    }
                } else if let Some(name) = l.find_symbol(probe) {
                    out.push(Sym {
                        function: Some(demangle(name)),
                        file: None,
                        line: None,
                    });
                }
            }
        }
        if out.is_empty() {
            out.push(Sym {
                function: dladdr_name(pc),
                file: None,
                line: None,
            });
        }
        out
    }
}

fn demangle(name: &str) -> String {
    format!("{:#}", rustc_demangle::demangle(name))
}

/// The dynamic symbol (and object) at `pc`, for code outside the
/// executable (libc and other shared objects).
fn dladdr_name(pc: u64) -> Option<String> {
    // SAFETY: zeroed Dl_info is valid for dladdr to fill.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: dladdr only reads the loader's tables.
    if unsafe { libc::dladdr(pc as *const libc::c_void, &mut info) } == 0 {
        return None;
    }
    if info.dli_sname.is_null() {
        return None;
    }
    // SAFETY: a NUL-terminated string owned by the loader.
    let name = unsafe { std::ffi::CStr::from_ptr(info.dli_sname) }.to_string_lossy();
    Some(demangle(&name))
}

/// gort's own source tree, as the compiler recorded its file names.
const GORT_DIR: &str = env!("CARGO_MANIFEST_DIR");

/// Frames the default level hides: gort's own code above the user's
/// frames (by file where there is one: inlined frames in line-tables-only
/// builds have bare names), and the entry glue below them.
fn is_runtime(name: &str, loc: &str) -> bool {
    let n = name.trim_start_matches('<');
    let in_gort_dir = |sub: &str| {
        loc.strip_prefix(GORT_DIR)
            .is_some_and(|rest| rest.starts_with(sub))
    };
    in_gort_dir("/src/")
        || in_gort_dir("/asm/")
        || n.starts_with("gort::")
        || n.starts_with("gort_")
}

fn is_entry_glue(name: &str, loc: &str) -> bool {
    const GLUE_FILES: [&str; 5] = [
        "/library/std/src/panicking.rs",
        "/library/std/src/panic.rs",
        "/library/core/src/panic/unwind_safe.rs",
        "/library/core/src/ops/function.rs",
        "/library/alloc/src/boxed.rs",
    ];
    let n = name.trim_start_matches('<');
    is_runtime(name, loc)
        || GLUE_FILES.iter().any(|f| loc.contains(f))
        || n.starts_with("std::panicking::")
        || n.starts_with("std::panic::catch_unwind")
        || n.starts_with("core::panic::unwind_safe::")
        || n.starts_with("core::ops::function::FnOnce::call_once")
        || n == "__rust_try"
}

/// Writes the frames of `trace` in Go's layout: the function, then a tab
/// and `file:line`.
pub(crate) fn write_trace(out: &mut String, trace: &Trace) {
    let frames = match trace {
        Trace::Frames(f) => f,
        Trace::Missing("") => return,
        Trace::NotStarted(entry) => {
            let _ = writeln!(out, "{entry}(...)\n\t(not started yet)");
            return;
        }
        Trace::Missing(why) => {
            let _ = writeln!(out, "\t({why})");
            return;
        }
    };
    let mut lines: Vec<(String, String, bool)> = Vec::new();
    {
        let mut sym = symbolizer().lock().unwrap_or_else(|e| e.into_inner());
        for &pc in frames.pcs() {
            let foreign = !sym.exe_range.contains(&pc);
            let group = sym.lines(pc);
            // std/core code inlined into one of gort's functions is gort's
            // too (the user's closure inlined there is not).
            let in_gort = group.last().is_some_and(|(n, l)| is_runtime(n, l));
            lines.extend(group.iter().map(|(n, l)| {
                let n = if in_gort && !is_runtime(n, l) && l.starts_with("/rustc/") {
                    format!("gort::{n}")
                } else {
                    n.clone()
                };
                (n, l.clone(), foreign)
            }));
        }
    }
    if level() != Level::System {
        // Hide gort's frames above the first user frame — and the libc
        // frames gort called (a dump's own tgkill) — and the entry glue
        // (and gort) below the last user frame.
        let top = lines
            .iter()
            .position(|(n, l, foreign)| !is_runtime(n, l) && !foreign)
            .unwrap_or(lines.len());
        let hide_top = lines[..top]
            .iter()
            .rposition(|(n, l, _)| is_runtime(n, l))
            .map_or(0, |i| i + 1);
        let first = lines
            .iter()
            .skip(hide_top)
            .position(|(n, l, _)| !is_runtime(n, l))
            .map(|i| i + hide_top);
        let last = lines.iter().rposition(|(n, l, _)| !is_entry_glue(n, l));
        lines = match (first, last) {
            (Some(a), Some(b)) if a <= b => lines[a..=b].to_vec(),
            _ => Vec::new(),
        };
    }
    for (name, loc, _) in &lines {
        let _ = writeln!(out, "{name}(...)\n\t{loc}");
    }
    if frames.truncated {
        let _ = writeln!(out, "...additional frames elided...");
    }
}

/// The dump's closing note when the executable has no names for its code.
pub(crate) fn symbols_note() -> Option<&'static str> {
    let sym = symbolizer().lock().unwrap_or_else(|e| e.into_inner());
    (!sym.has_names).then_some(
        "(the executable has no symbol table or debug info, so frames show as addresses: \
         it was stripped; build with strip = false or strip = \"debuginfo\" and \
         debug = \"line-tables-only\" for names and lines)",
    )
}

/// Go's "created by" line: the function that spawned the goroutine (from
/// the type name of the closure it spawned), the parent goroutine, and the
/// spawn site.
pub(crate) fn write_created_by(out: &mut String, g: &G) {
    let entry = g.entry_name.get();
    let parent = g.parent_id.load(Ordering::Relaxed);
    let creator = entry
        .strip_suffix("::{{closure}}")
        .map(|mut c| {
            while let Some(outer) = c.strip_suffix("::{{closure}}") {
                c = outer;
            }
            c
        })
        .filter(|c| !c.is_empty())
        // The main goroutine of `run` (its wrapper closure is generic).
        .map(|c| {
            if c.starts_with("gort::join::run<") || c.starts_with("gort::join::run_within<") {
                "gort::run"
            } else {
                c
            }
        });
    let by = match creator {
        Some(c) => format!("created by {c}"),
        None => "created".to_string(),
    };
    let from = if parent == 0 {
        " on a thread outside the runtime".to_string()
    } else {
        format!(" in goroutine {parent}")
    };
    let _ = writeln!(out, "{by}{from}\n\t{}", g.spawn_site.get());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse() {
        assert_eq!(Level::parse("none"), Ok(Level::None));
        assert_eq!(Level::parse("single"), Ok(Level::Single));
        assert_eq!(Level::parse("all"), Ok(Level::All));
        assert_eq!(Level::parse("system"), Ok(Level::System));
        let e = Level::parse("everything").unwrap_err();
        assert!(
            e.contains("GORT_TRACEBACK") && e.contains("everything"),
            "{e}"
        );
    }

    #[test]
    fn unwinder_covers_the_executable_and_libc() {
        let objs = loaded_objects();
        assert!(objs.len() >= 2, "{} objects", objs.len());
    }

    #[test]
    fn symbolizes_this_function() {
        let pc = symbolizes_this_function as fn() as usize as u64;
        let sym = symbolizer().lock().unwrap();
        let f = sym.frames(pc);
        let name = f.last().unwrap().function.clone().unwrap_or_default();
        assert!(name.contains("symbolizes_this_function"), "{name}");
    }
}
