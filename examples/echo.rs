//! A TCP echo server and a load of client goroutines against it, all in
//! one process: every connection is a goroutine blocked in `read`, parked
//! in the netpoller, not a thread.
//!
//! `cargo run --release --example echo [CLIENTS] [SECONDS] [MSG_BYTES]`
//! (defaults: 256 clients, 3 seconds, 64-byte messages)
//!
//! Each client connects, then for SECONDS writes a message and reads the
//! echo back in full, checking every byte. Prints round trips per second,
//! the latency spread, and how many OS threads carried it all.

use gort::net::{TcpListener, TcpStream};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn arg(i: usize, default: u64, what: &str) -> u64 {
    match std::env::args().nth(i) {
        None => default,
        Some(s) => s.parse().unwrap_or_else(|_| {
            eprintln!("echo: {what} must be a whole number, got {s:?}");
            eprintln!("usage: echo [CLIENTS] [SECONDS] [MSG_BYTES]");
            std::process::exit(2);
        }),
    }
}

/// One connection on the server side: echo until the client hangs up.
fn serve(mut c: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match c.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if c.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

/// One client: round trips until `stop`; returns each one's latency (µs).
fn client(addr: std::net::SocketAddr, id: u64, msg_len: usize, stop: Arc<AtomicBool>) -> Vec<u32> {
    let mut c = TcpStream::connect(addr).expect("connect");
    c.set_nodelay(true).expect("nodelay");
    let mut msg: Vec<u8> = (0..msg_len).map(|i| (id as usize + i) as u8).collect();
    let mut back = vec![0u8; msg_len];
    let mut lat = Vec::new();
    let mut round = 0u8;
    while !stop.load(Ordering::Relaxed) {
        msg[0] = round;
        round = round.wrapping_add(1);
        let t = Instant::now();
        c.write_all(&msg).expect("write");
        c.read_exact(&mut back).expect("read");
        lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
        assert!(
            back == msg,
            "client {id}: the echo differs from what was sent"
        );
    }
    lat
}

fn main() {
    let clients = arg(1, 256, "CLIENTS").max(1);
    let seconds = arg(2, 3, "SECONDS").max(1);
    let msg_len = arg(3, 64, "MSG_BYTES").clamp(1, 1 << 20) as usize;

    gort::run(move || {
        let listener = Arc::new(TcpListener::bind("127.0.0.1:0").expect("bind"));
        let addr = listener.local_addr().expect("local_addr");
        println!(
            "echo server on {addr}; {clients} client goroutines, {msg_len}-byte messages, {seconds}s"
        );
        let l = listener.clone();
        let server = gort::spawn(move || {
            for conn in l.incoming() {
                let Ok(c) = conn else { break }; // closed: we are done
                c.set_nodelay(true).expect("nodelay");
                gort::spawn(move || serve(c));
            }
        });

        let stop = Arc::new(AtomicBool::new(false));
        let t0 = Instant::now();
        let hs: Vec<_> = (0..clients)
            .map(|id| {
                let stop = stop.clone();
                gort::spawn(move || client(addr, id, msg_len, stop))
            })
            .collect();
        gort::time::sleep(Duration::from_secs(seconds));
        stop.store(true, Ordering::Relaxed);
        let mut lat: Vec<u32> = Vec::new();
        for h in hs {
            lat.extend(h.join().expect("a client failed"));
        }
        let elapsed = t0.elapsed();
        listener.close().expect("close");
        server.join().expect("server");

        lat.sort_unstable();
        let pct = |p: f64| lat[((lat.len() - 1) as f64 * p) as usize];
        let n = lat.len() as f64;
        let secs = elapsed.as_secs_f64();
        println!(
            "{} round trips in {:.2}s: {:.0} round trips/s, {:.1} MB/s each way",
            lat.len(),
            secs,
            n / secs,
            n * msg_len as f64 / secs / 1e6
        );
        println!(
            "latency p50 {}µs  p99 {}µs  max {}µs (every byte checked)",
            pct(0.5),
            pct(0.99),
            lat[lat.len() - 1]
        );
        let st = gort::stats();
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        println!(
            "{} goroutines served by {} OS thread{} on {} processor{}",
            2 * clients + 1,
            st.threads,
            plural(st.threads),
            st.procs,
            plural(st.procs)
        );
    });
}
