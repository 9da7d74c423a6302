//! `gort::chan` and `gort::select!`: Go's close semantics, rendezvous,
//! many senders and receivers with an exact sum, the non-blocking and
//! timed variants (in goroutines and on plain threads), the drop rules,
//! and select's fairness, `default` and `timeout`.
//!
//! Every test is bounded: its work runs on a goroutine (or threads) and the
//! test thread waits for the result with a limit, so a bug fails the test
//! instead of hanging the run. Goroutines here never wait on a plain thread
//! for long (the deadlock detector reports a runtime that looks idle for
//! 200ms while a `gort::run` caller waits).

mod common;

use gort::chan::{
    channel, Receiver, RecvError, RecvTimeoutError, SendError, SendTimeoutError, Sender,
    TryRecvError, TrySendError,
};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn start() {
    static START: std::sync::Once = std::sync::Once::new();
    START.call_once(|| {
        if !common::is_child() {
            gort::Builder::new().procs(2).start().expect("start gort");
        }
    });
}

/// Runs `f` on a goroutine and returns its result, failing the test if it
/// takes longer than `limit` (the goroutine is left behind).
fn bounded<T, F>(limit: Duration, f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    start();
    common::on_goroutine_within(limit, f)
}

/// Runs `f` on a plain thread, bounded like `bounded`.
fn bounded_thread<T, F>(limit: Duration, f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    start();
    common::on_thread_within(limit, f)
}

const LIMIT: Duration = Duration::from_secs(20);

#[test]
fn close_drains_buffer_then_reports_closed() {
    bounded(LIMIT, || {
        let (tx, rx) = channel::<i32>(3);
        assert_eq!(tx.capacity(), 3);
        tx.send(1).unwrap();
        tx.send(2).unwrap();
        assert_eq!(rx.len(), 2);
        assert!(!rx.is_closed());
        assert!(tx.close(), "first close closes");
        assert!(!tx.close(), "second close reports already closed");
        assert!(!rx.close());
        assert!(rx.is_closed() && tx.is_closed());
        // Sending on a closed channel returns the value, never blocks.
        assert_eq!(tx.send(3), Err(SendError(3)));
        assert_eq!(tx.try_send(4), Err(TrySendError::Closed(4)));
        assert!(matches!(
            tx.send_timeout(5, Duration::from_secs(5)),
            Err(SendTimeoutError::Closed(5))
        ));
        // Receivers drain what is buffered, then see closed.
        assert_eq!(rx.recv(), Ok(1));
        assert_eq!(rx.try_recv(), Ok(2));
        assert_eq!(rx.recv(), Err(RecvError));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Closed));
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(5)),
            Err(RecvTimeoutError::Closed)
        );
        assert!(rx.is_empty());
    });
}

#[test]
fn rendezvous_send_waits_for_receiver() {
    bounded(LIMIT, || {
        let (tx, rx) = channel::<u32>(0);
        assert_eq!(
            tx.try_send(1),
            Err(TrySendError::Full(1)),
            "nobody receives"
        );
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        let sent = Arc::new(AtomicBool::new(false));
        let s2 = sent.clone();
        let h = gort::spawn(move || {
            tx.send(42).unwrap();
            s2.store(true, Ordering::SeqCst);
            tx
        });
        gort::time::sleep(Duration::from_millis(50));
        assert!(
            !sent.load(Ordering::SeqCst),
            "send returned before a receive"
        );
        assert_eq!(rx.len(), 0, "a rendezvous channel buffers nothing");
        assert_eq!(rx.recv(), Ok(42));
        let tx = h.join().unwrap();
        assert!(sent.load(Ordering::SeqCst));
        // A waiting receiver makes try_send succeed.
        let h = gort::spawn(move || rx.recv());
        let t0 = Instant::now();
        loop {
            match tx.try_send(7) {
                Ok(()) => break,
                Err(TrySendError::Full(_)) => gort::yield_now(),
                Err(e) => panic!("{e}"),
            }
            assert!(t0.elapsed() < Duration::from_secs(5));
        }
        assert_eq!(h.join().unwrap(), Ok(7));
    });
}

