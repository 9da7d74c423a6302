//! sysmon: the monitor thread. An M without a P that never runs
//! goroutines; it watches the Ps from outside (docs/design.md, "sysmon").
//!
//! Each round it:
//! - **retakes**: a P whose `schedtick` has not moved for the time slice
//!   gets `preempt_one` (its goroutine ran too long); a P whose M sits in a
//!   system call for more than one sysmon round is taken back (CAS
//!   `P_SYSCALL` → `P_IDLE`) and handed to another M if it has work or no
//!   P is idle, and always after 10ms;
//! - **polls the network** (without blocking) when nobody did for 10ms;
//! - runs the **periodic duties**: the stack scavenger and the maintenance
//!   goroutine (Go's forced GC slot);
//! - prints **schedtrace** when `GORT_DEBUG=schedtrace=MS` asks.
//!
//! # Sleeping
//!
//! 20µs between rounds while rounds find work; after 50 idle rounds the
//! delay doubles each round, up to 10ms — or half the time slice, if that
//! is shorter, so a short slice is honoured. When every P is idle sysmon
//! sleeps deeply on `sysmon_note` (an idle program costs no CPU) until a P
//! becomes busy (`acquirep` wakes it) or a periodic duty is due. A P
//! entering a syscall with work queued "kicks" sysmon so the handoff does
//! not wait out a long delay. A sleep that ends at a timer's deadline uses
//! 1ns timer slack; the round delay uses the kernel's default 50µs, as in
//! Go (`SLACK_ROUND` says why).

use crate::p::{P_RUNNING, P_SYSCALL};
use crate::sched::Sched;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Go's forcePreemptNS lives in the config (`time_slice`); these are fixed.
const MIN_DELAY: Duration = Duration::from_micros(20);
const MAX_DELAY: Duration = Duration::from_millis(10);
/// The shortest round delay once the slice is at least this (see `sysmon`).
const SHORT_SLICE_ROUND: Duration = Duration::from_millis(1);
/// A syscall longer than this always loses its P.
const SYSCALL_HANDOFF_ALWAYS: Duration = Duration::from_millis(10);
/// sysmon polls the network when nobody did for this long.
const NETPOLL_EVERY: Duration = Duration::from_millis(10);
/// How often sysmon looks for idle stacks to scavenge.
const SCAVENGE_CHECK: Duration = Duration::from_secs(1);

/// sysmon's view of one P: the schedtick it saw last and when it changed.
#[derive(Clone, Copy)]
struct PTick {
    schedtick: u32,
    schedwhen: Instant,
    /// When sysmon last asked this P's goroutine to yield (not yet seen
    /// to): the next slice starts about then, not when sysmon sees it.
    preempted_at: Option<Instant>,
    /// Its M's thread, watched for unannounced blocking.
    watch: crate::unannounced::Watch,
}

/// Times sysmon handed off a P from a syscall, and preemptions it asked
/// for (stats).
pub(crate) static HANDOFFS: AtomicU64 = AtomicU64::new(0);
pub(crate) static PREEMPT_REQUESTS: AtomicU64 = AtomicU64::new(0);
/// Rounds sysmon has run (stats, tests of the idle sleep).
pub(crate) static ROUNDS: AtomicU64 = AtomicU64::new(0);
/// Sleeps on sysmon's note for at most `d`, publishing the wake-up time so
/// that an earlier timer can cut the sleep short.
/// With `deadline`, `d` ends at a deadline (a time slice's end) and is
/// slept precisely, like a sleep that ends at a timer.
fn sleep_for(s: &Sched, d: Duration, deadline: bool) {
    let now = crate::timer::nanotime();
    crate::timer::plan_sysmon_wake(now.saturating_add(d.as_nanos() as u64));
    // Re-check after publishing: a timer added just before is seen here.
    // sysmon wakes when the earliest timer is TIMER_LATE_NS late: if its P
    // is busy, retake then ends the running goroutine's slice (an idle P's
    // M runs it on time by itself). A timer already that late does not
    // shorten the sleep: retake asked for it, and the caller's `d` says
    // when to look again (sysmon must not spin).
    let next = crate::timer::next_timer(s).saturating_add(crate::timer::TIMER_LATE_NS);
    let until_timer = Duration::from_nanos(next.saturating_sub(now));
    let for_timer = next > now && until_timer < d;
    // Precise only when a timer is due: see SLACK_ROUND.
    set_timer_slack(if for_timer || deadline {
        SLACK_TIMER
    } else {
        SLACK_ROUND
    });
    s.sysmon_note()
        .sleep_timeout(if for_timer { until_timer } else { d });
    crate::timer::plan_sysmon_wake(0);
    s.sysmon_note().clear();
}

