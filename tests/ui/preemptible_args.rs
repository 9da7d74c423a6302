#[gort::preemptible(always)]
fn spin() {}

fn main() {}
