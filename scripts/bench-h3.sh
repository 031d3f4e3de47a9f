#!/usr/bin/env bash
# bench-h3.sh: HTTP/3 cache hits of the edge as built from this tree
# ("new") beside the edge built from BASE ("old", default dd0d285), the new
# edge's own HTTP/2 over TLS, Caddy's HTTP/3 file server (scripts/caddy.sh
# builds it) serving the same files from a directory, and scripts/h3bare,
# the same files from memory through quic-go's http3.Server and net/http's
# HTTP/2 with nothing else on the path (what the libraries alone give),
# all with the same certificate (ECDSA P-256), in one interleaved run.
# One Go client for every row (scripts/h3load: quic-go for h3, net/http
# for h2). Servers on CPU 0, the client on CPU 1, loopback only.
#
# Each row also gives the server's CPU per request (user+system from
# /proc over the run) and the client's own CPU use (1.00 = its core was
# busy the whole time: the client, not the server, was the limit).
#
# As root it raises net.core.rmem_max/wmem_max to quic-go's 7 MiB for
# every server alike (Caddy, unlike the edge, does not force its buffers
# past them) and puts the old values back on exit.
#
# PROFILE=64k takes a 5 s CPU profile of the old and the new edge under
# h3 load at that size, after the table, and prints each one's top.
#
#   DURATION=5 REPEATS=3 SIZES="1k 64k 1m" scripts/bench-h3.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
GO=${GO:-go}
BASE=${BASE:-dd0d285}
DURATION=${DURATION:-5}
REPEATS=${REPEATS:-3}
SIZES=${SIZES:-"1k 64k 1m"}
H3CONNS=${H3CONNS:-16}
PROFILE=${PROFILE:-}
SERVER_CPU=${SERVER_CPU:-0} CLIENT_CPU=${CLIENT_CPU:-1}
ORIGIN=127.0.0.1:9310
OLD=127.0.0.1:9451 NEW=127.0.0.1:9452 CADDY=127.0.0.1:9453 BARE=127.0.0.1:9454
OLD_ADMIN=127.0.0.1:9461 NEW_ADMIN=127.0.0.1:9462

command -v openssl >/dev/null || {
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends openssl
}
"$GO" build -o bin/cdn ./cmd/cdn
"$GO" build -o bin/h3load ./scripts/h3load
"$GO" build -o bin/h3bare ./scripts/h3bare
CADDY_BIN=$(GO=$GO scripts/caddy.sh)
old_bin=$ROOT/bin/tools/cdn-$(git rev-parse --short "$BASE^{commit}")
if [[ ! -x $old_bin ]]; then
    src=$(mktemp -d /tmp/bench-h3-base.XXXXXX)
    git archive "$BASE" | tar -x -C "$src"
    (cd "$src" && "$GO" build -o "$old_bin" ./cmd/cdn)
    rm -rf "$src"
fi

work=$(mktemp -d /tmp/bench-h3.XXXXXX)
pids=()
sysctl_saved=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    for kv in "${sysctl_saved[@]}"; do sysctl -q -w "$kv" || true; done
    rm -rf "$work"
}
trap cleanup EXIT

if [[ $(id -u) == 0 ]]; then
    for k in net.core.rmem_max net.core.wmem_max; do
        v=$(sysctl -n "$k")
        if ((v < 7340032)); then
            sysctl_saved+=("$k=$v")
            sysctl -q -w "$k=7340032"
        fi
    done
fi

# The objects behind a `cdn origin`, and one certificate for every server.
. scripts/tls-fixture.sh