/// After asking a busy P to run an overdue timer, sysmon looks again this
/// soon (then twice as long each round it is still overdue, up to the round
/// delay): a goroutine that was in the kernel got only the cooperative
/// request, and gets the signal once it is back in user code.
const TIMER_RECHECK: Duration = Duration::from_micros(50);

/// Timer slack (ns) of sysmon's sleeps that end at a timer's deadline:
/// the timer should run on time.
const SLACK_TIMER: u64 = 1;
/// Timer slack (ns) of sysmon's other sleeps (the round delay): the
/// kernel's default, as Go's sysmon has. With 1ns here the 20µs rounds that
/// follow a syscall handoff ran exactly every 20µs and delayed the M that
/// sysmon had just woken: on a 2-vCPU VM it started 72µs after the wakeup
/// (p50) instead of 18µs, and `handoff` took 80µs instead of 37µs.
const SLACK_ROUND: u64 = 50_000;

/// Sets sysmon's timer slack (a syscall only when it changes).
fn set_timer_slack(ns: u64) {
    // Only sysmon's thread calls this; 0 = not set yet.
    static CURRENT: AtomicU64 = AtomicU64::new(0);
    if CURRENT.swap(ns, Ordering::Relaxed) != ns {
        // SAFETY: PR_SET_TIMERSLACK only affects the calling thread's sleeps.
        unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, ns as libc::c_ulong, 0, 0, 0) };
    }
}

/// Starts the sysmon thread (which waits until the runtime is complete).
pub(crate) fn start() {
    extern "C" fn main(_: *mut libc::c_void) -> *mut libc::c_void {
        crate::thread::set_thread_name("gort-sysmon");
        std::mem::forget(crate::deadlock::runtime_thread());
        sysmon(crate::sched::wait_sched())
    }
    crate::thread::spawn_thread(256 * 1024, main, std::ptr::null_mut());
}

