#!/usr/bin/env bash
# bench-accesslog.sh: what the access log costs. HTTP/1.1 cache hits (wrk)
# in one interleaved run through:
#   cdn        the edge with its defaults: access log on, written to a file
#   cdn-nolog  the edge with --access-log=false
#   nginx      the harness's nginx proxy_cache (access_log off)
#   nginx-log  the same nginx logging as its users do:
#              access_log FILE combined buffer=64k flush=1s
#   cdn-before with BEFORE_BIN=path: another build of the edge (e.g. the
#              commit before the buffered log) with its defaults
# Uses the peers harness in ../shared/bench/peers. Results land in $RESULTS_DIR.
#
#   DURATION=10 REPEATS=3 SIZES="1k 64k" scripts/bench-accesslog.sh
#   BEFORE_BIN=/tmp/cdn-before scripts/bench-accesslog.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PEERS_DIR=${PEERS_DIR:-$ROOT/../shared/bench/peers}
if [[ ! -x $PEERS_DIR/bench.sh ]]; then
    echo "bench-accesslog: no peers harness at $PEERS_DIR (set PEERS_DIR)" >&2
    exit 1
fi
export RUN=${RUN:-/tmp/cdn-peers-run} RESULTS_DIR=${RESULTS_DIR:-$ROOT/bench-results}
export SERVER_CPU=${SERVER_CPU:-0}
NGINX_PORT=${NGINX_PORT:-9010}
LOG_PORT=9050 LOG_H2C_PORT=9051

"$PEERS_DIR/setup.sh"
"$PEERS_DIR/start.sh" origin gohttp nginx

pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
    "$PEERS_DIR/stop.sh" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# nginx-log: the harness's rendered nginx, its own ports, cache and pid,
# with a buffered access log.
d=$RUN/nginx-log
rm -rf "$d" && mkdir -p "$d/tmp" "$d/cache"
sed -e "s|$RUN/nginx-cache|$d|g" \
    -e "s|access_log off;.*|access_log $d/access.log combined buffer=64k flush=1s;|" \
    -e "s|:$NGINX_PORT |:$LOG_PORT |" -e "s|:${NGINX_H2C_PORT:-9011} |:$LOG_H2C_PORT |" \
    "$RUN/nginx-cache/nginx.conf" >"$d/nginx.conf"
sed -e "s|$RUN/nginx-cache|$d|g" "$RUN/nginx-cache/edge-location.conf" >"$d/edge-location.conf"
grep -q "access_log $d/access.log" "$d/nginx.conf" || { echo "bench-accesslog: could not turn nginx's access log on" >&2; exit 1; }
taskset -c "$SERVER_CPU" nginx -p "$d/" -c "$d/nginx.conf" -g 'daemon off;' &
pids+=($!)

start_edge() { # port admin-port extra-flags...
    local port=$1 admin=$2 bin=bin/cdn
    shift 2
    if [[ ${1:-} == --bin=* ]]; then bin=${1#--bin=}; shift; fi
    taskset -c "$SERVER_CPU" "$bin" edge --origin "http://127.0.0.1:${ORIGIN_PORT:-9000}" \
        --listen "127.0.0.1:$port" --admin "127.0.0.1:$admin" --memory 1GiB \
        --cache-dir "$RUN/cdn-cache-$port" "$@" 2>>"$RUN/cdn-$port.log" &
    pids+=($!)
    for _ in $(seq 100); do
        curl -fsS "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1 && return
        sleep 0.1
    done
    echo "bench-accesslog: edge on $port did not come up" >&2
    exit 1
}
start_edge 9040 9041                      # the defaults: access log on
start_edge 9042 9043 --access-log=false
extra=
if [[ -n ${BEFORE_BIN:-} ]]; then
    start_edge 9044 9045 --bin="$BEFORE_BIN"
    extra=" cdn-before=9044"
fi
for _ in $(seq 50); do curl -fsS -o /dev/null "http://127.0.0.1:$LOG_PORT/" 2>/dev/null && break; sleep 0.1; done

cd "$PEERS_DIR"
PEER_CACHES=nginx EXTRA_CACHES="cdn=9040 cdn-nolog=9042 nginx-log=$LOG_PORT$extra" ./bench.sh hits
echo "access log lines: edge $(grep -c '"msg":"request"' "$RUN/cdn-9040.log"), nginx-log $(wc -l <"$d/access.log")"
