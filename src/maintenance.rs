//! The maintenance goroutine (Go's forced-GC slot): started by sysmon
//! every `maintenance_period` (docs/design.md, "Periodic duties and
//! observability").

use std::sync::atomic::{AtomicU64, Ordering};

/// Maintenance passes completed (stats, tests).
pub(crate) static MAINTENANCE_RUNS: AtomicU64 = AtomicU64::new(0);

/// Started by sysmon every `maintenance_period`: moves the idle Ps' cached
/// stacks and Gs to the global pools (where the scavenger can release
/// them), scavenges, and returns freed heap to the OS.
pub(crate) fn start_maintenance() {
    drop(crate::spawn(maintenance));
}

fn maintenance() {
    let s = crate::sched::sched();
    {
        let sl = s.lock.lock();
        let mut pp = sl.pidle;
        // SAFETY: idle Ps belong to nobody while we hold the sched lock
        // (taking one off the idle list needs it), so their caches are ours.
        while let Some(p) = unsafe { pp.as_ref() } {
            let cache = unsafe { &mut *p.stackcache.get() };
            s.stacks.give(cache.drain(..));
            let gfree = unsafe { &mut *p.gfree.get() };
            s.gfree.lock().extend(gfree.drain(..));
            pp = p.link.get();
        }
    }
    s.stacks.scavenge(s.config.scavenge_after);
    // SAFETY: malloc_trim only releases free heap pages; always sound.
    unsafe { libc::malloc_trim(0) };
    MAINTENANCE_RUNS.fetch_add(1, Ordering::Relaxed);
}