fn sysmon(s: &'static Sched) -> ! {
    // The code map is slow to build (it reads and demangles the symbol
    // table: tens of milliseconds), so a helper thread builds it while
    // sysmon already works; preemption signals start once it is ready
    // (cooperative requests work from the start).
    if s.config().async_preempt {
        crate::arch::init_cpu_features();
        let built = std::thread::Builder::new()
            .name("gort-codemap".into())
            .spawn(move || {
                let _rt = crate::deadlock::runtime_thread();
                // Preemption works once the symbol table is read; what may
                // be left (the DWARF inline ranges of a build without LTO)
                // only refines the map, and is read once the first
                // preemption signal goes out (`want_refinement`). Not at a
                // lowered priority: this thread allocates, and behind a
                // spin-locked global allocator a nice-19 holder of the lock
                // starved the Ms spinning for it (a 1 ms ticker stalled for
                // 250 ms in tests/lto's thin build).
                crate::symbols::init_staged(&|| s.set_async_preempt(true));
            });
        if let Err(e) = built {
            crate::fatal(&format!("cannot start the code-map thread: {e}"));
        }
    }
    let slice = s.config().time_slice;
    // sysmon wakes at every slice end anyway (`slice_end` below); the round
    // delay bounds how late it notices that a P switched goroutines (the
    // new one's slice is dated from then) and starts watching a new thread.
    // Half a slice, but not under 1ms for a slice of 1ms or more: at a 1ms
    // slice, Ps preempted in the same round end their next slices
    // together, and the rounds between (every 500µs) were ~1,000 of
    // sysmon's 3,900 wake-ups a second beside four spinners on two Ps,
    // each taking a CPU from a spinner (their throughput at 1ms against
    // 10ms, 3 alternated rounds: −5.1 to −5.8% → −2.7 to −3.6%). Below
    // 1ms the half-slice round stays: with 100µs rounds instead of 50µs at
    // a 100µs slice sysmon kept the slices closer to 100µs (29k
    // preemptions in 3s instead of 25.7k) and the spinners lost more (−19%
    // against −15%).
    let round_floor = if slice >= SHORT_SLICE_ROUND {
        SHORT_SLICE_ROUND
    } else {
        MIN_DELAY
    };
    let max_delay = MAX_DELAY.min(slice / 2).max(round_floor);
    let now = Instant::now();
    let mut ticks = vec![
        PTick {
            schedtick: 0,
            schedwhen: now,
            preempted_at: None,
            watch: Default::default(),
        };
        s.procs()
    ];
    let mut mon = crate::unannounced::Monitor::new(s);
    let mut idle: u32 = 0;
    let mut delay = MIN_DELAY;
    let mut last_trace = now;
    let mut last_scavenge = now;
    let mut last_maintenance = now;
    let trace_every = Duration::from_millis(s.config().debug.schedtrace_ms);
    let mut dead_candidate = None;
    // When the earliest time slice running now ends (from retake).
    let mut slice_end: Option<Instant> = None;
    // When retake wants to look at a thread that may be blocked in the
    // kernel (nanotime).
    let mut look_at: Option<u64> = None;
    // Set while a busy P's timer is overdue: when to look again (see
    // TIMER_RECHECK).
    let mut timer_recheck: Option<Duration> = None;
    loop {
        if idle == 0 {
            delay = MIN_DELAY;
        } else if idle > 50 {
            delay = (delay * 2).min(max_delay);
        }
        let round = timer_recheck.map_or(delay, |r| r.min(delay));
        // Wake when the earliest running slice ends, so that every slice
        // lasts about `slice`, not up to a round delay more (fairness).
        let until_slice = slice_end.map(|e| e.saturating_duration_since(Instant::now()));
        let until_look = look_at
            .map(|t| Duration::from_nanos(t.saturating_sub(crate::timer::nanotime())))
            .map(|d| d.max(MIN_DELAY));
        match (until_slice, until_look) {
            (Some(u), l) if u < round && l.is_none_or(|l| u <= l) => {
                sleep_for(s, u.max(MIN_DELAY), true)
            }
            (_, Some(l)) if l < round => sleep_for(s, l, false),
            _ => sleep_for(s, round, false),
        }
        if s.take_sysmon_kick() {
            idle = 0;
        }
        ROUNDS.fetch_add(1, Ordering::Relaxed);

        if crate::signal::take_sigquit() {
            // Go's SIGQUIT: dump every goroutine, exit with code 2.
            crate::exectrace::sigquit(); // exectrace: finish the trace file
            let text = format!("SIGQUIT: quit\n\n{}", crate::trace::goroutine_dump(s));
            crate::signal::write_stderr(text.as_bytes());
            crate::thread::exit_now(2);
        }

        // Every P idle: maybe a deadlock (confirmed after a grace period),
        // else deep sleep (nothing to preempt or retake) — unless a timer is
        // already overdue: then start an M for it below instead.
        if s.idle_ps() == s.procs() && crate::timer::next_timer(s) > crate::timer::nanotime() {
            let recheck = crate::deadlock::sysmon_check(s, &mut dead_candidate);
            if trace_every.is_zero() {
                s.set_sysmon_deep(true);
                if s.idle_ps() == s.procs() {
                    let mut until = next_duty(s, last_scavenge, last_maintenance);
                    if let Some(r) = recheck {
                        until = until.min(r);
                    }
                    if let Some(w) = mon.next_warning() {
                        until = until.min(w);
                    }
                    sleep_for(s, until, false);
                }
                s.set_sysmon_deep(false);
                idle = 0;
                delay = MIN_DELAY;
            }
        } else {
            dead_candidate = None;
        }

        // Overdue timers with nobody looking: start an M for an idle P
        // (it runs every P's expired timers while looking for work).
        if crate::timer::next_timer(s) <= crate::timer::nanotime()
            && s.idle_ps() > 0
            && crate::sched::try_claim_spinner(s)
        {
            crate::sched::startm(s, None, true);
            idle = 0;
        }

        // The network, if nobody polled it for NETPOLL_EVERY (every P
        // busy with long runners): what is ready goes to the global queue.
        if crate::netpoll::inited() && crate::netpoll::claim_overdue_poll(NETPOLL_EVERY) {
            let list = crate::netpoll::netpoll(Some(Duration::ZERO));
            if list.len() > 0 {
                crate::sched::injectglist(s, None, list);
                idle = 0;
            }
        }

        let now = Instant::now();
        mon.follow_lost(s, s.async_preempt_on());
        let seen = retake(s, &mut ticks, &mut mon, now);
        slice_end = seen.slice_end;
        look_at = seen.look_at;
        timer_recheck = match (seen.timer_late, timer_recheck) {
            (false, _) => None,
            (true, None) => Some(TIMER_RECHECK),
            (true, Some(r)) => Some((r * 2).min(max_delay)),
        };
        if seen.retaken > 0 {
            idle = 0;
        } else {
            idle += 1;
        }

        if now.duration_since(last_scavenge) >= scavenge_every(s) {
            last_scavenge = now;
            s.stacks().scavenge(s.config().scavenge_after);
        }
        if now.duration_since(last_maintenance) >= s.config().maintenance_period {
            last_maintenance = now;
            crate::maintenance::start_maintenance();
        }
        if !trace_every.is_zero() && now.duration_since(last_trace) >= trace_every {
            last_trace = now;
            crate::trace::schedtrace(s, s.config().debug.scheddetail);
        }
    }
}

