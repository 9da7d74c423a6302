#[gort::test(threads = 2)]
fn runs() {}

fn main() {}
