#[gort::preemptible]
const fn spin() -> u32 {
    1
}

fn main() {}