/// How long sysmon may sleep deeply before a periodic duty is due.
fn next_duty(s: &Sched, last_scavenge: Instant, last_maintenance: Instant) -> Duration {
    let now = Instant::now();
    let scav = (last_scavenge + scavenge_every(s)).saturating_duration_since(now);
    let maint = (last_maintenance + s.config().maintenance_period).saturating_duration_since(now);
    scav.min(maint).max(MIN_DELAY)
}

/// Preempts long-running goroutines and takes Ps back from syscalls,
/// announced or not (`unannounced`). Returns how many Ps it took back,
/// when the earliest time slice running now ends, when it wants to look at
/// a thread that may be blocked in the kernel (nanotime), and whether a
/// busy P's timer is overdue (its goroutine was asked to stop for it).
/// What one `retake` pass found.
struct Retake {
    /// Ps taken from their Ms (syscall handoffs, unannounced blocking).
    retaken: u32,
    /// When the earliest time slice running now ends.
    slice_end: Option<Instant>,
    /// When to look again at a thread that may be blocked in the kernel
    /// (nanotime).
    look_at: Option<u64>,
    /// A busy P's timer is overdue (see TIMER_RECHECK).
    timer_late: bool,
}

fn retake(
    s: &'static Sched,
    ticks: &mut [PTick],
    mon: &mut crate::unannounced::Monitor,
    now: Instant,
) -> Retake {
    let mut n = 0;
    let mut timer_late = false;
    let mut slice_end: Option<Instant> = None;
    let mut look_at: Option<u64> = None;
    let slice = s.config().time_slice;
    let async_ok = s.async_preempt_on();
    let now_ns = crate::timer::nanotime();
    for (pp, pd) in s.allp().iter().zip(ticks.iter_mut()) {
        let status = pp.status.load(Ordering::SeqCst);
        // Whether the P's current time slice is used up (running, or
        // entered a syscall at the end of it: Go's `sysretake`).
        let mut slice_over = false;
        let mut tick_moved = true;
        if status == P_RUNNING || status == P_SYSCALL {
            let t = pp.schedtick.load(Ordering::Relaxed);
            tick_moved = pd.schedtick != t;
            if tick_moved {
                pd.schedtick = t;
                crate::unannounced::Monitor::reset(&mut pd.watch);
                // After our preemption request the next goroutine started
                // right away: date its slice from the request.
                pd.schedwhen = match pd.preempted_at.take() {
                    Some(at) if now.duration_since(at) < slice => at,
                    _ => now,
                };
            } else {
                slice_over = now.duration_since(pd.schedwhen) >= slice;
            }
        } else {
            pd.preempted_at = None;
        }
        // A timer of this P's is overdue: its M looks at the heap only when
        // it next schedules, which a goroutine that computes, or blocks in
        // short plain calls, puts off to the end of its slice (a 1ms ticker
        // beside 8 cold-cache file readers woke 4-5ms late at p50). The
        // goroutine's slice is over now.
        if status == P_RUNNING && crate::timer::timer_overdue(pp, now_ns) {
            slice_over = true;
            timer_late = true;
        }
        if status == P_RUNNING {
            let mut end = pd.schedwhen + slice;
            let mp = pp.m_ref();
            // Whether the thread may be running (not sat in the kernel).
            let mut ran = true;
            let mut p_look_at = None;
            if let (Some(mp), false) = (mp, tick_moved) {
                // The schedtick did not move this round: watch the thread.
                let seen = mon.watch(s, pp, mp, &mut pd.watch);
                if seen.handed_off {
                    n += 1;
                    continue;
                }
                ran = seen.ran;
                p_look_at = seen.look_at;
            }
            if slice_over {
                if let Some(mp) = mp {
                    // A thread seen running that sits in the kernel now:
                    // its P goes if work waits for it; else no signal (it
                    // would be rejected, and would cut short a call with
                    // a timeout: EINTR). The cooperative request stays.
                    let in_syscall = ran && mon.in_syscall(mp);
                    if in_syscall && mon.take_overstayed(s, pp, mp, &mut pd.watch, now_ns) {
                        n += 1;
                        continue;
                    }
                    let signal = async_ok && ran && !in_syscall;
                    if crate::preempt::preempt_one(mp, signal) {
                        PREEMPT_REQUESTS.fetch_add(1, Ordering::Relaxed);
                        crate::exectrace::retake_preempt(pp, mp); // exectrace
                        pd.preempted_at = Some(now);
                    }
                    // The goroutine just watched is being signalled off its
                    // thread, which was seen running (not in a system
                    // call): a second look at it would most likely find
                    // another goroutine there (which gets its own first
                    // look); if the signal finds an unsafe point, the next
                    // round watches it as before. At a 1ms slice that look
                    // was a wake-up of its own per slice end.
                    if signal {
                        p_look_at = None;
                    }
                }
                // The next slice starts about now.
                end = now + slice;
            }
            if let Some(t) = p_look_at {
                look_at = Some(look_at.map_or(t, |l| l.min(t)));
            }
            slice_end = Some(slice_end.map_or(end, |e| e.min(end)));
        } else if status == P_SYSCALL {
            // entersyscall stamps the start, so "more than one sysmon
            // tick" is measured, not inferred from two rounds (which made a
            // kicked sysmon wait a second round before handing off).
            let since = pp.syscall_since.load(Ordering::Relaxed);
            let waited = Duration::from_nanos(crate::timer::nanotime().saturating_sub(since));
            if waited < MIN_DELAY && !slice_over {
                continue;
            }
            // Keep the P for a quick return if nothing waits for it and
            // someone else can look for work.
            if pp.runq.is_empty()
                && s.spinning_ms() + s.idle_ps() > 0
                && waited < SYSCALL_HANDOFF_ALWAYS
            {
                continue;
            }
            if pp
                .status
                .compare_exchange(
                    P_SYSCALL,
                    crate::p::P_IDLE,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                )
                .is_ok()
            {
                n += 1;
                HANDOFFS.fetch_add(1, Ordering::Relaxed);
                crate::exectrace::retake_syscall(pp); // exectrace
                pp.syscalltick.fetch_add(1, Ordering::Relaxed);
                crate::sched::handoff_p(s, pp);
            }
        }
    }
    Retake {
        retaken: n,
        slice_end,
        look_at,
        timer_late,
    }
}

/// How often the scavenger looks: every second, or more often for short
/// `scavenge_after` settings (tests), but not more than every 10ms.
fn scavenge_every(s: &Sched) -> Duration {
    SCAVENGE_CHECK
        .min(s.config().scavenge_after)
        .max(Duration::from_millis(10))
}
