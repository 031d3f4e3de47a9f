#!/usr/bin/env bash
# bench-dns.sh: geodns beside PowerDNS (geoip backend) and gdnsd
# (plugin_geoip), all answering www.cdn.test by place from the same test
# MMDB, in one interleaved run of the peers harness (../shared/bench/peers):
# queries/s with dnsperf saturating each server (plain, ECS, ECS from 66k
# subnets), then, at a fixed rate below every server's saturation, each
# server's CPU time per answered query (the on-CPU time of its threads, from
# /proc/PID/task/*/schedstat) and latency percentiles. Servers on CPU 0, dnsperf on
# CPU 1, loopback only. BASE_BIN=path adds an older cdn build as
# "cdn-base" (e.g. one built from `git archive <commit>`), interleaved
# with the rest; SATURATION=0 skips the queries/s part.
#
#   DURATION=10 REPEATS=3 RATE=20000 scripts/bench-dns.sh
#   BASE_BIN=/tmp/base/cdn SATURATION=0 ROUNDS=2 scripts/bench-dns.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PEERS_DIR=${PEERS_DIR:-$ROOT/../shared/bench/peers}
[[ -d $PEERS_DIR ]] || PEERS_DIR=$ROOT/../../shared/bench/peers # from a worktree in wt/
if [[ ! -x $PEERS_DIR/bench-dns.sh ]]; then
    echo "bench-dns: no peers harness at $PEERS_DIR (set PEERS_DIR)" >&2
    exit 1
fi
# A run directory of our own: the harness's stop.sh stops every server a
# run directory records, and other benches use the default one.
export RUN=${RUN:-/tmp/cdn-peers-run-dns} RESULTS_DIR=${RESULTS_DIR:-$ROOT/bench-results}
export SERVER_CPU=${SERVER_CPU:-0} CLIENT_CPU=${CLIENT_CPU:-1}
PORT=${CDN_DNS_PORT:-5310}
BASE_PORT=${CDN_BASE_DNS_PORT:-5311}
RATE=${RATE:-20000}
LAT_SECONDS=${LAT_SECONDS:-5}
ROUNDS=${ROUNDS:-2}
BASE_BIN=${BASE_BIN:-}
SATURATION=${SATURATION:-1}

"$PEERS_DIR/setup.sh" # Debian packages, the test MMDB, the query files
"$PEERS_DIR/start.sh" dns
[[ -x bin/cdn ]] || go build -o bin/cdn ./cmd/cdn

pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
    "$PEERS_DIR/stop.sh" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# The same zone and edges as the peers (geodns/testdata/standalone.yaml),
# placed by the peers' own MMDB; GOMAXPROCS follows the CPU pin.
declare -A PID PORTS=([pdns]=5300 [gdnsd]=5301)
start_cdn() { # name binary port
    taskset -c "$SERVER_CPU" "$2" geodns --config geodns/testdata/standalone.yaml \
        --listen "127.0.0.1:$3" --admin-listen "" --mmdb "$PEERS_DIR/geo/test-city.mmdb" --log-level warn &
    PID[$1]=$! PORTS[$1]=$3
    pids+=($!)
    for _ in $(seq 100); do
        dig @127.0.0.1 -p "$3" www.cdn.test A +short +norec +tries=1 +time=1 >/dev/null 2>&1 && return
        sleep 0.1
    done
    echo "bench-dns: $1 did not answer" >&2
    exit 1
}
start_cdn cdn bin/cdn "$PORT"
extra="cdn=$PORT"
servers=(pdns gdnsd cdn)
if [[ -n $BASE_BIN ]]; then
    start_cdn cdn-base "$BASE_BIN" "$BASE_PORT"
    extra+=" cdn-base=$BASE_PORT"
    servers+=(cdn-base)
fi
PID[pdns]=$(cat "$RUN/pids/pdns.pid")
PID[gdnsd]=$(cat "$RUN/pids/gdnsd.pid")

if [[ $SATURATION == 1 ]]; then
    (cd "$PEERS_DIR" && EXTRA_DNS="$extra" ./bench-dns.sh)
    out=$(ls -dt "$RESULTS_DIR"/dns-* | head -1)
else
    out="$RESULTS_DIR/dns-$(date +%Y%m%d-%H%M%S)"
    mkdir -p "$out/raw"
fi

