//! Go's concurrent prime sieve: a generator goroutine feeds 2, 3, 4, ...
//! into a chain of filter goroutines, one per prime found so far, each
//! joined to the next by an unbuffered channel.
//!
//! `cargo run --release --example sieve [N]`  (prints the first N primes)

use gort::chan::{channel, Receiver, Sender};
use std::time::Instant;

/// Sends 2, 3, 4, ... until the receiving end goes away.
fn generate(tx: Sender<u64>) {
    let mut i = 2;
    while tx.send(i).is_ok() {
        i += 1;
    }
}

/// Copies values from `rx` to `tx`, removing those divisible by `prime`.
fn filter(rx: Receiver<u64>, tx: Sender<u64>, prime: u64) {
    for i in rx.iter() {
        if i % prime != 0 && tx.send(i).is_err() {
            return;
        }
    }
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("N must be a whole number"))
        .unwrap_or(1000);
    let t0 = Instant::now();
    let primes = gort::run(move || {
        let (tx, mut rx) = channel(0);
        drop(gort::spawn(move || generate(tx)));
        let mut primes = Vec::with_capacity(n);
        for _ in 0..n {
            let prime = rx.recv().expect("the chain ended early");
            primes.push(prime);
            let (tx1, rx1) = channel(0);
            drop(gort::spawn(move || filter(rx, tx1, prime)));
            rx = rx1;
        }
        // Dropping the last receiver closes the chain; every filter and
        // the generator see their send fail and end.
        drop(rx);
        primes
    });
    let took = t0.elapsed();
    let last = primes.last().copied().unwrap_or(0);
    if n <= 30 {
        println!("{primes:?}");
    }
    println!(
        "first {n} primes (the last is {last}) through a chain of {n} goroutines in {took:.2?}; {} OS threads",
        gort::stats().threads
    );
}