/// 8 senders x 8 receivers, every value received exactly once.
fn many_to_many(cap: usize) {
    const SENDERS: u64 = 8;
    const RECEIVERS: usize = 8;
    const PER: u64 = 20_000;
    let (sum, count) = bounded(LIMIT, move || {
        let (tx, rx) = channel::<u64>(cap);
        let senders: Vec<_> = (0..SENDERS)
            .map(|s| {
                let tx = tx.clone();
                gort::spawn(move || {
                    for i in 0..PER {
                        tx.send(s * PER + i + 1).unwrap();
                    }
                })
            })
            .collect();
        drop(tx);
        let receivers: Vec<_> = (0..RECEIVERS)
            .map(|_| {
                let rx = rx.clone();
                gort::spawn(move || {
                    let (mut sum, mut n) = (0u64, 0u64);
                    for v in &rx {
                        sum += v;
                        n += 1;
                    }
                    (sum, n)
                })
            })
            .collect();
        drop(rx);
        for h in senders {
            h.join().unwrap();
        }
        receivers
            .into_iter()
            .map(|h| h.join().unwrap())
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    });
    let n = SENDERS * PER;
    assert_eq!(count, n);
    assert_eq!(sum, n * (n + 1) / 2);
}

#[test]
fn eight_by_eight_exact_sum_unbuffered() {
    many_to_many(0);
}

#[test]
fn eight_by_eight_exact_sum_buffered() {
    many_to_many(16);
}

#[test]
fn fifo_order_single_producer() {
    bounded(LIMIT, || {
        let (tx, rx) = channel::<u32>(4);
        let h = gort::spawn(move || {
            for i in 0..10_000 {
                tx.send(i).unwrap();
            }
        });
        let got: Vec<u32> = rx.iter().collect();
        h.join().unwrap();
        assert_eq!(got, (0..10_000).collect::<Vec<_>>());
    });
}

#[test]
fn try_send_full_and_try_recv() {
    bounded(LIMIT, || {
        let (tx, rx) = channel::<String>(2);
        tx.try_send("a".into()).unwrap();
        tx.try_send("b".into()).unwrap();
        match tx.try_send("c".into()) {
            Err(TrySendError::Full(v)) => assert_eq!(v, "c"),
            other => panic!("{other:?}"),
        }
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), vec!["a", "b"]);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    });
}

#[test]
fn timeouts_in_goroutines() {
    bounded(LIMIT, || {
        let (tx, rx) = channel::<u8>(1);
        let t0 = Instant::now();
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(30)),
            Err(RecvTimeoutError::Timeout)
        );
        let took = t0.elapsed();
        assert!(took >= Duration::from_millis(30), "{took:?}");
        assert!(took < Duration::from_secs(2), "{took:?}");
        tx.send(1).unwrap();
        let t0 = Instant::now();
        match tx.send_timeout(2, Duration::from_millis(30)) {
            Err(SendTimeoutError::Timeout(2)) => {}
            other => panic!("{other:?}"),
        }
        assert!(t0.elapsed() >= Duration::from_millis(30));
        // A zero timeout is a try.
        assert_eq!(
            rx.recv_timeout(Duration::ZERO),
            Ok(1),
            "a ready value is taken even with a zero timeout"
        );
        // A value arriving before the deadline wins.
        let tx2 = tx.clone();
        let h = gort::spawn(move || {
            gort::time::sleep(Duration::from_millis(10));
            tx2.send(9).unwrap();
        });
        let t0 = Instant::now();
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(9));
        assert!(t0.elapsed() < Duration::from_secs(5));
        h.join().unwrap();
        // A sender waiting with a timeout is served by a later receive.
        tx.send(1).unwrap();
        let h = gort::spawn(move || tx.send_timeout(2, Duration::from_secs(10)));
        gort::time::sleep(Duration::from_millis(10));
        assert_eq!(rx.recv(), Ok(1));
        assert_eq!(rx.recv(), Ok(2));
        assert!(h.join().unwrap().is_ok());
    });
}

#[test]
fn timeouts_on_plain_threads() {
    bounded_thread(LIMIT, || {
        let (tx, rx) = channel::<u8>(0);
        let t0 = Instant::now();
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(30)),
            Err(RecvTimeoutError::Timeout)
        );
        assert!(t0.elapsed() >= Duration::from_millis(30));
        let t0 = Instant::now();
        assert!(matches!(
            tx.send_timeout(3, Duration::from_millis(30)),
            Err(SendTimeoutError::Timeout(3))
        ));
        assert!(t0.elapsed() >= Duration::from_millis(30));
        let h = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(10));
            tx.send(5)
        });
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(5));
        h.join().unwrap().unwrap();
    });
}

