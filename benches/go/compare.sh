#!/usr/bin/env bash
# Runs the gort benchmarks (benches/compare.rs) and the same work in Go
# (benches/go/*.go) on this machine, one after the other, and prints every
# figure and a markdown table with the gort/Go ratio (below 1: gort faster).
#
#   benches/go/compare.sh [FILTER]
#
# FILTER (optional) is an extended regex matched against "workload procs=N"
# of each row, e.g. `spawn_join`, `procs=1`, `yield.*procs=2`.
#
# Environment:
#   GO    the go command (default /usr/lib/go-1.19/bin/go, Debian's
#         golang-1.19-go, else `go` on PATH)
#   RUNS  measured runs per workload, best one reported (default 5; each
#         side also does one warm-up run first)
#
# To add a workload: implement it in benches/compare.rs (WORKLOADS) and in a
# new benches/go/<workload>.go (registering itself in `workloads`), both
# taking the same `n=` and printing the same line, then add rows below.
set -euo pipefail

# One row per measurement: workload, procs, then arguments for both sides.
ROWS=(
    "spawn_join 1 n=1000000"
    "spawn_join 2 n=1000000"
    "yield_pingpong 1 n=1000000"
    "yield_pingpong 2 n=1000000" # for information: no target at procs 2
)

FILTER="${1:-}"
RUNS="${RUNS:-5}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"

die() {
    echo "compare.sh: $*" >&2
    exit 1
}

# --- Go side -----------------------------------------------------------------
if [[ -n "${GO:-}" ]]; then
    command -v "$GO" >/dev/null || die "GO=$GO is not an executable"
elif [[ -x /usr/lib/go-1.19/bin/go ]]; then
    GO=/usr/lib/go-1.19/bin/go
elif command -v go >/dev/null; then
    GO="$(command -v go)"
else
    die "no Go toolchain: install Debian's golang-1.19-go (apt-get install golang-1.19-go) or put go on PATH"
fi
echo "building Go side with $GO ($("$GO" version))" >&2
mkdir -p "$HERE/bin"
(cd "$HERE" && "$GO" build -o bin/gortbench .)
GO_BIN="$HERE/bin/gortbench"

# --- gort side ---------------------------------------------------------------
command -v cargo >/dev/null || die "cargo not found"
echo "building gort side with cargo bench --bench compare --no-run" >&2
GORT_BIN="$(cd "$ROOT" &&
    cargo bench --bench compare --no-run --message-format=json-render-diagnostics |
    grep '"kind":\["bench"\]' | grep '"name":"compare"' |
    sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)"
[[ -n "$GORT_BIN" && -x "$GORT_BIN" ]] || die "could not locate the compare bench binary"

# --- run ---------------------------------------------------------------------
# Prints the ns_per_op field of a result line, or fails.
ns_per_op() {
    local line="$1" v
    v="$(sed -n 's/.* ns_per_op=\([0-9.]*\).*/\1/p' <<<"$line")"
    [[ -n "$v" ]] || die "unexpected output: $line"
    echo "$v"
}

echo "machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1), Linux $(uname -r)" >&2
echo "gort: $GORT_BIN" >&2
echo "go:   $GO_BIN" >&2
TABLE=()
for row in "${ROWS[@]}"; do
    read -r workload procs args <<<"$row"
    if [[ -n "$FILTER" ]] && ! [[ "$workload procs=$procs" =~ $FILTER ]]; then
        continue
    fi
    # shellcheck disable=SC2086 # args is a list of words
    gort_line="$(GORT_MAXPROCS="$procs" "$GORT_BIN" "$workload" $args "runs=$RUNS")"
    echo "gort: $gort_line"
    # shellcheck disable=SC2086
    go_line="$(GOMAXPROCS="$procs" "$GO_BIN" "$workload" $args "runs=$RUNS")"
    echo "go:   $go_line"
    gort_ns="$(ns_per_op "$gort_line")"
    go_ns="$(ns_per_op "$go_line")"
    ratio="$(awk -v a="$gort_ns" -v b="$go_ns" 'BEGIN { printf "%.2f", a / b }')"
    TABLE+=("| $workload | $procs | $gort_ns | $go_ns | $ratio |")
done
[[ ${#TABLE[@]} -gt 0 ]] || die "no workload matches filter '$FILTER'"

echo
echo "| workload | procs | gort ns/op | Go ns/op | gort/Go ratio |"
echo "|---|---:|---:|---:|---:|"
printf '%s\n' "${TABLE[@]}"
