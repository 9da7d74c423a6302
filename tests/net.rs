//! The netpoller and `gort::net` / `gort::io`: network I/O parks
//! goroutines, not threads; timeouts, close and errors behave as a user of
//! std::net expects; nothing leaks.
//!
//! Every test is bounded: the work runs in a goroutine and the test thread
//! waits for its result with a timeout, so a lost wake-up fails the test
//! instead of hanging the run. Tests that need their own runtime (procs=1)
//! or an exact fd count run in a child process.

mod common;

use gort::net::{TcpListener, TcpStream, UdpSocket};
use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(30);

fn start() {
    static START: std::sync::Once = std::sync::Once::new();
    START.call_once(|| {
        gort::Builder::new().procs(2).start().expect("start gort");
    });
}

fn bounded<T, F>(f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    start();
    common::on_goroutine_within(LIMIT, f)
}

/// A byte pattern that differs per client and position, so a byte routed
/// to the wrong connection or offset is caught.
fn pattern(client: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (client.wrapping_mul(31) ^ i.wrapping_mul(7)) as u8)
        .collect()
}

/// Runs an echo server in goroutines (one per connection) until the
/// listener is closed; returns the listener and its address.
fn echo_server() -> (Arc<TcpListener>, std::net::SocketAddr) {
    let l = Arc::new(TcpListener::bind("127.0.0.1:0").unwrap());
    let addr = l.local_addr().unwrap();
    let server = l.clone();
    gort::spawn(move || {
        for conn in server.incoming() {
            let Ok(mut c) = conn else { break };
            gort::spawn(move || {
                let mut buf = [0u8; 4096];
                loop {
                    match c.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if c.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        }
    });
    (l, addr)
}

#[test]
fn echo_1000_concurrent_clients_every_byte_verified() {
    let total = bounded(|| {
        let (l, addr) = echo_server();
        const CLIENTS: usize = 1000;
        const LEN: usize = 8 * 1024; // bigger than one read: many round trips
        let hs: Vec<_> = (0..CLIENTS)
            .map(|i| {
                gort::spawn(move || {
                    let mut s = TcpStream::connect(addr).expect("connect");
                    let out = pattern(i, LEN);
                    let mut back = vec![0u8; LEN];
                    // Write and read in chunks so both directions interleave.
                    for (w, r) in out.chunks(1000).zip(back.chunks_mut(1000)) {
                        s.write_all(w).unwrap();
                        s.read_exact(r).unwrap();
                    }
                    assert!(back == out, "client {i}: echoed bytes differ");
                    s.shutdown(Shutdown::Write).unwrap();
                    let mut rest = Vec::new();
                    s.read_to_end(&mut rest).unwrap();
                    assert!(rest.is_empty());
                    back.len()
                })
            })
            .collect();
        let total: usize = hs.into_iter().map(|h| h.join().unwrap()).sum();
        l.close().unwrap();
        total
    });
    assert_eq!(total, 1000 * 8 * 1024);
}

#[test]
fn read_timeout_fails_with_timed_out_and_the_stream_still_works() {
    bounded(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let c = TcpStream::connect(addr).unwrap();
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        assert_eq!(s.read_timeout().unwrap(), Some(Duration::from_millis(100)));
        let t0 = Instant::now();
        let e = s.read(&mut [0u8; 16]).unwrap_err();
        let waited = t0.elapsed();
        assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
        assert!(waited >= Duration::from_millis(100), "{waited:?}");
        assert!(waited < Duration::from_secs(5), "{waited:?}");
        // Data that arrives later is still read.
        (&c).write_all(b"late").unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"late");
        // Zero is rejected, as in std.
        let e = s.set_read_timeout(Some(Duration::ZERO)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
    });
}

#[test]
fn many_goroutines_time_out_independently() {
    bounded(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let hs: Vec<_> = (0..50u64)
            .map(|i| {
                gort::spawn(move || {
                    let mut s = TcpStream::connect(addr).unwrap();
                    let t = Duration::from_millis(20 + i * 4);
                    s.set_read_timeout(Some(t)).unwrap();
                    let t0 = Instant::now();
                    let e = s.read(&mut [0u8; 1]).unwrap_err();
                    assert_eq!(e.kind(), ErrorKind::TimedOut);
                    assert!(t0.elapsed() >= t);
                })
            })
            .collect();
        // Keep the server ends open (never written) until all timed out.
        let mut conns = Vec::new();
        for _ in 0..50 {
            conns.push(l.accept().unwrap());
        }
        for h in hs {
            h.join().unwrap();
        }
    });
}

/// procs=1: a goroutine writing to a peer that stopped reading fills the
/// socket buffers and blocks; the other goroutines keep running on the
/// only P, so the writer blocks in the netpoller, not in its thread.
#[test]
#[ignore = "run by blocked_writer_parks_the_goroutine_not_the_thread in a child process"]
fn child_blocked_writer_procs1() {
    gort::Builder::new().procs(1).start().unwrap();
    gort::run(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let written = Arc::new(AtomicU64::new(0));
        let w = written.clone();
        let writer = gort::spawn(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            let chunk = [7u8; 64 * 1024];
            loop {
                match s.write(&chunk) {
                    Ok(n) => w.fetch_add(n as u64, Ordering::SeqCst),
                    Err(e) => return e.kind(),
                };
            }
        });
        let (peer, _) = l.accept().unwrap();
        // Wait for the writer to stall (the buffers are full).
        let mut last = 0;
        loop {
            gort::time::sleep(Duration::from_millis(100));
            let now = written.load(Ordering::SeqCst);
            if now == last && now > 0 {
                break;
            }
            last = now;
        }
        // The only P is free: other goroutines run.
        let ticks = Arc::new(AtomicU64::new(0));
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let t = ticks.clone();
                gort::spawn(move || {
                    for _ in 0..20 {
                        gort::time::sleep(Duration::from_millis(1));
                        t.fetch_add(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(ticks.load(Ordering::SeqCst), 80);
        assert_eq!(gort::stats().procs, 1);
        // Closing the peer unblocks the writer with an error.
        drop(peer);
        let kind = writer.join().unwrap();
        assert!(
            matches!(kind, ErrorKind::BrokenPipe | ErrorKind::ConnectionReset),
            "{kind:?}"
        );
        println!(
            "BLOCKED-WRITER-OK written={}",
            written.load(Ordering::SeqCst)
        );
    });
}

#[test]
fn blocked_writer_parks_the_goroutine_not_the_thread() {
    common::expect_child(
        "child_blocked_writer_procs1",
        &[],
        Duration::from_secs(60),
        "BLOCKED-WRITER-OK",
    );
}

#[test]
fn connection_refused_and_address_in_use_have_the_os_kinds() {
    bounded(|| {
        // A port that was free a moment ago: nobody listens there now.
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let e = TcpStream::connect(("127.0.0.1", port)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}");

        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let e = TcpListener::bind(l.local_addr().unwrap()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AddrInUse, "{e}");
    });
}

#[test]
fn half_close_delivers_eof_and_the_other_direction_still_works() {
    bounded(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = gort::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).unwrap(); // ends at the client's FIN
            s.write_all(format!("got {} bytes", got.len()).as_bytes())
                .unwrap();
            got
        });
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(&[1u8; 100_000]).unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        let mut reply = String::new();
        c.read_to_string(&mut reply).unwrap();
        assert_eq!(reply, "got 100000 bytes");
        assert_eq!(server.join().unwrap(), vec![1u8; 100_000]);
    });
}