/// Timeouts racing with real hand-offs: every value a sender managed to
/// send is received exactly once, whoever times out.
fn timeout_race(threads: bool) {
    const SENDERS: u64 = 4;
    const PER: u64 = 3000;
    let work = move || {
        let (tx, rx) = channel::<u64>(0);
        let sent = Arc::new(AtomicU64::new(0));
        let recvd = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::new();
        for s in 0..SENDERS {
            let (tx, sent) = (tx.clone(), sent.clone());
            handles.push(std::thread::spawn(move || {
                for i in 0..PER {
                    let v = s * PER + i + 1;
                    // Tiny timeouts, so that many expire just as a
                    // receiver arrives.
                    if tx.send_timeout(v, Duration::from_micros(i % 50)).is_ok() {
                        sent.fetch_add(v, Ordering::Relaxed);
                    }
                }
            }));
        }
        drop(tx);
        let receivers: Vec<_> = (0..4)
            .map(|_| {
                let (rx, recvd, stop) = (rx.clone(), recvd.clone(), stop.clone());
                move || loop {
                    match rx.recv_timeout(Duration::from_micros(30)) {
                        Ok(v) => {
                            recvd.fetch_add(v, Ordering::Relaxed);
                        }
                        Err(RecvTimeoutError::Closed) => break,
                        Err(RecvTimeoutError::Timeout) => {
                            if stop.load(Ordering::Relaxed) {
                                break;
                            }
                        }
                    }
                }
            })
            .collect();
        let rh: Vec<Box<dyn FnOnce() + Send>> = if threads {
            receivers
                .into_iter()
                .map(|f| {
                    let h = std::thread::spawn(f);
                    Box::new(move || h.join().unwrap()) as Box<dyn FnOnce() + Send>
                })
                .collect()
        } else {
            receivers
                .into_iter()
                .map(|f| {
                    let h = gort::spawn(f);
                    Box::new(move || h.join().unwrap()) as Box<dyn FnOnce() + Send>
                })
                .collect()
        };
        for h in handles {
            h.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        for j in rh {
            j();
        }
        (sent.load(Ordering::Relaxed), recvd.load(Ordering::Relaxed))
    };
    // The senders are plain threads; the main part runs on a thread too,
    // so the runtime never looks deadlocked while goroutines wait on them.
    let (sent, recvd) = bounded_thread(LIMIT, work);
    assert!(sent > 0);
    assert_eq!(sent, recvd, "a value was lost or duplicated");
}

#[test]
fn timeout_races_goroutine_receivers() {
    timeout_race(false);
}

#[test]
fn timeout_races_thread_receivers() {
    timeout_race(true);
}

#[test]
fn plain_threads_and_goroutines_share_a_channel() {
    // Threads send, goroutines receive, and the other way round.
    let total = bounded_thread(LIMIT, || {
        let (tx, rx) = channel::<u64>(0);
        let (back_tx, back_rx) = channel::<u64>(4);
        let gs: Vec<_> = (0..4)
            .map(|_| {
                let (rx, back_tx) = (rx.clone(), back_tx.clone());
                gort::spawn(move || {
                    for v in &rx {
                        back_tx.send(v * 2).unwrap();
                    }
                })
            })
            .collect();
        drop((rx, back_tx));
        let ts: Vec<_> = (0..4u64)
            .map(|t| {
                let tx = tx.clone();
                std::thread::spawn(move || {
                    for i in 0..1000 {
                        tx.send(t * 1000 + i).unwrap();
                    }
                })
            })
            .collect();
        drop(tx);
        let total: u64 = back_rx.iter().sum();
        for t in ts {
            t.join().unwrap();
        }
        for g in gs {
            g.join().unwrap();
        }
        total
    });
    assert_eq!(total, 2 * (0..4000u64).sum::<u64>());
}

#[test]
fn channel_inside_syscall_blocking_blocks_the_thread() {
    bounded(LIMIT, || {
        let (tx, rx) = channel::<u32>(0);
        let h = gort::spawn(move || gort::syscall::blocking(|| rx.recv()));
        gort::time::sleep(Duration::from_millis(10));
        tx.send(3).unwrap();
        assert_eq!(h.join().unwrap(), Ok(3));
    });
}

#[test]
fn dropping_last_sender_closes() {
    bounded(LIMIT, || {
        let (tx, rx) = channel::<u8>(4);
        let tx2 = tx.clone();
        tx.send(1).unwrap();
        drop(tx);
        assert!(!rx.is_closed(), "a sender is left");
        tx2.send(2).unwrap();
        drop(tx2);
        assert!(rx.is_closed());
        assert_eq!(rx.iter().collect::<Vec<_>>(), vec![1, 2]);
        // A receiver blocked when the last sender goes is woken.
        let (tx, rx) = channel::<u8>(0);
        let h = gort::spawn(move || rx.recv());
        gort::time::sleep(Duration::from_millis(10));
        drop(tx);
        assert_eq!(h.join().unwrap(), Err(RecvError));
    });
}

#[test]
fn dropping_last_receiver_closes() {
    bounded(LIMIT, || {
        let (tx, rx) = channel::<u8>(0);
        // A sender blocked when the last receiver goes gets its value back.
        let h = gort::spawn(move || tx.send(7));
        gort::time::sleep(Duration::from_millis(10));
        drop(rx);
        assert_eq!(h.join().unwrap(), Err(SendError(7)));
        // Buffered values are dropped with the channel.
        let counted = Arc::new(AtomicUsize::new(0));
        struct D(Arc<AtomicUsize>);
        impl Drop for D {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let (tx, rx) = channel::<D>(3);
        tx.send(D(counted.clone())).unwrap();
        tx.send(D(counted.clone())).unwrap();
        drop(rx);
        assert!(tx.send(D(counted.clone())).is_err());
        assert_eq!(counted.load(Ordering::SeqCst), 1, "the rejected value");
        drop(tx);
        assert_eq!(counted.load(Ordering::SeqCst), 3);
    });
}

#[test]
fn close_wakes_blocked_receivers_and_senders() {
    bounded(LIMIT, || {
        let (tx, rx) = channel::<u32>(0);
        let receivers: Vec<_> = (0..5)
            .map(|_| {
                let rx = rx.clone();
                gort::spawn(move || rx.recv())
            })
            .collect();
        let (tx2, rx2) = channel::<u32>(0);
        let senders: Vec<_> = (0..5)
            .map(|i| {
                let tx2 = tx2.clone();
                gort::spawn(move || tx2.send(i))
            })
            .collect();
        gort::time::sleep(Duration::from_millis(20));
        assert!(rx.close());
        assert!(tx2.close());
        for h in receivers {
            assert_eq!(h.join().unwrap(), Err(RecvError));
        }
        let mut back: Vec<u32> = senders
            .into_iter()
            .map(|h| h.join().unwrap().unwrap_err().into_inner())
            .collect();
        back.sort();
        assert_eq!(back, vec![0, 1, 2, 3, 4]);
        drop((tx, rx2));
    });
}

#[test]
fn select_fairness_between_two_ready_arms() {
    let (a, b) = bounded(LIMIT, || {
        let (tx1, rx1) = channel::<u8>(1);
        let (tx2, rx2) = channel::<u8>(1);
        let (mut a, mut b) = (0u32, 0u32);
        for _ in 0..10_000 {
            if tx1.try_send(1).is_err() || tx2.try_send(2).is_err() {
                // one is still full from the last round: fine
            }
            gort::select! {
                recv(rx1) -> v => { assert_eq!(v, Ok(1)); a += 1; }
                recv(rx2) -> v => { assert_eq!(v, Ok(2)); b += 1; }
            }
        }
        (a, b)
    });
    assert_eq!(a + b, 10_000);
    for (name, n) in [("first", a), ("second", b)] {
        assert!(
            (2000..=8000).contains(&n),
            "{name} arm chosen {n} of 10000 times"
        );
    }
}

#[test]
fn select_default_and_timeout() {
    bounded(LIMIT, || {
        let (tx, rx) = channel::<u8>(1);
        let r = gort::select! {
            recv(rx) -> v => v.ok(),
            default => None,
        };
        assert_eq!(r, None, "nothing ready: default");
        tx.send(4).unwrap();
        let r = gort::select! {
            recv(rx) -> v => v.ok(),
            default => None,
        };
        assert_eq!(r, Some(4));
        // Full channel: the send arm is not ready either.
        tx.send(5).unwrap();
        let r = gort::select! {
            send(tx, 6) -> res => { res.unwrap(); "sent" }
            default => "default",
        };
        assert_eq!(r, "default");
        let t0 = Instant::now();
        let r = gort::select! {
            send(tx, 6) -> _res => "sent",
            timeout(Duration::from_millis(30)) => "timeout",
        };
        assert_eq!(r, "timeout");
        assert!(t0.elapsed() >= Duration::from_millis(30));
        // Only a timeout arm: a sleep.
        let t0 = Instant::now();
        gort::select! {
            timeout(Duration::from_millis(20)) => {},
        }
        assert!(t0.elapsed() >= Duration::from_millis(20));
        // Only a default arm.
        let r = gort::select! { default => 1 };
        assert_eq!(r, 1);
        assert_eq!(rx.recv(), Ok(5));
    });
}

#[test]
fn select_waits_and_is_woken_by_each_kind() {
    bounded(LIMIT, || {
        let (tx1, rx1) = channel::<u32>(0);
        let (tx2, rx2) = channel::<u32>(0);
        // Woken by a sender.
        let h = gort::spawn(move || {
            gort::time::sleep(Duration::from_millis(10));
            tx2.send(22).unwrap();
            tx2
        });
        let got = gort::select! {
            recv(rx1) -> v => (1, v),
            recv(rx2) -> v => (2, v),
        };
        assert_eq!(got, (2, Ok(22)));
        let tx2 = h.join().unwrap();
        // Woken by a receiver taking from a send arm.
        let h = gort::spawn(move || {
            gort::time::sleep(Duration::from_millis(10));
            rx2.recv()
        });
        let got = gort::select! {
            recv(rx1) -> _v => 1,
            send(tx2, 33) -> r => { r.unwrap(); 2 }
        };
        assert_eq!(got, 2);
        assert_eq!(h.join().unwrap(), Ok(33));
        // Woken by a close: a closed channel's receive is ready.
        let h = gort::spawn(move || {
            gort::time::sleep(Duration::from_millis(10));
            tx1.close();
            tx1
        });
        let got = gort::select! {
            recv(rx1) -> v => v,
            timeout(Duration::from_secs(10)) => Ok(0),
        };
        assert_eq!(got, Err(RecvError));
        drop(h.join().unwrap());
        // A send arm on a closed channel is ready with the value back.
        let (tx3, rx3) = channel::<String>(0);
        rx3.close();
        let got = gort::select! {
            send(tx3, "x".to_string()) -> r => r,
        };
        assert_eq!(got, Err(SendError("x".to_string())));
    });
}

#[test]
fn select_on_a_plain_thread() {
    bounded_thread(LIMIT, || {
        let (tx, rx) = channel::<u32>(0);
        let h = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(10));
            tx.send(8).unwrap();
            tx // keep the channel open
        });
        let got = gort::select! {
            recv(rx) -> v => v.unwrap(),
            timeout(Duration::from_secs(10)) => 0,
        };
        assert_eq!(got, 8);
        let _tx = h.join().unwrap();
        let t0 = Instant::now();
        let got = gort::select! {
            recv(rx) -> _v => 1,
            timeout(Duration::from_millis(20)) => 2,
        };
        assert_eq!(got, 2);
        assert!(t0.elapsed() >= Duration::from_millis(20));
    });
}

