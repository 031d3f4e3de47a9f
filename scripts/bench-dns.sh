#!/usr/bin/env bash
# bench-dns.sh: geodns beside PowerDNS (geoip backend) and gdnsd
# (plugin_geoip), all answering www.cdn.test by place from the same test
# MMDB, in one interleaved run of the peers harness (../shared/bench/peers):
# queries/s with dnsperf saturating each server (plain, ECS, ECS from 66k
# subnets), then latency percentiles at a fixed rate below every server's
# saturation. Servers on CPU 0, dnsperf on CPU 1, loopback only.
#
#   DURATION=10 REPEATS=3 RATE=20000 scripts/bench-dns.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PEERS_DIR=${PEERS_DIR:-$ROOT/../shared/bench/peers}
if [[ ! -x $PEERS_DIR/bench-dns.sh ]]; then
    echo "bench-dns: no peers harness at $PEERS_DIR (set PEERS_DIR)" >&2
    exit 1
fi
export RUN=${RUN:-/tmp/cdn-peers-run} RESULTS_DIR=${RESULTS_DIR:-$ROOT/bench-results}
export SERVER_CPU=${SERVER_CPU:-0} CLIENT_CPU=${CLIENT_CPU:-1}
PORT=${CDN_DNS_PORT:-5310}
RATE=${RATE:-20000}
LAT_SECONDS=${LAT_SECONDS:-5}

"$PEERS_DIR/setup.sh" # Debian packages, the test MMDB, the query files
"$PEERS_DIR/start.sh" dns
[[ -x bin/cdn ]] || go build -o bin/cdn ./cmd/cdn

geodns_pid=
cleanup() {
    [[ -n $geodns_pid ]] && kill "$geodns_pid" 2>/dev/null && wait "$geodns_pid" 2>/dev/null
    "$PEERS_DIR/stop.sh" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# The same zone and edges as the peers (geodns/testdata/standalone.yaml),
# placed by the peers' own MMDB; GOMAXPROCS follows the CPU pin.
taskset -c "$SERVER_CPU" bin/cdn geodns --config geodns/testdata/standalone.yaml \
    --listen "127.0.0.1:$PORT" --admin-listen "" --mmdb "$PEERS_DIR/geo/test-city.mmdb" --log-level warn &
geodns_pid=$!
for _ in $(seq 100); do
    dig @127.0.0.1 -p "$PORT" www.cdn.test A +short +norec +tries=1 +time=1 >/dev/null 2>&1 && break
    sleep 0.1
done

(cd "$PEERS_DIR" && EXTRA_DNS="cdn=$PORT" ./bench-dns.sh)

# Latency at a fixed rate: dnsperf -v prints every query's latency.
out=$(ls -dt "$RESULTS_DIR"/dns-* | head -1)
{
    echo
    echo "### Latency at $RATE queries/s (dnsperf -Q $RATE -c 8 -l $LAT_SECONDS), ms"
    echo
    echo "| server | queries | p50 | p99 | p99.9 | max | answered |"
    echo "|---|---|---:|---:|---:|---:|---:|"
} >>"$out/summary.md"
ecs="8:00011800c63364" # 198.51.100.0/24, as bench-dns.sh
for mode in plain ecs; do
    for s in pdns:5300 gdnsd:5301 "cdn:$PORT"; do
        name=${s%%:*} port=${s#*:}
        args=()
        [[ $mode == ecs ]] && args=(-E "$ecs")
        taskset -c "$CLIENT_CPU" dnsperf -s 127.0.0.1 -p "$port" -c 8 -l "$LAT_SECONDS" -Q "$RATE" -v \
            -d "$RUN/dns/queries-plain.txt" "${args[@]}" 2>&1 | awk '/^> NOERROR/ {print $NF * 1000}' | sort -n >"$out/raw/lat-$name-$mode.txt"
        awk -v s="$name" -v m="$mode" '{a[NR]=$1} END {
            if (NR == 0) { printf "| %s | %s | - | - | - | - | 0 |\n", s, m; exit }
            printf "| %s | %s | %.3f | %.3f | %.3f | %.3f | %d |\n", s, m, a[int(NR*0.5)+1], a[int(NR*0.99)+1], a[int(NR*0.999)+1], a[NR], NR }' \
            "$out/raw/lat-$name-$mode.txt" >>"$out/summary.md"
        sleep 1
    done
done
cat "$out/summary.md"
