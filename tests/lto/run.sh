#!/usr/bin/env bash
# Builds tests/lto/main.rs as a separate program with a path dependency on
# gort, in the profiles users build with — fat LTO (`lto = "fat"` and
# `lto = true`, `codegen-units = 1`), with and without line-tables
# debuginfo, and thin LTO with and without — and checks under a 100 µs time slice that
# every println! line comes out whole, that no run hangs, and that a
# spinning goroutine is still preempted by signal where gort can see the
# inlining (DWARF present), and that goroutines blocking in plain std
# calls (sleep, fs, a std Mutex) do not stall the only processor. Run by
# .ci/run; about 2 minutes. A run that hangs is dumped with gdb (every
# thread's stack) before it is killed; on failure the last lines printed
# list every failed check and those dumps. A second program
# (tests/lto/counting.rs) checks that a counting allocator's counters are
# not taken for a lock.
set -euo pipefail
fail=0
# Every failure is also kept here and printed again at the end, so that
# the last lines of a CI log say what went wrong.
failures=()
hangs=()
failed() {
    fail=1
    failures+=("$1")
    echo "$1" >&2
}

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
work="${LTO_WORK_DIR:-$root/target/lto-println}"
mkdir -p "$work/src"
mkdir -p "$work/src/bin"
cp "$root/tests/lto/main.rs" "$work/src/main.rs"
cp "$root/tests/lto/spin.rs" "$work/src/spin.rs"
cp "$root/tests/lto/counting.rs" "$work/src/bin/counting.rs"
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

# hung_note: " (hung)" when the last watched run hung.
hung_note() {
    if [ "$rc" -eq 124 ]; then echo " (hung)"; fi
}

# wait_gone PID TENTHS: waits until process PID has ended, at most TENTHS
# tenths of a second.
wait_gone() {
    local i
    for ((i = 0; i < $2; i++)); do
        kill -0 "$1" 2>/dev/null || return 0
        sleep 0.1
    done
}

# watched BIN MODE LABEL: runs `BIN MODE` with stdout in $work/stdout and
# stderr in $work/stderr, and sets rc to its exit code. A run still going
# after 60 s is a hang: gort's counters, every thread's stack and gort's
# SIGQUIT goroutine dump go to $work/hang-LABEL.txt (printed again at the
# end), then it is killed and rc is 124.
watched() {
    local bin=$1 mode=$2 label=$3 pid
    "$bin" "$mode" >"$work/stdout" 2>"$work/stderr" &
    pid=$!
    wait_gone "$pid" 600
    rc=0
    if kill -0 "$pid" 2>/dev/null; then
        # The runtime's counters and the program's allocator lock, twice
        # half a second apart (do they still move?), then every stack.
        local peek=() sym out="$work/hang-${label// /-}.txt"
        for sym in $(nm "$bin" | awk '/ [bd] _ZN(4gort7preempt8REJECTED|4gort7preempt5ASYNC|4gort6sysmon16PREEMPT_REQUESTS|4gort6sysmon6ROUNDS|11lto_println1A)17h/ {print $3}'); do
            peek+=(-ex "x/1gx &'$sym'")
        done
        gdb -p "$pid" -batch -ex "set language c" "${peek[@]}" >"$out" 2>&1 || true
        sleep 0.5
        gdb -p "$pid" -batch -ex "set language c" "${peek[@]}" -ex "thread apply all bt 12" >>"$out" 2>&1 || true
        hangs+=("$out")
        # SIGQUIT: gort prints every goroutine (state, wait reason, stack)
        # to the run's stderr and exits with code 2.
        kill -QUIT "$pid" 2>/dev/null || true
        wait_gone "$pid" 20
        {
            echo "-- the run's stderr after SIGQUIT:"
            tail -60 "$work/stderr"
        } >>"$out"
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        rc=124
    else
        wait "$pid" || rc=$?
    fi
}

