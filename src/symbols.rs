//! Which code may be interrupted: a map of the executable's functions, by
//! kind, built from its ELF symbol table, and the frame walk that asks it
//! about every frame of a goroutine before an asynchronous preemption.
//!
//! Rust has no compiler-made safe-point tables (Go's compiler marks unsafe
//! points for its runtime), so gort classifies code by *who wrote it*:
//!
//! | kind      | what                                                  | preempt? |
//! |-----------|-------------------------------------------------------|----------|
//! | `User`    | the program's own Rust code, other crates, core, alloc | yes      |
//! | `Entry`   | the frames under every goroutine: `gort_gstart`, the goroutine entry, `catch_unwind` | yes (they only wait for the code above) |
//! | `Std`     | anything naming `std` (stdout's per-thread reentrant lock, `thread_local!` accessors, panics) | no |
//! | `Alloc`   | the global allocator: `GlobalAlloc` impls, `__rust_alloc*`, `__rg_*`, `__rdl_*` (a Rust allocator may hold a spin lock) | no |
//! | `Runtime` | gort's own code                                       | no       |
//! | `Foreign` | non-Rust code in the executable, unknown addresses    | no       |
//!
//! Code outside the executable (libc, the vDSO, ld.so, other shared
//! objects) is `Foreign` too: the map only covers the executable.
//!
//! The signal handler looks only at the interrupted pc (a binary search, no
//! allocation: async-signal-safe). The trampoline then walks every frame
//! with `_Unwind_Backtrace` — the trampoline's CFI describes the
//! interrupted registers — and preempts only if every frame is `User` or
//! `Entry`. That is what keeps `println!` correct: its caller is user code,
//! but std's `_print` frame holding the stdout lock is on the stack.
//!
//! `core`/`alloc` functions count as user code unless their symbol names a
//! `std` item (for example `drop_in_place<std::io::StdoutLock>`): they
//! hold no per-thread state.
//!
//! Without a symbol table (a stripped binary) the map is empty, and async
//! preemption stays off: cooperative checks still work. Keep `.symtab`
//! (`strip = "debuginfo"` does) to have both.

use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use std::sync::Mutex;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    User,
    Entry,
    Std,
    /// The global allocator: `GlobalAlloc` methods and rustc's allocator
    /// shims (`__rust_alloc`, `__rg_*`, `__rdl_*`).
    Alloc,
    Runtime,
    Foreign,
}

impl Kind {
    pub(crate) fn preemptible(self) -> bool {
        matches!(self, Kind::User | Kind::Entry)
    }
}

/// Sorted, non-overlapping address ranges of the executable's functions.
struct CodeMap {
    /// (start, end, kind), sorted by start.
    ranges: Vec<(usize, usize, Kind)>,
    /// Sorted, non-overlapping ranges inside those functions that hold
    /// inlined copies of code that is not preemptible (from DWARF; see
    /// `dwarf`), with that code's kind.
    inlined: Vec<(usize, usize, Kind)>,
    /// Whether the map can be trusted for async preemption (see `load`).
    trusted: bool,
    /// Functions holding inlined copies of a program allocator that takes
    /// a lock in Rust code, sorted: an interrupted pc there is preemptible
    /// only while every word of `alloc_locks` reads zero (see `load`).
    alloc_spans: Vec<(usize, usize)>,
    /// Such an allocator, and no DWARF to say where it is inlined: every
    /// pc is gated on `alloc_locks`.
    alloc_everywhere: bool,
    /// The allocator's lock words, (address, bytes), as its code names them.
    alloc_locks: Vec<(usize, usize)>,
}

/// The current map: published once from the symbol table alone, then
/// again with the DWARF inline ranges (maps are leaked, never freed, so a
/// signal handler may keep reading an older one).
static MAP: AtomicPtr<CodeMap> = AtomicPtr::new(std::ptr::null_mut());

impl CodeMap {
    fn usable(&self) -> bool {
        self.trusted && !self.ranges.is_empty()
    }
}

fn map() -> Option<&'static CodeMap> {
    // SAFETY: MAP is null or points to a leaked, never-mutated CodeMap.
    unsafe { MAP.load(Ordering::Acquire).as_ref() }
}

fn publish(m: CodeMap) -> &'static CodeMap {
    let m: &'static CodeMap = Box::leak(Box::new(m));
    MAP.store(m as *const CodeMap as *mut CodeMap, Ordering::Release);
    m
}

/// Builds the map (once; slow: demangles the symbol table, then reads the
/// DWARF) and returns whether async preemption can use it.
pub(crate) fn init() -> bool {
    want_refinement();
    init_staged(&|| {})
}

/// Whether the DWARF pass that refines a map the symbol table already
/// made usable should run (see `want_refinement`).
static REFINE: (std::sync::Mutex<bool>, std::sync::Condvar) =
    (std::sync::Mutex::new(false), std::sync::Condvar::new());

/// Lets the DWARF pass run (from the first preemption signal on, or for
/// `init`'s full map). Where the symbol table alone can be trusted (no
/// fat LTO), the code-map thread publishes that map and then waits for
/// this before it reads the DWARF: a program that never needs a
/// preemption signal (short goroutines, busy start-up) never pays for
/// the pass, which costs a release build with line tables ~60–120 ms of
/// CPU and, run at start-up, slowed a 0.3 s, two-vCPU benchmark by
/// 30–50 ms of wall time. Until it is done the symbol table's map is used,
/// as it was while the pass ran at start-up. Cheap after the first call.
pub(crate) fn want_refinement() {
    static WANTED: AtomicBool = AtomicBool::new(false);
    if WANTED.swap(true, Ordering::AcqRel) {
        return;
    }
    let (lock, cv) = &REFINE;
    *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
    cv.notify_all();
}

fn wait_for_refinement_wanted() {
    let (lock, cv) = &REFINE;
    let mut wanted = lock.lock().unwrap_or_else(|e| e.into_inner());
    while !*wanted {
        wanted = cv.wait(wanted).unwrap_or_else(|e| e.into_inner());
    }
}

