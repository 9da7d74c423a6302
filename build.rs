//! Compiles the hand-written assembly in `asm/<target_arch>/` with `cc`.

use std::path::Path;

fn main() {
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").expect("CARGO_CFG_TARGET_ARCH");
    let os = std::env::var("CARGO_CFG_TARGET_OS").expect("CARGO_CFG_TARGET_OS");
    if os != "linux" || !(arch == "x86_64" || arch == "aarch64") {
        panic!("gort supports Linux on x86_64 and aarch64 only (target: {arch}-{os})");
    }
    println!("cargo:rerun-if-changed=asm/common.h");
    let dir = Path::new("asm").join(&arch);
    // A directory: cargo rescans it, so added files trigger a rebuild too.
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut build = cc::Build::new();
    build.include("asm");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "S"))
        .collect();
    files.sort();
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
        build.file(f);
    }
    build.compile("gort_asm");
}
