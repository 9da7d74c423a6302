//! Register state survives asynchronous preemption: under a 200µs time
//! slice, loops that keep every general-purpose register, the flags, all
//! xmm registers, floating-point values and (with AVX2) all 256-bit ymm
//! registers, and (with AVX-512) all 32 zmm and the k0-k7 opmask
//! registers live compute exactly what the same loop computes on a plain
//! thread, bit for bit.

use std::sync::Once;
use std::time::Duration;

fn start() {
    static START: Once = Once::new();
    START.call_once(|| {
        gort::Builder::new()
            .procs(2)
            .time_slice(Duration::from_micros(200))
            .start()
            .expect("start gort");
    });
}

/// A loop written in asm, so that every value lives in a register whatever
/// the optimisation level: 13 general-purpose registers, the flags (live
/// between `dec` and `jnz`, and through the `adc` carry chain) and all 16
/// xmm registers change on every iteration. A signal can land between any
/// two instructions.
#[cfg(target_arch = "x86_64")]
#[inline(never)]
fn gpr_sse_loop(seed: u64, iters: u64) -> [u64; 14] {
    use std::arch::asm;
    let mut g = [0u64; 12];
    for (i, v) in g.iter_mut().enumerate() {
        *v = seed
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(i as u32 * 5)
            | 1;
    }
    let mut x = [0u64; 32];
    for (i, v) in x.iter_mut().enumerate() {
        *v = seed ^ (i as u64).wrapping_mul(0x2545_f491_4f6c_dd1d);
    }
    let [mut a, mut c, mut d, mut si, mut di, mut r8, mut r9, mut r10, mut r11, mut r12, mut r13, mut r14] =
        g;
    let mut n = iters;
    // SAFETY: register-only arithmetic; xmm0-15 are loaded from and stored
    // to `x`, which lives across the block; every register used is
    // declared as an operand or clobber.
    unsafe {
        asm!(
            "movdqu xmm0, [{x}]", "movdqu xmm1, [{x} + 16]", "movdqu xmm2, [{x} + 32]",
            "movdqu xmm3, [{x} + 48]", "movdqu xmm4, [{x} + 64]", "movdqu xmm5, [{x} + 80]",
            "movdqu xmm6, [{x} + 96]", "movdqu xmm7, [{x} + 112]", "movdqu xmm8, [{x} + 128]",
            "movdqu xmm9, [{x} + 144]", "movdqu xmm10, [{x} + 160]", "movdqu xmm11, [{x} + 176]",
            "movdqu xmm12, [{x} + 192]", "movdqu xmm13, [{x} + 208]", "movdqu xmm14, [{x} + 224]",
            "movdqu xmm15, [{x} + 240]",
            "2:",
            "add rax, rcx", "adc rdx, rsi", "adc rdi, r8", "rol r9, 7", "xor r10, r9",
            "imul r11, rax", "add r12, r11", "xor r13, r12", "ror r14, 11", "sub rcx, r14",
            "xor rsi, r13", "add r8, rdx",
            "paddq xmm0, xmm1", "pxor xmm1, xmm2", "paddq xmm2, xmm3", "pxor xmm3, xmm4",
            "paddq xmm4, xmm5", "pxor xmm5, xmm6", "paddq xmm6, xmm7", "pxor xmm7, xmm8",
            "paddq xmm8, xmm9", "pxor xmm9, xmm10", "paddq xmm10, xmm11", "pxor xmm11, xmm12",
            "paddq xmm12, xmm13", "pxor xmm13, xmm14", "paddq xmm14, xmm15", "pshufd xmm15, xmm0, 0x4e",
            "dec {n}",
            "jnz 2b",
            "movdqu [{x}], xmm0", "movdqu [{x} + 16], xmm1", "movdqu [{x} + 32], xmm2",
            "movdqu [{x} + 48], xmm3", "movdqu [{x} + 64], xmm4", "movdqu [{x} + 80], xmm5",
            "movdqu [{x} + 96], xmm6", "movdqu [{x} + 112], xmm7", "movdqu [{x} + 128], xmm8",
            "movdqu [{x} + 144], xmm9", "movdqu [{x} + 160], xmm10", "movdqu [{x} + 176], xmm11",
            "movdqu [{x} + 192], xmm12", "movdqu [{x} + 208], xmm13", "movdqu [{x} + 224], xmm14",
            "movdqu [{x} + 240], xmm15",
            x = in(reg) x.as_mut_ptr(),
            n = inout(reg) n,
            inout("rax") a, inout("rcx") c, inout("rdx") d, inout("rsi") si, inout("rdi") di,
            inout("r8") r8, inout("r9") r9, inout("r10") r10, inout("r11") r11,
            inout("r12") r12, inout("r13") r13, inout("r14") r14,
            out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _, out("xmm4") _,
            out("xmm5") _, out("xmm6") _, out("xmm7") _, out("xmm8") _, out("xmm9") _,
            out("xmm10") _, out("xmm11") _, out("xmm12") _, out("xmm13") _, out("xmm14") _,
            out("xmm15") _,
        );
    }
    let _ = n;
    let gprs = [a, c, d, si, di, r8, r9, r10, r11, r12, r13, r14];
    let mut out = [0u64; 14];
    out[..12].copy_from_slice(&gprs);
    out[12] = x.iter().step_by(2).fold(0, |h, &v| h.rotate_left(3) ^ v);
    out[13] = x
        .iter()
        .skip(1)
        .step_by(2)
        .fold(0, |h, &v| h.rotate_left(3) ^ v);
    out
}

