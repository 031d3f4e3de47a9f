#!/usr/bin/env bash
# bench-h2-flood.sh: the HTTP/2 attacks of issue 26 against the edge and
# nginx (Debian's, proxy_cache, h2c with prior knowledge, its HTTP/2
# defaults) in front of the same origin, interleaved. For each attack and
# server: scripts/h2flood sends it on 4 connections for DURATION seconds,
# reconnecting whenever the server cuts one off, while the normal client
# (GETs of a cached 1 KiB object on one connection, RATE a second, paced
# so both servers get the same load) measures its latency; the server's
# CPU time over the run is read from /proc, the attacker's from its
# rusage.
# Servers on CPU 0, clients on CPU 1 (the attacker at nice 10 so the
# normal client is not queued behind it), loopback only. Everything it
# starts is stopped by PID and its temp dir removed, failed or not.
#
# An attacking connection ends when the server closes it; with
# RECONNECT=1 the attacker drops it as soon as a GOAWAY comes (a flood
# tool that knows it was caught), which the edge's hold of cut-off
# connections does not slow down.
#
#   DURATION=10 RATE=200 ATTACKS="rapid-reset hpack-bomb" scripts/bench-h2-flood.sh
#   FLOOD_BUDGET=200 scripts/bench-h2-flood.sh     # the edge's http2.flood_budget
#   RECONNECT=1 scripts/bench-h2-flood.sh          # the attacker leaves on GOAWAY
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${DURATION:-10}
CONNS=${CONNS:-4}
RATE=${RATE:-200}
FLOOD_BUDGET=${FLOOD_BUDGET:-}
RECONNECT=${RECONNECT:-}
SERVER_CPU=${SERVER_CPU:-0} CLIENT_CPU=${CLIENT_CPU:-1}
ORIGIN=127.0.0.1:9500 NGINX=127.0.0.1:9511 CDN=127.0.0.1:9580 CDN_ADMIN=127.0.0.1:9581
ATTACKS=${ATTACKS:-"rapid-reset continuation hpack-bomb empty-data empty-headers refused window-update settings ping settings-noread ping-noread"}

if ! command -v nginx >/dev/null; then
    echo "bench-h2-flood: installing nginx" >&2
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nginx
fi
for a in $ORIGIN $NGINX $CDN $CDN_ADMIN; do
    if (exec 3<>"/dev/tcp/${a%:*}/${a#*:}") 2>/dev/null; then
        echo "bench-h2-flood: $a is in use" >&2
        exit 1
    fi
done
go build -o bin/cdn ./cmd/cdn
go build -o bin/h2flood ./scripts/h2flood

