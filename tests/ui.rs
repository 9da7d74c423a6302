//! The macros' misuse errors (`#[gort::main]`, `#[gort::test]`,
//! `#[gort::preemptible]`): each case in tests/ui must fail to compile
//! with the message in its `.stderr` file. After changing a message:
//! `TRYBUILD=overwrite cargo test --test ui`, then read the diff.

#[test]
fn macro_misuse_is_a_clear_compile_error() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
