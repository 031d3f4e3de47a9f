#!/usr/bin/env bash
# bench-purge-compare.sh: purge propagation and throughput (control's
# BenchmarkPurgePropagation and BenchmarkPurgeThroughput: 16 edges on
# loopback) of an earlier commit and of the working tree, interleaved in
# one run: base, then this tree, RUNS times each benchmark. Each run holds
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
for _ in $(seq "$RUNS"); do
    bench "$BASE" "$work/base.test" PurgePropagation "$PURGES"
    bench head "$work/head.test" PurgePropagation "$PURGES"
done
for _ in $(seq "$RUNS"); do
    bench "$BASE" "$work/base.test" PurgeThroughput "$THROUGHPUT"
    bench head "$work/head.test" PurgeThroughput "$THROUGHPUT"
done
