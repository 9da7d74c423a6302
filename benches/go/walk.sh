#!/usr/bin/env bash
# walk_hash on a cold page cache, gort against Go: walks /usr/share (or
# DIR), 8 goroutines reading every file (gort: plain std::fs::read, i.e.
# unannounced blocking; Go: os.ReadFile) and hashing it, while a ticker
# records the lateness of a 1ms sleep (see walk_hash in benches/compare.rs
# and benches/go/walk_hash.go).
#
#   benches/go/walk.sh          # as root: it drops the page cache
#
# For procs 1 and 2, ROUNDS rounds (default 3), each running gort then Go;
# before every run `sync; echo 3 > /proc/sys/vm/drop_caches`. Prints every
# result line, then a markdown table of the best (lowest) wall_ms and p99
# lateness per side and procs with the gort/Go ratios (each minimum taken
# separately, over the runs that finished).
#
# A run that has not finished after TIMEOUT seconds (default 120) gets
# SIGQUIT (both runtimes print their goroutines and exit; SIGKILL 5s later)
# and counts as a timeout; its stderr is kept in LOGDIR (default: a new
# directory under /tmp), as is every run's.
#
# Environment: DIR, ROUNDS, TIMEOUT, LOGDIR, GORT_ENV (extra VAR=value
# words for gort's runs, e.g. GORT_ENV=GORT_DEBUG=blockhandoff=0), PROCS
# (default "1 2"); GO, GO_CACHE: see common.sh.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
# shellcheck source=benches/go/common.sh
source "$HERE/common.sh"

ROUNDS="${ROUNDS:-3}"
TIMEOUT="${TIMEOUT:-120}"
PROCS="${PROCS:-1 2}"
DIR="${DIR:-/usr/share}"
GORT_ENV="${GORT_ENV:-}"
LOGDIR="${LOGDIR:-$(mktemp -d /tmp/walk_hash.XXXXXX)}"
mkdir -p "$LOGDIR"

[[ -w /proc/sys/vm/drop_caches ]] || die "cannot write /proc/sys/vm/drop_caches (run as root)"
build_go
build_gort
describe_machine
echo "gort: $GORT_BIN${GORT_ENV:+ (with $GORT_ENV)}" >&2
echo "go:   $GO_BIN ($GO_NAME)" >&2
echo "logs: $LOGDIR" >&2

drop_caches() {
    sync
    echo 3 >/proc/sys/vm/drop_caches
}

# run SIDE PROCS ROUND: one cold run; prints its result line, or
# "TIMEOUT ..." / "FAILED ..." (then the line has no wall_ms).
run() {
    local side="$1" procs="$2" round="$3" log rc=0 line
    log="$LOGDIR/$side-procs$procs-round$round.stderr"
    drop_caches
    if [[ "$side" == gort ]]; then
        # shellcheck disable=SC2086 # GORT_ENV is a list of words
        line="$(env GORT_MAXPROCS="$procs" $GORT_ENV timeout -s QUIT -k 5 "$TIMEOUT" \
            "$GORT_BIN" walk_hash "dir=$DIR" 2>"$log")" || rc=$?
    else
        line="$(GOMAXPROCS="$procs" timeout -s QUIT -k 5 "$TIMEOUT" \
            "$GO_BIN" walk_hash "dir=$DIR" 2>"$log")" || rc=$?
    fi
    if [[ $rc -eq 124 || $rc -eq 137 ]]; then
        echo "TIMEOUT after ${TIMEOUT}s (procs=$procs; goroutine dump in $log)"
    elif [[ $rc -ne 0 || -z "$line" ]]; then
        echo "FAILED rc=$rc (procs=$procs; stderr in $log)"
    else
        echo "$line"
    fi
}

declare -A BEST_WALL BEST_P99 DONE
TABLE=()
for procs in $PROCS; do
    for ((round = 1; round <= ROUNDS; round++)); do
        for side in gort go; do
            line="$(run "$side" "$procs" "$round")"
            printf '%-4s (round %d): %s\n' "$side" "$round" "$line"
            key="$side $procs"
            if [[ "$line" == walk_hash* ]]; then
                BEST_WALL[$key]="$(min "$(field "$line" wall_ms)" "${BEST_WALL[$key]:-}")"
                BEST_P99[$key]="$(min "$(field "$line" p99_us)" "${BEST_P99[$key]:-}")"
                DONE[$key]=$((${DONE[$key]:-0} + 1))
            fi
        done
    done
    g="gort $procs" o="go $procs"
    gw="${BEST_WALL[$g]:--}" ow="${BEST_WALL[$o]:--}"
    gp="${BEST_P99[$g]:--}" op="${BEST_P99[$o]:--}"
    rw="-" rp="-"
    if [[ "$gw" != - && "$ow" != - ]]; then
        rw="$(ratio "$gw" "$ow")" rp="$(ratio "$gp" "$op")"
    fi
    TABLE+=("| $procs | ${DONE[$g]:-0}/$ROUNDS | ${DONE[$o]:-0}/$ROUNDS | $gw | $ow | $rw | $gp | $op | $rp |")
done

echo
echo "walk_hash dir=$DIR, cold page cache, against $GO_NAME; best of $ROUNDS alternating rounds${GORT_ENV:+; gort with $GORT_ENV}"
echo "| procs | gort runs done | Go runs done | gort wall_ms | Go wall_ms | gort/Go wall | gort p99 µs | Go p99 µs | gort/Go p99 |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
printf '%s\n' "${TABLE[@]}"
