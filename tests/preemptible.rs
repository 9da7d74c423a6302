//! `#[gort::preemptible]`: the expansion keeps the code's meaning, the
//! injected check makes a tight loop preemptible without signals, and it
//! reports a stack overflow before the guard page is reached.
//!
//! The runtime is configured once for this binary (one P, no signal
//! preemption, 1ms slices): without the cooperative check nothing could
//! take the P from a spinning goroutine. Cases that need another
//! configuration, or must hang or crash, run in child processes.

mod common;

use common::{is_child, run_child};
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(60);

fn start_runtime() {
    static START: Once = Once::new();
    START.call_once(|| {
        gort::Builder::new()
            .procs(1)
            .async_preempt(false)
            .time_slice(Duration::from_millis(1))
            .start()
            .expect("start gort");
    });
}

// ---------------------------------------------------------------------------
// Expansion correctness: annotated functions compute what they would
// without the attribute.

/// Labelled loops with `continue 'outer` and `break 'outer value`.
#[gort::preemptible]
fn first_pair_with_sum(xs: &[u32], target: u32) -> Option<(usize, usize)> {
    let mut i = 0;
    'outer: loop {
        if i >= xs.len() {
            break None;
        }
        let a = xs[i];
        i += 1;
        if a > target {
            continue 'outer;
        }
        for (j, b) in xs.iter().enumerate().skip(i) {
            if a + b == target {
                break 'outer Some((i - 1, j));
            }
        }
    }
}

/// `while let`, with `break` from a nested `if`.
#[gort::preemptible]
fn sum_until_negative(mut v: Vec<i64>) -> i64 {
    v.reverse();
    let mut s = 0;
    while let Some(x) = v.pop() {
        if x < 0 {
            break;
        }
        s += x;
    }
    s
}

/// `for` with `break`, loops inside `match` arms and `if` branches.
#[gort::preemptible]
fn classify(xs: &[u32], mode: u8) -> u32 {
    let mut found = 0;
    match mode {
        0 => {
            for x in xs {
                if *x > 10 {
                    found = *x;
                    break;
                }
            }
        }
        1 => {
            let mut k = 0;
            while k < xs.len() {
                found += xs[k];
                k += 1;
            }
        }
        _ => {
            if xs.is_empty() {
                found = u32::MAX;
            } else {
                let mut n = xs[0];
                loop {
                    if n <= 1 {
                        break;
                    }
                    n /= 2;
                    found += 1;
                }
            }
        }
    }
    found
}

/// Loops inside closures, nested closures, and a closure that borrows
/// mutably from the function.
#[gort::preemptible]
fn closures(n: u64) -> u64 {
    let tri = |k: u64| {
        let mut acc = 0;
        for i in 0..=k {
            acc += i;
        }
        acc
    };
    let mut calls = 0;
    let mut nested = |m: u64| {
        calls += 1;
        let inner = move |j: u64| {
            let mut t = 0;
            let mut i = 0;
            while i < j {
                t += tri(i);
                i += 1;
            }
            t
        };
        inner(m)
    };
    let r = nested(n) + nested(1);
    r * 10 + calls
}

/// Early `return` from inside a loop, with `?`.
#[gort::preemptible]
fn checked_sum(xs: &[&str]) -> Result<i64, String> {
    let mut sum = 0i64;
    for (i, s) in xs.iter().enumerate() {
        let v: i64 = s.parse().map_err(|e| format!("item {i}: {e}"))?;
        if v < 0 {
            return Err(format!("item {i} is negative"));
        }
        sum += v;
    }
    Ok(sum)
}

/// Generic function with a where clause.
#[gort::preemptible]
fn max_of<T, I>(it: I) -> Option<T>
where
    T: PartialOrd + Copy,
    I: IntoIterator<Item = T>,
{
    let mut best: Option<T> = None;
    for x in it {
        best = match best {
            Some(b) if b >= x => Some(b),
            _ => Some(x),
        };
    }
    best
}

/// `loop { break value }` as an expression, plus a mutable borrow that
/// comes out of a loop (borrowck must see the same code).
#[gort::preemptible]
fn collatz_steps(start: u64, scratch: &mut Vec<u64>) -> u64 {
    let mut n = start;
    let steps = loop {
        if n == 1 {
            break scratch.len() as u64;
        }
        scratch.push(n);
        n = if n.is_multiple_of(2) {
            n / 2
        } else {
            3 * n + 1
        };
    };
    let mut i = 0;
    let last = loop {
        if i + 1 >= scratch.len() {
            break scratch.last_mut();
        }
        i += 1;
    };
    if let Some(l) = last {
        *l += 1000;
    }
    steps
}

