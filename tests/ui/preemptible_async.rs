#[gort::preemptible]
async fn spin() {}

fn main() {}