/// `init`, calling `ready` as soon as the map can be used: right after the
/// symbol table if that can be trusted alone (the DWARF refines it later;
/// in a large debug build reading DWARF takes seconds), else once the
/// DWARF is in (fat LTO).
pub(crate) fn init_staged(ready: &dyn Fn()) -> bool {
    static BUILT: Mutex<bool> = Mutex::new(false);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if !*built {
        prime_unwinder();
        let mut readied = false;
        let full = load(&mut |m| {
            if publish(m).usable() {
                ready();
                readied = true;
            }
        });
        let m = publish(full.unwrap_or(CodeMap {
            ranges: Vec::new(),
            inlined: Vec::new(),
            trusted: false,
            alloc_everywhere: false,
            alloc_spans: Vec::new(),
            alloc_locks: Vec::new(),
        }));
        if m.usable() && !readied {
            ready();
        }
        *built = true;
    } else if map().is_some_and(CodeMap::usable) {
        ready();
    }
    map().is_some_and(CodeMap::usable)
}

/// The kind of the code at `pc`: its function's, unless `pc` lies in an
/// inlined copy of code that is not preemptible. Async-signal-safe.
pub(crate) fn kind_of(pc: usize) -> Kind {
    map().map_or(Kind::Foreign, |m| m.kind_of(pc))
}

impl CodeMap {
    fn kind_of(&self, pc: usize) -> Kind {
        let kind = lookup(&self.ranges, pc).unwrap_or(Kind::Foreign);
        if kind.preemptible() {
            if let Some(inlined) = lookup(&self.inlined, pc) {
                return inlined;
            }
        }
        kind
    }
}

/// The kind of the range in `r` (sorted, non-overlapping) holding `pc`.
fn lookup(r: &[(usize, usize, Kind)], pc: usize) -> Option<Kind> {
    let i = r.partition_point(|&(start, _, _)| start <= pc);
    if i == 0 {
        return None;
    }
    let (start, end, kind) = r[i - 1];
    (pc >= start && pc < end).then_some(kind)
}

/// A summary of the code map, for measuring how much code stays
/// preemptible (`gort::__code_map_report`; docs/design.md quotes it):
/// bytes of code by kind, and how many bytes of `User` functions lie in
/// inlined copies of code that is not preemptible.
pub(crate) fn report() -> String {
    init();
    let Some(map) = map() else {
        return "no code map".into();
    };
    let mut by_kind: Vec<(Kind, usize)> = Vec::new();
    let mut user_unsafe = 0usize;
    for &(lo, hi, k) in &map.ranges {
        match by_kind.iter_mut().find(|e| e.0 == k) {
            Some(e) => e.1 += hi - lo,
            None => by_kind.push((k, hi - lo)),
        }
        if k == Kind::User {
            let i = map.inlined.partition_point(|r| r.1 <= lo);
            for &(a, b, _) in map.inlined[i..].iter().take_while(|r| r.0 < hi) {
                user_unsafe += b.min(hi) - a.max(lo);
            }
        }
    }
    let user = by_kind
        .iter()
        .find(|e| e.0 == Kind::User)
        .map_or(0, |e| e.1);
    format!(
        "trusted for async preemption: {}; bytes by kind: {by_kind:?}; dwarf inline ranges: {}; user bytes in inlined unsafe code: {user_unsafe} of {user} ({:.1}% of user code stays preemptible); functions with a locking allocator inlined: {}{}, its lock words: {}",
        map.trusted,
        map.inlined.len(),
        if user == 0 { 0.0 } else { 100.0 * (user - user_unsafe) as f64 / user as f64 },
        map.alloc_spans.len(),
        if map.alloc_everywhere { " (no DWARF: every pc gated)" } else { "" },
        map.alloc_locks.len(),
    )
}

/// Handler check on the interrupted pc alone. `Entry` counts: in
/// optimised builds the goroutine's closure is inlined into the generic
/// `Packet::run`, so its loops run under that symbol.
pub(crate) fn pc_is_preemptible(pc: usize) -> bool {
    let Some(map) = map() else { return false };
    if !map.kind_of(pc).preemptible() {
        return false;
    }
    let i = map.alloc_spans.partition_point(|s| s.1 <= pc);
    if !map.alloc_everywhere && map.alloc_spans.get(i).is_none_or(|s| s.0 > pc) {
        return true;
    }
    // In a function with the allocator inlined: this thread may be inside
    // its critical section where the line table does not show it. Free
    // lock words prove it is not (nobody holds the lock).
    !map.alloc_locks.is_empty()
        && map.alloc_locks.iter().all(|&(addr, len)| {
            (0..len).all(|k| {
                // SAFETY: `addr..addr + len` lies in a writable section of
                // this executable (checked in `load`), mapped for the life
                // of the process; a racy byte read of a lock word is what
                // the check wants (a stale nonzero only rejects).
                unsafe { std::ptr::read_volatile((addr + k) as *const u8) == 0 }
            })
        })
}

// ---------------------------------------------------------------------------
// The frame walk (runs in the SIGURG handler, on the M's signal stack).

#[repr(C)]
struct UnwindContext {
    _private: [u8; 0],
}

type TraceFn = extern "C" fn(*mut UnwindContext, *mut c_void) -> libc::c_int;

extern "C" {
    fn _Unwind_Backtrace(trace: TraceFn, arg: *mut c_void) -> libc::c_int;
    fn _Unwind_GetIPInfo(ctx: *mut UnwindContext, ip_before_insn: *mut libc::c_int) -> usize;
}

const URC_NO_REASON: libc::c_int = 0;
const URC_NORMAL_STOP: libc::c_int = 4;