/// Many goroutines select over the same channels (send and receive arms,
/// plus a short timeout) while others send and receive plainly: nothing
/// is lost or duplicated, and nodes of decided selects are skipped.
#[test]
fn select_stress_exact_accounting() {
    const N: u64 = 4000;
    let (sum_in, sum_out) = bounded(LIMIT, || {
        let (a_tx, a_rx) = channel::<u64>(0);
        let (b_tx, b_rx) = channel::<u64>(2);
        let (out_tx, out_rx) = channel::<u64>(0);
        let producers: Vec<_> = (0..2u64)
            .map(|p| {
                let (a_tx, b_tx) = (a_tx.clone(), b_tx.clone());
                gort::spawn(move || {
                    let mut sum = 0;
                    for i in 0..N {
                        let v = p * N + i + 1;
                        let tx = if i % 2 == 0 { &a_tx } else { &b_tx };
                        tx.send(v).unwrap();
                        sum += v;
                    }
                    sum
                })
            })
            .collect();
        drop((a_tx, b_tx));
        // Forwarders: take from a or b, hand to out, with timeouts in
        // the mix; they stop once both inputs are closed.
        let forwarders: Vec<_> = (0..3)
            .map(|_| {
                let (a_rx, b_rx, out_tx) = (a_rx.clone(), b_rx.clone(), out_tx.clone());
                gort::spawn(move || {
                    let (mut a_open, mut b_open) = (true, true);
                    while a_open || b_open {
                        let got = gort::select! {
                            recv(a_rx) -> v => v.map_err(|_| 'a'),
                            recv(b_rx) -> v => v.map_err(|_| 'b'),
                            timeout(Duration::from_micros(200)) => Err('t'),
                        };
                        match got {
                            Ok(v) => {
                                let mut v = Some(v);
                                while let Some(x) = v.take() {
                                    gort::select! {
                                        send(out_tx, x) -> r => r.unwrap(),
                                        timeout(Duration::from_micros(100)) => v = Some(x),
                                    }
                                }
                            }
                            Err('a') => a_open = false,
                            Err('b') => b_open = false,
                            Err(_) => {}
                        }
                    }
                })
            })
            .collect();
        drop((a_rx, b_rx, out_tx));
        let consumer = gort::spawn(move || out_rx.iter().sum::<u64>());
        let sum_in: u64 = producers.into_iter().map(|h| h.join().unwrap()).sum();
        for f in forwarders {
            f.join().unwrap();
        }
        (sum_in, consumer.join().unwrap())
    });
    let n = 2 * N;
    assert_eq!(sum_in, n * (n + 1) / 2);
    assert_eq!(sum_out, sum_in);
}