#[test]
fn closing_the_listener_wakes_a_goroutine_blocked_in_accept() {
    bounded(|| {
        let l = Arc::new(TcpListener::bind("127.0.0.1:0").unwrap());
        let addr = l.local_addr().unwrap();
        let l2 = l.clone();
        let acceptor = gort::spawn(move || l2.accept().map(|_| ()).unwrap_err());
        gort::time::sleep(Duration::from_millis(100)); // let it block
        l.close().unwrap();
        let e = acceptor.join().unwrap();
        assert_eq!(e.kind(), ErrorKind::NotConnected, "{e}");
        // Closed twice is an error; operations after close fail at once.
        assert!(l.close().is_err());
        assert!(l.local_addr().is_err());
        // Nobody listens there any more (rebinding the port itself would
        // race with the other tests' sockets, which may pick it up).
        let e = TcpStream::connect(addr).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}");
    });
}

#[test]
fn closing_a_stream_wakes_its_blocked_reader() {
    bounded(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = Arc::new(TcpStream::connect(l.local_addr().unwrap()).unwrap());
        let _server_end = l.accept().unwrap();
        let c2 = c.clone();
        let reader = gort::spawn(move || (&*c2).read(&mut [0u8; 8]).unwrap_err());
        gort::time::sleep(Duration::from_millis(50));
        c.close().unwrap();
        assert_eq!(reader.join().unwrap().kind(), ErrorKind::NotConnected);
    });
}