# check_lines BIN MODE LABEL LINES RE: runs `BIN MODE` (60s at most); it
# must exit 0 and print exactly LINES lines, each matching RE.
check_lines() {
    local bin=$1 mode=$2 label=$3 want=$4 re=$5 lines bad
    watched "$bin" "$mode" "$label"
    lines=$(wc -l <"$work/stdout")
    bad=$(grep -cvE "$re" "$work/stdout" || true)
    last_stats=$(tail -1 "$work/stderr")
    echo "$label: exit $rc, $lines lines, $bad mangled; $last_stats"
    if [ "$rc" -ne 0 ] || [ "$lines" -ne "$want" ] || [ "$bad" -ne 0 ]; then
        cat "$work/stderr"
        failed "$label: exit $rc$(hung_note), $lines of $want lines, $bad mangled; stderr ends: $(tail -3 "$work/stderr" | tr '\n' '|')"
    fi
}

# check_spin BIN LABEL: runs `BIN spin`; it must exit 0 after at least
# one preemption by signal.
check_spin() {
    local bin=$1 label=$2 msg
    watched "$bin" spin "$label"
    msg=$(tail -1 "$work/stderr")
    echo "$label: exit $rc; $msg"
    if [ "$rc" -ne 0 ] || ! grep -q 'preempted_async=[1-9]' <<<"$msg"; then
        cat "$work/stderr"
        failed "$label: exit $rc$(hung_note); $msg"
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
        failed "$profile: the code map did not see std code inlined into user functions"
    fi
    if [ "$profile" = fat-nodebug ] && ! grep -q 'trusted for async preemption: false' <<<"$report"; then
        failed "$profile: fat LTO without DWARF must not be trusted for async preemption"
    fi
    # This program's allocator takes a spin lock in a static: the map must
    # find it (when it did not — its code was scanned for opcode bytes, and
    # in some checkouts a displacement byte read as one — no function with
    # the allocator inlined was preempted by signal, and `spin` hung).
    if ! grep -qE 'lock words: 1$' <<<"$report"; then
        failed "$profile: the code map did not find the allocator's one lock word"
    fi
    # Thin LTO keeps std's symbols, but without DWARF gort cannot see where
    # the spin-locked allocator is inlined: it must gate every preemption
    # on the allocator's lock word.
    if [ "$profile" = thin-nodebug ] && ! grep -qE 'trusted for async preemption: true.*every pc gated.*lock words: [1-9]' <<<"$report"; then
        failed "$profile: expected a trusted map gated on the allocator's lock"
    fi
    # With DWARF the print runs start once signal preemption is on (this
    # program's allocator is inlined, so the map waits for the DWARF), and
    # must then have been preempted by signal at least once over the three.
    print=print
    [ "$profile" != fat-nodebug ] && print=print-after-map
    # (Signal counts per run vary from 1 to a few hundred, by where the
    # requests land: up to three more runs are made while none was.)
    signalled=0
    for run in 1 2 3 4 5 6; do
        [ "$run" -gt 3 ] && { [ "$print" != print-after-map ] || [ "$signalled" -gt 0 ]; } && break
        check_lines "$bin" "$print" "$profile run $run" 2400 "$line_re"
        n=$(sed -n 's/.*preempted_async=\([0-9]*\).*/\1/p' <<<"$last_stats")
        signalled=$((signalled + ${n:-0}))
    done
    if [ "$print" = print-after-map ] && [ "$signalled" -eq 0 ]; then
        failed "$profile: no println! run was preempted by signal"
    fi
    check_lines "$bin" blocking "$profile blocking" 240 "$blocking_re"
    if [ "$profile" != fat-nodebug ]; then
        check_spin "$bin" "$profile spin"
        # A counting allocator's counters are not a lock: its spinner must
        # be preempted by signal too (gated on them, it never was).
        counting="$work/target/$profile/counting"
        if ! "$counting" report | grep -qE 'lock words: 0$'; then
            failed "$profile counting: the code map took a counter for a lock"
        fi
        check_spin "$counting" "$profile counting"
    fi
done
if [ "$fail" -ne 0 ]; then
    for h in "${hangs[@]}"; do
        echo "== $h (the threads of a hung run)" >&2
        grep -vE '^\[|^(warning|Use|Using|[0-9]+\s)' "$h" | cut -c1-160 >&2 || true
    done
    printf 'lto-println: %s\n' "${failures[@]}" >&2
    echo "lto-println: FAILED" >&2
    exit 1
fi
echo "lto-println: ok"
