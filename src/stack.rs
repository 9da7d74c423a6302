//! Goroutine stacks: carved from large mmap'd regions, each with a guard
//! below it, committed lazily by the kernel, and reused through a per-P
//! cache and a global pool.
//!
//! # Layout of a region
//!
//! ```text
//!   region base                                             region end
//!   | guard | stack 0 ....... | guard | stack 1 ....... | ... |
//!           ^lo          hi^          ^lo          hi^
//! ```
//!
//! A region holds `STACKS_PER_REGION` slots of `guard + size` bytes. It is
//! one `mmap(MAP_NORESERVE)`, so untouched stack pages cost neither memory
//! nor commit charge.
//!
//! # Guards and `vm.max_map_count`
//!
//! An `mprotect`ed guard splits a mapping in two, so a guard per stack costs
//! two of the 65,530 mappings a default Linux allows a process — not enough
//! for 100,000 goroutines. On Linux 6.13+ `madvise(MADV_GUARD_INSTALL)`
//! installs guard pages inside one mapping without splitting it, so a whole
//! region stays one mapping. On older kernels (EINVAL), or where the
//! advice is accepted but has no effect (qemu-user; probed once, see
//! `light_guards_work`), we fall back to `mprotect(PROT_NONE)`, which works
//! but limits live goroutines to about 30,000 per process with the default
//! `max_map_count` (README says so).
//!
//! Stacks never shrink back to the kernel here; the scavenger returns the
//! pages of long-idle pooled stacks with `MADV_DONTNEED`.

use crate::lock::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// `madvise` advice that installs guard pages without splitting the VMA
/// (Linux 6.13+). Not yet in every `libc` release, hence our own constant.
const MADV_GUARD_INSTALL: libc::c_int = 102;

/// Guard bytes below each stack. Rust probes every page of large frames in
/// order, so any overflow touches the guard first.
pub(crate) const GUARD_SIZE: usize = 16 * 1024;

const STACKS_PER_REGION: usize = 32;

/// Per-P cache capacity; beyond it half the cache moves to the global pool.
pub(crate) const CACHE_MAX: usize = 32;

/// One goroutine stack: usable memory is `[lo, hi)`, the guard is
/// `[lo - GUARD_SIZE, lo)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stack {
    pub(crate) lo: usize,
    pub(crate) hi: usize,
}

/// A stack in the global pool, with when it arrived there.
#[derive(Clone, Copy, Debug)]
struct Pooled {
    stack: Stack,
    since: std::time::Instant,
    /// Its pages were returned to the kernel (nothing left to scavenge).
    released: bool,
}

impl Stack {
    /// Whether `addr` lies in this stack's guard (or just below it).
    pub(crate) fn guard_contains(&self, addr: usize) -> bool {
        addr < self.lo && addr >= self.lo - GUARD_SIZE
    }
}

/// Whether the kernel accepted `MADV_GUARD_INSTALL` (false after a fallback).
static LIGHT_GUARDS: AtomicBool = AtomicBool::new(true);

/// Bytes of stack address space reserved so far (for stats).
static RESERVED: AtomicUsize = AtomicUsize::new(0);

pub(crate) fn reserved_bytes() -> usize {
    RESERVED.load(Ordering::Relaxed)
}

/// Bytes of stack memory the scavenger has returned so far (stats).
static SCAVENGED: AtomicUsize = AtomicUsize::new(0);

