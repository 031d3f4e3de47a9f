#!/usr/bin/env bash
# bench-push-compare.sh: the push benchmark (e2e BenchmarkPush: control and
# three edge processes on loopback, 10,000 files / 503 MB, then one-file
# changes) of an earlier commit and of the working tree, interleaved in one
# run, RUNS times, the one that goes first alternating (compare-lib.sh).
# Each run holds /tmp/cdn-bench.lock, so it shares the machine with no
# other benchmark, and each builds its own cdn (the e2e TestMain builds
# ../cmd/cdn from the tree it runs in).
#
#   BASE=014a91c RUNS=3 scripts/bench-push-compare.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${BASE:-014a91c} RUNS=${RUNS:-3}
. scripts/compare-lib.sh
build_pair ./e2e/
push() { # name tree binary
    header "$1" Push
    (cd "$2/e2e" && flock /tmp/cdn-bench.lock "$3" -test.run '^$' -test.bench Push -test.benchtime 1x -test.timeout 20m 2>&1 | grep -E '^Benchmark|FAIL') || true
}
for r in $(seq "$RUNS"); do pair "$r" push; done
