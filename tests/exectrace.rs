//! The execution tracer (gort::exectrace, GORT_TRACE): traces parse back as
//! Chrome Trace Event JSON and hold their invariants; the flight recorder
//! keeps only its window and writes it on a deadlock. Each scenario runs in
//! a child process: tracing is process-wide.

mod common;

use common::{is_child, run_child};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(120);

fn tmp_path(name: &str) -> String {
    let dir = std::env::temp_dir();
    format!(
        "{}/gort-exectrace-{}-{name}.json",
        dir.display(),
        std::process::id()
    )
}

fn load(path: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {path}: {e}"));
    v["traceEvents"]
        .as_array()
        .expect("traceEvents array")
        .clone()
}

fn ts(e: &Value) -> f64 {
    e["ts"].as_f64().expect("ts")
}

fn dur(e: &Value) -> f64 {
    e["dur"].as_f64().expect("dur")
}

fn cat(e: &Value) -> &str {
    e["cat"].as_str().unwrap_or("")
}

/// Run slices (category "run") by M track.
fn runs_by_track(evs: &[Value]) -> HashMap<u64, Vec<&Value>> {
    let mut m: HashMap<u64, Vec<&Value>> = HashMap::new();
    for e in evs.iter().filter(|e| e["ph"] == "X" && cat(e) == "run") {
        m.entry(e["tid"].as_u64().unwrap()).or_default().push(e);
    }
    m
}

/// Parses `KEY v1 v2 ...` lines printed by a child.
fn line_values(stdout: &str, key: &str) -> Vec<u64> {
    stdout
        .lines()
        .find_map(|l| l.split(&format!("{key} ")).nth(1))
        .unwrap_or_else(|| panic!("no {key} line in:\n{stdout}"))
        .split_whitespace()
        .map(|s| s.parse().unwrap())
        .collect()
}

#[inline(never)]
fn spin_until(stop: &AtomicBool) -> u64 {
    let mut x = 1u64;
    while !stop.load(Ordering::Relaxed) {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
    }
    x
}

/// Work of every kind the tracer records: spawns, joins, channel
/// hand-offs, yields, sleeps, a blocking syscall, TCP through the
/// netpoller, and spinners that only preemption stops. Returns the ids of
/// the goroutines it spawned (all of them ran to completion).
fn workload(spin_for: Duration) -> Vec<u64> {
    let mut ids = Vec::new();
    // Preemption: more spinners than Ps.
    let stop = Arc::new(AtomicBool::new(false));
    let spinners: Vec<_> = (0..3)
        .map(|_| {
            let stop = stop.clone();
            gort::spawn(move || spin_until(&stop))
        })
        .collect();
    ids.extend(spinners.iter().map(|h| h.id()));
    // Channels and yields.
    let (tx, rx) = gort::chan::channel::<u64>(0);
    // Named (with a quote, which the JSON must escape): the label says so.
    let echo = gort::Spawn::new().name("echo \"1\"").spawn(move || {
        let mut n = 0;
        while let Ok(v) = rx.recv() {
            n += v;
            gort::yield_now();
        }
        n
    });
    ids.push(echo.id());
    // A blocking syscall.
    let sys = gort::spawn(|| {
        gort::syscall::blocking(|| std::thread::sleep(Duration::from_millis(20)));
    });
    ids.push(sys.id());
    // A plain blocking call (no syscall::blocking): sysmon hands its P off.
    let plain = gort::spawn(|| std::thread::sleep(Duration::from_millis(30)));
    ids.push(plain.id());
    // TCP echo through the netpoller.
    let l = gort::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let server = gort::spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        let mut buf = [0u8; 8];
        while c.read_exact(&mut buf).is_ok() {
            c.write_all(&buf).unwrap();
        }
    });
    ids.push(server.id());
    let client = gort::spawn(move || {
        let mut c = gort::net::TcpStream::connect(addr).unwrap();
        let mut buf = [0u8; 8];
        for i in 0..50u64 {
            c.write_all(&i.to_le_bytes()).unwrap();
            c.read_exact(&mut buf).unwrap();
        }
    });
    ids.push(client.id());
    for i in 0..100 {
        tx.send(i).unwrap();
    }
    drop(tx);
    let t0 = Instant::now();
    while t0.elapsed() < spin_for {
        gort::time::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Relaxed);
    for h in spinners {
        h.join().unwrap();
    }
    assert_eq!(echo.join().unwrap(), 4950);
    sys.join().unwrap();
    plain.join().unwrap();
    client.join().unwrap();
    server.join().unwrap();
    // A join that parks whatever the timing (the spinners above may all
    // have ended before their joins, as happened once under qemu): the
    // joined goroutine waits for a send that comes 50 ms from now.
    let (ready_tx, ready_rx) = gort::chan::channel::<()>(0);
    let waiter = gort::spawn(move || ready_rx.recv().unwrap());
    let sender = gort::spawn(move || {
        gort::time::sleep(Duration::from_millis(50));
        ready_tx.send(()).unwrap();
    });
    waiter.join().unwrap();
    sender.join().unwrap();
    ids
}