pub(crate) fn scavenged_bytes() -> usize {
    SCAVENGED.load(Ordering::Relaxed)
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

/// Rounds a requested stack size to whole pages.
pub(crate) fn round_size(size: usize) -> usize {
    let page = page_size();
    size.div_ceil(page) * page
}

/// The global pool of free stacks (all of one size, the runtime's).
pub(crate) struct StackPool {
    size: usize,
    /// Free stacks, oldest first: refills take the newest (warm) ones,
    /// the scavenger releases from the old end.
    free: Mutex<Vec<Pooled>>,
}

impl StackPool {
    pub(crate) fn new(size: usize) -> StackPool {
        StackPool {
            size: round_size(size),
            free: Mutex::new(Vec::new()),
        }
    }

    /// Refills `cache` with about half its capacity, from the pool or from a
    /// new region. Aborts with a message if the address space is exhausted.
    pub(crate) fn refill(&self, cache: &mut Vec<Stack>) {
        {
            let mut free = self.free.lock();
            let n = free.len().min(CACHE_MAX / 2);
            if n > 0 {
                let at = free.len() - n;
                cache.extend(free.drain(at..).map(|p| p.stack));
                return;
            }
        }
        let fresh = self.new_region();
        let mut it = fresh.into_iter();
        debug_assert!(self.size > 0);
        cache.extend(it.by_ref().take(CACHE_MAX / 2));
        self.give(it);
    }

    /// Takes back half of an over-full cache.
    pub(crate) fn drain_half(&self, cache: &mut Vec<Stack>) {
        let at = cache.len() / 2;
        self.give(cache.drain(at..));
    }

    /// Takes back stacks (a whole cache, when a P's caches are flushed).
    pub(crate) fn give(&self, stacks: impl Iterator<Item = Stack>) {
        let now = std::time::Instant::now();
        self.free.lock().extend(stacks.map(|stack| Pooled {
            stack,
            since: now,
            released: false,
        }));
    }

    /// The scavenger: returns the memory of pooled stacks idle for longer
    /// than `after` to the kernel (their pages read as zero afterwards; the
    /// address space stays reserved for reuse). Returns bytes released
    /// (an upper bound: untouched pages count too).
    pub(crate) fn scavenge(&self, after: std::time::Duration) -> usize {
        let now = std::time::Instant::now();
        let mut free = self.free.lock();
        let mut bytes = 0;
        for p in free.iter_mut() {
            if p.released || now.duration_since(p.since) < after {
                continue;
            }
            let s = p.stack;
            // SAFETY: [lo, hi) is a free stack no goroutine runs on;
            // MADV_DONTNEED on private anonymous memory only drops its pages.
            unsafe { libc::madvise(s.lo as *mut libc::c_void, s.hi - s.lo, libc::MADV_DONTNEED) };
            p.released = true;
            bytes += s.hi - s.lo;
        }
        SCAVENGED.fetch_add(bytes, Ordering::Relaxed);
        bytes
    }

    /// The (rounded) size of this pool's stacks.
    pub(crate) fn size(&self) -> usize {
        self.size
    }

    /// Number of stacks in the global pool.
    pub(crate) fn pooled(&self) -> usize {
        self.free.lock().len()
    }

    fn new_region(&self) -> Vec<Stack> {
        let slot = GUARD_SIZE + self.size;
        let len = slot * STACKS_PER_REGION;
        // SAFETY: an anonymous private mapping at an address of the kernel's
        // choosing; no existing memory is affected.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            let err = std::io::Error::last_os_error();
            crate::fatal(&format!(
                "cannot reserve goroutine stacks ({len} bytes): {err}"
            ));
        }
        RESERVED.fetch_add(len, Ordering::Relaxed);
        let base = base as usize;
        let mut out = Vec::with_capacity(STACKS_PER_REGION);
        for i in 0..STACKS_PER_REGION {
            let guard = base + i * slot;
            install_guard(guard);
            out.push(Stack {
                lo: guard + GUARD_SIZE,
                hi: guard + slot,
            });
        }
        out
    }
}

/// Whether the first light guard really guards: some environments accept
/// `MADV_GUARD_INSTALL` and do nothing (qemu-user treats unknown advice as
/// a hint it may ignore), and then an overflow would run on into the next
/// stack. Probed once, by asking the kernel to write into the guard page
/// (`uname`): a real guard makes that fail with EFAULT. If it succeeds the
/// page was plain memory (about to become an mprotect guard anyway).
fn light_guards_work(addr: usize) -> bool {
    static VERIFIED: AtomicBool = AtomicBool::new(false);
    if VERIFIED.load(Ordering::Relaxed) {
        return true;
    }
    const { assert!(std::mem::size_of::<libc::utsname>() <= GUARD_SIZE) };
    // SAFETY: `addr` starts GUARD_SIZE bytes of our own mapping, large
    // enough for a utsname; either the kernel refuses to write there
    // (guarded) or it writes into memory nobody uses.
    let r = unsafe { libc::uname(addr as *mut libc::utsname) };
    let guarded = r < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EFAULT);
    VERIFIED.store(guarded, Ordering::Relaxed);
    guarded
}

fn install_guard(addr: usize) {
    if LIGHT_GUARDS.load(Ordering::Relaxed) {
        // SAFETY: [addr, addr + GUARD_SIZE) lies in a region we just mapped
        // and nothing uses yet.
        let r = unsafe { libc::madvise(addr as *mut libc::c_void, GUARD_SIZE, MADV_GUARD_INSTALL) };
        if r == 0 && light_guards_work(addr) {
            return;
        }
        LIGHT_GUARDS.store(false, Ordering::Relaxed);
    }
    // SAFETY: [addr, addr + GUARD_SIZE) lies in a region we just mapped and
    // nothing uses yet; PROT_NONE only changes the protection of those pages.
    let r = unsafe { libc::mprotect(addr as *mut libc::c_void, GUARD_SIZE, libc::PROT_NONE) };
    if r != 0 {
        let err = std::io::Error::last_os_error();
        crate::fatal(&format!(
            "cannot install a goroutine stack guard: {err} \
             (vm.max_map_count reached? see README, 'Limits')"
        ));
    }
}

/// Pools of stacks of other sizes than the runtime's (`Spawn::stack_size`),
/// one per size, made on first use and never freed. They have no per-P
/// caches and are not scavenged.
static SIZED: Mutex<Vec<(usize, &'static StackPool)>> = Mutex::new(Vec::new());

fn sized_pool(size: usize) -> &'static StackPool {
    let mut pools = SIZED.lock();
    if let Some((_, p)) = pools.iter().find(|(s, _)| *s == size) {
        return p;
    }
    let p: &'static StackPool = Box::leak(Box::new(StackPool::new(size)));
    pools.push((size, p));
    p
}

/// A stack of `size` bytes (a multiple of the page size).
pub(crate) fn alloc_sized(size: usize) -> Stack {
    let pool = sized_pool(size);
    let mut some = Vec::new();
    pool.refill(&mut some);
    let stack = some.pop().expect("stack refill produced nothing");
    pool.give(some.into_iter());
    stack
}

/// Gives back a stack from `alloc_sized`.
pub(crate) fn free_sized(stack: Stack) {
    sized_pool(stack.hi - stack.lo).give(std::iter::once(stack));
}
