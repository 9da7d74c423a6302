//! Debuggers and profilers can unwind goroutine stacks.
//!
//! Goroutines run on their own mmap'd stacks, entered through the assembly
//! routine `gort_gstart` (asm/<arch>/switch.S). Its CFI marks the return
//! address undefined and it zeroes the frame pointer, so both kinds of
//! unwinder must stop there cleanly:
//!
//! - `gdb_backtrace_stops_at_goroutine_entry` breaks in a goroutine under
//!   `gdb -batch` and checks that `bt` lists the goroutine's frames in order
//!   and ends at `gort_gstart`, with no "Backtrace stopped" complaint.
//! - `perf_callchains_reach_goroutine_entry` profiles a goroutine spinning in
//!   a known function with `perf record -g` (frame pointers; the workspace
//!   builds with `-C force-frame-pointers=yes`) and checks the call chains
//!   in `perf script`: they must go through the goroutine's functions down
//!   to `gort_gstart` and end there.
//! - `perf_dwarf_callchains_reach_goroutine_entry` does the same with
//!   `perf record --call-graph dwarf`, which unwinds with the CFI instead.
//!
//! The tests run this very test binary as the child process (found with
//! `std::env::current_exe()`), selecting one of the `#[ignore]`d
//! `child_*` tests, which a normal `cargo test` run skips.
//!
//! # When gdb or perf is missing
//!
//! If `gdb` or `perf` is not installed (or perf may not profile here, e.g.
//! because of `kernel.perf_event_paranoid`), the test that needs it prints a
//! notice to stderr and passes, so a developer box without them still runs
//! the suite. When the environment variable `CI` is set it fails instead: CI
//! installs both tools, and a silently skipped test proves nothing.
//!
//! Every child process is killed after `CHILD_TIMEOUT`, so a hang fails the
//! test instead of blocking the run.

use std::hint::black_box;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long any child process (gdb, perf, the probe) may run.
const CHILD_TIMEOUT: Duration = Duration::from_secs(60);

/// How long the perf probe keeps the CPU busy in `unwind_probe_leaf`.
const SPIN_TIME: Duration = Duration::from_secs(1);

/// Names of the child tests (top level of this file, so `--exact` takes the
/// bare name).
const CHILD_BREAKPOINT: &str = "child_breakpoint_in_goroutine";
const CHILD_SPIN: &str = "child_spin_in_goroutine";

/// The goroutine's call chain, outermost first, and where it ends.
const OUTER: &str = "unwind_probe_outer";
const MIDDLE: &str = "unwind_probe_middle";
const LEAF: &str = "unwind_probe_leaf";
const ENTRY: &str = "gort_gstart";

// ---------------------------------------------------------------------------
// The probe: three distinct, non-inlined frames on a goroutine stack.

#[derive(Clone, Copy, Debug)]
enum Probe {
    /// Return at once: gdb sets a breakpoint on the leaf.
    Breakpoint,
    /// Burn CPU in the leaf for this long: perf samples it.
    Spin(Duration),
}

#[inline(never)]
fn unwind_probe_outer(probe: Probe) -> u64 {
    // Using the result after the call keeps it from becoming a tail call,
    // which would take this frame off the stack.
    black_box(unwind_probe_middle(black_box(probe))).wrapping_add(1)
}

#[inline(never)]
fn unwind_probe_middle(probe: Probe) -> u64 {
    black_box(unwind_probe_leaf(black_box(probe))).wrapping_mul(3)
}

#[inline(never)]
fn unwind_probe_leaf(probe: Probe) -> u64 {
    match probe {
        Probe::Breakpoint => black_box(7),
        Probe::Spin(time) => {
            let start = Instant::now();
            let rounds = black_box(100_000u32);
            let mut x = black_box(0x9e37_79b9_7f4a_7c15u64);
            while start.elapsed() < time {
                // Nearly all the time goes here. The loop is plain integer
                // arithmetic with no calls even unoptimised, so samples land
                // in this function's own code, not in a callee.
                let mut i = 0;
                while i < rounds {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    i += 1;
                }
                x = black_box(x);
            }
            x
        }
    }
}