/// Floating point in Rust, with more live doubles than registers.
#[inline(never)]
fn floats(seed: u64, iters: u64) -> u64 {
    let mut f = [0f64; 8];
    for (i, v) in f.iter_mut().enumerate() {
        *v = (seed as f64 + i as f64) * 0.5 + 1.0;
    }
    let [mut f0, mut f1, mut f2, mut f3, mut f4, mut f5, mut f6, mut f7] = f;
    for k in 0..iters {
        f0 = f0 * 1.000_000_1 + f7 * 1e-9;
        f1 = f1 + f0 * 0.5 - f1 * 0.25;
        f2 = (f2 * f1).abs().sqrt() + 0.125;
        f3 = f3 - f2 * 1e-3 + (k & 7) as f64;
        f4 = f4 * 0.999_999 + f3 * 1e-6;
        f5 = f5.mul_add(0.5, f4 * 0.25);
        f6 /= 1.0 + f5.abs() * 1e-12;
        f7 = f7 + f6 * 1e-7 - f0 * 1e-8;
    }
    [f0, f1, f2, f3, f4, f5, f6, f7]
        .iter()
        .fold(0u64, |h, v| h.rotate_left(9) ^ v.to_bits())
}

/// All 16 ymm registers (upper halves included) live in an asm loop.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline(never)]
unsafe fn vectors(seed: u64, iters: u64) -> [u64; 64] {
    use std::arch::asm;
    let mut y = [0u64; 64];
    for (i, v) in y.iter_mut().enumerate() {
        *v = seed.wrapping_mul(i as u64 + 7) ^ (i as u64).rotate_left(40);
    }
    let mut n = iters;
    // SAFETY: ymm0-15 are loaded from and stored to `y` (512 bytes);
    // every register used is declared.
    unsafe {
        asm!(
            "vmovdqu ymm0, [{y}]", "vmovdqu ymm1, [{y} + 32]", "vmovdqu ymm2, [{y} + 64]",
            "vmovdqu ymm3, [{y} + 96]", "vmovdqu ymm4, [{y} + 128]", "vmovdqu ymm5, [{y} + 160]",
            "vmovdqu ymm6, [{y} + 192]", "vmovdqu ymm7, [{y} + 224]", "vmovdqu ymm8, [{y} + 256]",
            "vmovdqu ymm9, [{y} + 288]", "vmovdqu ymm10, [{y} + 320]", "vmovdqu ymm11, [{y} + 352]",
            "vmovdqu ymm12, [{y} + 384]", "vmovdqu ymm13, [{y} + 416]", "vmovdqu ymm14, [{y} + 448]",
            "vmovdqu ymm15, [{y} + 480]",
            "2:",
            "vpaddq ymm0, ymm0, ymm1", "vpxor ymm1, ymm1, ymm2", "vpaddq ymm2, ymm2, ymm3",
            "vpxor ymm3, ymm3, ymm4", "vpaddq ymm4, ymm4, ymm5", "vpxor ymm5, ymm5, ymm6",
            "vpaddq ymm6, ymm6, ymm7", "vpxor ymm7, ymm7, ymm8", "vpaddq ymm8, ymm8, ymm9",
            "vpxor ymm9, ymm9, ymm10", "vpaddq ymm10, ymm10, ymm11", "vpxor ymm11, ymm11, ymm12",
            "vpaddq ymm12, ymm12, ymm13", "vpxor ymm13, ymm13, ymm14", "vpaddq ymm14, ymm14, ymm15",
            "vpermq ymm15, ymm0, 0x39",
            "dec {n}",
            "jnz 2b",
            "vmovdqu [{y}], ymm0", "vmovdqu [{y} + 32], ymm1", "vmovdqu [{y} + 64], ymm2",
            "vmovdqu [{y} + 96], ymm3", "vmovdqu [{y} + 128], ymm4", "vmovdqu [{y} + 160], ymm5",
            "vmovdqu [{y} + 192], ymm6", "vmovdqu [{y} + 224], ymm7", "vmovdqu [{y} + 256], ymm8",
            "vmovdqu [{y} + 288], ymm9", "vmovdqu [{y} + 320], ymm10", "vmovdqu [{y} + 352], ymm11",
            "vmovdqu [{y} + 384], ymm12", "vmovdqu [{y} + 416], ymm13", "vmovdqu [{y} + 448], ymm14",
            "vmovdqu [{y} + 480], ymm15",
            "vzeroupper",
            y = in(reg) y.as_mut_ptr(),
            n = inout(reg) n,
            out("ymm0") _, out("ymm1") _, out("ymm2") _, out("ymm3") _, out("ymm4") _,
            out("ymm5") _, out("ymm6") _, out("ymm7") _, out("ymm8") _, out("ymm9") _,
            out("ymm10") _, out("ymm11") _, out("ymm12") _, out("ymm13") _, out("ymm14") _,
            out("ymm15") _,
        );
    }
    let _ = n;
    y
}