struct Walk {
    /// The interrupted pc: the walk starts judging at the frame the
    /// unwinder marks as a signal frame with exactly this pc.
    interrupted_pc: usize,
    /// Passed the kernel's signal frame: frames from here on are the
    /// goroutine's.
    past_signal_frame: bool,
    /// Goroutine frames seen, and the most allowed: a guard against an
    /// unwinder looping on corrupt CFI, far above any real depth (every
    /// frame takes at least one word of the stack).
    frames: usize,
    max_frames: usize,
    /// The kind of the last goroutine frame seen (the walk must end at the
    /// goroutine's entry, else the unwinder lost its way).
    last: Kind,
    verdict: Option<bool>,
}

extern "C" fn walk_frame(ctx: *mut UnwindContext, arg: *mut c_void) -> libc::c_int {
    // SAFETY: `arg` is the &mut Walk passed to _Unwind_Backtrace below.
    let w = unsafe { &mut *(arg as *mut Walk) };
    let mut before: libc::c_int = 0;
    // SAFETY: `ctx` is the live unwind context handed to this callback.
    let ip = unsafe { _Unwind_GetIPInfo(ctx, &mut before) };
    if ip == 0 {
        return URC_NORMAL_STOP;
    }
    if !w.past_signal_frame {
        // The handler's own frames, then the kernel's signal frame
        // (glibc's __restore_rt, which libgcc unwinds through), then the
        // interrupted frame: the first one marked as a signal frame
        // (`before`: its ip is the exact interrupted instruction).
        if before == 0 || ip != w.interrupted_pc {
            return URC_NO_REASON;
        }
        w.past_signal_frame = true;
    }
    // A return address points after the call: look up the call itself.
    let pc = if before != 0 { ip } else { ip - 1 };
    w.frames += 1;
    if w.frames > w.max_frames {
        w.verdict = Some(false);
        return URC_NORMAL_STOP;
    }
    let kind = kind_of(pc);
    w.last = kind;
    if !kind.preemptible() {
        w.verdict = Some(false);
        return URC_NORMAL_STOP;
    }
    URC_NO_REASON
}

/// Called by the SIGURG handler, on the signal stack: walks the frames of
/// the goroutine it interrupted at `pc`, through the kernel's signal
/// frame, down to the goroutine's entry; true if every frame may be
/// preempted. `stack_size` bounds the walk (see `Walk::max_frames`).
///
/// Async-signal-safe on glibc >= 2.35 with libgcc >= 12: libgcc finds
/// each frame's FDE with `_dl_find_object` (lock-free, documented
/// async-signal-safe) and takes no lock of its own unless some code
/// registered frame tables by hand (`__register_frame_info`; Rust
/// programs do not). Its one-time initialisation (a `pthread_once`) is
/// done by `init`, before any signal is sent. See docs/design.md.
pub(crate) fn interrupted_stack_is_preemptible(pc: usize, stack_size: usize) -> bool {
    let mut w = Walk {
        interrupted_pc: pc,
        past_signal_frame: false,
        frames: 0,
        max_frames: stack_size / 8 + 64,
        last: Kind::Foreign,
        verdict: None,
    };
    // SAFETY: the callback only reads the context it is given and writes
    // `w`, which outlives the call.
    unsafe { _Unwind_Backtrace(walk_frame, &mut w as *mut Walk as *mut c_void) };
    match w.verdict {
        Some(v) => v,
        // Reached the end: fine if it was the goroutine's entry.
        None => w.past_signal_frame && w.last == Kind::Entry,
    }
}

/// Runs the unwinder once outside any signal handler, so that its lazy
/// one-time set-up (libgcc's register-size table, behind a pthread_once)
/// is never first done inside the SIGURG handler.
fn prime_unwinder() {
    extern "C" fn stop(_: *mut UnwindContext, _: *mut c_void) -> libc::c_int {
        URC_NORMAL_STOP
    }
    // SAFETY: the callback touches nothing.
    unsafe { _Unwind_Backtrace(stop, std::ptr::null_mut()) };
}

// ---------------------------------------------------------------------------
// Classification of a symbol name.

fn classify(mangled: &str) -> Kind {
    match mangled {
        "gort_gstart" | "__rust_try" => return Kind::Entry,
        _ => {}
    }
    if is_alloc_shim(mangled) {
        return Kind::Alloc;
    }
    if !(mangled.starts_with("_ZN") || mangled.starts_with("_R")) {
        return Kind::Foreign;
    }
    let Ok(d) = rustc_demangle::try_demangle(mangled) else {
        return Kind::Foreign;
    };
    let name = format!("{d:#}");
    classify_demangled(&name)
}

/// This crate's name as it appears in symbol paths (`gort`).
fn own_crate() -> &'static str {
    let path = module_path!();
    path.split("::").next().unwrap_or(path)
}

/// Whether `name` is a `GlobalAlloc` method: code the global allocator
/// runs, which may hold the allocator's lock (a spin lock in many Rust
/// allocators) and must finish on the thread that took it.
fn is_global_alloc(name: &str) -> bool {
    name.contains(" as core::alloc::global::GlobalAlloc>::")
}

/// Symbols of the allocator glue rustc generates (`__rust_alloc` calls
/// `__rg_alloc`, the `#[global_allocator]`'s, or `__rdl_alloc`, the
/// default one). Older toolchains emit them unmangled; newer ones mangle
/// them under a `__rustc` crate (`_RNv…7___rustc12___rust_alloc`, which
/// demangles to `__rustc::__rust_alloc`: see `classify_demangled`). LTO
/// inlines the `#[global_allocator]`'s methods into these shims, so they
/// are where a spin-locked allocator holds its lock.
fn is_alloc_shim(mangled: &str) -> bool {
    [
        "__rust_alloc",
        "__rust_dealloc",
        "__rust_realloc",
        "__rg_",
        "__rdl_",
    ]
    .iter()
    .any(|p| mangled.starts_with(p))
}

