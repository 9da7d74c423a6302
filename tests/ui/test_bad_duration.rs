#[gort::test(timeout = "5 parsecs")]
fn runs() {}

fn main() {}