#[test]
fn udp_send_to_and_recv_from() {
    bounded(|| {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = Arc::new(UdpSocket::bind("127.0.0.1:0").unwrap());
        let a_addr = a.local_addr().unwrap();
        let b_addr = b.local_addr().unwrap();
        let b2 = b.clone();
        // The receiver blocks before anything is sent.
        let rx = gort::spawn(move || {
            let mut got = Vec::new();
            let mut buf = [0u8; 64];
            for _ in 0..10 {
                let (n, from) = b2.recv_from(&mut buf).unwrap();
                got.push((buf[..n].to_vec(), from));
            }
            got
        });
        gort::time::sleep(Duration::from_millis(20));
        for i in 0..10u8 {
            a.send_to(&[i; 5], b_addr).unwrap();
        }
        let got = rx.join().unwrap();
        for (i, (data, from)) in got.into_iter().enumerate() {
            assert_eq!(data, vec![i as u8; 5]);
            assert_eq!(from, a_addr);
        }
        b.set_read_timeout(Some(Duration::from_millis(30))).unwrap();
        let e = b.recv_from(&mut [0u8; 4]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut);
        // Connected mode.
        a.connect(b_addr).unwrap();
        a.send(b"hi").unwrap();
        let mut buf = [0u8; 4];
        let (n, _) = b.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"hi");
    });
}

#[test]
fn io_fd_adapter_on_a_pipe_and_a_unix_socket() {
    bounded(|| {
        // A pipe: the reader parks until the writer writes.
        let (r, w) = std::io::pipe().unwrap();
        let r = gort::io::Fd::new(r).unwrap();
        let w = gort::io::Fd::new(w).unwrap();
        let reader = gort::spawn(move || {
            let mut s = String::new();
            (&r).read_to_string(&mut s).unwrap();
            s
        });
        gort::time::sleep(Duration::from_millis(20));
        (&w).write_all(b"through the pipe").unwrap();
        drop(w); // EOF
        assert_eq!(reader.join().unwrap(), "through the pipe");

        // A Unix socket pair, both directions at once, big transfers.
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let a = Arc::new(gort::io::Fd::new(a).unwrap());
        let mut b = gort::io::Fd::new(b).unwrap();
        let a2 = a.clone();
        let writer = gort::spawn(move || (&*a2).write_all(&pattern(3, 1 << 20)).unwrap());
        let mut got = vec![0u8; 1 << 20];
        b.read_exact(&mut got).unwrap();
        writer.join().unwrap();
        assert!(got == pattern(3, 1 << 20));

        // A regular file is refused with a clear error, not a hang.
        let f = std::fs::File::open("/proc/self/exe").unwrap();
        let e = gort::io::Fd::new(f).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
        assert!(e.to_string().contains("syscall::blocking"), "{e}");
    });
}

#[test]
fn plain_threads_can_use_gort_sockets_against_goroutines() {
    start();
    let (l, addr) = echo_server();
    // This test thread is not a goroutine.
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    c.write_all(b"from a thread").unwrap();
    let mut buf = [0u8; 13];
    c.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"from a thread");
    l.close().unwrap();
}

/// A goroutine waiting on the network for longer than the deadlock grace
/// period is not a deadlock: the outside world can wake it.
#[test]
#[ignore = "run by network_waiters_are_not_a_deadlock in a child process"]
fn child_network_waiter_no_deadlock() {
    gort::Builder::new().procs(2).start().unwrap();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        c.write_all(b"x").unwrap();
    });
    let got = gort::run(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b).unwrap();
        b[0]
    });
    assert_eq!(got, b'x');
    println!("NET-NO-DEADLOCK-OK");
}