fn classify_demangled(name: &str) -> Kind {
    // The frames every goroutine sits on (`goroutine_entry` itself is
    // found by address, in `load`).
    if (name.starts_with(crate::join::PACKET_PREFIX) && name.ends_with(crate::g::TASK_RUN_SUFFIX))
        || name.starts_with("std::panicking::catch_unwind")
        || name.starts_with("std::panicking::try")
        || name.starts_with("std::panic::catch_unwind")
    {
        return Kind::Entry;
    }
    if is_global_alloc(name) {
        return Kind::Alloc;
    }
    if let Some(shim) = name.strip_prefix("__rustc::") {
        // rustc's own generated symbols: the allocator shims are the
        // allocator; the others (`__rust_alloc_error_handler`, ...) are
        // runtime glue of the standard library.
        return if is_alloc_shim(shim) {
            Kind::Alloc
        } else {
            Kind::Std
        };
    }
    let krate = first_crate(name);
    if krate == own_crate() {
        return Kind::Runtime;
    }
    if krate == "std" || mentions_crate(name, "std") {
        return Kind::Std;
    }
    Kind::User
}

/// The first path's crate: `<alloc::string::String as core::fmt::Write>`
/// gives `alloc`, `&mut myapp::Foo` gives `myapp`.
fn first_crate(name: &str) -> &str {
    let mut s = name;
    loop {
        let t = s
            .trim_start_matches(['<', '&', '(', '[', '*', ' '])
            .trim_start_matches("mut ")
            .trim_start_matches("const ")
            .trim_start_matches("dyn ");
        if t.len() == s.len() {
            break;
        }
        s = t;
    }
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// Whether `krate::` appears anywhere as a path start.
/// (Called for every symbol at start-up: no allocation.)
fn mentions_crate(name: &str, krate: &str) -> bool {
    name.match_indices(krate).any(|(i, _)| {
        name[i + krate.len()..].starts_with("::")
            && (i == 0
                || !name[..i]
                    .chars()
                    .next_back()
                    .is_some_and(|c| c.is_alphanumeric() || c == '_'))
    })
}

// ---------------------------------------------------------------------------
// ELF symbol table of the running executable.

const SHT_SYMTAB: u32 = 2;
const STT_FUNC: u8 = 2;
const STB_LOCAL: u8 = 0;

const SHF_COMPRESSED: u64 = 0x800;

fn load(stage1: &mut dyn FnMut(CodeMap)) -> Option<CodeMap> {
    let bias = exe_load_bias()?;
    let exe = ExeFile::map()?;
    let read = |off: u64, len: usize| -> Option<&[u8]> {
        let off = usize::try_from(off).ok()?;
        exe.bytes().get(off..off.checked_add(len)?)
    };
    let eh = read(0, 64)?;
    if &eh[..4] != b"\x7fELF" || eh[4] != 2 {
        return None;
    }
    let u16_at = |b: &[u8], o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
    let u32_at = |b: &[u8], o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    let u64_at = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
    let shoff = u64_at(eh, 0x28);
    let shentsize = u16_at(eh, 0x3a) as usize;
    let shnum = u16_at(eh, 0x3c) as usize;
    let shstrndx = u16_at(eh, 0x3e) as usize;
    if shentsize < 64 || shnum == 0 {
        return None;
    }
    let sh = read(shoff, shentsize * shnum)?;
    // (type, flags, offset, size, link, name offset, address)
    let section = |i: usize| {
        let b = &sh[i * shentsize..];
        (
            u32_at(b, 4),
            u64_at(b, 8),
            u64_at(b, 24),
            u64_at(b, 32),
            u32_at(b, 40),
            u32_at(b, 0) as usize,
            u64_at(b, 16),
        )
    };
    let shstr = (shstrndx < shnum)
        .then(|| {
            let (_, _, off, size, _, _, _) = section(shstrndx);
            read(off, size as usize)
        })
        .flatten()
        .unwrap_or_default();
    let named = |name: &str| -> Result<Option<&[u8]>, ()> {
        for i in 0..shnum {
            let (_, flags, off, size, _, name_off, _) = section(i);
            let n = shstr.get(name_off..).and_then(|s| {
                let end = s.iter().position(|&c| c == 0)?;
                Some(&s[..end])
            });
            if n == Some(name.as_bytes()) {
                if flags & SHF_COMPRESSED != 0 {
                    return Err(());
                }
                return read(off, size as usize).map(Some).ok_or(());
            }
        }
        Ok(None)
    };
    let symtab = (0..shnum).find(|&i| section(i).0 == SHT_SYMTAB)?;
    let (_, _, sym_off, sym_size, strtab_idx, _, _) = section(symtab);
    let (_, _, str_off, str_size, _, _, _) = section(strtab_idx as usize);
    let syms = read(sym_off, sym_size as usize)?;
    let strs = read(str_off, str_size as usize)?;
    let mut ranges = Vec::new();
    // std functions with global binding: std was linked as its own objects
    // (no LTO, or thin LTO). Fat LTO internalises them all.
    let mut std_globals = 0usize;
    // std's default allocator (`__rdl_alloc`, plain or mangled under
    // `__rustc`) is linked in: no `#[global_allocator]` of the program's.
    let mut default_allocator = false;
    // The program's allocator has an out-of-line `GlobalAlloc::alloc`
    // (unoptimised builds): its lock is taken in code the symbol table
    // classifies. Optimised builds inline it into the shims and the shims
    // into the program's functions, leaving no such symbol.
    let mut allocator_out_of_line = false;
    // The allocator shims' code (`__rust_alloc`, ...): where an optimised
    // build inlines the program's allocator. (Scanning every `Alloc`
    // symbol instead lost a plain release build its one lock word, when
    // `lock_words` still matched opcode bytes: it misread some other
    // function as a lock through a register.)
    let mut shims: Vec<(usize, usize)> = Vec::new();
    for sym in syms.chunks_exact(24) {
        let info = sym[4];
        let shndx = u16_at(sym, 6);
        let value = u64_at(sym, 8) as usize;
        let size = u64_at(sym, 16) as usize;
        if info & 0xf != STT_FUNC || shndx == 0 || value == 0 {
            continue;
        }
        let name_off = u32_at(sym, 0) as usize;
        let name = strs.get(name_off..).and_then(|s| {
            let end = s.iter().position(|&c| c == 0)?;
            std::str::from_utf8(&s[..end]).ok()
        });
        let Some(name) = name else { continue };
        default_allocator |= name.contains("__rdl_alloc");
        if name.contains("GlobalAlloc") && !allocator_out_of_line {
            allocator_out_of_line = rustc_demangle::try_demangle(name).is_ok_and(|d| {
                let d = format!("{d:#}");
                is_global_alloc(&d) && d.ends_with(">::alloc") && !d.contains("std::alloc::System")
            });
        }
        // Asm routines of ours are sized by FUNC_END; treat a zero size as
        // one byte so at least the entry is classified.
        let size = size.max(1);
        let kind = if name.starts_with("gort_") && name != "gort_gstart" {
            Kind::Runtime
        } else {
            classify(name)
        };
        if kind == Kind::Std && info >> 4 != STB_LOCAL {
            std_globals += 1;
        }
        if kind == Kind::Alloc
            && ["__rust_alloc", "__rust_dealloc", "__rust_realloc"]
                .iter()
                .any(|s| name.contains(s))
            && !name.contains("error_handler")
        {
            shims.push((bias + value, size));
        }
        ranges.push((bias + value, bias + value + size, kind));
    }
    // The goroutine entry, by address rather than by name.
    let entry = crate::sched::goroutine_entry as *const () as usize;
    for r in ranges.iter_mut() {
        if (r.0..r.1).contains(&entry) {
            r.2 = Kind::Entry;
        }
    }
    ranges.sort_unstable_by_key(|r| (r.0, r.1));
    // Overlaps (aliases of one function) keep the stricter kind.
    let mut merged: Vec<(usize, usize, Kind)> = Vec::with_capacity(ranges.len());
    for r in ranges {
        if let Some(last) = merged.last_mut() {
            if r.0 < last.1 {
                if !r.2.preemptible() {
                    last.2 = r.2;
                }
                last.1 = last.1.max(r.1);
                continue;
            }
        }
        merged.push(r);
    }
    // A `#[global_allocator]` of the program's that takes a lock in Rust
    // code (its shims hold an atomic read-modify-write): an optimised
    // build (thin LTO or none) inlines the shims, and the allocator's
    // methods with them, into the program's functions, and a goroutine
    // preempted there may hold the lock while every M spins for it in
    // runtime code (seen: tests/lto's thin build hung). The DWARF's inlined
    // ranges do not cover it all either: LLVM merges the identical tails of
    // the inlined copies (the call to `free` and the lock's release) into
    // one block that the line table gives to the enclosing function (seen:
    // `movb $0, LOCK` after `call free`, outside every `__rust_dealloc`
    // range). So in every function with an inlined copy (from the DWARF),
    // or everywhere (no DWARF), a pc is preemptible only while the lock
    // words the shims' atomics name read zero; none found: never. With
    // std's allocator the lock is in libc's malloc, never preempted.
    let shim_words: Vec<Option<Vec<(usize, usize)>>> = if default_allocator || allocator_out_of_line
    {
        Vec::new()
    } else {
        shims
            .iter()
            .map(|&(lo, len)| {
                // SAFETY: [lo, lo + len) is a function of this executable's
                // text (a sized STT_FUNC symbol, moved by the load bias),
                // mapped readable for the life of the process.
                lock_words(
                    unsafe { std::slice::from_raw_parts(lo as *const u8, len) },
                    lo,
                )
            })
            .collect()
    };
    let allocator_locks = shim_words.iter().any(may_lock);
    let mut alloc_locks: Vec<(usize, usize)> = Vec::new();
    // A lock the map cannot read (None): the spans stay closed.
    if allocator_locks && shim_words.iter().all(Option::is_some) {
        let writable = writable_sections(&section, shnum, bias);
        for w in shim_words.into_iter().flatten().flatten() {
            if writable.iter().any(|s| w.0 >= s.0 && w.0 + w.1 <= s.1) && !alloc_locks.contains(&w)
            {
                alloc_locks.push(w);
            }
        }
    }
    // Gated everywhere, the symbol table needs the lock words.
    let gate_ok = !allocator_locks || !alloc_locks.is_empty();
    // Whether the symbol table alone may enable preemption until the DWARF
    // pass refines it: not under fat LTO (no global std symbols: std's
    // `println!` machinery sits inside the program's functions), not with
    // an inlined allocator that DWARF can show.
    let has_dwarf = matches!(named(".debug_info"), Ok(Some(d)) if !d.is_empty());
    let alone = std_globals > 0 && (default_allocator || allocator_out_of_line || !has_dwarf);
    stage1(CodeMap {
        ranges: merged.clone(),
        inlined: Vec::new(),
        trusted: alone && gate_ok,
        alloc_everywhere: allocator_locks,
        alloc_spans: Vec::new(),
        alloc_locks: alloc_locks.clone(),
    });
    if alone {
        // The symbol table is enough to start preempting; the DWARF pass
        // only refines it (see `want_refinement`).
        wait_for_refinement_wanted();
    }
    // Without DWARF the map cannot see std code inlined into the
    // program's functions. Fat LTO inlines std's `println!` machinery
    // (stdout's per-thread lock) into them: no async preemption there
    // (cooperative checks still work). Without LTO only std's `#[inline]`
    // and generic code can be inlined (README, Hazards).
    let wanted = |lo: usize, hi: usize| {
        let (lo, hi) = (lo + bias, hi + bias);
        let i = merged.partition_point(|r| r.1 <= lo);
        merged[i..]
            .iter()
            .take_while(|r| r.0 < hi)
            .any(|r| r.2.preemptible())
    };
    let mut alloc_spans: Vec<(usize, usize)> = Vec::new();
    let (inlined, trusted, alloc_everywhere) =
        match crate::dwarf::inline_ranges(&named, &classify, &wanted) {
            crate::dwarf::Inline::Ranges(r) => {
                if allocator_locks {
                    for c in r.iter().filter(|c| c.2 == Kind::Alloc) {
                        let at = c.0 + bias;
                        let i = merged.partition_point(|f| f.1 <= at);
                        if let Some(f) = merged.get(i).filter(|f| f.0 <= at) {
                            alloc_spans.push((f.0, f.1));
                        }
                    }
                    alloc_spans.sort_unstable();
                    alloc_spans.dedup();
                }
                (union(r, bias), true, false)
            }
            crate::dwarf::Inline::Absent => {
                (Vec::new(), std_globals > 0 && gate_ok, allocator_locks)
            }
        };
    Some(CodeMap {
        ranges: merged,
        inlined,
        trusted,
        alloc_everywhere,
        alloc_spans,
        alloc_locks,
    })
}

/// Whether code with these `lock_words` may take a lock: it takes and
/// gives back a word (see `lock_words`), or the words could not be read
/// (None; always off x86_64). mimalloc's and jemalloc's shims only call
/// into C.
fn may_lock(words: &Option<Vec<(usize, usize)>>) -> bool {
    words.as_ref().is_none_or(|w| !w.is_empty())
}

/// The lock words of x86_64 code at `base` (an allocator shim), as
/// (address, bytes): the statics its atomics take a lock with, addressed
/// RIP-relatively. A word counts as a lock when the code takes it with an
/// atomic read-modify-write (`xchg`, `lock cmpxchg`, `lock xadd`) *and*
/// gives it back with a store (`mov`) or a swap (`xchg`): a spin lock's
/// `swap(true)`/`store(false)`, a futex mutex's `compare_exchange`/
/// `swap(0)`. A word only ever updated by read-modify-writes is a counter
/// (a counting allocator's `fetch_add`, its peak's `fetch_max` loop): it
/// never reads zero again, and gating on it left every function with the
/// allocator inlined without signal preemption (a spinning goroutine there
/// was never stopped). None if an `xchg` or `lock cmpxchg` addresses memory
/// through a register (a lock the map cannot find) or the code does not
/// decode.
///
/// The code (a whole function, no data between its instructions) is
/// decoded from its first byte to its last: an earlier scan matched opcode
/// bytes and read the displacement byte 0x86 of one `xchg` as another
/// `xchg` through a register — so, depending on where the linker put the
/// lock, no word was kept and no function with the allocator inlined was
/// ever preempted by signal (tests/lto's fat `spin` hung in some
/// checkouts). `load` keeps only words in writable sections. None off
/// x86_64 (then no pc in an allocator span is preemptible).
#[cfg(target_arch = "x86_64")]
fn lock_words(code: &[u8], base: usize) -> Option<Vec<(usize, usize)>> {
    use iced_x86::{Decoder, DecoderOptions, Instruction, MemorySize, Mnemonic, OpKind, Register};
    // Words taken by a read-modify-write, and words given back.
    let mut taken: Vec<(usize, usize)> = Vec::new();
    let mut given_back: Vec<usize> = Vec::new();
    let mut decoder = Decoder::with_ip(64, code, base as u64, DecoderOptions::NONE);
    let mut ins = Instruction::default();
    while decoder.can_decode() {
        decoder.decode_out(&mut ins);
        if ins.is_invalid() {
            return None;
        }
        let (rmw, release, counter) = match ins.mnemonic() {
            // `xchg` with a memory operand is atomic without the prefix.
            Mnemonic::Xchg => (true, true, false),
            Mnemonic::Cmpxchg => (ins.has_lock_prefix(), false, false),
            Mnemonic::Xadd => (ins.has_lock_prefix(), false, true),
            // A plain store into memory.
            Mnemonic::Mov => (false, ins.op0_kind() == OpKind::Memory, false),
            _ => (false, false, false),
        };
        if !(rmw || release) || !(0..ins.op_count()).any(|i| ins.op_kind(i) == OpKind::Memory) {
            continue;
        }
        if ins.memory_base() != Register::RIP {
            if rmw && !counter {
                return None; // a lock through a register
            }
            continue;
        }
        let addr = ins.ip_rel_memory_address() as usize;
        if release {
            given_back.push(addr);
        }
        if rmw {
            let bytes = match ins.memory_size() {
                MemorySize::UInt8 | MemorySize::Int8 => 1,
                MemorySize::UInt16 | MemorySize::Int16 => 2,
                MemorySize::UInt32 | MemorySize::Int32 => 4,
                MemorySize::UInt128 | MemorySize::Int128 => 16, // cmpxchg16b
                _ => 8,
            };
            taken.push((addr, bytes));
        }
    }
    taken.retain(|w| given_back.contains(&w.0));
    taken.sort_unstable();
    taken.dedup();
    Some(taken)
}

#[cfg(not(target_arch = "x86_64"))]
fn lock_words(_code: &[u8], _base: usize) -> Option<Vec<(usize, usize)>> {
    None
}

/// The writable sections of the executable (`.data`, `.bss`, ...), moved
/// by `bias`.
fn writable_sections(
    section: &dyn Fn(usize) -> (u32, u64, u64, u64, u32, usize, u64),
    shnum: usize,
    bias: usize,
) -> Vec<(usize, usize)> {
    const SHF_WRITE_ALLOC: u64 = 0x3;
    (0..shnum)
        .map(section)
        .filter(|s| s.1 & SHF_WRITE_ALLOC == SHF_WRITE_ALLOC && s.6 != 0)
        .map(|s| (bias + s.6 as usize, bias + (s.6 + s.3) as usize))
        .collect()
}

/// Sorts `r`, moves it by `bias` and merges overlapping ranges (nested
/// inlined copies) into one, keeping the outer one's kind.
fn union(mut r: Vec<(usize, usize, Kind)>, bias: usize) -> Vec<(usize, usize, Kind)> {
    r.sort_unstable_by_key(|x| (x.0, std::cmp::Reverse(x.1)));
    let mut out: Vec<(usize, usize, Kind)> = Vec::with_capacity(r.len());
    for (lo, hi, k) in r {
        let (lo, hi) = (lo + bias, hi + bias);
        if let Some(last) = out.last_mut() {
            if lo < last.1 {
                last.1 = last.1.max(hi);
                continue;
            }
        }
        out.push((lo, hi, k));
    }
    out
}

/// The running executable's file, mapped read-only for the code map's
/// reads: its symbol table and DWARF sections are sliced out of the page
/// cache's pages, not copied into fresh buffers (which cost a release
/// build with line tables ~15% of the code map's time in copies and page
/// faults). Unmapped when dropped.
struct ExeFile {
    base: *mut c_void,
    len: usize,
}

impl ExeFile {
    fn map() -> Option<ExeFile> {
        let f = std::fs::File::open("/proc/self/exe").ok()?;
        let len = usize::try_from(f.metadata().ok()?.len()).ok()?;
        if len == 0 {
            return None;
        }
        // SAFETY: a private read-only mapping of a file we opened; the
        // kernel refuses writes to a running executable (ETXTBSY), so its
        // contents and length stay as mapped.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                std::os::fd::AsRawFd::as_raw_fd(&f),
                0,
            )
        };
        (base != libc::MAP_FAILED).then_some(ExeFile { base, len })
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: [base, base + len) is our live read-only mapping.
        unsafe { std::slice::from_raw_parts(self.base as *const u8, self.len) }
    }
}

