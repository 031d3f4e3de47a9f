# compare-lib.sh: sourced by the *-compare.sh scripts. Builds one
# package's test binary from commit $BASE (git archive into a temp dir)
# and from the working tree, and runs them in pairs under the bench
# lock, the one that goes first alternating: whichever runs second in a
# pair came out 10-20 % slower on purges/s with the same code on both
# sides (docs/performance.md, purge round 3).
#
# Set BASE before sourcing; then: build_pair ./pkg/ ; pair ROUND run_fn
# where run_fn NAME TREE BINARY runs one benchmark.
work=$(mktemp -d "/tmp/bench-compare.XXXXXX")
trap 'rm -rf "$work"' EXIT
head_tree=$PWD

build_pair() { # package
    mkdir "$work/base"
    git archive "$BASE" | tar -x -C "$work/base"
    (cd "$work/base" && go test -c -o "$work/base.test" "$1")
    go test -c -o "$work/head.test" "$1"
}

# header prints the line each run's result follows.
header() { # name what
    echo "== $1 $2 $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
}

pair() { # round run_fn
    if (($1 % 2)); then
        "$2" "$BASE" "$work/base" "$work/base.test"
        "$2" head "$head_tree" "$work/head.test"
    else
        "$2" head "$head_tree" "$work/head.test"
        "$2" "$BASE" "$work/base" "$work/base.test"
    fi
}