#[test]
fn network_waiters_are_not_a_deadlock() {
    common::expect_child(
        "child_network_waiter_no_deadlock",
        &[],
        Duration::from_secs(60),
        "NET-NO-DEADLOCK-OK",
    );
}

/// Open fds, not counting the runtime's `/proc/self/task/TID/syscall`
/// files (sysmon keeps one per M it has looked at: see src/unannounced.rs).
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter(|e| {
            let target = e
                .as_ref()
                .ok()
                .and_then(|e| std::fs::read_link(e.path()).ok());
            !target.is_some_and(|t| t.to_string_lossy().ends_with("/syscall"))
        })
        .count()
}

/// Counted in a child so no other test opens fds meanwhile.
#[test]
#[ignore = "run by no_fd_leaks in a child process"]
fn child_fd_count() {
    gort::Builder::new().procs(2).start().unwrap();
    // Warm up: the epoll fd and eventfd are created once.
    gort::run(|| drop(UdpSocket::bind("127.0.0.1:0").unwrap()));
    // And the runtime's start-up must be over: its code-map thread reads
    // the executable (slow under qemu), then async preemption turns on.
    let t0 = Instant::now();
    while !gort::stats().async_preempt && t0.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut before = open_fds();
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let now = open_fds();
        if now == before {
            break;
        }
        before = now;
    }
    gort::run(|| {
        let (l, addr) = echo_server();
        let hs: Vec<_> = (0..100)
            .map(|i| {
                gort::spawn(move || {
                    let mut s = TcpStream::connect(addr).unwrap();
                    s.write_all(&pattern(i, 100)).unwrap();
                    let mut b = [0u8; 100];
                    s.read_exact(&mut b).unwrap();
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        // Refused connects, timeouts, closes and UDP sockets too.
        let port = l.local_addr().unwrap().port();
        l.close().unwrap();
        for _ in 0..20 {
            assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
        }
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        u.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
        assert!(u.recv_from(&mut [0u8; 1]).is_err());
        let (r, w) = std::io::pipe().unwrap();
        drop((gort::io::Fd::new(r).unwrap(), gort::io::Fd::new(w).unwrap()));
        // Server-side handlers see EOF and exit: give them a moment.
        gort::time::sleep(Duration::from_millis(200));
    });
    let after = open_fds();
    assert_eq!(before, after, "fds before and after");
    println!("FD-COUNT-OK {before}");
}

#[test]
fn no_fd_leaks() {
    common::expect_child(
        "child_fd_count",
        &[],
        Duration::from_secs(60),
        "FD-COUNT-OK",
    );
}

#[test]
fn two_goroutines_reading_one_socket_take_turns() {
    let n = bounded(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        let s = Arc::new(s);
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let s = s.clone();
                gort::spawn(move || {
                    let mut n = 0;
                    let mut buf = [0u8; 10];
                    loop {
                        match (&*s).read(&mut buf) {
                            Ok(0) | Err(_) => return n,
                            Ok(k) => n += k,
                        }
                    }
                })
            })
            .collect();
        for _ in 0..100 {
            (&c).write_all(&[1u8; 10]).unwrap();
            gort::yield_now();
        }
        drop(c);
        readers
            .into_iter()
            .map(|h| h.join().unwrap())
            .sum::<usize>()
    });
    assert_eq!(n, 1000);
}

#[test]
fn connect_timeout_connects_and_rejects_zero() {
    bounded(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
        assert_eq!(s.peer_addr().unwrap(), addr);
        s.set_nodelay(true).unwrap();
        assert!(s.nodelay().unwrap());
        let e = TcpStream::connect_timeout(&addr, Duration::ZERO).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
    });
}

#[test]
fn write_timeout_when_the_peer_stops_reading() {
    bounded(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let _peer = l.accept().unwrap(); // never reads
        c.set_write_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let chunk = [0u8; 64 * 1024];
        let mut total = 0usize;
        let e = loop {
            match c.write(&chunk) {
                Ok(n) => total += n,
                Err(e) => break e,
            }
        };
        assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
        assert!(total > 0);
    });
}

