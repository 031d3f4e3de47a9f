#!/usr/bin/env bash
# bench-purge-compare.sh: purge propagation and throughput (control's
# BenchmarkPurgePropagation and BenchmarkPurgeThroughput: 16 edges on
# loopback) of an earlier commit and of the working tree, interleaved in
# one run, RUNS times each benchmark, the one that goes first alternating
# (whichever runs second in a pair, and later pairs, came out 10-20 %
# slower on purges/s with the same code on both sides). Each run holds
# /tmp/cdn-bench.lock, so it shares the machine with no other benchmark.
#
#   BASE=dd0d285 RUNS=3 scripts/bench-purge-compare.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${BASE:-dd0d285} RUNS=${RUNS:-3}
PURGES=${PURGES:-1000} THROUGHPUT=${THROUGHPUT:-2000}
work=$(mktemp -d /tmp/bench-purge.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir "$work/base"
git archive "$BASE" | tar -x -C "$work/base"
(cd "$work/base" && go test -c -o "$work/base.test" ./control/)
go test -c -o "$work/head.test" ./control/
cd "$work/base/control" # the benchmarks' working directory; both only need temp dirs
bench() { # name binary benchmark count
    echo "== $1 $3 $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
    flock /tmp/cdn-bench.lock "$2" -test.run '^$' -test.bench "$3" -test.benchtime "$4x" 2>&1 | grep -E '^Benchmark|FAIL' || true
}
pair() { # benchmark count round
    if (($3 % 2)); then
        bench "$BASE" "$work/base.test" "$1" "$2"
        bench head "$work/head.test" "$1" "$2"
    else
        bench head "$work/head.test" "$1" "$2"
        bench "$BASE" "$work/base.test" "$1" "$2"
    fi
}
for r in $(seq "$RUNS"); do pair PurgePropagation "$PURGES" "$r"; done
for r in $(seq "$RUNS"); do pair PurgeThroughput "$THROUGHPUT" "$r"; done