work=$(mktemp -d /tmp/bench-h2-flood.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    if [[ -f $work/nginx.pid ]]; then
        kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
        for _ in $(seq 50); do [[ -f $work/nginx.pid ]] || break; sleep 0.1; done
    fi
    rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/site"
head -c 1024 /dev/urandom >"$work/site/1k.bin"
printf '/*\n  Cache-Control: public, max-age=3600\n' >"$work/site/_headers"
bin/cdn origin --dir "$work/site" --listen "$ORIGIN" --log-level warn &
pids+=($!)

mkdir -p "$work/nginx/cache"
cat >"$work/nginx.conf" <<EOF
worker_processes 1;
user root;  # the cache lives in this run's private temp dir
pid $work/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    proxy_cache_path $work/nginx/cache levels=1:2 keys_zone=c:64m max_size=1g inactive=1h;
    client_body_temp_path $work/nginx/body;
    proxy_temp_path $work/nginx/proxy;
    server {
        # HTTP/2 limits at nginx's defaults (keepalive_requests 1000,
        # http2_max_concurrent_streams 128, http2_max_header_size 16k).
        listen $NGINX http2 backlog=4096;
        location / {
            proxy_pass http://$ORIGIN;
            proxy_cache c;
            proxy_cache_valid 200 1h;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
taskset -c "$SERVER_CPU" nginx -c "$work/nginx.conf" -p "$work/nginx" -e "$work/nginx/error.log"

cat >"$work/edge.yaml" <<EOF
name: bench
listen: "$CDN"
admin_listen: "$CDN_ADMIN"
access_log: false
cache: {memory: 256MiB, dir: "$work/edge", disk: 0}
sites:
  - name: bench
    hosts: ["*"]
    origin: "http://$ORIGIN"
EOF
[[ -z $FLOOD_BUDGET ]] || echo "http2: {flood_budget: $FLOOD_BUDGET}" >>"$work/edge.yaml"
taskset -c "$SERVER_CPU" bin/cdn edge --config "$work/edge.yaml" --log-level warn &
edge_pid=$!
pids+=("$edge_pid")
for _ in $(seq 100); do
    curl -s -o /dev/null "http://$CDN/1k.bin" && curl -s -o /dev/null "http://$NGINX/1k.bin" && break
    sleep 0.1
done
for a in $NGINX $CDN; do # warm both caches, over h2c
    for _ in 1 2; do curl -s --http2-prior-knowledge -o /dev/null "http://$a/1k.bin"; done
    code=$(curl -s --http2-prior-knowledge -o /dev/null -w '%{http_code}' "http://$a/1k.bin")
    [[ $code == 200 ]] || { echo "bench-h2-flood: http://$a/1k.bin answered $code" >&2; exit 1; }
done
nginx_pid=$(cat "$work/nginx.pid")

# cpu_ticks PID: user+system clock ticks of PID and its children (nginx's
# worker), for the processes this script started.
cpu_ticks() {
    local t=0 p
    for p in "$1" $(pgrep -P "$1" || true); do
        [[ -r /proc/$p/stat ]] || continue
        t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
    done
    echo "$t"
}
hz=$(getconf CLK_TCK)

# run SERVER ADDR PID ATTACK: the normal client alone (ATTACK "none") or
# beside the attack; one raw line on stdout. Not in a subshell, so the
# attacker's PID reaches cleanup.
run() {
    local server=$1 addr=$2 pid=$3 attack=$4 before after normal flood=""
    before=$(cpu_ticks "$pid")
    if [[ $attack != none ]]; then
        taskset -c "$CLIENT_CPU" nice -n 10 bin/h2flood -attack "$attack" ${RECONNECT:+-reconnect} -c "$CONNS" -d "${DURATION}s" -host bench.test "$addr" /1k.bin >"$work/flood.out" &
        local fpid=$!
        pids+=("$fpid")
    fi
    normal=$(taskset -c "$CLIENT_CPU" bin/h2flood -normal -rate "$RATE" -d "${DURATION}s" -host bench.test "$addr" /1k.bin)
    if [[ $attack != none ]]; then
        wait "$fpid" || true
        flood=$(cat "$work/flood.out")
    fi
    after=$(cpu_ticks "$pid")
    echo "$attack|$server|$normal|cpu_s=$(awk -v t=$((after - before)) -v hz="$hz" 'BEGIN {printf "%.2f", t / hz}')|$flood"
}

reconnecting="when the server closes one"
[[ -z $RECONNECT ]] || reconnecting="at the first GOAWAY"
out=${RESULTS_DIR:-$ROOT/bench-results}/h2-flood-$(date +%Y%m%d-%H%M%S)
mkdir -p "$out"
for attack in none $ATTACKS; do
    for s in nginx cdn; do
        if [[ $s == nginx ]]; then run nginx "$NGINX" "$nginx_pid" "$attack" >>"$out/raw.txt"; else run cdn "$CDN" "$edge_pid" "$attack" >>"$out/raw.txt"; fi
        tail -1 "$out/raw.txt" >&2
    done
done
kill -0 "$edge_pid" && kill -0 "$nginx_pid" || { echo "bench-h2-flood: a server died" >&2; exit 1; }
grep -oE '^cdn_edge_h2_(flood_closes_total\{[^}]*\}|held_connections) [0-9.e+]*' <(curl -s "http://$CDN_ADMIN/metrics") >"$out/edge-closes.txt" || true

{
    echo "# HTTP/2 floods: edge${FLOOD_BUDGET:+ (http2.flood_budget $FLOOD_BUDGET)} beside nginx $(nginx -v 2>&1 | sed 's/.*\///') (h2c, proxy_cache)"
    echo
    echo "$(date -u +%FT%TZ), ${DURATION}s per cell, attacker on $CONNS connections (reconnecting $reconnecting), normal client: $RATE GETs a second of a cached 1 KiB object on one connection; servers on CPU $SERVER_CPU, clients on CPU $CLIENT_CPU."
    echo
    echo "| attack | server | normal mean ms | normal p99 ms | normal req/s | server CPU s | attacker CPU s | attack conns | cut off | GOAWAY p50 ms | closed | close p50 ms | rounds sent/conn | GOAWAY codes |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    awk -F'|' '{
        split($3, n, " "); for (i in n) { split(n[i], kv, "="); v[kv[1]] = kv[2] }
        split($4, c, "="); cpu = c[2]
        delete f; split($5, fl, " "); for (i in fl) { split(fl[i], kv, "="); f[kv[1]] = kv[2] }
        a = ($1 != "none")
        printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, v["mean_ms"], v["p99_ms"], v["req/s"], cpu,
            (a ? f["cpu_s"] : ""), (a ? f["conns"] : ""), (a ? f["cut"] : ""), (a ? f["goaway_ms_p50"] : ""), (a ? f["closed"] : ""),
            (a ? f["close_ms_p50"] : ""), (a ? f["rounds_per_conn"] : ""), (a ? f["goaway"] : "")
    }' "$out/raw.txt"
    echo
    echo "Edge cut-offs by cause, and connections held at the end: $(tr '\n' ' ' <"$out/edge-closes.txt")"
} >"$out/summary.md"
cat "$out/summary.md"
echo "results in $out" >&2
