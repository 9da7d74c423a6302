//! The deadlock check per `gort::run` (goroutine groups), in one process
//! with other groups doing things that keep the process-wide check quiet:
//! a goroutine leaked in `accept`, a goroutine leaked in a long sleep, and
//! a busy group with tickers.

mod common;

use common::on_thread_within;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

fn panic_message(err: Box<dyn std::any::Any + Send>) -> String {
    err.downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// Ids of goroutines leaked by other groups: one parked in `accept`, one
/// asleep for a minute. Started once per process.
fn leaked_elsewhere() -> (u64, u64) {
    static LEAKED: Mutex<Option<(u64, u64)>> = Mutex::new(None);
    let mut l = LEAKED.lock().unwrap();
    *l.get_or_insert_with(|| {
        gort::run(|| {
            let ln = gort::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let acceptor = gort::spawn(move || {
                let _ = ln.accept();
            });
            let sleeper = gort::spawn(|| gort::time::sleep(Duration::from_secs(60)));
            let ids = (acceptor.id(), sleeper.id());
            gort::time::sleep(Duration::from_millis(20));
            ids
        })
    })
}

/// Spawns a goroutine that joins itself: it can never be woken.
fn spawn_self_joiner() -> u64 {
    let slot: Arc<Mutex<Option<gort::JoinHandle<()>>>> = Arc::new(Mutex::new(None));
    let s2 = slot.clone();
    let h = gort::spawn(move || {
        let own = loop {
            if let Some(h) = s2.lock().unwrap().take() {
                break h;
            }
            gort::yield_now();
        };
        let _ = own.join();
    });
    let id = h.id();
    *slot.lock().unwrap() = Some(h);
    id
}

#[test]
fn a_deadlocked_run_is_reported_while_other_groups_wait_on_the_network_and_timers() {
    let (acceptor, sleeper) = leaked_elsewhere();
    // Another group keeps running with tickers meanwhile.
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let busy = std::thread::spawn(move || {
        gort::run(move || {
            let t = gort::time::Ticker::new(Duration::from_millis(5));
            while !stop2.load(Ordering::Relaxed) {
                let _ = t.channel().recv();
            }
        })
    });
    let (ids, msg) = on_thread_within(LIMIT, || {
        let ids = Arc::new(Mutex::new(Vec::new()));
        let ids2 = ids.clone();
        let err = std::panic::catch_unwind(move || {
            gort::run(move || {
                let (tx, rx) = gort::chan::channel::<u32>(0);
                let m = Arc::new(gort::sync::Mutex::new(()));
                let held = m.lock();
                let m2 = m.clone();
                let locker = gort::spawn(move || drop(m2.lock()));
                let receiver = gort::spawn(move || rx.recv());
                ids2.lock().unwrap().extend([
                    gort::current_id(),
                    locker.id(),
                    receiver.id(),
                    spawn_self_joiner(),
                ]);
                let wg = gort::sync::WaitGroup::new();
                wg.add(1);
                wg.wait(); // nobody calls done
                drop((tx, held));
            })
        })
        .expect_err("the deadlocked run must be reported");
        let ids = ids.lock().unwrap().clone();
        (ids, panic_message(err))
    });
    stop.store(true, Ordering::Relaxed);
    busy.join().unwrap();
    assert!(
        msg.contains("all goroutines are asleep - deadlock!"),
        "{msg}"
    );
    assert!(
        msg.contains("(the goroutines of gort::run at tests/groups.rs:"),
        "{msg}"
    );
    for id in &ids {
        assert!(
            msg.contains(&format!("goroutine {id} [")),
            "{id} missing:\n{msg}"
        );
    }
    for reason in [
        "sync.WaitGroup.Wait",
        "sync.Mutex.Lock",
        "chan receive",
        "join",
    ] {
        assert!(msg.contains(&format!("[{reason}, ")), "{reason}:\n{msg}");
    }
    // Only this run's goroutines.
    for other in [acceptor, sleeper] {
        assert!(!msg.contains(&format!("goroutine {other} [")), "{msg}");
    }
    let headers = msg.lines().filter(|l| l.starts_with("goroutine ")).count();
    assert_eq!(headers, ids.len(), "{msg}");
}

#[test]
fn a_timed_wait_or_an_armed_timer_is_not_a_deadlock() {
    leaked_elsewhere();
    on_thread_within(LIMIT, || {
        gort::run(|| {
            let (_tx, rx) = gort::chan::channel::<u32>(0);
            // Longer than the grace: a timed receive is not durable.
            assert!(rx.recv_timeout(Duration::from_millis(800)).is_err());
            // Blocked on a timer's channel: the armed timer counts.
            let t = gort::time::Timer::new(Duration::from_millis(800));
            t.channel().recv().unwrap();
            gort::time::after(Duration::from_millis(800))
                .recv()
                .unwrap();
            // A condvar wait with a timeout.
            let m = gort::sync::Mutex::new(());
            let cv = gort::sync::Condvar::new();
            let (_g, r) = cv.wait_timeout(m.lock(), Duration::from_millis(800));
            assert!(r.timed_out());
            // A goroutine of the group sleeping keeps the others alive.
            let (tx2, rx2) = gort::chan::channel(0);
            gort::spawn(move || {
                gort::time::sleep(Duration::from_millis(800));
                tx2.send(1u8).unwrap();
            });
            rx2.recv().unwrap()
        })
    });
}

#[test]
fn goroutines_spawned_by_a_group_s_goroutines_belong_to_it() {
    leaked_elsewhere();
    // A grandchild that waits long on a timer keeps the run alive even
    // though the main goroutine and the child wait durably.
    let v = on_thread_within(LIMIT, || {
        gort::run(|| {
            gort::spawn(|| {
                gort::spawn(|| {
                    gort::time::sleep(Duration::from_millis(900));
                    4
                })
                .join()
                .unwrap()
                    + 1
            })
            .join()
            .unwrap()
        })
    });
    assert_eq!(v, 5);
}
