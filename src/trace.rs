//! Observability helpers: formatting without allocation (for signal
//! handlers and fatal paths) and runtime statistics.

use std::fmt;

/// A `fmt::Write` into a fixed buffer; output past the end is dropped.
pub(crate) struct FixedBuf<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> FixedBuf<'a> {
    pub(crate) fn new(buf: &'a mut [u8]) -> Self {
        FixedBuf { buf, len: 0 }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl fmt::Write for FixedBuf<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// schedtrace (GORT_DEBUG=schedtrace=MS[,scheddetail=1]), printed by sysmon.

use crate::g::{G_DEAD, G_IDLE, G_RUNNABLE, G_RUNNING, G_SYSCALL, G_WAITING};
use crate::sched::Sched;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;

fn gstatus_name(st: u32) -> &'static str {
    match st {
        G_IDLE => "idle",
        G_RUNNABLE => "runnable",
        G_RUNNING => "running",
        G_WAITING => "waiting",
        G_SYSCALL => "syscall",
        G_DEAD => "dead",
        _ => "?",
    }
}

/// Formats Go's `SCHED` line, and with `detail` a line per P, M and G.
pub(crate) fn sched_report(s: &Sched, detail: bool) -> String {
    let mut out = String::new();
    let ms = s.since_start().as_millis();
    let threads = s.thread_count() + 1; // + sysmon
    let _ = write!(
        out,
        "SCHED {ms}ms: gomaxprocs={} idleprocs={} threads={threads} spinningthreads={} \
         idlethreads={} runqueue={}",
        s.procs(),
        s.idle_ps(),
        s.spinning_ms(),
        s.idle_ms().0,
        s.global_runq_len(),
    );
    if detail {
        let _ = writeln!(out, " sysmonwait={}", s.sysmon_deep());
        for pp in s.allp().iter() {
            let mid = pp.m_ref().map_or(-1, |m| m.id as i64);
            let _ = writeln!(
                out,
                "  P{}: status={} schedtick={} syscalltick={} m={mid} runqsize={} timers={}",
                pp.id,
                pp.status.load(Ordering::Relaxed),
                pp.schedtick.load(Ordering::Relaxed),
                pp.syscalltick.load(Ordering::Relaxed),
                pp.runq.len(),
                pp.timers.len(),
            );
        }
        s.with_ms(|ms| {
            for mp in ms {
                let pid = mp.p_ref().map_or(-1, |p| p.id as i64);
                let gid = mp.curg_ref().map_or(-1, |g| g.id() as i64);
                let lgid = mp.lockedg_ref().map_or(-1, |g| g.id() as i64);
                let _ = writeln!(
                    out,
                    "  M{}: p={pid} curg={gid} spinning={} lockedg={lgid} procid={}",
                    mp.id,
                    mp.is_spinning(),
                    mp.procid.load(Ordering::Relaxed),
                );
            }
        });
        s.with_gs(|gs| {
            for &g in gs {
                let st = g.status();
                if st == G_IDLE {
                    continue;
                }
                let lm = g.lockedm.load(Ordering::Relaxed);
                // SAFETY: Ms are never freed.
                let lmid = unsafe { lm.as_ref() }.map_or(-1, |m| m.id as i64);
                let _ = writeln!(
                    out,
                    "  G{}{}: status={st}({}{}) lockedm={lmid} spawned at {}",
                    g.id(),
                    name_of(g),
                    gstatus_name(st),
                    if st == G_WAITING {
                        format!(": {}", g.waitreason.get().as_str())
                    } else {
                        String::new()
                    },
                    g.spawn_site.get(),
                );
            }
        });
    } else {
        out.push_str(" [");
        for (i, pp) in s.allp().iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            let _ = write!(out, "{}", pp.runq.len());
        }
        out.push_str("]\n");
    }
    out
}

pub(crate) fn schedtrace(s: &Sched, detail: bool) {
    let text = sched_report(s, detail);
    crate::signal::write_stderr(text.as_bytes());
}

// ---------------------------------------------------------------------------
// Goroutine dumps (deadlock reports, gort::dump, SIGQUIT).

/// Every live goroutine, Go-style: `goroutine N [wait reason, waited]:`
/// then where it was spawned.
pub(crate) fn goroutine_dump(s: &Sched) -> String {
    dump_where(s, |_| true)
}

/// The goroutines of one group (`gort::run`), as `goroutine_dump`.
pub(crate) fn goroutine_dump_group(s: &Sched, group: u64) -> String {
    dump_where(s, |g| g.group.load(Ordering::Relaxed) == group)
}

fn dump_where(s: &Sched, keep: impl Fn(&crate::g::G) -> bool) -> String {
    let now = crate::timer::nanotime();
    let mut out = String::new();
    let gs: Vec<&'static crate::g::G> = s.with_gs(|gs| {
        gs.iter()
            .copied()
            .filter(|g| !matches!(g.status(), G_IDLE | G_DEAD) && keep(g))
            .collect()
    });
    // SAFETY: the current G, if any, is alive while it runs this.
    let asker = unsafe { crate::sched::getg().as_ref() }.map_or(0, |g| g.id());
    let traces = crate::traceback::collect(s, &gs, asker);
    for (g, (_, trace)) in gs.iter().zip(traces.iter()) {
        let st = g.status();
        let state = if st == G_WAITING {
            let waited = now.saturating_sub(g.wait_since.load(Ordering::Relaxed));
            format!(
                "{}, {}",
                g.waitreason.get().as_str(),
                fmt_wait(std::time::Duration::from_nanos(waited))
            )
        } else if st == G_RUNNING && g.blocked_since.load(Ordering::Relaxed) != 0 {
            // Blocked in the kernel outside syscall::blocking (sysmon saw
            // it: `unannounced`).
            let since = g.blocked_since.load(Ordering::Relaxed);
            let name = crate::unannounced::syscall_name(g.blocked_nr.load(Ordering::Relaxed));
            format!(
                "syscall, {}, {name}",
                fmt_wait(std::time::Duration::from_nanos(now.saturating_sub(since)))
            )
        } else {
            gstatus_name(st).to_string()
        };
        let locked = if g.lockedm.load(Ordering::Relaxed).is_null() {
            ""
        } else {
            ", locked to thread"
        };
        let name = name_of(g);
        let _ = writeln!(out, "goroutine {}{name} [{state}{locked}]:", g.id());
        crate::traceback::write_trace(&mut out, trace);
        crate::traceback::write_created_by(&mut out, g);
        out.push('\n');
    }
    if let Some(note) = crate::traceback::symbols_note() {
        let _ = writeln!(out, "{note}");
    }
    out
}

/// ` "name"` for a goroutine named with `gort::Spawn::name`, else "".
pub(crate) fn name_of(g: &crate::g::G) -> String {
    if !g.named.load(Ordering::Relaxed) {
        return String::new();
    }
    g.name
        .lock()
        .as_ref()
        .map(|n| format!(" \"{n}\""))
        .unwrap_or_default()
}

/// A wait duration as Go prints it in dumps, but finer: "1.2s", "3 minutes".
fn fmt_wait(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    if secs >= 60 {
        format!("{} minutes", secs / 60)
    } else if secs >= 1 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Prints every goroutine to stderr.
pub(crate) fn dump() {
    let Some(s) = crate::sched::try_sched() else {
        return;
    };
    let text = goroutine_dump(s);
    crate::signal::write_stderr(text.as_bytes());
}