edge() { # name binary https-addr admin-addr plain-addr
    cat >"$work/$1.yaml" <<YAML
name: $1
listen: "$5"
admin_listen: "$4"
access_log: false
cache: {memory: 256MiB, dir: "$work/$1", disk: 0}
tls: {listen: "$3", storage: "$work/$1-certs", http3: true}
sites:
  - name: bench
    hosts: ["bench.test", "*"]
    origin: "http://$ORIGIN"
    tls: files
    cert_file: "$work/cert.pem"
    key_file: "$work/key.pem"
YAML
    taskset -c "$SERVER_CPU" "$2" edge --config "$work/$1.yaml" --log-level warn 2>"$work/$1.log" &
    pids+=($!)
}
edge old "$old_bin" "$OLD" "$OLD_ADMIN" 127.0.0.1:9381
old_pid=$!
edge new bin/cdn "$NEW" "$NEW_ADMIN" 127.0.0.1:9382
new_pid=$!

cat >"$work/Caddyfile" <<EOF2
{
	admin off
	auto_https off
	persist_config off
	storage file_system $work/caddy-data
	log {
		level ERROR
	}
	servers {
		protocols h1 h2 h3
	}
}
https://$CADDY {
	bind 127.0.0.1
	tls $work/cert.pem $work/key.pem
	root * $work/site
	header Cache-Control "public, max-age=3600"
	file_server
}
EOF2
XDG_DATA_HOME=$work/caddy-data XDG_CONFIG_HOME=$work/caddy-config \
    taskset -c "$SERVER_CPU" "$CADDY_BIN" run --config "$work/Caddyfile" --adapter caddyfile 2>"$work/caddy.log" &
pids+=($!)
caddy_pid=$!
taskset -c "$SERVER_CPU" bin/h3bare -addr "$BARE" -dir "$work/site" -cert "$work/cert.pem" -key "$work/key.pem" 2>"$work/bare.log" &
pids+=($!)
bare_pid=$!

for _ in $(seq 100); do
    ok=1
    for a in $OLD $NEW $CADDY $BARE; do curl -sk -o /dev/null "https://$a/1k.bin" || ok=0; done
    ((ok)) && break
    sleep 0.1