#[test]
fn closing_an_io_fd_wakes_its_blocked_reader() {
    bounded(|| {
        let (r, _w) = std::io::pipe().unwrap();
        let r = Arc::new(gort::io::Fd::new(r).unwrap());
        let r2 = r.clone();
        let reader = gort::spawn(move || r2.read(&mut [0u8; 4]).unwrap_err());
        gort::time::sleep(Duration::from_millis(50));
        r.close().unwrap();
        assert_eq!(reader.join().unwrap().kind(), ErrorKind::NotConnected);
    });
}

/// Every P busy with goroutines that never block: nobody runs out of work
/// to poll the network, so sysmon's periodic poll must find the ready
/// reader (and preemption must give it a turn).
#[test]
fn a_network_waiter_wakes_while_every_p_spins() {
    start();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let spinners: Vec<_> = (0..4)
        .map(|_| {
            let stop = stop.clone();
            gort::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n = n.wrapping_add(1);
                }
                n
            })
        })
        .collect();
    let (tx, rx) = std::sync::mpsc::channel();
    gort::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut b = [0u8; 5];
        s.read_exact(&mut b).unwrap();
        tx.send(b).unwrap();
    });
    std::thread::sleep(Duration::from_millis(100));
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.write_all(b"hello").unwrap();
    let got = rx.recv_timeout(Duration::from_secs(20));
    stop.store(true, Ordering::Relaxed);
    for h in spinners {
        h.join().unwrap();
    }
    assert_eq!(&got.expect("reader not woken while the Ps spin"), b"hello");
}

/// gort::net works on plain threads of a program that never starts the
/// runtime (std-like blocking), close included.
#[test]
#[ignore = "run by sockets_work_without_the_runtime in a child process"]
fn child_no_runtime() {
    let l = Arc::new(TcpListener::bind("127.0.0.1:0").unwrap());
    let addr = l.local_addr().unwrap();
    let l2 = l.clone();
    let server = std::thread::spawn(move || {
        let (mut s, _) = l2.accept().unwrap();
        let mut b = [0u8; 3];
        s.read_exact(&mut b).unwrap();
        s.write_all(&b).unwrap();
        // Blocks in accept until the main thread closes the listener.
        l2.accept().map(|_| ()).unwrap_err().kind()
    });
    let mut c = TcpStream::connect(addr).unwrap();
    c.write_all(b"abc").unwrap();
    let mut b = [0u8; 3];
    c.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"abc");
    std::thread::sleep(Duration::from_millis(100));
    l.close().unwrap();
    assert_eq!(server.join().unwrap(), ErrorKind::NotConnected);
    assert_eq!(gort::stats().threads, 0, "the runtime was started");
    println!("NO-RUNTIME-OK");
}

#[test]
fn sockets_work_without_the_runtime() {
    common::expect_child(
        "child_no_runtime",
        &[],
        Duration::from_secs(60),
        "NO-RUNTIME-OK",
    );
}

#[test]
fn try_clone_splits_reading_and_writing_between_goroutines() {
    bounded(|| {
        let (l, addr) = echo_server();
        let s = TcpStream::connect(addr).unwrap();
        let mut w = s.try_clone().unwrap();
        let mut r = s;
        let writer = gort::spawn(move || {
            for i in 0..100 {
                w.write_all(&pattern(i, 1000)).unwrap();
            }
            w.shutdown(Shutdown::Write).unwrap();
        });
        let mut got = Vec::new();
        r.read_to_end(&mut got).unwrap();
        writer.join().unwrap();
        let want: Vec<u8> = (0..100).flat_map(|i| pattern(i, 1000)).collect();
        assert!(
            got == want,
            "echoed {} bytes, not the {} sent",
            got.len(),
            want.len()
        );
        // The clone is an independent handle: closing one leaves the other.
        let c1 = l.try_clone().unwrap();
        c1.close().unwrap();
        assert!(l.local_addr().is_ok());
        l.close().unwrap();
    });
}
