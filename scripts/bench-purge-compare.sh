#!/usr/bin/env bash
# bench-purge-compare.sh: purge propagation and throughput (control's
# BenchmarkPurgePropagation and BenchmarkPurgeThroughput: 16 edges on
# loopback) of an earlier commit and of the working tree, interleaved in
# one run, RUNS times each benchmark, the one that goes first alternating
# (compare-lib.sh). Each run holds /tmp/cdn-bench.lock, so it shares the
# machine with no other benchmark.
#
#   BASE=dd0d285 RUNS=3 scripts/bench-purge-compare.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${BASE:-dd0d285} RUNS=${RUNS:-3}
PURGES=${PURGES:-1000} THROUGHPUT=${THROUGHPUT:-2000}
. scripts/compare-lib.sh
build_pair ./control/
cd "$work/base/control" # the benchmarks' working directory; both only need temp dirs
bench() { # benchmark count name tree binary
    header "$3" "$1"
    flock /tmp/cdn-bench.lock "$5" -test.run '^$' -test.bench "$1" -test.benchtime "$2x" 2>&1 | grep -E '^Benchmark|FAIL' || true
}
propagation() { bench PurgePropagation "$PURGES" "$@"; }
throughput() { bench PurgeThroughput "$THROUGHPUT" "$@"; }
for r in $(seq "$RUNS"); do pair "$r" propagation; done
for r in $(seq "$RUNS"); do pair "$r" throughput; done
