#[gort::main(procs = 2)]
fn main() {}
