//! `gort::time`: `after`, `Timer` (stop/reset with Go 1.23 semantics),
//! `Ticker` (drops ticks for a slow receiver), firing order, and timers
//! used from plain threads.
//!
//! Every test is bounded (the work runs on a goroutine or thread and the
//! test thread waits with a limit), and the timing tests run one at a time
//! so one test's load does not delay another's timers.

mod common;

use gort::chan::{RecvTimeoutError, TryRecvError};
use gort::time::{after, Ticker, Timer};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(30);

fn start() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    static START: std::sync::Once = std::sync::Once::new();
    START.call_once(|| {
        gort::Builder::new().procs(2).start().expect("start gort");
    });
    guard
}

fn bounded<T, F>(on_thread: bool, f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let _serial = start();
    if on_thread {
        common::on_thread_within(LIMIT, f)
    } else {
        common::on_goroutine_within(LIMIT, f)
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn check_after(on_thread: bool) {
    bounded(on_thread, || {
        let t0 = Instant::now();
        let rx = after(ms(30));
        let fired = rx.recv().expect("after delivers a value");
        assert!(
            fired >= t0 + ms(30),
            "fired {:?} early",
            t0 + ms(30) - fired
        );
        assert!(t0.elapsed() >= ms(30));
        assert!(t0.elapsed() < ms(2000), "{:?}", t0.elapsed());
        // One value only; then the channel reports closed.
        assert!(rx.recv_timeout(ms(50)).is_err());
    });
}

#[test]
fn after_in_a_goroutine() {
    check_after(false);
}

#[test]
fn after_on_a_plain_thread() {
    check_after(true);
}

#[test]
fn timer_fires_once() {
    bounded(false, || {
        let t0 = Instant::now();
        let t = Timer::new(ms(20));
        t.channel().recv().unwrap();
        assert!(t0.elapsed() >= ms(20));
        assert_eq!(
            t.channel().recv_timeout(ms(40)),
            Err(RecvTimeoutError::Timeout),
            "a timer fires once"
        );
        assert!(!t.stop(), "already fired and received");
    });
}

#[test]
fn timer_stop_before_firing() {
    bounded(false, || {
        let t = Timer::new(ms(20));
        assert!(t.stop(), "stopped an active timer");
        assert!(!t.stop(), "second stop: already stopped");
        assert_eq!(
            t.channel().recv_timeout(ms(60)),
            Err(RecvTimeoutError::Timeout)
        );
    });
}

#[test]
fn timer_stop_discards_an_unreceived_value() {
    bounded(false, || {
        let t = Timer::new(ms(5));
        gort::time::sleep(ms(30)); // fired, value sits in the channel
        assert!(t.stop(), "the unreceived value counts as active");
        assert_eq!(t.channel().try_recv(), Err(TryRecvError::Empty));
    });
}

#[test]
fn timer_reset_moves_the_deadline() {
    bounded(false, || {
        let t0 = Instant::now();
        let t = Timer::new(ms(20));
        gort::time::sleep(ms(5));
        assert!(t.reset(ms(60)), "was active");
        t.channel().recv().unwrap();
        let took = t0.elapsed();
        assert!(took >= ms(65), "reset ignored: fired after {took:?}");
        // Reset after firing re-arms it.
        let t1 = Instant::now();
        assert!(!t.reset(ms(10)), "had expired");
        t.channel().recv().unwrap();
        assert!(t1.elapsed() >= ms(10));
        // Reset while a value is unreceived: the stale value is gone.
        assert!(!t.reset(ms(5)));
        gort::time::sleep(ms(30));
        let t2 = Instant::now();
        assert!(t.reset(ms(40)));
        let v = t.channel().recv().unwrap();
        assert!(v >= t2 + ms(40), "received a stale value");
    });
}

#[test]
fn timers_fire_in_deadline_order() {
    let order = bounded(false, || {
        // Each timer's value is the instant it fired: ordering by that
        // tests the heaps, not how soon each woken goroutine got a CPU
        // (on a loaded machine that can take longer than the 10ms gaps).
        let (tx, rx) = gort::chan::channel::<(Instant, u64)>(8);
        let timers: Vec<(u64, Timer)> = [50u64, 10, 40, 20, 30, 60]
            .into_iter()
            .map(|d| (d, Timer::new(ms(d))))
            .collect();
        let hs: Vec<_> = timers
            .into_iter()
            .map(|(d, t)| {
                let tx = tx.clone();
                gort::spawn(move || {
                    let fired = t.channel().recv().unwrap();
                    tx.send((fired, d)).unwrap();
                })
            })
            .collect();
        drop(tx);
        let mut fired: Vec<(Instant, u64)> = rx.iter().collect();
        for h in hs {
            h.join().unwrap();
        }
        fired.sort();
        fired.into_iter().map(|(_, d)| d).collect::<Vec<u64>>()
    });
    assert_eq!(order, vec![10, 20, 30, 40, 50, 60]);
}

#[test]
fn stopped_timers_do_not_fire_among_live_ones() {
    bounded(false, || {
        // Many stopped timers (enough to trigger the heap's compaction)
        // interleaved with live ones.
        let mut live = Vec::new();
        for i in 0..2000u64 {
            let t = Timer::new(ms(20 + i % 20));
            if i % 10 == 0 {
                live.push(t);
            } else {
                assert!(t.stop());
            }
        }
        for t in &live {
            t.channel()
                .recv_timeout(ms(5000))
                .expect("live timer fires");
        }
    });
}

#[test]
fn ticker_ticks_and_stops() {
    bounded(false, || {
        let t0 = Instant::now();
        let tk = Ticker::new(ms(10));
        for i in 1..=5u32 {
            tk.channel().recv().unwrap();
            assert!(t0.elapsed() >= ms(10) * i, "tick {i} early");
        }
        assert!(t0.elapsed() < ms(2000));
        tk.stop();
        assert_eq!(
            tk.channel().recv_timeout(ms(50)),
            Err(RecvTimeoutError::Timeout),
            "no tick after stop"
        );
        // Reset restarts it with a new period.
        let t1 = Instant::now();
        tk.reset(ms(20));
        tk.channel().recv().unwrap();
        assert!(t1.elapsed() >= ms(20));
    });
}

#[test]
fn ticker_drops_ticks_for_a_slow_receiver() {
    bounded(false, || {
        let tk = Ticker::new(ms(5));
        gort::time::sleep(ms(60)); // about 12 periods
                                   // One tick kept (two if the next one lands while we drain).
        let kept = tk.channel().try_iter().count();
        assert!(
            (1..=2).contains(&kept),
            "{kept} ticks queued: missed ticks must be dropped"
        );
        // And it keeps ticking on its grid.
        tk.channel().recv_timeout(ms(1000)).unwrap();
    });
}

#[test]
fn ticker_on_a_plain_thread() {
    bounded(true, || {
        let t0 = Instant::now();
        let tk = Ticker::new(ms(5));
        for _ in 0..3 {
            tk.channel().recv().unwrap();
        }
        assert!(t0.elapsed() >= ms(15));
    });
}

#[test]
#[should_panic(expected = "non-positive period")]
fn ticker_rejects_zero_period() {
    let _serial = start();
    let _ = Ticker::new(Duration::ZERO);
}

/// Channel timeouts that are beaten by the value leave dead timer entries
/// behind; a long loop of them keeps working (the heap compacts them).
#[test]
fn many_timeouts_beaten_by_values() {
    bounded(false, || {
        let (tx, rx) = gort::chan::channel::<u32>(0);
        let (back_tx, back_rx) = gort::chan::channel::<u32>(0);
        let h = gort::spawn(move || {
            for v in rx.iter() {
                back_tx.send(v).unwrap();
            }
        });
        for i in 0..20_000 {
            tx.send_timeout(i, Duration::from_secs(60)).unwrap();
            assert_eq!(back_rx.recv_timeout(Duration::from_secs(60)), Ok(i));
        }
        drop(tx);
        h.join().unwrap();
    });
}

#[test]
fn hundred_thousand_after_waiters() {
    let n = bounded(false, || {
        let hs: Vec<_> = (0..100_000u64)
            .map(|i| {
                gort::spawn(move || {
                    after(Duration::from_micros(1000 + (i * 7919) % 9001))
                        .recv()
                        .unwrap();
                    1u64
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
    });
    assert_eq!(n, 100_000);
}

#[test]
fn dropping_a_timer_stops_it() {
    bounded(false, || {
        let t = Timer::new(ms(10));
        let rx = t.channel().clone();
        drop(t);
        // The timer is stopped and its receiver gone: this clone sees
        // neither a value nor a hang.
        assert!(rx.recv_timeout(ms(50)).is_err());
    });
}