impl Drop for ExeFile {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping `map` made; nothing borrows
        // from it once the ExeFile is dropped (slices borrow `self`).
        unsafe { libc::munmap(self.base, self.len) };
    }
}

/// The main executable's load bias, from the first `dl_iterate_phdr` entry.
fn exe_load_bias() -> Option<usize> {
    extern "C" fn first(
        info: *mut libc::dl_phdr_info,
        _size: usize,
        data: *mut c_void,
    ) -> libc::c_int {
        // SAFETY: dl_iterate_phdr passes a valid info; data is our &mut.
        unsafe { *(data as *mut usize) = (*info).dlpi_addr as usize };
        1 // stop after the first object: the executable
    }
    let mut bias: usize = usize::MAX;
    // SAFETY: the callback writes only through `data`, a valid usize.
    unsafe { libc::dl_iterate_phdr(Some(first), &mut bias as *mut usize as *mut c_void) };
    (bias != usize::MAX).then_some(bias)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_names() {
        assert_eq!(classify_demangled("myapp::work::spin"), Kind::User);
        assert_eq!(
            classify_demangled("<myapp::Foo as core::fmt::Display>::fmt"),
            Kind::User
        );
        assert_eq!(classify_demangled("core::fmt::write"), Kind::User);
        assert_eq!(
            classify_demangled("alloc::fmt::format::format_inner"),
            Kind::User
        );
        assert_eq!(classify_demangled("std::io::stdio::_print"), Kind::Std);
        assert_eq!(
            classify_demangled("<std::io::stdio::StdoutLock as std::io::Write>::write_all"),
            Kind::Std
        );
        assert_eq!(
            classify_demangled("core::ptr::drop_in_place<std::io::stdio::StdoutLock>"),
            Kind::Std
        );
        assert_eq!(
            classify_demangled("std::thread::local::LocalKey<T>::with"),
            Kind::Std
        );
        assert_eq!(classify_demangled("gort::sched::newproc"), Kind::Runtime);
        assert_eq!(
            classify_demangled("<talc::Talck<R,O> as core::alloc::global::GlobalAlloc>::alloc"),
            Kind::Alloc
        );
        assert_eq!(classify("__rust_alloc"), Kind::Alloc);
        assert_eq!(classify("__rg_dealloc"), Kind::Alloc);
        assert_eq!(classify("__rdl_realloc"), Kind::Alloc);
        // Newer toolchains mangle the shims under a `__rustc` crate (these
        // are a thin-LTO build's, where `SpinAlloc::alloc` was inlined
        // into them: classified `User`, a goroutine was preempted holding
        // the allocator's spin lock and both Ms spun for it).
        assert_eq!(
            classify("_RNvCsfLfy6EI15iL_7___rustc12___rust_alloc"),
            Kind::Alloc
        );
        assert_eq!(
            classify("_RNvCsfLfy6EI15iL_7___rustc14___rust_dealloc"),
            Kind::Alloc
        );
        assert_eq!(
            classify("_RNvCsfLfy6EI15iL_7___rustc14___rust_realloc"),
            Kind::Alloc
        );
        assert_ne!(
            classify("_RNvCsfLfy6EI15iL_7___rustc26___rust_alloc_error_handler"),
            Kind::User
        );
        assert_eq!(
            classify_demangled("<gort::join::Packet<F,T> as gort::g::Task>::run"),
            Kind::Entry
        );
        assert_eq!(
            classify_demangled("std::panicking::catch_unwind::do_call"),
            Kind::Entry
        );
        assert_eq!(classify_demangled("mystd::thing"), Kind::User);
        assert_eq!(
            classify_demangled("<&mut myapp::W as core::fmt::Write>::write_str"),
            Kind::User
        );
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn lock_words_from_rip_relative_atomics() {
        // mov $1,%al; xchg %al,0x173925(%rip) — a spin lock's acquire, as
        // tests/lto's thin build inlines it.
        let xchg = [0xB0, 0x01, 0x86, 0x05, 0x25, 0x39, 0x17, 0x00];
        assert_eq!(
            lock_words(&xchg, 0x1000),
            Some(vec![(0x1000 + 8 + 0x173925, 1)])
        );
        assert!(may_lock(&lock_words(&xchg, 0)));
        // lock cmpxchg %rcx,0x10(%rip) then xchg %rax,0x10(%rip) (give
        // back by swap: 8 bytes); without `lock` and the swap, nothing.
        let cas = [
            0xF0, 0x48, 0x0F, 0xB1, 0x0D, 0x10, 0x00, 0x00, 0x00, 0x48, 0x87, 0x05, 0x09, 0x00,
            0x00, 0x00,
        ];
        assert_eq!(lock_words(&cas, 0x2000), Some(vec![(0x2000 + 9 + 0x10, 8)]));
        assert_eq!(lock_words(&cas[1..9], 0x2000), Some(vec![]));
        assert!(!may_lock(&lock_words(&cas[1..9], 0)));
        // xchg through a register (%rdi): a lock the map cannot find.
        assert_eq!(lock_words(&[0x86, 0x07], 0), None);
        assert!(may_lock(&lock_words(&[0x86, 0x07], 0)));
        // xchg %al,%bl (register to register) locks nothing.
        assert_eq!(lock_words(&[0x86, 0xC3], 0), Some(vec![]));
        // The layout that hung tests/lto's fat `spin`: the displacement of
        // an `xchg` holds 0x86, which is not another `xchg`.
        let disp86 = [0xB0, 0x01, 0x86, 0x05, 0x86, 0x07, 0x17, 0x00, 0x84, 0xC0];
        assert_eq!(
            lock_words(&disp86, 0x43abb),
            Some(vec![(0x43abb + 8 + 0x170786, 1)])
        );
        // A counter is not a lock: `lock add`, and a `lock xadd` or a
        // `lock cmpxchg` loop (fetch_max) on a word nothing stores back.
        let counter = [0xF0, 0x48, 0x01, 0x05, 0x10, 0x00, 0x00, 0x00];
        assert_eq!(lock_words(&counter, 0), Some(vec![]));
        let xadd = [0xF0, 0x48, 0x0F, 0xC1, 0x05, 0x10, 0x00, 0x00, 0x00];
        assert_eq!(lock_words(&xadd, 0x3000), Some(vec![]));
        assert!(!may_lock(&lock_words(&xadd, 0x3000)));
        // A compare-and-swap lock given back by a store: lock cmpxchg
        // %cl,0x10(%rip) at 0x2000 (word 0x2018), then movb $0,0x9(%rip)
        // at 0x2008 (the same word).
        let cas_lock = [
            0xF0, 0x0F, 0xB0, 0x0D, 0x10, 0x00, 0x00, 0x00, 0xC6, 0x05, 0x09, 0x00, 0x00, 0x00,
            0x00,
        ];
        assert_eq!(lock_words(&cas_lock, 0x2000), Some(vec![(0x2018, 1)]));
        // A counter through a register is not a lock either.
        assert_eq!(lock_words(&[0xF0, 0x48, 0x0F, 0xC1, 0x07], 0), Some(vec![]));
        // Bytes that do not decode (`push %es` is not an x86_64
        // instruction; an `xchg` cut short): nothing can be said.
        assert_eq!(lock_words(&[0x06], 0), None);
        assert_eq!(lock_words(&[0x86, 0x05, 0x00], 0), None);
    }

    /// The kinds of the calling goroutine's frames, innermost first.
    fn frame_kinds() -> Vec<Kind> {
        extern "C" fn each(ctx: *mut UnwindContext, arg: *mut c_void) -> libc::c_int {
            // SAFETY: `arg` is the Vec passed below.
            let v = unsafe { &mut *(arg as *mut Vec<Kind>) };
            let mut before: libc::c_int = 0;
            // SAFETY: the live context handed to this callback.
            let ip = unsafe { _Unwind_GetIPInfo(ctx, &mut before) };
            if ip == 0 {
                return URC_NORMAL_STOP;
            }
            v.push(kind_of(if before != 0 { ip } else { ip - 1 }));
            URC_NO_REASON
        }
        let mut v: Vec<Kind> = Vec::new();
        // SAFETY: the callback only pushes to `v`, which outlives the call.
        unsafe { _Unwind_Backtrace(each, &mut v as *mut Vec<Kind> as *mut c_void) };
        v
    }

    #[test]
    fn goroutine_entry_frames_are_entries() {
        assert!(init());
        let _ = crate::Builder::new().start();
        let kinds = crate::run(|| crate::spawn(frame_kinds).join().unwrap());
        // Innermost: this test's own code (gort's), then the closure
        // inlined or called from Packet::run, ... down to gort_gstart.
        let entries = kinds
            .iter()
            .rev()
            .take_while(|k| **k == Kind::Entry)
            .count();
        assert_eq!(kinds.last(), Some(&Kind::Entry), "{kinds:?}");
        // gort_gstart, goroutine_entry and Packet::run at least.
        assert!(
            entries >= 3,
            "entry frames not classified as entries: {kinds:?}"
        );
    }

    #[test]
    fn map_covers_this_executable() {
        assert!(init(), "no symbol table in the test binary");
        // This test is gort's own code (a unit test of the runtime crate).
        let f = classifies_names as fn() as usize;
        assert_eq!(kind_of(f), Kind::Runtime);
        let u = rustc_demangle::demangle as fn(&str) -> rustc_demangle::Demangle<'_> as usize;
        assert_eq!(kind_of(u), Kind::User);
        let p = std::io::stdout as fn() -> std::io::Stdout as usize;
        assert_eq!(kind_of(p), Kind::Std);
        let r = crate::sched::wakep as fn() as usize;
        assert_eq!(kind_of(r), Kind::Runtime);
        // The entry frame under every goroutine, found by address.
        let e = crate::sched::goroutine_entry as *const () as usize;
        assert_eq!(kind_of(e), Kind::Entry);
        assert_eq!(kind_of(libc::malloc as *const () as usize), Kind::Foreign);
    }
}
