#[gort::test]
fn runs(n: u32) {
    let _ = n;
}

fn main() {}