#[test]
fn select_same_channel_in_two_arms() {
    bounded(LIMIT, || {
        let (tx, rx) = channel::<u8>(1);
        // Empty: the receive is not ready, the send is.
        let r = gort::select! {
            recv(rx) -> _v => "recv",
            send(tx, 1) -> _r => "send",
        };
        assert_eq!(r, "send");
        // Full: only the receive is ready.
        let r = gort::select! {
            recv(rx) -> v => { assert_eq!(v, Ok(1)); "recv" }
            send(tx, 2) -> _r => "send",
        };
        assert_eq!(r, "recv");
        // Both arms on one channel queued at once, then a plain sender.
        let (tx, rx) = channel::<u8>(0);
        let tx2 = tx.clone();
        let h = gort::spawn(move || {
            gort::time::sleep(Duration::from_millis(10));
            tx2.send(9).unwrap();
        });
        let r = gort::select! {
            recv(rx) -> v => v.unwrap(),
            send(tx, 1) -> _r => 0,
        };
        assert_eq!(r, 9);
        h.join().unwrap();
    });
}

#[test]
fn unselected_send_value_is_dropped() {
    bounded(LIMIT, || {
        let (tx, _rx) = channel::<Arc<()>>(0);
        let v = Arc::new(());
        let r = gort::select! {
            send(tx, v.clone()) -> _r => false,
            default => true,
        };
        assert!(r);
        assert_eq!(
            Arc::strong_count(&v),
            1,
            "the value of the unchosen arm leaked"
        );
    });
}

#[test]
fn receiver_and_sender_types_are_send_sync() {
    fn check<T: Send + Sync>() {}
    check::<Sender<Vec<u8>>>();
    check::<Receiver<Vec<u8>>>();
}

// ---------------------------------------------------------------------------
// The wait reason shows in the deadlock report (in a child process: the
// report needs the whole runtime idle).

#[test]
#[ignore = "child process of blocked_receiver_is_reported_as_chan_receive"]
fn child_blocked_receiver() {
    gort::run(|| {
        let (tx, rx) = channel::<u8>(0);
        let _keep = tx;
        let _ = rx.recv();
    });
}

#[test]
fn blocked_receiver_is_reported_as_chan_receive() {
    if common::is_child() {
        return;
    }
    let out = common::run_child("child_blocked_receiver", &[], Duration::from_secs(30));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("all goroutines are asleep"), "{err}");
    assert!(err.contains("chan receive"), "{err}");
}
