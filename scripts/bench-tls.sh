#!/usr/bin/env bash
# bench-tls.sh: HTTPS cache-hit throughput of the edge beside nginx
# (proxy_cache, TLS, http2) in front of the same origin, same certificate
# (ECDSA P-256), same objects, in one interleaved run. Servers on CPU 0,
# clients on CPU 1, loopback only.
#   - HTTP/1.1: wrk (-c64), both servers.
#   - HTTP/2: h2load (-c64 -m1), both servers.
#   - HTTP/3: scripts/h3load (quic-go); nginx 1.22 from Debian has no h3, so
#     the same Go client also measures both servers over HTTP/2 for a
#     like-for-like ratio.
#
#   DURATION=10 REPEATS=3 SIZES="1k 64k 1m" scripts/bench-tls.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${DURATION:-10}
REPEATS=${REPEATS:-3}
SIZES=${SIZES:-"1k 64k 1m"}
CONNS=${CONNS:-64}
H3CONNS=${H3CONNS:-16}
SERVER_CPU=${SERVER_CPU:-0} CLIENT_CPU=${CLIENT_CPU:-1}
ORIGIN=127.0.0.1:9300 NGINX=127.0.0.1:9443 CDN=127.0.0.1:9444 CDN_PLAIN=127.0.0.1:9380