# At a fixed rate: dnsperf -v prints every response's latency; the
# server's CPU time is read from /proc before and after: the on-CPU
# nanoseconds of each of its threads (schedstat), finer than utime+stime's
# 10 ms ticks, which are 2 % of a 5 s run's CPU.
cpu_ns() { cat /proc/"$1"/task/*/schedstat | awk '{ns += $1} END {printf "%.0f\n", ns}'; }
ecs="8:00011800c63364" # 198.51.100.0/24, as the harness's bench-dns.sh
for ((r = 1; r <= ROUNDS; r++)); do
    for mode in plain ecs ecs-mix; do
        for name in "${servers[@]}"; do
            args=(-d "$RUN/dns/queries-plain.txt")
            case $mode in
                ecs) args+=(-E "$ecs") ;;
                ecs-mix) args=(-B -d "$RUN/dns/queries-ecs-mix.bin") ;;
            esac
            f="$out/raw/fixed-$name-$mode-r$r"
            t0=$(cpu_ns "${PID[$name]}")
            taskset -c "$CLIENT_CPU" dnsperf -s 127.0.0.1 -p "${PORTS[$name]}" -c 8 -l "$LAT_SECONDS" -Q "$RATE" -v \
                "${args[@]}" >"$f.out" 2>&1 || true
            t1=$(cpu_ns "${PID[$name]}")
            awk '/^> [A-Z]/ {print $NF * 1000}' "$f.out" >"$f.lat"
            echo "$(wc -l <"$f.lat") $((t1 - t0))" >"$f.cpu" # answered, CPU ns
            sleep 1
        done
    done
done
{
    echo
    echo "### At $RATE queries/s (dnsperf -Q $RATE -c 8 -l $LAT_SECONDS, $ROUNDS interleaved rounds pooled)"
    echo
    echo "Server CPU per query = the on-CPU time of the server's threads over the run (/proc/PID/task/*/schedstat) / queries answered."
    echo
    echo "| server | queries | answered | CPU µs/query | p50 ms | p99 ms | p99.9 ms |"
    echo "|---|---|---:|---:|---:|---:|---:|"
    for mode in plain ecs ecs-mix; do
        for name in "${servers[@]}"; do
            read -r n ns < <(cat "$out"/raw/fixed-"$name"-"$mode"-r*.cpu | awk '{n += $1; t += $2} END {print n, t}')
            sort -n "$out"/raw/fixed-"$name"-"$mode"-r*.lat | awk -v s="$name" -v m="$mode" -v n="$n" -v t="$ns" '
                {a[NR] = $1}
                END {
                    if (NR == 0) { printf "| %s | %s | 0 | - | - | - | - |\n", s, m; exit }
                    printf "| %s | %s | %d | %.2f | %.3f | %.3f | %.3f |\n", s, m, n, t / 1e3 / n,
                        a[int(NR*0.5)+1], a[int(NR*0.99)+1], a[int(NR*0.999)+1] }'
        done
    done
    echo
    echo "Each round alone, CPU µs/query (${servers[*]}):"
    echo
    for mode in plain ecs ecs-mix; do
        for ((r = 1; r <= ROUNDS; r++)); do
            row="| $mode | r$r |"
            for name in "${servers[@]}"; do
                row+=" $(awk '{printf "%.2f", $2 / 1e3 / $1}' "$out/raw/fixed-$name-$mode-r$r.cpu") |"
            done
            echo "$row"
        done
    done
    echo
    echo "Each server against gdnsd, round by round (its CPU µs/query over gdnsd's in the same round):"
    echo "the median of the rounds' ratios, how many rounds it was above gdnsd, and its best round"
    echo "over gdnsd's best (interference on this shared machine only adds CPU time):"
    echo
    echo "| mode | server | median ratio | rounds above gdnsd | best / gdnsd's best |"
    echo "|---|---|---:|---:|---:|"
    for mode in plain ecs ecs-mix; do
        for name in "${servers[@]}"; do
            [[ $name == gdnsd ]] && continue
            for ((r = 1; r <= ROUNDS; r++)); do
                g=$(awk '{print $2 / $1}' "$out/raw/fixed-gdnsd-$mode-r$r.cpu")
                awk -v g="$g" '{c = $2 / $1; print c / g, c, g}' "$out/raw/fixed-$name-$mode-r$r.cpu"
            done | sort -g | awk -v s="$name" -v m="$mode" '
                {ratio[NR] = $1; if (NR == 1 || $2 < best) best = $2; if (NR == 1 || $3 < gbest) gbest = $3; if ($1 > 1) above++}
                END {
                    med = NR % 2 ? ratio[(NR + 1) / 2] : (ratio[NR / 2] + ratio[NR / 2 + 1]) / 2
                    printf "| %s | %s | %.2f | %d of %d | %.2f |\n", m, s, med, above, NR, best / gbest }'
        done
    done
    echo
    echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
} >>"$out/summary.md"
cat "$out/summary.md"