done
for s in $SIZES; do # fill both edges' caches, check every server answers h3
    for a in $OLD $NEW $CADDY $BARE; do
        for _ in 1 2; do curl -sk -o /dev/null "https://$a/$s.bin"; done
        out=$(bin/h3load -proto h3 -c 1 -d 300ms -warmup 0 -k "https://$a/$s.bin")
        [[ $out == *errors=0* && $out != *req/s=0\ * ]] || {
            echo "bench-h3: h3 to $a/$s.bin: $out" >&2
            cat "$work"/*.log >&2
            exit 1
        }
    done
done
grep -ih 'buffer\|gso' "$work"/*.log >&2 || true

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
run() { # pid proto addr size -> "req/s MB/s p99 errors client-cpu server-cpu-µs/req"
    local t0 t1 line
    t0=$(ticks "$1")
    line=$(taskset -c "$CLIENT_CPU" bin/h3load -proto "$2" -c "$H3CONNS" -d "${DURATION}s" -k "https://$3/$4.bin")
    t1=$(ticks "$1")
    sed -E 's/.*req\/s=([0-9.]+) MB\/s=([0-9.]+) p50_ms=[0-9.]+ p99_ms=([0-9.]+) errors=([0-9]+) cpu=([0-9.]+)/\1 \2 \3 \4 \5/' <<<"$line" |
        awk -v t=$((t1 - t0)) -v hz="$hz" -v d="$DURATION" '{ printf "%s %s %s %s %s %.0f\n", $1, $2, $3, $4, $5, ($1 > 0 ? t / hz * 1e6 / ($1 * (d + 1)) : 0) }'
}

out=${RESULTS_DIR:-$ROOT/bench-results}/h3-$(date +%Y%m%d-%H%M%S)
mkdir -p "$out"
rows="old-h3 new-h3 new-h2 caddy-h3 bare-h3 bare-h2"
for size in $SIZES; do
    for r in $(seq "$REPEATS"); do
        line="$size #$r:"
        for row in $rows; do
            case $row in
            old-h3) res=$(run "$old_pid" h3 "$OLD" "$size") ;;
            new-h3) res=$(run "$new_pid" h3 "$NEW" "$size") ;;
            new-h2) res=$(run "$new_pid" h2 "$NEW" "$size") ;;
            caddy-h3) res=$(run "$caddy_pid" h3 "$CADDY" "$size") ;;
            bare-h3) res=$(run "$bare_pid" h3 "$BARE" "$size") ;;
            bare-h2) res=$(run "$bare_pid" h2 "$BARE" "$size") ;;
            esac
            echo "$row $size $res" >>"$out/raw.txt"
            line+=" $row $(cut -d' ' -f1 <<<"$res")"
        done
        echo "$line req/s" >&2
    done
done
{
    echo "# HTTP/3 hits: the edge ($BASE and this tree), its HTTP/2, Caddy $(basename "$(dirname "$CADDY_BIN")" | sed s/caddy-//), and h3bare (quic-go's http3 and net/http's h2 alone)"
    echo
    echo "$(date -u +%FT%TZ), medians of $REPEATS interleaved repeats of ${DURATION}s; h3load -c $H3CONNS; servers on CPU $SERVER_CPU, client on CPU $CLIENT_CPU; ECDSA P-256, TLS 1.3."
    echo
    echo "| size | row | req/s | MB/s | p99 ms | errors | client CPU | server µs/req | / new h2 | / caddy h3 | / old h3 |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    awk -v sizes="$SIZES" -v rows="$rows" '
        function med(list,   n, i, j, t, x) { n = split(list, x, " "); for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (x[j] + 0 < x[i] + 0) { t = x[i]; x[i] = x[j]; x[j] = t }; return x[int((n + 1) / 2)] }
        { k = $1 " " $2; for (f = 3; f <= 8; f++) v[k, f] = v[k, f] " " $f; e[k] += $6 }
        END {
            ns = split(sizes, S, " "); nr = split(rows, R, " ")
            for (i = 1; i <= ns; i++) {
                h2 = med(v["new-h2 " S[i], 3]); cd = med(v["caddy-h3 " S[i], 3]); od = med(v["old-h3 " S[i], 3])
                for (j = 1; j <= nr; j++) {
                    k = R[j] " " S[i]; q = med(v[k, 3])
                    printf "| %s | %s | %.0f | %.1f | %.2f | %d | %.2f | %.0f | %.2f | %.2f | %.2f |\n", S[i], R[j], q, med(v[k, 4]), med(v[k, 5]), e[k], med(v[k, 7]), med(v[k, 8]), q / h2, q / cd, q / od
                }
            }
        }' "$out/raw.txt"
} >"$out/summary.md"
cat "$out/summary.md"

if [[ -n $PROFILE ]]; then
    for e in old:$OLD:$OLD_ADMIN new:$NEW:$NEW_ADMIN; do
        IFS=: read -r name a1 p1 a2 p2 <<<"$e"
        taskset -c "$CLIENT_CPU" bin/h3load -proto h3 -c "$H3CONNS" -d 7s -warmup 0 -k "https://$a1:$p1/$PROFILE.bin" >/dev/null &
        lp=$!
        sleep 1
        curl -s -o "$out/$name-h3-$PROFILE.pprof" "http://$a2:$p2/debug/pprof/profile?seconds=5"
        wait "$lp"
        echo "## $name edge, h3 $PROFILE: top by flat, then cumulative" >>"$out/profile.txt"
        "$GO" tool pprof -top -nodecount=25 "$out/$name-h3-$PROFILE.pprof" 2>/dev/null >>"$out/profile.txt"
        "$GO" tool pprof -top -cum -nodecount=40 "$out/$name-h3-$PROFILE.pprof" 2>/dev/null >>"$out/profile.txt"
    done
    echo "profiles in $out/profile.txt" >&2
fi
echo "results in $out" >&2