/// Nested items and const contexts are left alone: injecting the
/// (non-const) check into any of these would not compile.
#[gort::preemptible]
fn const_contexts() -> usize {
    const N: usize = {
        let mut i = 0;
        while i < 4 {
            i += 1;
        }
        i
    };
    const fn twice(x: usize) -> usize {
        let mut i = 0;
        let mut r = 0;
        while i < 2 {
            r += x;
            i += 1;
        }
        r
    }
    let a = [1u8; {
        let mut k = 0;
        while k < 3 {
            k += 1;
        }
        k
    }];
    let c = const {
        let mut j = 0;
        loop {
            j += 1;
            if j == 5 {
                break j;
            }
        }
    };
    let g = [0u8; twice(3)].len();
    N + a.len() + c + g
}

struct Tally {
    hits: Vec<u32>,
}

impl Tally {
    /// Associated function (no receiver).
    #[gort::preemptible]
    fn with_len(n: usize) -> Tally {
        let mut hits = Vec::new();
        for i in 0..n {
            hits.push(i as u32);
        }
        Tally { hits }
    }

    /// Method with `&mut self`.
    #[gort::preemptible]
    fn raise_all(&mut self, limit: u32) -> u32 {
        let mut total = 0;
        for h in self.hits.iter_mut() {
            while *h < limit {
                *h += 1;
                total += 1;
            }
        }
        total
    }

    /// Method with `self` by value and an early return.
    #[gort::preemptible]
    fn into_first_at_least(self, v: u32) -> Option<usize> {
        for (i, h) in self.hits.into_iter().enumerate() {
            if h >= v {
                return Some(i);
            }
        }
        None
    }
}

trait Items {
    fn items(&self) -> &[u64];

    /// Trait method with a default body.
    #[gort::preemptible]
    fn total(&self) -> u64 {
        let mut s = 0;
        for x in self.items() {
            s += x;
        }
        s
    }
}

impl Items for Tally {
    fn items(&self) -> &[u64] {
        &[4, 5, 6]
    }
}

/// Every expansion case; panics on a wrong result.
fn check_expansions() {
    assert_eq!(first_pair_with_sum(&[9, 1, 20, 4, 5], 9), Some((3, 4)));
    assert_eq!(first_pair_with_sum(&[30, 1, 2], 9), None);
    assert_eq!(first_pair_with_sum(&[], 9), None);

    assert_eq!(sum_until_negative(vec![1, 2, 3, -1, 100]), 6);
    assert_eq!(sum_until_negative(vec![]), 0);

    assert_eq!(classify(&[1, 5, 11, 30], 0), 11);
    assert_eq!(classify(&[1, 5, 11, 30], 1), 47);
    assert_eq!(classify(&[64], 2), 6);
    assert_eq!(classify(&[], 2), u32::MAX);

    // tri(0..4) = 0 + 1 + 3 + 6 = 10; tri(0..1) = 0; two calls.
    assert_eq!(closures(4), 102);

    assert_eq!(checked_sum(&["1", "2", "39"]), Ok(42));
    assert_eq!(
        checked_sum(&["1", "-2", "x"]),
        Err("item 1 is negative".into())
    );
    assert!(checked_sum(&["1", "x"]).unwrap_err().starts_with("item 1:"));

    assert_eq!(max_of([3, 9, 2]), Some(9));
    assert_eq!(max_of(vec![1.5, -2.0]), Some(1.5));
    assert_eq!(max_of(Vec::<u8>::new()), None);

    let mut scratch = Vec::new();
    assert_eq!(collatz_steps(27, &mut scratch), 111);
    assert_eq!(scratch.len(), 111);
    assert_eq!(scratch[110], 2 + 1000);
    scratch.clear();
    assert_eq!(collatz_steps(1, &mut scratch), 0);

    assert_eq!(const_contexts(), 4 + 3 + 5 + 6);

    let mut t = Tally::with_len(3);
    assert_eq!(t.hits, vec![0, 1, 2]);
    assert_eq!(t.raise_all(4), 4 + 3 + 2);
    assert_eq!(t.hits, vec![4, 4, 4]);
    assert_eq!(t.total(), 15);
    t.hits[2] = 9;
    assert_eq!(t.into_first_at_least(5), Some(2));
}

