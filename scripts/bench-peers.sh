#!/usr/bin/env bash
# bench-peers.sh: cache hits (h1, h2c) and a miss storm through the edge,
# beside nginx proxy_cache and Varnish in front of the same origin, in one
# interleaved run. Uses the peers harness in ../shared/bench/peers (installs
# its Debian packages on first use, as root). Results land in $RESULTS_DIR.
#
#   STEPS="hits h2 storm" DURATION=10 REPEATS=3 scripts/bench-peers.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PEERS_DIR=${PEERS_DIR:-$ROOT/../shared/bench/peers}
if [[ ! -x $PEERS_DIR/bench.sh ]]; then
    echo "bench-peers: no peers harness at $PEERS_DIR (set PEERS_DIR)" >&2
    exit 1
fi
export RUN=${RUN:-/tmp/cdn-peers-run} RESULTS_DIR=${RESULTS_DIR:-$ROOT/bench-results}
export SERVER_CPU=${SERVER_CPU:-0}
PORT=${CDN_PORT:-9040}
ADMIN=${CDN_ADMIN_PORT:-9041}
STEPS=${STEPS:-hits h2 storm}

"$PEERS_DIR/setup.sh"
"$PEERS_DIR/start.sh" origin gohttp ${PEER_CACHES:-nginx varnish}

edge_pid=
cleanup() {
    [[ -n $edge_pid ]] && kill "$edge_pid" 2>/dev/null && wait "$edge_pid" 2>/dev/null
    "$PEERS_DIR/stop.sh" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# The edge gets the server CPU like every peer; GOMAXPROCS follows the pin.
# It runs as shipped, access log on, written to a file (ACCESS_LOG=false
# turns it off; scripts/bench-accesslog.sh compares both beside nginx).
taskset -c "$SERVER_CPU" bin/cdn edge --origin "http://127.0.0.1:${ORIGIN_PORT:-9000}" \
    --listen "127.0.0.1:$PORT" --admin "127.0.0.1:$ADMIN" --memory 1GiB \
    --cache-dir "$RUN/cdn-cache" --access-log="${ACCESS_LOG:-true}" --log-level warn 2>>"$RUN/cdn-edge.log" &
edge_pid=$!
for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$ADMIN/readyz" >/dev/null 2>&1 && break
    sleep 0.1
done

cd "$PEERS_DIR"
PEER_CACHES="${PEER_CACHES:-nginx varnish}" EXTRA_CACHES="cdn=$PORT" ./bench.sh $STEPS