/// Runs the probe in a goroutine spawned by the main goroutine.
fn run_probe(probe: Probe) {
    let r = gort::run(move || {
        gort::spawn(move || unwind_probe_outer(black_box(probe)))
            .join()
            .expect("probe goroutine panicked")
    });
    black_box(r);
}

#[test]
#[ignore = "child process of gdb_backtrace_stops_at_goroutine_entry"]
fn child_breakpoint_in_goroutine() {
    run_probe(Probe::Breakpoint);
}

#[test]
#[ignore = "child process of the perf_* tests"]
fn child_spin_in_goroutine() {
    run_probe(Probe::Spin(SPIN_TIME));
}

const CHILD_PREEMPTED: &str = "child_spin_preempted";
const TRAMPOLINE: &str = "gort_async_preempt";

/// Two probes spinning on one P with a 100µs slice: sysmon preempts them by
/// signal thousands of times a second, so some samples land while a probe
/// sits in the preemption trampoline.
#[test]
#[ignore = "child process of perf_unwinds_through_preemption_trampoline"]
fn child_spin_preempted() {
    gort::Builder::new()
        .procs(1)
        .time_slice(Duration::from_micros(100))
        .start()
        .expect("start gort");
    let t0 = std::time::Instant::now();
    while !gort::stats().async_preempt && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(2));
    }
    let r = gort::run(|| {
        let a = gort::spawn(|| unwind_probe_outer(black_box(Probe::Spin(SPIN_TIME))));
        let b = gort::spawn(|| unwind_probe_outer(black_box(Probe::Spin(SPIN_TIME))));
        a.join().unwrap() ^ b.join().unwrap()
    });
    black_box(r);
    assert!(gort::stats().preempted_async > 100, "{:?}", gort::stats());
}

// ---------------------------------------------------------------------------
// Running tools.

/// Whether `tool` can be used. If not: fails under CI, otherwise prints a
/// notice and returns false, and the caller skips its test.
fn require_tool(tool: &str, test: &str, usable: Result<(), String>) -> bool {
    match usable {
        Ok(()) => true,
        Err(why) => {
            if std::env::var_os("CI").is_some() {
                panic!("{test}: {tool} is needed but not usable here ({why}); CI must install it");
            }
            // Straight to the stderr stream: libtest captures `eprintln!`
            // of passing tests, and this notice is meant to be seen.
            let _ = writeln!(
                std::io::stderr(),
                "notice: skipping {test}: {tool} is not usable here ({why})"
            );
            false
        }
    }
}

struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Finished {
    fn describe(&self) -> String {
        format!(
            "status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

fn drain(mut r: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Runs `cmd` to completion with stdout and stderr captured. Kills it (and
/// panics with what it printed) if it takes longer than `CHILD_TIMEOUT`.
/// Err if it cannot be started at all.
fn run_with_timeout(mut cmd: Command) -> Result<Finished, String> {
    let what = format!("{cmd:?}");
    let mut child: Child = cmd
        // Its own process group, so a timeout kills the probe that gdb or
        // perf started along with them (it holds our pipes open too).
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {what}: {e}"))?;
    let out = drain(child.stdout.take().expect("piped stdout"));
    let err = drain(child.stderr.take().expect("piped stderr"));
    let deadline = Instant::now() + CHILD_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                // SAFETY: kill(2) has no memory-safety preconditions; the
                // group is the one the child leads (process_group(0)).
                unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
                let status = child.wait();
                let stdout = out.join().unwrap_or_default();
                let stderr = err.join().unwrap_or_default();
                panic!(
                    "timed out after {CHILD_TIMEOUT:?}, killed ({status:?}): {what}\n\
                     --- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
                );
            }
            Err(e) => panic!("waiting for {what}: {e}"),
        }
    };
    Ok(Finished {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

fn this_test_binary() -> PathBuf {
    std::env::current_exe().expect("current_exe")
}

/// Removes a file when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(tag: &str) -> TempFile {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("gort-unwind-{}-{n}-{tag}.data", std::process::id());
        TempFile(std::env::temp_dir().join(name))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        let _ = std::fs::remove_file(self.0.with_extension("data.old"));
    }
}

// ---------------------------------------------------------------------------
// gdb

/// A frame line of gdb's `bt` (`#3  0x... in name (args) at file:line`):
/// the function name, or None if `line` is not a frame line.
fn gdb_frame_function(line: &str) -> Option<&str> {
    let rest = line.strip_prefix('#')?;
    let rest = rest.trim_start_matches(|c: char| c.is_ascii_digit());
    let rest = rest.trim_start();
    let rest = match rest.split_once(" in ") {
        Some((addr, after)) if addr.starts_with("0x") => after,
        _ => rest,
    };
    Some(rest.split(" (").next().unwrap_or(rest).trim())
}

fn gdb_usable() -> Result<(), String> {
    let mut cmd = Command::new("gdb");
    cmd.args(["-batch", "-nx", "-ex", "show version"]);
    match run_with_timeout(cmd)? {
        f if f.status.success() => Ok(()),
        f => Err(format!("`gdb -batch` failed: {}", f.describe())),
    }
}

#[test]
fn gdb_backtrace_stops_at_goroutine_entry() {
    if !require_tool(
        "gdb",
        "gdb_backtrace_stops_at_goroutine_entry",
        gdb_usable(),
    ) {
        return;
    }
    let mut cmd = Command::new("gdb");
    cmd.args(["-batch", "-nx"])
        // With full debug info (the test profile) gdb knows the function by
        // its Rust path, `unwind::unwind_probe_leaf`; with line tables only
        // (the release profile) by its bare name. Exactly one of the two
        // breakpoints can be set, and it is breakpoint 1; gdb just prints
        // "not defined" for the other.
        .args(["-ex", &format!("break {}::{LEAF}", module_path!())])
        .args(["-ex", &format!("break {LEAF}")])
        .args(["-ex", "run", "-ex", "bt"])
        .arg("--args")
        .arg(this_test_binary())
        .args(["--exact", CHILD_BREAKPOINT, "--ignored", "--nocapture"])
        .arg("--test-threads=1")
        // No network lookups for debug info of system libraries.
        .env_remove("DEBUGINFOD_URLS");
    let run = run_with_timeout(cmd).expect("running gdb");
    let all = run.describe();

    assert!(
        run.stdout.contains("Breakpoint 1, "),
        "the goroutine never hit the breakpoint on {LEAF}\n{all}"
    );
    for bad in [
        "Backtrace stopped",
        "previous frame identical",
        "corrupt stack",
    ] {
        assert!(
            !all.contains(bad),
            "gdb could not unwind the goroutine stack cleanly ({bad:?})\n{all}"
        );
    }
    let frames: Vec<&str> = run.stdout.lines().filter_map(gdb_frame_function).collect();
    assert!(!frames.is_empty(), "no backtrace in gdb's output\n{all}");
    assert!(
        !frames.iter().any(|f| f.starts_with("??")),
        "gdb found frames it cannot name: {frames:#?}\n{all}"
    );
    // Names are `unwind::unwind_probe_leaf` with full debug info and bare
    // `unwind_probe_leaf` with line tables only.
    let pos = |name: &str| frames.iter().position(|f| f.ends_with(name));
    let (leaf, middle, outer) = (pos(LEAF), pos(MIDDLE), pos(OUTER));
    assert_eq!(leaf, Some(0), "frame #0 is not {LEAF}: {frames:#?}\n{all}");
    let Some((_, outer)) = middle.zip(outer).filter(|&(m, o)| 0 < m && m < o) else {
        panic!("bt does not list {LEAF}, {MIDDLE}, {OUTER} in that order: {frames:#?}\n{all}");
    };
    let last = frames.len() - 1;
    assert!(
        frames[last] == ENTRY && frames.iter().filter(|f| **f == ENTRY).count() == 1,
        "bt does not end at {ENTRY}, the goroutine's outermost frame: {frames:#?}\n{all}"
    );
    // Between the probe and gort_gstart: the closure and the runtime's
    // goroutine entry (`gort::sched::goroutine_entry`, or `goroutine_entry`
    // with line tables only).
    assert!(
        last - outer >= 2 && frames[last - 1].ends_with("goroutine_entry"),
        "expected the runtime's goroutine entry right below {ENTRY}: {frames:#?}\n{all}"
    );
}

// ---------------------------------------------------------------------------
// perf

/// One `perf script` sample: the function names of its call chain,
/// innermost first (`[unknown]` where perf found no symbol).
fn perf_samples(script: &str) -> Vec<Vec<String>> {
    let mut samples = Vec::new();
    let mut current: Option<Vec<String>> = None;
    for line in script.lines() {
        if line.trim().is_empty() {
            samples.extend(current.take());
        } else if line.starts_with(char::is_whitespace) {
            // "\t    55d0c0ffee00 sym+0x1a (/path/to/dso)"
            let frame = line.trim();
            let after_addr = frame.split_once(' ').map_or("", |(_, rest)| rest);
            let sym = match after_addr.rfind(" (") {
                Some(i) => &after_addr[..i],
                None => after_addr,
            };
            let sym = match sym.rfind("+0x") {
                Some(i) => &sym[..i],
                None => sym,
            };
            if let Some(c) = current.as_mut() {
                c.push(sym.to_string());
            }
        } else {
            // A sample header line.
            samples.extend(current.take());
            current = Some(Vec::new());
        }
    }
    samples.extend(current);
    samples
}

struct ChainCounts {
    /// Samples with the leaf probe as the innermost frame.
    leaf: usize,
    /// ...whose chain then goes through middle and outer and ends at the
    /// goroutine entry.
    whole: usize,
    /// An example of a chain that is not whole, for the failure message.
    broken_example: Option<Vec<String>>,
}

fn count_chains(samples: &[Vec<String>]) -> ChainCounts {
    let mut counts = ChainCounts {
        leaf: 0,
        whole: 0,
        broken_example: None,
    };
    for chain in samples {
        if !chain.first().is_some_and(|f| f.contains(LEAF)) {
            continue;
        }
        counts.leaf += 1;
        let pos = |name: &str| chain.iter().position(|f| f.contains(name));
        let in_order = matches!(
            (pos(MIDDLE), pos(OUTER)),
            (Some(m), Some(o)) if 0 < m && m < o
        );
        let ends_at_entry = chain.last().is_some_and(|f| f.contains(ENTRY))
            && chain.iter().filter(|f| f.contains(ENTRY)).count() == 1;
        if in_order && ends_at_entry {
            counts.whole += 1;
        } else if counts.broken_example.is_none() {
            counts.broken_example = Some(chain.clone());
        }
    }
    counts
}

fn perf_usable() -> Result<(), String> {
    let data = TempFile::new("probe");
    let mut cmd = Command::new("perf");
    cmd.args(["record", "-q", "-e", "cpu-clock", "-g", "-o"])
        .arg(&data.0)
        .args(["--", "true"]);
    match run_with_timeout(cmd)? {
        f if f.status.success() => Ok(()),
        f => Err(format!("`perf record -- true` failed: {}", f.describe())),
    }
}

/// Profiles the child test `child` with `perf record <record_args>` and
/// returns the samples of `perf script`, failing the test if either step
/// fails.
fn profile_child(child: &str, tag: &str, record_args: &[&str]) -> (Vec<Vec<String>>, String) {
    let data = TempFile::new(tag);
    let mut cmd = Command::new("perf");
    cmd.arg("record")
        .args(record_args)
        .args(["-e", "cpu-clock", "-o"])
        .arg(&data.0)
        .arg("--")
        .arg(this_test_binary())
        .args(["--exact", child, "--ignored", "--test-threads=1"]);
    let rec = run_with_timeout(cmd).expect("running perf record");
    assert!(
        rec.status.success() && rec.stdout.contains("1 passed"),
        "perf record of {child} failed\n{}",
        rec.describe()
    );
    let mut cmd = Command::new("perf");
    // --no-inline: inline expansion calls addr2line per address and is
    // slow; the probe functions are never inlined anyway.
    cmd.args(["script", "--no-inline", "-i"]).arg(&data.0);
    let script = run_with_timeout(cmd).expect("running perf script");
    assert!(
        script.status.success(),
        "perf script failed\n{}",
        script.stderr
    );
    (perf_samples(&script.stdout), script.stdout)
}

fn check_perf_chains(mode: &str, samples: &[Vec<String>], script: &str) {
    let c = count_chains(samples);
    let excerpt: String = script.lines().take(60).collect::<Vec<_>>().join("\n");
    eprintln!(
        "perf {mode}: {} samples, {} with {LEAF} innermost, {} of those whole down to {ENTRY}",
        samples.len(),
        c.leaf,
        c.whole
    );
    // ~1 s of CPU at perf's default 4 kHz gives thousands of samples.
    assert!(
        c.leaf >= 100,
        "perf {mode}: only {} of {} samples are in {LEAF}\n{excerpt}",
        c.leaf,
        samples.len()
    );
    // A sample can land in the leaf's prologue or epilogue, where the frame
    // pointer still names the caller's frame and the frame-pointer walk
    // skips one function; that is a handful of instructions, so nearly all
    // chains must be whole.
    assert!(
        c.whole * 10 >= c.leaf * 9,
        "perf {mode}: only {} of {} samples in {LEAF} have a chain through {MIDDLE} and \
         {OUTER} ending at {ENTRY}; e.g. {:#?}",
        c.whole,
        c.leaf,
        c.broken_example
    );
}

#[test]
fn perf_callchains_reach_goroutine_entry() {
    if !require_tool(
        "perf",
        "perf_callchains_reach_goroutine_entry",
        perf_usable(),
    ) {
        return;
    }
    let (samples, script) = profile_child(CHILD_SPIN, "fp", &["-g"]);
    check_perf_chains("-g (frame pointers)", &samples, &script);
}

/// The same with `perf record --call-graph dwarf`, which copies 8 KiB of
/// the user stack per sample and unwinds it with the CFI afterwards.
///
/// A goroutine stack ends at the top of its mapping, and perf's libunwind
/// reader (`access_mem` in tools/perf/util/unwind-libunwind-local.c) rejects
/// the last word of its stack copy (`addr + 8 >= end`, off by one); so
/// `init_stack` leaves 16 unused bytes above the first frame, or the chain
/// would end `goroutine_entry -> [unknown]` instead of reaching
/// `gort_gstart`. This test guards that.
#[test]
fn perf_dwarf_callchains_reach_goroutine_entry() {
    if !require_tool(
        "perf",
        "perf_dwarf_callchains_reach_goroutine_entry",
        perf_usable(),
    ) {
        return;
    }
    let (samples, script) = profile_child(CHILD_SPIN, "dwarf", &["--call-graph", "dwarf"]);
    check_perf_chains("--call-graph dwarf", &samples, &script);
}

/// Samples taken inside preempted goroutines — in the trampoline or the
/// Rust code it calls — must unwind through the trampoline frame into the
/// interrupted probe and on to the goroutine entry.
#[test]
fn perf_unwinds_through_preemption_trampoline() {
    if !require_tool(
        "perf",
        "perf_unwinds_through_preemption_trampoline",
        perf_usable(),
    ) {
        return;
    }
    for (mode, args) in [
        ("-g", &["-g"][..]),
        ("dwarf", &["--call-graph", "dwarf"][..]),
    ] {
        // A high sample rate: the trampoline runs for a few µs at a time.
        let record_args: Vec<&str> = args.iter().copied().chain(["-F", "20000"]).collect();
        // Samples land in the trampoline's µs-long windows by chance: 50 to
        // 170 of ~40,000 in a run here, but once only 2 (a CI run). A
        // second recording when the first caught fewer than 5; the
        // unwinding itself is judged on whatever was caught.
        let mut samples = Vec::new();
        for attempt in 0..2 {
            let (s, _) = profile_child(
                CHILD_PREEMPTED,
                &format!("tramp-{mode}-{attempt}"),
                &record_args,
            );
            samples = s;
            let caught = samples
                .iter()
                .filter(|c| c.iter().any(|f| f == TRAMPOLINE))
                .count();
            if caught >= 5 {
                break;
            }
            eprintln!("perf {mode}: only {caught} samples in the trampoline; recording again");
        }
        // Samples through the trampoline whose innermost frame is gort's
        // own code (the trampoline, or Rust it calls): libc and the kernel
        // have no frame pointers, so chains from there are not expected to
        // be whole in -g mode.
        let through: Vec<&Vec<String>> = samples
            .iter()
            .filter(|c| c.iter().any(|f| f == TRAMPOLINE))
            // A sample in a SIGURG handler that interrupted the trampoline
            // (the next preemption request, or a dump) is on the signal
            // stack: perf's stack copy starts there, so its chain stops
            // at the interrupted frame whatever the trampoline's CFI says.
            .filter(|c| !c.iter().any(|f| f.contains("sigurg_handler")))
            .filter(|c| {
                c.first()
                    .is_some_and(|f| f.starts_with(TRAMPOLINE) || f.contains("gort::"))
            })
            .collect();
        let is_whole = |c: &&&Vec<String>| {
            let t = c.iter().position(|f| f == TRAMPOLINE).unwrap();
            let pos = |name: &str| c.iter().position(|f| f.contains(name));
            // Frame-pointer mode cannot see the interrupted leaf while
            // the sample is on the trampoline's own `push rbp`/`ret`
            // (rbp is still, or again, the leaf's caller's); the CFI
            // (dwarf mode) always can.
            let leaf_ok = match pos(LEAF) {
                Some(l) => t < l,
                None => mode == "-g" && c[0] == TRAMPOLINE,
            };
            leaf_ok
                && matches!(
                    (pos(MIDDLE), pos(OUTER)),
                    (Some(m), Some(o)) if t < m && m < o
                )
                && c.last().is_some_and(|f| f.contains(ENTRY))
        };
        let whole = through.iter().filter(is_whole).count();
        let broken: Vec<&&Vec<String>> = through.iter().filter(|c| !is_whole(c)).take(3).collect();
        eprintln!(
            "perf {mode}: {} samples, {} through {TRAMPOLINE}, {whole} of those whole",
            samples.len(),
            through.len()
        );
        if !broken.is_empty() {
            eprintln!("perf {mode}: not whole, e.g. {broken:?}");
        }
        assert!(
            through.len() >= 5,
            "perf {mode}: only {} samples in the trampoline's frames",
            through.len()
        );
        assert!(
            whole * 10 >= through.len() * 9,
            "perf {mode}: {whole} of {} trampoline samples unwind to the probe and \
             {ENTRY}; broken: {broken:#?}",
            through.len(),
        );
    }
}

#[test]
fn parsers_read_tool_output() {
    // gdb frame lines, with and without an address.
    assert_eq!(
        gdb_frame_function("#0  unwind::unwind_probe_leaf (probe=...) at tests/unwind.rs:80"),
        Some("unwind::unwind_probe_leaf")
    );
    assert_eq!(
        gdb_frame_function("#12 0x000055555556a1b0 in gort_gstart ()"),
        Some("gort_gstart")
    );
    assert_eq!(gdb_frame_function("Breakpoint 1, x () at y.rs:1"), None);
    // perf script samples.
    let script = "\
unwind-abc 123 [001] 1.000: 250000 cpu-clock:
\t    55d0c0ffee00 unwind::unwind_probe_leaf+0x1a (/t/unwind-abc)
\t    55d0c0ffee80 gort_gstart+0x9 (/t/unwind-abc)

unwind-abc 123 [001] 1.001: 250000 cpu-clock:
\t    7f0000000000 [unknown] ([unknown])
";
    let samples = perf_samples(script);
    assert_eq!(
        samples,
        vec![
            vec![
                "unwind::unwind_probe_leaf".to_string(),
                "gort_gstart".to_string()
            ],
            vec!["[unknown]".to_string()],
        ]
    );
}