#[test]
fn expansion_outside_goroutines() {
    // A plain thread: the check must be a no-op here.
    check_expansions();
    std::thread::spawn(check_expansions).join().unwrap();
}

#[test]
fn expansion_on_goroutines() {
    start_runtime();
    gort::run(|| {
        check_expansions();
        let hs: Vec<_> = (0..4).map(|_| gort::spawn(check_expansions)).collect();
        for h in hs {
            h.join().unwrap();
        }
    });
}

// ---------------------------------------------------------------------------
// Preemption of a tight loop, served only by the injected check.

/// Spins until `stop` is set. No calls, no yields: the loop body is an
/// add, and the injected check is the only preemption point.
#[gort::preemptible]
fn spin_preemptible(stop: &AtomicBool) -> u64 {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n = n.wrapping_add(1);
    }
    n
}

/// The same loop without the attribute (the negative control).
fn spin_plain(stop: &AtomicBool) -> u64 {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n = n.wrapping_add(1);
    }
    n
}

const PROBE_TIME: Duration = Duration::from_millis(500);

/// On a goroutine: spawns `spin`, then yields for `PROBE_TIME` of wall
/// time, counting how often it got the P back (also into `progress`, for
/// a watchdog), then stops and joins the spinner. Returns (times run,
/// spinner iterations).
fn starvation_probe(spin: fn(&AtomicBool) -> u64, progress: Arc<AtomicU64>) -> (u64, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let h = gort::spawn(move || spin(&s));
    let start = Instant::now();
    let mut runs = 0;
    while start.elapsed() < PROBE_TIME {
        gort::yield_now();
        runs += 1;
        progress.fetch_add(1, Ordering::Relaxed);
    }
    stop.store(true, Ordering::Relaxed);
    (runs, h.join().unwrap())
}

#[test]
fn tight_loop_is_preempted_by_the_check() {
    start_runtime();
    let st = gort::stats();
    assert_eq!(st.procs, 1);
    assert!(!st.async_preempt, "this test needs signal preemption off");
    let before = st.preempted_cooperative;
    let (runs, spins) = gort::run(|| starvation_probe(spin_preemptible, Arc::default()));
    let after = gort::stats();
    eprintln!(
        "main ran {runs} times in {PROBE_TIME:?}; spinner did {spins} iterations; \
         cooperative preemptions {} -> {} (requests {}, async {})",
        before, after.preempted_cooperative, after.preempt_requests, after.preempted_async
    );
    assert!(spins > 0, "the spinner never ran");
    assert!(runs >= 5, "main goroutine ran only {runs} times");
    assert!(
        after.preempted_cooperative >= before + 5,
        "cooperative preemptions: {before} -> {}",
        after.preempted_cooperative
    );
}

/// Child: runs the probe with one P and no signal preemption. A watchdog
/// thread ends the process with "STARVED" (exit code 3) if the main
/// goroutine has not finished after 2s.
#[test]
#[ignore = "child process of plain_tight_loop_starves_and_annotated_does_not"]
fn child_spinner() {
    if !is_child() {
        return;
    }
    let annotated = match std::env::var("SPINNER").as_deref() {
        Ok("preemptible") => true,
        Ok("plain") => false,
        v => panic!("SPINNER must be preemptible or plain, not {v:?}"),
    };
    gort::Builder::new()
        .procs(1)
        .async_preempt(false)
        .time_slice(Duration::from_millis(1))
        .start()
        .expect("start gort");
    assert!(!gort::stats().async_preempt);
    let progress = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    {
        let progress = progress.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(2));
            if !done.load(Ordering::SeqCst) {
                println!(
                    "STARVED: main goroutine ran {} times, then never again",
                    progress.load(Ordering::Relaxed)
                );
                let _ = std::io::stdout().flush();
                // SAFETY: _exit ends the process at once, without running
                // atexit handlers while the runtime's threads still spin.
                unsafe { libc::_exit(3) };
            }
        });
    }
    let spin = if annotated {
        spin_preemptible
    } else {
        spin_plain
    };
    let (runs, spins) = gort::run(move || starvation_probe(spin, progress));
    done.store(true, Ordering::SeqCst);
    println!(
        "FINISHED runs={runs} spins={spins} cooperative={}",
        gort::stats().preempted_cooperative
    );
}

