#!/usr/bin/env bash
# bench-pushed.sh: HTTP/1.1 throughput of pushed content (cdn push) beside
# nginx serving the same files from its document root (the peers harness's
# origin, files in the page cache), and beside the same edge's pull cache
# hits, in one interleaved run. Servers on $SERVER_CPU, wrk -t1 -c$CONNS on
# $CLIENT_CPU; medians of $REPEATS runs of $DURATION seconds.
#
#   DURATION=5 REPEATS=3 SIZES="1k 64k 1m" scripts/bench-pushed.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PEERS_DIR=${PEERS_DIR:-$ROOT/../shared/bench/peers}
if [[ ! -x $PEERS_DIR/bench.sh ]]; then
    echo "bench-pushed: no peers harness at $PEERS_DIR (set PEERS_DIR)" >&2
    exit 1
fi
export RUN=${RUN:-/tmp/cdn-peers-run}
SERVER_CPU=${SERVER_CPU:-0} CLIENT_CPU=${CLIENT_CPU:-1}
DURATION=${DURATION:-5} REPEATS=${REPEATS:-3} CONNS=${CONNS:-64} SIZES=${SIZES:-1k 64k 1m}
ORIGIN=127.0.0.1:${ORIGIN_PORT:-9000}
EDGE=127.0.0.1:${CDN_PORT:-9050}
ADMIN=127.0.0.1:${CDN_ADMIN_PORT:-9051}
API=127.0.0.1:${CDN_API_PORT:-9052}
NATS=127.0.0.1:${CDN_NATS_PORT:-9053}
OUT=${RESULTS_DIR:-$ROOT/bench-results}/pushed-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT/raw"
WORK=$(mktemp -d /tmp/cdn-bench-pushed.XXXXXX)

"$PEERS_DIR/setup.sh" >/dev/null
"$PEERS_DIR/start.sh" origin

pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
    "$PEERS_DIR/stop.sh" origin >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

wait_ok() {
    for _ in $(seq 200); do curl -fsS "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done
    echo "bench-pushed: $1 never answered 200" >&2
    exit 1
}

cat >"$WORK/control.yaml" <<EOF
listen: $API
data_dir: $WORK/control
nats: {listen: $NATS}
EOF
bin/cdn control --config "$WORK/control.yaml" --log-level warn &
pids+=($!)
wait_ok "http://$API/readyz"
TOKEN=$(cat "$WORK/control/admin-token")
api() {
    curl -fsS -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' "$@" >/dev/null
}
# The push-only site answers Host 127.0.0.1 (what wrk sends); the pull
# site answers pull.test from the same origin nginx.
api -X POST "http://$API/v1/sites" -d '{"name":"pushed","hosts":["127.0.0.1"],"push_only":true}'
api -X POST "http://$API/v1/sites" -d "{\"name\":\"pulled\",\"hosts\":[\"pull.test\"],\"origin\":\"http://$ORIGIN\"}"

