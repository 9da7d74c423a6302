#[gort::preemptible]
struct Spinner;

fn main() {}