need=()
command -v nginx >/dev/null || need+=(nginx)
command -v h2load >/dev/null || need+=(nghttp2-client)
command -v wrk >/dev/null || need+=(wrk)
command -v openssl >/dev/null || need+=(openssl)
if ((${#need[@]})); then
    echo "bench-tls: installing ${need[*]}" >&2
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
fi
go build -o bin/cdn ./cmd/cdn
go build -o bin/h3load ./scripts/h3load

work=$(mktemp -d /tmp/bench-tls.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    [[ -f $work/nginx.pid ]] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# The objects behind a `cdn origin`, and one certificate for every server.
. scripts/tls-fixture.sh

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
    ssl_session_cache shared:SSL:10m;
    ssl_protocols TLSv1.2 TLSv1.3;
    keepalive_requests 1000000;
    server {
        listen $NGINX ssl http2 backlog=4096;
        ssl_certificate $work/cert.pem;
        ssl_certificate_key $work/key.pem;
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
listen: "$CDN_PLAIN"
admin_listen: ""
access_log: false
cache: {memory: 256MiB, dir: "$work/edge", disk: 0}
tls: {listen: "$CDN", storage: "$work/certs"}
sites:
  - name: bench
    hosts: ["bench.test", "*"]
    origin: "http://$ORIGIN"
    tls: files
    cert_file: "$work/cert.pem"
    key_file: "$work/key.pem"
EOF
taskset -c "$SERVER_CPU" bin/cdn edge --config "$work/edge.yaml" --log-level warn &
pids+=($!)
for _ in $(seq 100); do
    curl -sk -o /dev/null "https://$CDN/1k.bin" && curl -sk -o /dev/null "https://$NGINX/1k.bin" && break
    sleep 0.1
done
for s in $SIZES; do # warm both caches
    for a in $NGINX $CDN; do curl -sk -o /dev/null "https://$a/$s.bin"; curl -sk -o /dev/null "https://$a/$s.bin"; done
done
for a in $NGINX $CDN; do
    for s in $SIZES; do
        code=$(curl -sk -o /dev/null -w '%{http_code}' "https://$a/$s.bin")
        [[ $code == 200 ]] || { echo "bench-tls: https://$a/$s.bin answered $code" >&2; cat "$work/nginx/error.log" >&2; exit 1; }
    done
done
curl -skI "https://$CDN/1k.bin" | grep -i '^cache-status' >&2

h2() { # server size -> "req/s MB/s"
    taskset -c "$CLIENT_CPU" h2load -t1 -c"$CONNS" -m1 -D "$DURATION" --warm-up-time=1 "https://$1/$2.bin" 2>&1 |
        awk '/^finished in/ {gsub(",",""); for (i=1;i<=NF;i++) { if ($(i+1)=="req/s") r=$i; if ($i ~ /MB\/s$/) {m=$i; sub("MB/s","",m)} } }
             /requests:/ && /succeeded/ {for (i=1;i<=NF;i++) if ($(i+1)=="failed,") f=$i}
             END {printf "%s %s %s\n", r, m, f}'
}
h1() { # server size -> "req/s MB/s errors" (wrk, HTTP/1.1 over TLS)
    taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" "https://$1/$2.bin" 2>&1 |
        awk '/^Requests\/sec/ {r=$2} /^Transfer\/sec/ {m=$2; if (m ~ /GB$/) m=m*1000; else if (m ~ /KB$/) m=m/1000; sub("[KMG]B","",m)}
             /Non-2xx|Socket errors/ {e++} END {printf "%s %s %d\n", r, m+0, e}'
}
goload() { # proto server size -> "req/s MB/s p99"
    taskset -c "$CLIENT_CPU" bin/h3load -proto "$1" -c "$H3CONNS" -d "${DURATION}s" -k "https://$2/$3.bin" |
        sed -E 's/.*req\/s=([0-9.]+) MB\/s=([0-9.]+) p50_ms=[0-9.]+ p99_ms=([0-9.]+) errors=([0-9]+).*/\1 \2 \3 \4/'
}

out=${RESULTS_DIR:-$ROOT/bench-results}/tls-$(date +%Y%m%d-%H%M%S)
mkdir -p "$out"
{
    echo "# HTTPS hits: edge beside nginx $(nginx -v 2>&1 | sed 's/.*\///') (proxy_cache, TLS, http2)"
    echo
    echo "$(date -u +%FT%TZ), $REPEATS interleaved repeats of ${DURATION}s; servers on CPU $SERVER_CPU, clients on CPU $CLIENT_CPU; ECDSA P-256, TLS 1.3."
    echo
    echo "| client | size | nginx req/s | cdn req/s | cdn/nginx | nginx MB/s | cdn MB/s | failed (nginx/cdn) |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|"
} >"$out/summary.md"
declare -A sum
for size in $SIZES; do
    for r in $(seq "$REPEATS"); do
        read -r wnr wnm wnf < <(h1 "$NGINX" "$size")
        read -r wcr wcm wcf < <(h1 "$CDN" "$size")
        echo "wrk $size #$r: nginx $wnr req/s, cdn $wcr req/s" >&2
        echo "wrk-h1|$size|$wnr|$wcr|$wnm|$wcm|$wnf/$wcf" >>"$out/raw.txt"
        read -r nr nm nf < <(h2 "$NGINX" "$size")
        read -r cr cm cf < <(h2 "$CDN" "$size")
        echo "h2load $size #$r: nginx $nr req/s, cdn $cr req/s" >&2
        echo "h2load|$size|$nr|$cr|$nm|$cm|$nf/$cf" >>"$out/raw.txt"
        read -r gnr gnm gnp gne < <(goload h2 "$NGINX" "$size")
        read -r gcr gcm gcp gce < <(goload h2 "$CDN" "$size")
        read -r g3r g3m g3p g3e < <(goload h3 "$CDN" "$size")
        echo "go $size #$r: nginx h2 $gnr, cdn h2 $gcr, cdn h3 $g3r req/s" >&2
        echo "go-h2|$size|$gnr|$gcr|$gnm|$gcm|$gne/$gce" >>"$out/raw.txt"
        echo "go-h3|$size|$gnr|$g3r|$gnm|$g3m|$gne/$g3e" >>"$out/raw.txt"
    done
done
# Medians of the repeats.
for client in wrk-h1 h2load go-h2 go-h3; do
    for size in $SIZES; do
        grep "^$client|$size|" "$out/raw.txt" | awk -F'|' -v c="$client" -v s="$size" '
            {n++; a[n]=$3; b[n]=$4; m1[n]=$5; m2[n]=$6; f=$7}
            function med(x,   i,j,t) { for (i=1;i<=n;i++) for (j=i+1;j<=n;j++) if (x[j]<x[i]) {t=x[i];x[i]=x[j];x[j]=t}; return x[int((n+1)/2)] }
            END { na=med(a); nb=med(b); label=c; if (c=="wrk-h1") label="wrk (h1)"; if (c=="h2load") label="h2load (h2)"; if (c=="go-h3") label="go (nginx h2, cdn h3)"; if (c=="go-h2") label="go h2";
                  printf "| %s | %s | %.0f | %.0f | %.2f | %.1f | %.1f | %s |\n", label, s, na, nb, nb/na, med(m1), med(m2), f }'
    done
done >>"$out/summary.md"
cat "$out/summary.md"
echo "results in $out" >&2
