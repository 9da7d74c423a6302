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
    s.drain_idle_ps(|p, global_gfree| {
        // SAFETY: `drain_idle_ps` holds the sched lock, and an idle P
        // belongs to nobody then, so its caches are ours: (1) its stack
        // cache,
        let cache = unsafe { &mut *p.stackcache.get() };
        s.stacks().give(cache.drain(..));
        // (2) its free Gs.
        let gfree = unsafe { &mut *p.gfree.get() };
        global_gfree.append(gfree);
    });
    s.stacks().scavenge(s.config().scavenge_after);
    // SAFETY: malloc_trim only releases free heap pages; always sound.
    unsafe { libc::malloc_trim(0) };
    MAINTENANCE_RUNS.fetch_add(1, Ordering::Relaxed);
}