/// All 32 zmm registers and the opmask registers k0-k7 live in an asm loop
/// (AVX-512: the state the trampoline's XSAVE must cover beyond AVX2).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
#[inline(never)]
unsafe fn vectors512(seed: u64, iters: u64) -> ([u64; 256], [u64; 8]) {
    use std::arch::asm;
    let mut z = [0u64; 256];
    for (i, v) in z.iter_mut().enumerate() {
        *v = seed.wrapping_mul(i as u64 + 11) ^ (i as u64).rotate_left(33);
    }
    let mut k = [0u64; 8];
    for (i, v) in k.iter_mut().enumerate() {
        *v = seed.rotate_left(i as u32 * 7) ^ 0x9e37_79b9_7f4a_7c15;
    }
    let mut k0_saved = 0u64;
    let mut n = iters;
    // SAFETY: zmm0-31 and k0-k7 are loaded from and stored to `z` (2 KiB)
    // and `k` (64 bytes); every register used is declared, except k0
    // (not usable as an operand), which is saved to `k0_saved` first and
    // restored last.
    unsafe {
        asm!(
            "kmovq [{k0s}], k0",
            "vmovdqu64 zmm0, [{z} + 0]", "vmovdqu64 zmm1, [{z} + 64]", "vmovdqu64 zmm2, [{z} + 128]", "vmovdqu64 zmm3, [{z} + 192]", "vmovdqu64 zmm4, [{z} + 256]", "vmovdqu64 zmm5, [{z} + 320]", "vmovdqu64 zmm6, [{z} + 384]", "vmovdqu64 zmm7, [{z} + 448]", "vmovdqu64 zmm8, [{z} + 512]", "vmovdqu64 zmm9, [{z} + 576]", "vmovdqu64 zmm10, [{z} + 640]", "vmovdqu64 zmm11, [{z} + 704]", "vmovdqu64 zmm12, [{z} + 768]", "vmovdqu64 zmm13, [{z} + 832]", "vmovdqu64 zmm14, [{z} + 896]", "vmovdqu64 zmm15, [{z} + 960]", "vmovdqu64 zmm16, [{z} + 1024]", "vmovdqu64 zmm17, [{z} + 1088]", "vmovdqu64 zmm18, [{z} + 1152]", "vmovdqu64 zmm19, [{z} + 1216]", "vmovdqu64 zmm20, [{z} + 1280]", "vmovdqu64 zmm21, [{z} + 1344]", "vmovdqu64 zmm22, [{z} + 1408]", "vmovdqu64 zmm23, [{z} + 1472]", "vmovdqu64 zmm24, [{z} + 1536]", "vmovdqu64 zmm25, [{z} + 1600]", "vmovdqu64 zmm26, [{z} + 1664]", "vmovdqu64 zmm27, [{z} + 1728]", "vmovdqu64 zmm28, [{z} + 1792]", "vmovdqu64 zmm29, [{z} + 1856]", "vmovdqu64 zmm30, [{z} + 1920]", "vmovdqu64 zmm31, [{z} + 1984]",
            "kmovq k0, [{k} + 0]", "kmovq k1, [{k} + 8]", "kmovq k2, [{k} + 16]", "kmovq k3, [{k} + 24]", "kmovq k4, [{k} + 32]", "kmovq k5, [{k} + 40]", "kmovq k6, [{k} + 48]", "kmovq k7, [{k} + 56]",
            "2:",
            "vpaddq zmm0, zmm0, zmm1", "vpxorq zmm1, zmm1, zmm2", "vpaddq zmm2, zmm2, zmm3", "vpxorq zmm3, zmm3, zmm4", "vpaddq zmm4, zmm4, zmm5", "vpxorq zmm5, zmm5, zmm6", "vpaddq zmm6, zmm6, zmm7", "vpxorq zmm7, zmm7, zmm8", "vpaddq zmm8, zmm8, zmm9", "vpxorq zmm9, zmm9, zmm10", "vpaddq zmm10, zmm10, zmm11", "vpxorq zmm11, zmm11, zmm12", "vpaddq zmm12, zmm12, zmm13", "vpxorq zmm13, zmm13, zmm14", "vpaddq zmm14, zmm14, zmm15", "vpxorq zmm15, zmm15, zmm16", "vpaddq zmm16, zmm16, zmm17", "vpxorq zmm17, zmm17, zmm18", "vpaddq zmm18, zmm18, zmm19", "vpxorq zmm19, zmm19, zmm20", "vpaddq zmm20, zmm20, zmm21", "vpxorq zmm21, zmm21, zmm22", "vpaddq zmm22, zmm22, zmm23", "vpxorq zmm23, zmm23, zmm24", "vpaddq zmm24, zmm24, zmm25", "vpxorq zmm25, zmm25, zmm26", "vpaddq zmm26, zmm26, zmm27", "vpxorq zmm27, zmm27, zmm28", "vpaddq zmm28, zmm28, zmm29", "vpxorq zmm29, zmm29, zmm30", "vpaddq zmm30, zmm30, zmm31", "vpermq zmm31, zmm0, 0x39",
            "kaddq k0, k0, k1", "kxorq k1, k1, k2", "kaddq k2, k2, k3", "kxorq k3, k3, k4", "kaddq k4, k4, k5", "kxorq k5, k5, k6", "kaddq k6, k6, k7", "kshiftrq k7, k0, 3",
            "dec {n}",
            "jnz 2b",
            "vmovdqu64 [{z} + 0], zmm0", "vmovdqu64 [{z} + 64], zmm1", "vmovdqu64 [{z} + 128], zmm2", "vmovdqu64 [{z} + 192], zmm3", "vmovdqu64 [{z} + 256], zmm4", "vmovdqu64 [{z} + 320], zmm5", "vmovdqu64 [{z} + 384], zmm6", "vmovdqu64 [{z} + 448], zmm7", "vmovdqu64 [{z} + 512], zmm8", "vmovdqu64 [{z} + 576], zmm9", "vmovdqu64 [{z} + 640], zmm10", "vmovdqu64 [{z} + 704], zmm11", "vmovdqu64 [{z} + 768], zmm12", "vmovdqu64 [{z} + 832], zmm13", "vmovdqu64 [{z} + 896], zmm14", "vmovdqu64 [{z} + 960], zmm15", "vmovdqu64 [{z} + 1024], zmm16", "vmovdqu64 [{z} + 1088], zmm17", "vmovdqu64 [{z} + 1152], zmm18", "vmovdqu64 [{z} + 1216], zmm19", "vmovdqu64 [{z} + 1280], zmm20", "vmovdqu64 [{z} + 1344], zmm21", "vmovdqu64 [{z} + 1408], zmm22", "vmovdqu64 [{z} + 1472], zmm23", "vmovdqu64 [{z} + 1536], zmm24", "vmovdqu64 [{z} + 1600], zmm25", "vmovdqu64 [{z} + 1664], zmm26", "vmovdqu64 [{z} + 1728], zmm27", "vmovdqu64 [{z} + 1792], zmm28", "vmovdqu64 [{z} + 1856], zmm29", "vmovdqu64 [{z} + 1920], zmm30", "vmovdqu64 [{z} + 1984], zmm31",
            "kmovq [{k} + 0], k0", "kmovq [{k} + 8], k1", "kmovq [{k} + 16], k2", "kmovq [{k} + 24], k3", "kmovq [{k} + 32], k4", "kmovq [{k} + 40], k5", "kmovq [{k} + 48], k6", "kmovq [{k} + 56], k7",
            "kmovq k0, [{k0s}]",
            "vzeroupper",
            z = in(reg) z.as_mut_ptr(),
            k = in(reg) k.as_mut_ptr(),
            k0s = in(reg) &mut k0_saved,
            n = inout(reg) n,
            out("zmm0") _, out("zmm1") _, out("zmm2") _, out("zmm3") _, out("zmm4") _, out("zmm5") _, out("zmm6") _, out("zmm7") _, out("zmm8") _, out("zmm9") _, out("zmm10") _, out("zmm11") _, out("zmm12") _, out("zmm13") _, out("zmm14") _, out("zmm15") _, out("zmm16") _, out("zmm17") _, out("zmm18") _, out("zmm19") _, out("zmm20") _, out("zmm21") _, out("zmm22") _, out("zmm23") _, out("zmm24") _, out("zmm25") _, out("zmm26") _, out("zmm27") _, out("zmm28") _, out("zmm29") _, out("zmm30") _, out("zmm31") _, out("k1") _, out("k2") _, out("k3") _, out("k4") _, out("k5") _, out("k6") _, out("k7") _,
        );
    }
    let _ = n;
    (z, k)
}

