#!/usr/bin/env bash
# bench-push-compare.sh: the push benchmark (e2e BenchmarkPush: control and
# three edge processes on loopback, 10,000 files / 503 MB, then one-file
# changes) of an earlier commit and of the working tree, interleaved in one
# run: base, then this tree, RUNS times. Each run holds /tmp/cdn-bench.lock,
# so it shares the machine with no other benchmark, and each builds its own
# cdn (the e2e TestMain builds ../cmd/cdn from the tree it runs in).
#
#   BASE=014a91c RUNS=3 scripts/bench-push-compare.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${BASE:-014a91c} RUNS=${RUNS:-3}
work=$(mktemp -d /tmp/bench-push.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir "$work/base"
git archive "$BASE" | tar -x -C "$work/base"
(cd "$work/base" && go test -c -o "$work/base.test" ./e2e/)
go test -c -o "$work/head.test" ./e2e/
head=$PWD
bench() { # name tree binary
    echo "== $1 $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
    (cd "$2/e2e" && flock /tmp/cdn-bench.lock "$3" -test.run '^$' -test.bench Push -test.benchtime 1x -test.timeout 20m 2>&1 | grep -E '^Benchmark|FAIL') || true
}
for _ in $(seq "$RUNS"); do
    bench "$BASE" "$work/base" "$work/base.test"
    bench head "$head" "$work/head.test"
done