fn wait_async_preempt() {
    let t0 = Instant::now();
    while !gort::stats().async_preempt && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
#[ignore = "child process"]
fn child_env_trace() {
    if !is_child() {
        return;
    }
    gort::Builder::new()
        .procs(2)
        .unannounced_handoff(Some(gort::DEFAULT_UNANNOUNCED_HANDOFF))
        .start()
        .expect("start gort");
    wait_async_preempt();
    let ids = gort::run(|| workload(Duration::from_millis(300)));
    println!(
        "IDS {}",
        ids.iter().map(u64::to_string).collect::<Vec<_>>().join(" ")
    );
    // No goroutine runs any more: the counters are final. The trace is
    // written at exit.
    let st = gort::stats();
    println!(
        "PREEMPT {} {}",
        st.preempted_async, st.preempted_cooperative
    );
    println!("UNANNOUNCED {}", st.unannounced_handoffs);
}

/// GORT_TRACE from the environment: the file is written at exit, parses
/// back, and holds the invariants.
#[test]
fn env_trace_parses_and_holds_invariants() {
    let path = tmp_path("env");
    let out = run_child("child_env_trace", &[("GORT_TRACE", &path)], T);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let evs = load(&path);
    let _ = std::fs::remove_file(&path);

    // Slices on one M never overlap (they are in time order, each ends
    // before the next starts; 1ns of rounding allowed).
    let tracks = runs_by_track(&evs);
    assert!(tracks.len() >= 2, "run slices on {} Ms", tracks.len());
    for (tid, mut v) in tracks.clone() {
        v.sort_by(|a, b| ts(a).total_cmp(&ts(b)));
        for w in v.windows(2) {
            assert!(
                ts(w[0]) + dur(w[0]) <= ts(w[1]) + 0.001,
                "overlap on track {tid}: {} then {}",
                w[0],
                w[1]
            );
        }
        for s in &v {
            assert!(dur(s) >= 0.0, "{s}");
        }
    }

    // Every goroutine that ran has a slice.
    let ran: HashSet<u64> = evs
        .iter()
        .filter(|e| e["ph"] == "X" && cat(e) == "run")
        .map(|e| e["args"]["g"].as_u64().unwrap())
        .collect();
    for id in line_values(&stdout, "IDS") {
        assert!(ran.contains(&id), "goroutine {id} ran but has no slice");
    }

    // The preemption events match stats().
    let p = line_values(&stdout, "PREEMPT");
    let count = |name: &str| evs.iter().filter(|e| e["name"] == name).count() as u64;
    assert_eq!(count("preempt async"), p[0], "async preemptions");
    assert_eq!(
        count("preempt cooperative"),
        p[1],
        "cooperative preemptions"
    );
    assert!(p[0] + p[1] > 0, "the spinners were never preempted");
    // Unannounced handoffs (the plain sleep's P, at least) match stats().
    let handoffs = evs
        .iter()
        .filter(|e| {
            e["name"]
                .as_str()
                .is_some_and(|n| n.ends_with("blocked in the kernel"))
        })
        .count() as u64;
    let u = line_values(&stdout, "UNANNOUNCED");
    assert_eq!(handoffs, u[0], "unannounced handoffs");
    assert!(handoffs >= 1, "the plain 30ms sleep's P was not handed off");
    // Preempted slices end with that reason.
    let preempted_slices = evs
        .iter()
        .filter(|e| cat(e) == "run" && e["args"]["end"] == "preempted")
        .count() as u64;
    assert_eq!(preempted_slices, p[0] + p[1]);

    // Parks carry their wait reason; syscalls, retakes and netpoll
    // wake-ups are there.
    let ends: HashSet<&str> = evs
        .iter()
        .filter(|e| cat(e) == "run")
        .filter_map(|e| e["args"]["end"].as_str())
        .collect();
    for reason in ["join", "yield", "exit", "sleep", "IO wait", "preempted"] {
        assert!(
            ends.contains(reason),
            "no slice ending in {reason}: {ends:?}"
        );
    }
    assert!(
        ends.contains("chan send") || ends.contains("chan receive"),
        "no channel wait: {ends:?}"
    );
    assert!(evs.iter().any(|e| cat(e) == "syscall"), "no syscall slice");
    assert!(
        evs.iter().any(|e| e["name"]
            .as_str()
            .unwrap_or("")
            .starts_with("retake: preempt")),
        "no sysmon preemption request"
    );
    assert!(
        evs.iter().any(
            |e| e["name"].as_str().unwrap_or("").starts_with("netpoll wake")
                || e["name"].as_str().unwrap_or("").starts_with("wake G")
        ),
        "no wake-ups"
    );

    // Every flow into a run comes out of a wake or spawn slice.
    let outs: HashSet<u64> = evs
        .iter()
        .filter(|e| e["flow_out"] == true)
        .map(|e| e["bind_id"].as_u64().unwrap())
        .collect();
    let ins: Vec<u64> = evs
        .iter()
        .filter(|e| e["flow_in"] == true)
        .map(|e| e["bind_id"].as_u64().unwrap())
        .collect();
    assert!(!ins.is_empty(), "no flow arrows");
    for id in ins {
        assert!(outs.contains(&id), "flow {id} has no source");
    }

    // The named goroutine's slices carry its name, the others only an id.
    let echo_id = line_values(&stdout, "IDS")[3];
    let echo_label = format!("G{echo_id} echo \"1\"");
    assert!(
        evs.iter()
            .any(|e| cat(e) == "run" && e["name"] == echo_label.as_str()),
        "no run slice named {echo_label}"
    );
    assert!(evs
        .iter()
        .filter(|e| cat(e) == "run" && e["args"]["g"] == echo_id)
        .all(|e| e["name"] == echo_label.as_str()));
    assert!(evs
        .iter()
        .filter(|e| cat(e) == "run" && e["args"]["g"] != echo_id)
        .all(|e| e["name"].as_str().is_some_and(|n| !n.contains(' '))));

    // Tracks are named: every M and P.
    let names: Vec<&str> = evs
        .iter()
        .filter(|e| e["ph"] == "M" && e["name"] == "thread_name")
        .filter_map(|e| e["args"]["name"].as_str())
        .collect();
    for n in ["M1", "M2", "sysmon", "P0", "P1"] {
        assert!(names.contains(&n), "no track {n}: {names:?}");
    }
}

#[test]
#[ignore = "child process"]
fn child_flight_window() {
    if !is_child() {
        return;
    }
    gort::Builder::new().procs(2).start().expect("start gort");
    let path = std::env::var("TRACE_OUT").unwrap();
    let window = Duration::from_millis(100);
    gort::exectrace::start_flight(&path, gort::exectrace::Window::Duration(window)).unwrap();
    let old = gort::run(|| workload(Duration::from_millis(200)));
    // Long past the window: the goroutines above must be gone from it.
    let t0 = Instant::now();
    let new = gort::run(move || {
        let mut ids = Vec::new();
        while t0.elapsed() < Duration::from_millis(600) {
            let hs: Vec<_> = (0..20)
                .map(|_| {
                    gort::spawn(|| {
                        for _ in 0..10 {
                            gort::yield_now();
                        }
                    })
                })
                .collect();
            ids.extend(hs.iter().map(|h| h.id()));
            for h in hs {
                h.join().unwrap();
            }
            gort::time::sleep(Duration::from_millis(1));
        }
        ids
    });
    gort::exectrace::snapshot().unwrap();
    println!(
        "OLD {}",
        old.iter().map(u64::to_string).collect::<Vec<_>>().join(" ")
    );
    println!("NEWMAX {}", new.iter().max().unwrap());
    gort::exectrace::stop().unwrap();

    // A byte window: about one 64 KiB chunk plus what each thread holds.
    let path2 = format!("{path}.bytes");
    gort::exectrace::start_flight(&path2, gort::exectrace::Window::Bytes(64 << 10)).unwrap();
    gort::run(|| {
        for _ in 0..200 {
            let hs: Vec<_> = (0..50).map(|_| gort::spawn(gort::yield_now)).collect();
            for h in hs {
                h.join().unwrap();
            }
        }
    });
    gort::exectrace::snapshot().unwrap();
    gort::exectrace::stop().unwrap();
    println!("THREADS {}", gort::stats().threads);
}

/// The flight recorder keeps only its window (by time, and by size).
#[test]
fn flight_recorder_keeps_only_its_window() {
    let path = tmp_path("flight");
    let out = run_child("child_flight_window", &[("TRACE_OUT", &path)], T);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let evs = load(&path);
    let _ = std::fs::remove_file(&path);
    let end_us = evs
        .iter()
        .find(|e| e["name"] == "gort_trace_end")
        .map(|e| e["args"]["end_us"].as_f64().unwrap())
        .expect("end marker");
    let timed: Vec<&Value> = evs.iter().filter(|e| e.get("ts").is_some()).collect();
    assert!(!timed.is_empty(), "empty window");
    for e in &timed {
        assert!(
            ts(e) >= end_us - 100_000.0 - 1.0,
            "event older than the 100ms window (end {end_us}µs): {e}"
        );
    }
    let gs: HashSet<u64> = evs
        .iter()
        .filter(|e| cat(e) == "run")
        .map(|e| e["args"]["g"].as_u64().unwrap())
        .collect();
    for id in line_values(&stdout, "OLD") {
        assert!(!gs.contains(&id), "goroutine {id} from before the window");
    }
    let newmax = line_values(&stdout, "NEWMAX")[0];
    assert!(
        gs.iter().any(|&g| g > newmax.saturating_sub(100)),
        "the latest goroutines are missing"
    );

    let path2 = format!("{path}.bytes");
    let evs = load(&path2);
    let _ = std::fs::remove_file(&path2);
    // 200 × 50 goroutines each make ≥ 4 records: far more than the window.
    // Kept: one full 64 KiB chunk (4096 records) plus the chunk each
    // thread is filling; a record makes at most one event.
    let threads = line_values(&stdout, "THREADS")[0] + 3; // + sysmon, main, slack
    let timed = evs.iter().filter(|e| e.get("ts").is_some()).count() as u64;
    assert!(timed > 0, "empty window");
    assert!(
        timed <= 4096 * (1 + threads),
        "{timed} events in a 64 KiB window"
    );
    let spawned = evs
        .iter()
        .filter(|e| e["name"].as_str().is_some_and(|n| n.starts_with("spawn G")))
        .count();
    assert!(spawned < 10_000, "all {spawned} spawns kept");
}

#[test]
#[ignore = "child process"]
fn child_flight_deadlock() {
    if !is_child() {
        return;
    }
    let r = std::panic::catch_unwind(|| {
        gort::run(|| {
            let (_tx, rx) = gort::chan::channel::<()>(0);
            let _ = rx.recv();
        })
    });
    println!("PANICKED {}", r.is_err());
}

/// GORT_TRACE_FLIGHT: a deadlock report writes the recorder's window.
#[test]
fn flight_recorder_writes_on_deadlock() {
    let path = tmp_path("deadlock");
    let out = run_child(
        "child_flight_deadlock",
        &[("GORT_TRACE", &path), ("GORT_TRACE_FLIGHT", "4MB")],
        T,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("PANICKED true"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let evs = load(&path);
    let _ = std::fs::remove_file(&path);
    assert!(
        evs.iter().any(|e| e["name"] == "deadlock"),
        "no deadlock event"
    );
    assert!(
        evs.iter()
            .any(|e| cat(e) == "run" && e["args"]["end"] == "chan receive"),
        "the blocked receive is not in the window"
    );
}

#[test]
#[ignore = "child process"]
fn child_bad_env() {
    if !is_child() {
        return;
    }
    let r = std::panic::catch_unwind(|| gort::run(|| 1));
    let msg = match r {
        Ok(_) => "no error".to_string(),
        Err(p) => p
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_else(|| "?".into()),
    };
    println!("ERROR {msg}");
}

/// Bad GORT_TRACE / GORT_TRACE_FLIGHT values get a clear error naming the
/// variable.
#[test]
fn bad_trace_environment_is_reported() {
    for (env, var) in [
        (
            vec![("GORT_TRACE", "/nonexistent-gort-dir/trace.json")],
            "GORT_TRACE=",
        ),
        (
            vec![
                ("GORT_TRACE", "/dev/null"),
                ("GORT_TRACE_FLIGHT", "3 parsecs"),
            ],
            "GORT_TRACE_FLIGHT=",
        ),
    ] {
        let out = run_child("child_bad_env", &env, T);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout
            .lines()
            .find(|l| l.contains("ERROR"))
            .unwrap_or_else(|| panic!("{stdout}"));
        assert!(line.contains(var), "{line}");
    }
}

#[test]
#[ignore = "child process"]
fn child_api_errors() {
    if !is_child() {
        return;
    }
    gort::Builder::new().procs(1).start().expect("start gort");
    let e = gort::exectrace::start("/nonexistent-gort-dir/t.json").unwrap_err();
    println!("CREATE {e}");
    let e = gort::exectrace::stop().unwrap_err();
    println!("STOP {e}");
    let path = std::env::var("TRACE_OUT").unwrap();
    gort::exectrace::start(&path).unwrap();
    let e = gort::exectrace::start(&path).unwrap_err();
    println!("TWICE {e}");
    let e = gort::exectrace::snapshot().unwrap_err();
    println!("SNAPSHOT {e}");
    gort::run(|| gort::spawn(|| 2).join().unwrap());
    gort::exectrace::stop().unwrap();
    println!("DONE");
}

/// The API's misuse errors are clear; a short trace through the API works.
#[test]
fn api_errors_are_clear() {
    let path = tmp_path("api");
    let out = run_child("child_api_errors", &[("TRACE_OUT", &path)], T);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("DONE"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let get = |k: &str| {
        stdout
            .lines()
            .find(|l| l.contains(k))
            .unwrap_or_else(|| panic!("{k}: {stdout}"))
            .to_string()
    };
    assert!(
        get("CREATE").contains("/nonexistent-gort-dir/t.json"),
        "{stdout}"
    );
    assert!(get("STOP").contains("no execution trace"), "{stdout}");
    assert!(get("TWICE").contains("already running"), "{stdout}");
    assert!(
        get("SNAPSHOT").contains("not a flight recorder"),
        "{stdout}"
    );
    let evs = load(&path);
    let _ = std::fs::remove_file(&path);
    assert!(evs.iter().any(|e| cat(e) == "run"), "no run slices");
}

#[test]
#[ignore = "child process"]
fn child_flight_panic() {
    if !is_child() {
        return;
    }
    let r = std::panic::catch_unwind(|| {
        gort::run(|| {
            let h = gort::spawn(|| gort::time::sleep(Duration::from_millis(5)));
            h.join().unwrap();
            panic!("boom in the main goroutine");
        })
    });
    println!("PANICKED {}", r.is_err());
}

/// A panic coming out of `gort::run` writes the flight recorder's window.
#[test]
fn flight_recorder_writes_on_panic_out_of_run() {
    let path = tmp_path("panic");
    let out = run_child(
        "child_flight_panic",
        &[("GORT_TRACE", &path), ("GORT_TRACE_FLIGHT", "1s")],
        T,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("PANICKED true"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let evs = load(&path);
    let _ = std::fs::remove_file(&path);
    assert!(
        evs.iter()
            .any(|e| cat(e) == "run" && e["args"]["end"] == "sleep"),
        "the sleeper is not in the window"
    );
}

#[test]
#[ignore = "child process"]
fn child_sigquit_trace() {
    if !is_child() {
        return;
    }
    gort::run(|| {
        let hs: Vec<_> = (0..3)
            .map(|_| gort::spawn(|| gort::time::sleep(Duration::from_secs(30))))
            .collect();
        gort::time::sleep(Duration::from_millis(50));
        // SAFETY: sends SIGQUIT to our own process (the test's point).
        unsafe { libc::kill(libc::getpid(), libc::SIGQUIT) };
        for h in hs {
            h.join().unwrap();
        }
    });
}

/// SIGQUIT ends the process (code 2) with the full trace written.
#[test]
fn sigquit_finishes_the_trace_file() {
    let path = tmp_path("sigquit");
    let out = run_child("child_sigquit_trace", &[("GORT_TRACE", &path)], T);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let evs = load(&path);
    let _ = std::fs::remove_file(&path);
    let sleepers = evs
        .iter()
        .filter(|e| cat(e) == "run" && e["args"]["end"] == "sleep")
        .count();
    assert!(sleepers >= 3, "{sleepers} sleeping runs");
}
