#!/usr/bin/env bash
# Builds tests/lto/main.rs as a separate program with a path dependency on
# gort, in the profiles users build with — fat LTO (`lto = "fat"` and
# `lto = true`, `codegen-units = 1`), with and without line-tables
# debuginfo, and thin LTO with and without — and checks under a 100 µs time slice that
# every println! line comes out whole, that no run hangs, and that a
# spinning goroutine is still preempted by signal where gort can see the
# inlining (DWARF present), and that goroutines blocking in plain std
# calls (sleep, fs, a std Mutex) do not stall the only processor. Run by
# .ci/run; about 2 minutes.
set -euo pipefail
fail=0

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
work="${LTO_WORK_DIR:-$root/target/lto-println}"
mkdir -p "$work/src"
cp "$root/tests/lto/main.rs" "$work/src/main.rs"
cat > "$work/Cargo.toml" <<TOML
[package]
name = "lto-println"
version = "0.1.0"
edition = "2021"
publish = false

[dependencies]
gort = { path = "$root" }

# Not part of gort's workspace.
[workspace]

[profile.fat]
inherits = "release"
lto = "fat"
codegen-units = 1
debug = "line-tables-only"

# lto = true, default debuginfo (none: cargo strips it).
[profile.fat-nodebug]
inherits = "release"
lto = true
codegen-units = 1

[profile.thin]
inherits = "release"
lto = "thin"
debug = "line-tables-only"

# Thin LTO without debuginfo: gort cannot see where the allocator is
# inlined, and gates every preemption on its lock being free.
[profile.thin-nodebug]
inherits = "release"
lto = "thin"
TOML

# check_lines BIN MODE LABEL LINES RE: runs `BIN MODE` (60s at most); it
# must exit 0 and print exactly LINES lines, each matching RE.
check_lines() {
    local bin=$1 mode=$2 label=$3 want=$4 re=$5 rc=0 out lines bad
    out=$(timeout 60 "$bin" "$mode" 2>"$work/stderr") || rc=$?
    lines=$(printf '%s\n' "$out" | wc -l)
    bad=$(printf '%s\n' "$out" | grep -cvE "$re" || true)
    last_stats=$(tail -1 "$work/stderr")
    echo "$label: exit $rc, $lines lines, $bad mangled; $last_stats"
    if [ "$rc" -ne 0 ] || [ "$lines" -ne "$want" ] || [ "$bad" -ne 0 ]; then
        fail=1
        cat "$work/stderr"
    fi
}

line_re='^g[0-7] line [0-9]{5} value [0-9]{20} checksum [0-9]{20}$'
blocking_re='^g[0-5] step [0-9]{3} (slept|read [0-9]{6}|count [0-9]{6}|value [0-9]{20} checksum [0-9]{20})$'
for profile in fat fat-nodebug thin thin-nodebug; do
    echo "== lto-println: building profile $profile"
    (cd "$work" && cargo build -q --profile "$profile")
    bin="$work/target/$profile/lto-println"
    report=$("$bin" report)
    echo "$report"
    # Where DWARF is present, std code inlined into the program's functions
    # must show up in the code map (else the map sees only symbols).
    if [[ "$profile" != *-nodebug ]] && ! grep -qE 'trusted for async preemption: true.*inlined unsafe code: [1-9]' <<<"$report"; then
        echo "$profile: the code map did not see std code inlined into user functions" >&2
        fail=1
    fi
    if [ "$profile" = fat-nodebug ] && ! grep -q 'trusted for async preemption: false' <<<"$report"; then
        echo "$profile: fat LTO without DWARF must not be trusted for async preemption" >&2
        fail=1
    fi
    # Thin LTO keeps std's symbols, but without DWARF gort cannot see where
    # the spin-locked allocator is inlined: it must gate every preemption
    # on the allocator's lock word.
    if [ "$profile" = thin-nodebug ] && ! grep -qE 'trusted for async preemption: true.*every pc gated.*lock words: [1-9]' <<<"$report"; then
        echo "$profile: expected a trusted map gated on the allocator's lock" >&2
        fail=1
    fi
    # With DWARF the print runs start once signal preemption is on (this
    # program's allocator is inlined, so the map waits for the DWARF), and
    # must then have been preempted by signal at least once over the three.
    print=print
    [ "$profile" != fat-nodebug ] && print=print-after-map
    signalled=0
    for run in 1 2 3; do
        check_lines "$bin" "$print" "$profile run $run" 2400 "$line_re"
        n=$(sed -n 's/.*preempted_async=\([0-9]*\).*/\1/p' <<<"$last_stats")
        signalled=$((signalled + ${n:-0}))
    done
    if [ "$print" = print-after-map ] && [ "$signalled" -eq 0 ]; then
        echo "$profile: no println! run was preempted by signal" >&2
        fail=1
    fi
    check_lines "$bin" blocking "$profile blocking" 240 "$blocking_re"
    if [ "$profile" != fat-nodebug ]; then
        rc=0
        timeout 60 "$bin" spin 2>"$work/stderr" || rc=$?
        msg=$(tail -1 "$work/stderr")
        echo "$profile spin: exit $rc; $msg"
        if [ "$rc" -ne 0 ] || ! grep -q 'preempted_async=[1-9]' <<<"$msg"; then
            fail=1
        fi
    fi
done
if [ "$fail" -ne 0 ]; then
    echo "lto-println: FAILED" >&2
    exit 1
fi
echo "lto-println: ok"