#[test]
fn plain_tight_loop_starves_and_annotated_does_not() {
    let env = |spinner| [("SPINNER", spinner), ("GORT_DEBUG", "asyncpreemptoff=1")];

    let out = run_child("child_spinner", &env("plain"), T);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("STARVED") && out.status.code() == Some(3),
        "the unannotated spinner should starve the main goroutine: {:?}\n{stdout}\n{stderr}",
        out.status
    );

    // Same process setup, same loop, with the attribute: it finishes.
    let out = run_child("child_spinner", &env("preemptible"), T);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("FINISHED") && !stdout.contains("STARVED"),
        "the annotated spinner should be preempted: {:?}\n{stdout}\n{stderr}",
        out.status
    );
}

// ---------------------------------------------------------------------------
// Stack overflow reported by the check, before the guard page.

/// Recurses forever with a 1 KiB frame (smaller than the check's 8 KiB
/// margin, so the check runs before the frame can reach the guard).
#[gort::preemptible]
fn deep_preemptible(n: u64) -> u64 {
    let buf = std::hint::black_box([n as u8; 1024]);
    if n == u64::MAX {
        return 0;
    }
    let r = deep_preemptible(n + 1);
    std::hint::black_box(&buf);
    r.wrapping_add(buf[3] as u64)
}

/// The same without the attribute: only the guard page catches it.
fn deep_plain(n: u64) -> u64 {
    let buf = std::hint::black_box([n as u8; 1024]);
    if n == u64::MAX {
        return 0;
    }
    let r = deep_plain(n + 1);
    std::hint::black_box(&buf);
    r.wrapping_add(buf[3] as u64)
}

#[test]
#[ignore = "child process of overflow_is_reported_by_the_check"]
fn child_overflow() {
    if !is_child() {
        return;
    }
    let deep: fn(u64) -> u64 = match std::env::var("RECURSE").as_deref() {
        Ok("preemptible") => deep_preemptible,
        Ok("plain") => deep_plain,
        v => panic!("RECURSE must be preemptible or plain, not {v:?}"),
    };
    gort::run(move || {
        // Overflow only after the id is printed (else, with two Ps, the
        // abort can come first).
        let (go, wait) = gort::chan::channel::<()>(1);
        let h = gort::spawn(move || {
            wait.recv().unwrap();
            let top = 0u8;
            println!(
                "TOP {:#x}",
                std::hint::black_box(&top) as *const u8 as usize
            );
            let _ = std::io::stdout().flush();
            deep(0)
        });
        println!("GOROUTINE {}", h.id());
        let _ = std::io::stdout().flush();
        go.send(()).unwrap();
        h.join().unwrap()
    });
}

/// Runs `child_overflow` and returns (fault address, lowest usable stack
/// address as estimated from the goroutine's first frame).
fn overflow_child(recurse: &str) -> (usize, usize) {
    let out = run_child("child_overflow", &[("RECURSE", recurse)], T);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ctx = format!(
        "{recurse}: {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    let field = |text: &str, key: &str| -> String {
        let rest = text
            .split(key)
            .nth(1)
            .unwrap_or_else(|| panic!("no {key:?}: {ctx}"));
        rest.chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect()
    };
    let hex = |s: String| usize::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
    let id = field(&stdout, "GOROUTINE ");
    assert!(
        stderr.contains(&format!("goroutine {id} stack overflow")),
        "missing overflow report for goroutine {id}: {ctx}"
    );
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{ctx}");
    let fault = hex(field(&stderr, "fault at "));
    let size: usize = field(&stderr, "stack size ").parse().unwrap();
    // Stacks are whole pages: the top of the stack is the first page
    // boundary above the goroutine's first frame (if that frame is less
    // than a page deep; if deeper, `lo` comes out lower, which only makes
    // the check below weaker, never wrong).
    let page = 4096;
    let top = hex(field(&stdout, "TOP "));
    let lo = top.next_multiple_of(page) - size;
    eprintln!(
        "{recurse}: fault at {fault:#x}, estimated stack lo {lo:#x} ({:+} bytes)",
        fault as isize - lo as isize
    );
    (fault, lo)
}

#[test]
fn overflow_is_reported_by_the_check() {
    // Annotated: the check sees the stack pointer inside the margin above
    // the stack's low end and reports at that address.
    let (fault, lo) = overflow_child("preemptible");
    assert!(
        fault >= lo,
        "the overflow was caught below the stack ({fault:#x} < {lo:#x}), i.e. by the guard \
         page, not by the check"
    );
    // Control: without the attribute the same recursion runs into the
    // guard page, below the stack.
    let (fault, lo) = overflow_child("plain");
    assert!(
        fault < lo,
        "plain recursion reported at {fault:#x} >= {lo:#x}"
    );
}