const ITERS: u64 = 100_000_000;

#[test]
fn integer_sse_flags_and_float_registers_survive_preemption() {
    start();
    let seeds: Vec<u64> = (1..=6).collect();
    let work = |s: u64| (gpr_sse_loop(s, ITERS), floats(s, ITERS / 20));
    let expected: Vec<_> = seeds.iter().map(|&s| work(s)).collect();
    let before = gort::stats();
    let got = gort::run(move || {
        let hs: Vec<_> = seeds
            .into_iter()
            .map(|s| gort::spawn(move || work(s)))
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    });
    assert_eq!(got, expected, "register state corrupted by preemption");
    let after = gort::stats();
    let n = after.preempted_async - before.preempted_async;
    assert!(n >= 20, "only {n} async preemptions happened: {after:?}");
}

#[cfg(target_arch = "x86_64")]
#[test]
fn avx2_registers_survive_preemption() {
    if !std::is_x86_feature_detected!("avx2") {
        eprintln!("no AVX2 on this CPU: vector test skipped");
        return;
    }
    start();
    let seeds: Vec<u64> = (1..=6).collect();
    // SAFETY: AVX2 is available (checked above).
    let expected: Vec<[u64; 64]> = seeds
        .iter()
        .map(|&s| unsafe { vectors(s, ITERS) })
        .collect();
    let before = gort::stats();
    let got = gort::run(move || {
        let hs: Vec<_> = seeds
            .into_iter()
            // SAFETY: AVX2 is available (checked above).
            .map(|s| gort::spawn(move || unsafe { vectors(s, ITERS) }))
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    });
    assert_eq!(got, expected, "vector state corrupted by preemption");
    let after = gort::stats();
    let n = after.preempted_async - before.preempted_async;
    assert!(n >= 20, "only {n} async preemptions happened: {after:?}");
}

#[cfg(target_arch = "x86_64")]
#[test]
fn avx512_zmm_and_opmask_registers_survive_preemption() {
    if !(std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512bw")) {
        eprintln!("no AVX-512 (F, BW) on this CPU: zmm16-31/k0-k7 test skipped");
        return;
    }
    start();
    let seeds: Vec<u64> = (1..=6).collect();
    // SAFETY: AVX-512 F and BW are available (checked above).
    let expected: Vec<_> = seeds
        .iter()
        .map(|&s| unsafe { vectors512(s, ITERS / 2) })
        .collect();
    let before = gort::stats();
    let got = gort::run(move || {
        let hs: Vec<_> = seeds
            .into_iter()
            // SAFETY: AVX-512 F and BW are available (checked above).
            .map(|s| gort::spawn(move || unsafe { vectors512(s, ITERS / 2) }))
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    });
    assert!(got == expected, "zmm/opmask state corrupted by preemption");
    let after = gort::stats();
    let n = after.preempted_async - before.preempted_async;
    assert!(n >= 20, "only {n} async preemptions happened: {after:?}");
}