# The edge's own NATS user, as every edge needs one.
bin/cdn control creds --data "$WORK/control" --role edge --name bench-edge --out "$WORK/edge.creds"
cat >"$WORK/edge.yaml" <<EOF
name: bench-edge
region: local
listen: $EDGE
admin_listen: $ADMIN
access_log: false
cache: {memory: 1GiB, dir: $WORK/edge, disk: 4GiB}
control: {nats: nats://$NATS, creds: $WORK/edge.creds}
EOF
# The edge gets the server CPU, as nginx does; GOMAXPROCS follows the pin.
taskset -c "$SERVER_CPU" bin/cdn edge --config "$WORK/edge.yaml" --log-level warn &
pids+=($!)
wait_ok "http://$ADMIN/readyz"
# Control counts the edge as up after its first health check.
for _ in $(seq 100); do
    curl -fsS -H "Authorization: Bearer $TOKEN" "http://$API/v1/edges" | grep -q '"health": *"up"' && break
    sleep 0.1
done

mkdir -p "$WORK/site"
for size in $SIZES; do cp "$RUN/origin/www/$size.bin" "$WORK/site/"; done
CDN_CONTROL_URL=http://$API CDN_TOKEN=$TOKEN bin/cdn push "$WORK/site" --site pushed --wait 60s --quiet

# target NAME SIZE sets url and host: nginx's document root, the pushed
# site, or the same edge's pull cache.
target() {
    case $1 in
    nginx) url=http://$ORIGIN/$2.bin host=$ORIGIN ;;
    pushed) url=http://$EDGE/$2.bin host=127.0.0.1 ;;
    pulled) url=http://$EDGE/$2.bin host=pull.test ;;
    esac
}
# Every target answers the origin's bytes; the edge's answers are hits.
for size in $SIZES; do
    for t in nginx pushed pulled; do
        target "$t" "$size"
        for _ in 1 2 3; do curl -fsS -o /dev/null -H "Host: $host" "$url"; done
        got=$(curl -fsS -H "Host: $host" "$url" | sha256sum)
        [[ $got == $(sha256sum <"$RUN/origin/www/$size.bin") ]] || { echo "bench-pushed: $t $url body differs" >&2; exit 1; }
        curl -fsS -o /dev/null -D - -H "Host: $host" "$url" | tr -d '\r' | { grep -i '^cache-status' || echo 'no Cache-Status'; } |
            sed "s|^|$t $size.bin: |" | tee -a "$OUT/hit-check.txt"
    done
done

printf 'target\tsize\trun\trps\tmibps\tp99_ms\n' >"$OUT/rows.tsv"
run_wrk() { # run_wrk TARGET SIZE RUN
    local url host f res
    target "$1" "$2"
    f=$OUT/raw/$1-$2-r$3.txt
    taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" -H "Host: $host" -s "$PEERS_DIR/tools/report.lua" "$url" >"$f" 2>&1 || true
    res=$(grep '^RESULT' "$f") || { echo "wrk failed: $f" >&2; return; }
    eval "$(sed 's/^RESULT //' <<<"$res" | tr ' ' '\n' | sed 's/^/local /')"
    [[ $sock_err -eq 0 && $non2xx -eq 0 ]] || echo "WARN $1 $2 r$3: sock_err=$sock_err non2xx=$non2xx" >&2
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$rps" "$mibps" "$p99_ms" >>"$OUT/rows.tsv"
    printf '%-7s %-4s r%s %10.0f req/s %9.1f MiB/s p99 %7.2f ms\n' "$1" "$2" "$3" "$rps" "$mibps" "$p99_ms" >&2
}
for ((r = 1; r <= REPEATS; r++)); do
    for size in $SIZES; do
        for t in nginx pushed pulled; do run_wrk "$t" "$size" "$r"; sleep 1; done
    done
done

# Medians per target and size, and the ratios to nginx.
awk -F'\t' 'NR > 1 { v[$1 FS $2] = v[$1 FS $2] " " $4; sizes[$2] = 1 }
function median(s,   a, n, i, j, t) {
    n = split(s, a, " ")
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
END {
    print "| size | nginx static req/s | cdn pushed req/s | cdn pull hit req/s | pushed/nginx | pulled/nginx |"
    print "|---|---:|---:|---:|---:|---:|"
    split("1k 64k 1m 100m", order, " ")
    for (i = 1; i <= 4; i++) {
        s = order[i]; if (!(s in sizes)) continue
        n = median(v["nginx" FS s]); p = median(v["pushed" FS s]); q = median(v["pulled" FS s])
        printf "| %s | %.0f | %.0f | %.0f | %.2f | %.2f |\n", s, n, p, q, p / n, q / n
    }
}' "$OUT/rows.tsv" | tee "$OUT/summary.md"
echo "results: $OUT" >&2
