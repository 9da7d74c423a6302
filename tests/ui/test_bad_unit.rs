#[gort::test(time_slice = "10 minutes")]
fn runs() {}

fn main() {}
