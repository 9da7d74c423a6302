//! A look at an execution trace at a glance (`GORT_TRACE=trace.json` or
//! `gort::exectrace`): per-goroutine run time, time waiting by reason,
//! preemptions and the worst scheduling latencies; optionally an SVG
//! timeline of the Ms and Ps.
//!
//! ```text
//! GORT_TRACE=/tmp/pre.json cargo run --release --example preemption 1
//! cargo run --release --example tracestat -- /tmp/pre.json
//! cargo run --release --example tracestat -- /tmp/pre.json --svg timeline.svg --from-ms 400 --to-ms 500
//! ```
//!
//! Scheduling latency is the time from the moment a goroutine became
//! runnable (woken, spawned, or put back by a yield or a preemption) to the
//! moment an M started running it.

use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::process::ExitCode;

#[derive(Default)]
struct GStat {
    runs: u64,
    run_us: f64,
    waiting: BTreeMap<String, f64>,
    preempt_async: u64,
    preempt_coop: u64,
    worst_latency_us: f64,
    worst_at_us: f64,
}

struct Run {
    tid: u64,
    pid: u64,
    g: u64,
    ts: f64,
    dur: f64,
    end: String,
    flow_in: Option<u64>,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first() else {
        eprintln!(
            "usage: tracestat TRACE.json [--svg OUT.svg] [--from-ms MS] [--to-ms MS] [--top N]"
        );
        return ExitCode::from(2);
    };
    let opt = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("tracestat: cannot read {path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let v: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("tracestat: {path} is not a JSON trace: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Some(evs) = v["traceEvents"].as_array() else {
        eprintln!("tracestat: {path} has no traceEvents");
        return ExitCode::FAILURE;
    };

    let mut names: HashMap<(u64, u64), String> = HashMap::new();
    let mut runs = Vec::new();
    let mut flow_src: HashMap<u64, f64> = HashMap::new();
    let mut instants = Vec::new();
    for e in evs {
        let pid = e["pid"].as_u64().unwrap_or(0);
        let tid = e["tid"].as_u64().unwrap_or(0);
        match e["ph"].as_str() {
            Some("M") if e["name"] == "thread_name" => {
                if let Some(n) = e["args"]["name"].as_str() {
                    names.insert((pid, tid), n.to_string());
                }
            }
            Some("X") => {
                let ts = e["ts"].as_f64().unwrap_or(0.0);
                if e["flow_out"] == true {
                    if let Some(id) = e["bind_id"].as_u64() {
                        flow_src.insert(id, ts);
                    }
                }
                if e["cat"] == "run" || e["cat"] == "p" {
                    runs.push(Run {
                        tid,
                        pid,
                        g: e["args"]["g"].as_u64().unwrap_or(0),
                        ts,
                        dur: e["dur"].as_f64().unwrap_or(0.0),
                        end: e["args"]["end"].as_str().unwrap_or("").to_string(),
                        flow_in: if e["flow_in"] == true {
                            e["bind_id"].as_u64()
                        } else {
                            None
                        },
                    });
                }
            }
            Some("i") => instants.push(e.clone()),
            _ => {}
        }
    }

    // Per goroutine, in time order (M tracks only: P tracks repeat them).
    let mut by_g: BTreeMap<u64, Vec<&Run>> = BTreeMap::new();
    for r in runs.iter().filter(|r| r.pid == 1) {
        by_g.entry(r.g).or_default().push(r);
    }
    let mut stats: BTreeMap<u64, GStat> = BTreeMap::new();
    for (g, rs) in by_g.iter_mut() {
        rs.sort_by(|a, b| a.ts.total_cmp(&b.ts));
        let st = stats.entry(*g).or_default();
        let mut prev: Option<&Run> = None;
        for r in rs.iter() {
            st.runs += 1;
            st.run_us += r.dur;
            // When it became runnable: its waker's (or spawner's) moment,
            // else (yield, preemption) when its previous run ended.
            let ready = r.flow_in.and_then(|id| flow_src.get(&id).copied());
            if let Some(p) = prev {
                let stop = p.ts + p.dur;
                let runnable_at = match p.end.as_str() {
                    "yield" | "preempted" | "syscall exit, no P" => Some(stop),
                    _ => ready,
                };
                if let Some(at) = runnable_at {
                    if !matches!(p.end.as_str(), "yield" | "preempted" | "syscall exit, no P") {
                        *st.waiting.entry(p.end.clone()).or_default() += (at - stop).max(0.0);
                    }
                    let lat = r.ts - at;
                    if lat > st.worst_latency_us {
                        st.worst_latency_us = lat;
                        st.worst_at_us = r.ts;
                    }
                }
            } else if let Some(at) = ready {
                let lat = r.ts - at;
                if lat > st.worst_latency_us {
                    st.worst_latency_us = lat;
                    st.worst_at_us = r.ts;
                }
            }
            prev = Some(r);
        }
    }
    for e in &instants {
        let g = e["args"]["g"].as_u64().unwrap_or(0);
        match e["name"].as_str() {
            Some("preempt async") => stats.entry(g).or_default().preempt_async += 1,
            Some("preempt cooperative") => stats.entry(g).or_default().preempt_coop += 1,
            _ => {}
        }
    }

    let top: usize = opt("--top").and_then(|s| s.parse().ok()).unwrap_or(20);
    let mut order: Vec<(&u64, &GStat)> = stats.iter().filter(|(g, _)| **g != 0).collect();
    order.sort_by(|a, b| b.1.run_us.total_cmp(&a.1.run_us));
    println!(
        "{} goroutines, {} run slices, {} Ms",
        order.len(),
        runs.iter().filter(|r| r.pid == 1).count(),
        names.keys().filter(|(p, _)| *p == 1).count()
    );
    println!(
        "{:>8} {:>6} {:>12} {:>7} {:>7} {:>13}  waiting by reason",
        "goroutine", "runs", "run ms", "preempt", "(coop)", "worst lat µs"
    );
    for (g, s) in order.iter().take(top) {
        let mut waits = String::new();
        for (why, us) in &s.waiting {
            let _ = write!(waits, "{why} {:.3}ms  ", us / 1000.0);
        }
        println!(
            "{:>9} {:>6} {:>12.3} {:>7} {:>7} {:>13.1}  {}",
            format!("G{g}"),
            s.runs,
            s.run_us / 1000.0,
            s.preempt_async + s.preempt_coop,
            s.preempt_coop,
            s.worst_latency_us,
            waits.trim_end()
        );
    }
    if order.len() > top {
        println!("... and {} more (--top N)", order.len() - top);
    }
    let worst = order
        .iter()
        .max_by(|a, b| a.1.worst_latency_us.total_cmp(&b.1.worst_latency_us));
    if let Some((g, s)) = worst {
        println!(
            "worst scheduling latency: G{g} waited {:.1}µs to run (started at {:.3}ms)",
            s.worst_latency_us,
            s.worst_at_us / 1000.0
        );
    }
    let pa: u64 = stats.values().map(|s| s.preempt_async).sum();
    let pc: u64 = stats.values().map(|s| s.preempt_coop).sum();
    println!("preemptions: {pa} by signal, {pc} cooperative");

    if let Some(out) = opt("--svg") {
        let from = opt("--from-ms").and_then(|s| s.parse::<f64>().ok());
        let to = opt("--to-ms").and_then(|s| s.parse::<f64>().ok());
        let svg = render_svg(&runs, &instants, &names, &flow_src, from, to);
        if let Err(e) = std::fs::write(&out, svg) {
            eprintln!("tracestat: cannot write {out}: {e}");
            return ExitCode::FAILURE;
        }
        println!("timeline written to {out}");
    }
    ExitCode::SUCCESS
}

/// A colour per goroutine, stable and well spread.
fn colour(g: u64) -> String {
    let hue = (g.wrapping_mul(137) % 360) as u32;
    format!("hsl({hue},65%,62%)")
}

fn render_svg(
    runs: &[Run],
    instants: &[Value],
    names: &HashMap<(u64, u64), String>,
    flow_src: &HashMap<u64, f64>,
    from_ms: Option<f64>,
    to_ms: Option<f64>,
) -> String {
    let t_min = runs.iter().map(|r| r.ts).fold(f64::MAX, f64::min);
    let t_max = runs.iter().map(|r| r.ts + r.dur).fold(0.0, f64::max);
    let t0 = from_ms.map_or(t_min, |m| m * 1000.0);
    let t1 = to_ms.map_or(t_max, |m| m * 1000.0).max(t0 + 1.0);
    // Rows: Ms that ran goroutines (by name), sysmon, then Ps.
    let mut rows: Vec<(u64, u64)> = names
        .keys()
        .copied()
        .filter(|&(pid, tid)| {
            pid == 2
                || runs.iter().any(|r| r.pid == pid && r.tid == tid)
                || names[&(pid, tid)] == "sysmon"
        })
        .collect();
    rows.sort_by_key(|&(pid, tid)| {
        let n = &names[&(pid, tid)];
        let rank = if n == "sysmon" { 1 } else { 0 };
        (
            pid,
            rank,
            n.trim_start_matches(['M', 'P'])
                .parse::<u64>()
                .unwrap_or(tid),
        )
    });
    let row_of: HashMap<(u64, u64), usize> =
        rows.iter().enumerate().map(|(i, k)| (*k, i)).collect();
    let (left, top, row_h, width) = (70.0, 40.0, 34.0, 1100.0);
    let height = top + row_h * rows.len() as f64 + 50.0;
    let x = |t: f64| left + (t - t0) / (t1 - t0) * (width - left - 10.0);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{left}" y="16" font-size="13">gort execution trace: {:.1}–{:.1} ms (slices: goroutine runs; red: preemptions by signal, orange: cooperative; blue: sysmon's requests; grey: wake-ups)</text>"#,
        t0 / 1000.0,
        t1 / 1000.0
    );
    for (i, k) in rows.iter().enumerate() {
        let y = top + row_h * i as f64;
        let _ = writeln!(
            s,
            r##"<text x="6" y="{:.1}">{}</text><line x1="{left}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#ddd"/>"##,
            y + row_h * 0.6,
            names[k],
            width - 10.0,
            y + row_h - 2.0,
            y + row_h - 2.0,
        );
    }
    // Time axis.
    let axis_y = top + row_h * rows.len() as f64 + 10.0;
    let span_ms = (t1 - t0) / 1000.0;
    let step = [
        0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 50.0, 100.0, 500.0, 1000.0,
    ]
    .into_iter()
    .find(|st| span_ms / st <= 12.0)
    .unwrap_or(5000.0);
    let mut t = (t0 / 1000.0 / step).ceil() * step;
    while t <= t1 / 1000.0 {
        let xx = x(t * 1000.0);
        let _ = writeln!(
            s,
            r##"<line x1="{xx:.1}" x2="{xx:.1}" y1="{:.1}" y2="{axis_y:.1}" stroke="#eee"/><text x="{xx:.1}" y="{:.1}" text-anchor="middle">{t} ms</text>"##,
            top,
            axis_y + 14.0
        );
        t += step;
    }
    let visible = |a: f64, b: f64| b >= t0 && a <= t1;
    // Long slices first, so short ones (a woken goroutine's) stay visible.
    let mut order: Vec<&Run> = runs.iter().collect();
    order.sort_by(|a, b| b.dur.total_cmp(&a.dur));
    for r in order {
        let Some(&row) = row_of.get(&(r.pid, r.tid)) else {
            continue;
        };
        if !visible(r.ts, r.ts + r.dur) {
            continue;
        }
        let (xa, xb) = (x(r.ts.max(t0)), x((r.ts + r.dur).min(t1)));
        let y = top + row_h * row as f64 + 4.0;
        let w = (xb - xa).max(1.5);
        let _ = writeln!(
            s,
            r##"<rect x="{xa:.2}" y="{y:.1}" width="{w:.2}" height="{:.1}" fill="{}" stroke="#333" stroke-width="0.3"><title>G{} {:.1}µs, ended: {}</title></rect>"##,
            row_h - 10.0,
            colour(r.g),
            r.g,
            r.dur,
            r.end
        );
        if w > 26.0 {
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}">G{}</text>"#,
                xa + 3.0,
                y + row_h * 0.5,
                r.g
            );
        }
    }
    // Wake-up arrows: from the waker's moment to the woken run's start.
    for r in runs.iter().filter(|r| r.pid == 1) {
        let Some(src) = r.flow_in.and_then(|id| flow_src.get(&id)) else {
            continue;
        };
        if !visible(*src, r.ts) {
            continue;
        }
        let Some(&row) = row_of.get(&(r.pid, r.tid)) else {
            continue;
        };
        let y = top + row_h * row as f64 + 4.0;
        let _ = writeln!(
            s,
            r##"<line x1="{:.2}" y1="{:.1}" x2="{:.2}" y2="{:.1}" stroke="#777" stroke-width="0.8"/>"##,
            x(*src),
            y - 4.0,
            x(r.ts),
            y + 2.0
        );
    }
    for e in instants {
        let name = e["name"].as_str().unwrap_or("");
        let ts = e["ts"].as_f64().unwrap_or(0.0);
        if !(t0..=t1).contains(&ts) {
            continue;
        }
        let key = (
            e["pid"].as_u64().unwrap_or(0),
            e["tid"].as_u64().unwrap_or(0),
        );
        let Some(&row) = row_of.get(&key) else {
            continue;
        };
        let y = top + row_h * row as f64;
        let colour = match name {
            "preempt async" => "#d00",
            "preempt cooperative" => "#e80",
            n if n.starts_with("retake") => "#06c",
            _ => "#000",
        };
        let _ = writeln!(
            s,
            r#"<path d="M{:.2} {:.1} l-4 -7 h8 z" fill="{colour}"><title>{name}</title></path>"#,
            x(ts),
            y + 5.0
        );
    }
    s.push_str("</svg>\n");
    s
}
