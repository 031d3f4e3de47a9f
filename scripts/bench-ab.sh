#!/usr/bin/env bash
# bench-ab.sh: two builds of the edge, HTTP/1.1 cache hits of one size,
# alternating which goes first each round (the peers harness's fixed order
# favours or handicaps a position by up to a third on this shared machine).
# Each edge with its defaults (access log on), pinned to CPU 0; wrk -c64 on
# CPU 1; the harness's origin.
#
#   OLD=/tmp/cdn-old NEW=bin/cdn SIZE=1k ROUNDS=4 scripts/bench-ab.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OLD=${OLD:?build of the edge to compare, e.g. git archive REV | tar -x -C DIR; go build -o /tmp/cdn-old ./cmd/cdn}
NEW=${NEW:-bin/cdn} SIZE=${SIZE:-1k} ROUNDS=${ROUNDS:-4} DURATION=${DURATION:-5}
PEERS_DIR=${PEERS_DIR:-$PWD/../shared/bench/peers}
export RUN=${RUN:-/tmp/cdn-ab-run} RESULTS_DIR=${RESULTS_DIR:-$PWD/bench-results}
"$PEERS_DIR/setup.sh" >/dev/null
"$PEERS_DIR/start.sh" origin >/dev/null
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
    "$PEERS_DIR/stop.sh" >/dev/null 2>&1 || true
}
trap cleanup EXIT
start() { # binary port admin-port
    rm -rf "$RUN/ab-cache-$2"
    taskset -c 0 "$1" edge --origin "http://127.0.0.1:${ORIGIN_PORT:-9000}" --listen "127.0.0.1:$2" \
        --admin "127.0.0.1:$3" --memory 1GiB --cache-dir "$RUN/ab-cache-$2" 2>>"$RUN/ab-$2.log" &
    pids+=($!)
    for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$3/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
    for _ in 1 2 3; do curl -fsS -o /dev/null "http://127.0.0.1:$2/$SIZE.bin"; done
    curl -fsS -D- -o /dev/null "http://127.0.0.1:$2/$SIZE.bin" | grep -qi '^cache-status: .*hit' ||
        { echo "bench-ab: $1 does not serve $SIZE.bin as a hit" >&2; exit 1; }
}
start "$OLD" 9060 9061
start "$NEW" 9062 9063
rate() { taskset -c 1 wrk -t1 -c64 -d"${DURATION}s" "http://127.0.0.1:$1/$SIZE.bin" | awk '/Requests\/sec/ {print $2}'; }
echo "round old new new/old ($OLD, $NEW, $SIZE hits/s)"
for i in $(seq "$ROUNDS"); do
    if ((i % 2)); then a=$(rate 9060); b=$(rate 9062); else b=$(rate 9062); a=$(rate 9060); fi
    echo "$i $a $b $(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.2f", b/a}')"
done
