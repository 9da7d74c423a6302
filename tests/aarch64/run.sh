#!/usr/bin/env bash
# Builds tests/aarch64/switch_harness.c against asm/aarch64/switch.S, then
# tests/aarch64/preempt_harness.c against asm/aarch64/preempt.S, and runs
# them: natively on an aarch64 host, otherwise under qemu-aarch64 (the
# binaries are static, so no aarch64 sysroot is needed at run time).
#
# Needs: aarch64-linux-gnu-gcc (Debian/Ubuntu: gcc-aarch64-linux-gnu, which
# pulls in libc6-dev-arm64-cross) and, off aarch64, qemu-aarch64 (qemu-user).
# Overrides: AARCH64_CC=<compiler>, QEMU_AARCH64=<emulator>.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

cc="${AARCH64_CC:-aarch64-linux-gnu-gcc}"
if [[ -z "${AARCH64_CC:-}" && "$(uname -m)" == aarch64 ]] && ! command -v "$cc" >/dev/null; then
    cc=gcc
fi
if ! command -v "$cc" >/dev/null; then
    echo "error: aarch64 C compiler '$cc' not found;" \
         "install gcc-aarch64-linux-gnu (apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross)" \
         "or set AARCH64_CC" >&2
    exit 1
fi

runner=()
if [[ "$(uname -m)" != aarch64 ]]; then
    qemu="${QEMU_AARCH64:-}"
    if [[ -z "$qemu" ]]; then
        for q in qemu-aarch64 qemu-aarch64-static; do
            if command -v "$q" >/dev/null; then qemu="$q"; break; fi
        done
    fi
    if [[ -z "$qemu" ]] || ! command -v "$qemu" >/dev/null; then
        echo "error: qemu-aarch64 not found; install qemu-user (apt-get install qemu-user)" \
             "or set QEMU_AARCH64" >&2
        exit 1
    fi
    runner=("$qemu")
fi

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

"$cc" -static -O2 -g -Wall -Wextra -I asm \
    -o "$out/switch_harness" \
    tests/aarch64/switch_harness.c asm/aarch64/switch.S

"${runner[@]}" "$out/switch_harness"

"$cc" -static -O2 -g -Wall -Wextra -pthread -I asm \
    -o "$out/preempt_harness" \
    tests/aarch64/preempt_harness.c asm/aarch64/preempt.S

# Under qemu, twice: the default CPU ("max": the signal frame carries SVE,
# TPIDR2 and ZA records, and the V registers come back from the SVE record)
# and a plain Armv8.0 one (FPSIMD record only).
"${runner[@]}" "$out/preempt_harness"
if [[ ${#runner[@]} -gt 0 ]]; then
    "${runner[@]}" -cpu cortex-a57 "$out/preempt_harness"
fi
