//! `#[gort::main]` with a result that is not `Send`:
//! `cargo run --example main_result` (prints the sum, then fails on
//! purpose with a parse error, exit code 1).

use std::error::Error;

#[gort::main]
fn main() -> Result<(), Box<dyn Error>> {
    let parts: Vec<u64> = gort::scope(|s| {
        let hs: Vec<_> = ["1", "2", "39"]
            .iter()
            .map(|t| s.spawn(move || t.parse::<u64>()))
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap())
            .collect::<Result<Vec<u64>, _>>()
    })?;
    println!("sum = {}", parts.iter().sum::<u64>());
    let bad: u64 = "forty-two".parse()?; // a Box<dyn Error> (not Send) leaves main
    println!("unreachable: {bad}");
    Ok(())
}
