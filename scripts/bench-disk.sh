#!/usr/bin/env bash
# bench-disk.sh: cache hits served from disk. 1 MiB and 100 MiB objects
# through the edge (memory tier too small for them: they stream from the
# disk tier), with its defaults and with sendfile: true, beside nginx
# proxy_cache (a disk cache, with sendfile off as in ../shared/bench/peers,
# and with sendfile on), in front of the same origin, interleaved in one
# run. Servers on CPU 0, wrk on CPU 1, on this machine only.
#
#   DURATION=10 REPEATS=3 CONNS=16 scripts/bench-disk.sh
#
# On loopback the kernel's receive work for a packet runs on the sending
# CPU, or in the receiver when data waits for its window: which process
# pays for it depends on timing, and with wrk saturating its CPU the ratio
# measures mostly wrk. TWO_HOSTS=1 plays two hosts instead: the servers in
# one network namespace, wrk in another, joined by a veth pair whose receive
# work is steered (RPS) to the receiving side's CPU, as a NIC on each host
# would. Link-local addresses, nothing routed beyond the pair; needs root.
# Both modes report the server's CPU time per request beside req/s.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUN=${RUN:-/tmp/cdn-disk-bench}
DURATION=${DURATION:-10}
REPEATS=${REPEATS:-3}
CONNS=${CONNS:-16}
SIZES=${SIZES:-1m 100m}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
TWO_HOSTS=${TWO_HOSTS:-0}
LO=127.0.0.1
SRV=() CLI=() # run in the server's or the client's namespace (two hosts)
ORIGIN=9100 NGINX=9110 NGINX_SF=9111 CDN=9120 CDN_ADMIN=9121 CDN_SF=9122 CDN_SF_ADMIN=9123
PEERS_DIR=${PEERS_DIR:-$ROOT/../shared/bench/peers}

if ! command -v nginx >/dev/null || ! command -v wrk >/dev/null; then
    "$PEERS_DIR/setup.sh" # installs nginx and wrk (Debian packages)
fi
[[ -x bin/cdn ]] || go build -o bin/cdn ./cmd/cdn

pids=()
NS_SRV=cdn-bench-srv-$$ NS_CLI=cdn-bench-cli-$$
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    if [[ $TWO_HOSTS == 1 ]]; then ip netns del "$NS_SRV" 2>/dev/null || true; ip netns del "$NS_CLI" 2>/dev/null || true; fi
}
trap cleanup EXIT

if [[ $TWO_HOSTS == 1 ]]; then
    if [[ $EUID != 0 ]] || ! command -v ip >/dev/null; then
        echo "bench-disk: TWO_HOSTS=1 makes network namespaces: it needs root and ip (iproute2)" >&2
        exit 2
    fi
    ip netns add "$NS_SRV"
    ip netns add "$NS_CLI"
    ip link add veth-srv netns "$NS_SRV" type veth peer name veth-cli netns "$NS_CLI"
    ip -n "$NS_SRV" addr add 169.254.211.1/30 dev veth-srv
    ip -n "$NS_CLI" addr add 169.254.211.2/30 dev veth-cli
    for ns in "$NS_SRV" "$NS_CLI"; do ip -n "$ns" link set lo up; done
    ip -n "$NS_SRV" link set veth-srv up
    ip -n "$NS_CLI" link set veth-cli up
    # Each side's receive work on its own CPU, like a NIC's interrupts.
    ip netns exec "$NS_SRV" sh -c "printf %x $((1 << SERVER_CPU)) >/sys/class/net/veth-srv/queues/rx-0/rps_cpus"
    ip netns exec "$NS_CLI" sh -c "printf %x $((1 << CLIENT_CPU)) >/sys/class/net/veth-cli/queues/rx-0/rps_cpus"
    LO=169.254.211.1
    SRV=(ip netns exec "$NS_SRV")
    CLI=(ip netns exec "$NS_CLI")
fi

rm -rf "$RUN"
mkdir -p "$RUN/site" "$RUN/nginx/cache" "$RUN/nginx/tmp" "$RUN/cdn"
for s in $SIZES; do
    case $s in 1m) n=1 ;; 100m) n=100 ;; *) echo "bench-disk: size $s?" >&2; exit 2 ;; esac
    head -c "$((n << 20))" /dev/urandom >"$RUN/site/$s.bin"
done
printf '/*\n  Cache-Control: public, max-age=3600\n' >"$RUN/site/_headers"

cat >"$RUN/nginx/nginx.conf" <<EOF
worker_processes 1;
user root root;
pid $RUN/nginx/nginx.pid;
error_log $RUN/nginx/error.log warn;
worker_rlimit_nofile 16384;
events { worker_connections 8192; }
http {
    access_log off;
    tcp_nopush on;
    tcp_nodelay on;
    output_buffers 2 256k;
    keepalive_requests 1000000;
    client_body_temp_path $RUN/nginx/tmp/body;
    proxy_temp_path $RUN/nginx/tmp/proxy;
    proxy_cache_path $RUN/nginx/cache levels=1:2 keys_zone=disk:16m max_size=4g inactive=1h use_temp_path=off;
    upstream origin { server $LO:$ORIGIN; keepalive 16; }
    server { listen $LO:$NGINX;    sendfile off; include $RUN/nginx/location.conf; }
    server { listen $LO:$NGINX_SF; sendfile on;  include $RUN/nginx/location.conf; }
}
EOF
cat >"$RUN/nginx/location.conf" <<EOF
location / {
    proxy_pass http://origin;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_cache disk;
    proxy_cache_valid 200 1h;
    proxy_cache_lock on;
    add_header X-Cache \$upstream_cache_status;
}
EOF

"${SRV[@]}" taskset -c "$CLIENT_CPU" bin/cdn origin --dir "$RUN/site" --listen "$LO:$ORIGIN" --log-level warn &
pids+=($!)
"${SRV[@]}" taskset -c "$SERVER_CPU" nginx -c "$RUN/nginx/nginx.conf" -g 'daemon off;' &
pids+=($!)
nginx_master=$!
# 1 MiB of memory: no object here fits; every hit streams from disk.
"${SRV[@]}" taskset -c "$SERVER_CPU" bin/cdn edge --origin "http://$LO:$ORIGIN" --listen "$LO:$CDN" --admin "$LO:$CDN_ADMIN" \
    --memory "${CDN_MEMORY:-1MiB}" --cache-dir "$RUN/cdn" --disk 4GiB --access-log=false --log-level warn &
pids+=($!)
cdn_pid=$!
# The same edge with sendfile on (a config file: there is no flag for it).
mkdir -p "$RUN/cdn-sendfile"
cat >"$RUN/cdn-sendfile.yaml" <<EOF
listen: "$LO:$CDN_SF"
admin_listen: "$LO:$CDN_SF_ADMIN"
access_log: false
sendfile: true
cache: {memory: ${CDN_MEMORY:-1MiB}, dir: "$RUN/cdn-sendfile", disk: 4GiB}
sites: [{name: bench, hosts: ["*"], origin: "http://$LO:$ORIGIN"}]
EOF
"${SRV[@]}" taskset -c "$SERVER_CPU" bin/cdn edge --config "$RUN/cdn-sendfile.yaml" --log-level warn &
pids+=($!)
cdn_sf_pid=$!
for _ in $(seq 100); do
    "${CLI[@]}" curl -fsS "http://$LO:$CDN_ADMIN/readyz" >/dev/null 2>&1 && "${CLI[@]}" curl -fsS "http://$LO:$CDN_SF_ADMIN/readyz" >/dev/null 2>&1 && "${CLI[@]}" curl -fsS -o /dev/null "http://$LO:$NGINX/" 2>/dev/null; \
        "${CLI[@]}" curl -fsS -o /dev/null "http://$LO:$ORIGIN/1m.bin" 2>/dev/null && break
    sleep 0.1
done

declare -A port=([nginx]=$NGINX [nginx-sendfile]=$NGINX_SF [cdn]=$CDN [cdn-sendfile]=$CDN_SF)
nginx_worker=$(pgrep -P "$nginx_master" | head -1)
declare -A pid=([nginx]=$nginx_worker [nginx-sendfile]=$nginx_worker [cdn]=$cdn_pid [cdn-sendfile]=$cdn_sf_pid)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; } # user + system, in clock ticks
HZ=$(getconf CLK_TCK)
servers=(nginx nginx-sendfile cdn cdn-sendfile)
# Warm every cache and prove the next answer is a hit.
for s in $SIZES; do
    for srv in "${servers[@]}"; do
        for _ in 1 2 3; do "${CLI[@]}" curl -fsS -o /dev/null "http://$LO:${port[$srv]}/$s.bin"; done
        # A large fill is written to disk after it was served; wait for it.
        for _ in $(seq 50); do
            h=$("${CLI[@]}" curl -fsS -D - -o /dev/null "http://$LO:${port[$srv]}/$s.bin")
            grep -qiE '^(x-cache: hit|cache-status: .*; hit)' <<<"$h" && break
            sleep 0.2
        done
        if ! grep -qiE '^(x-cache: hit|cache-status: .*; hit)' <<<"$h"; then  # cdn: memory or disk hit
            echo "bench-disk: $srv /$s.bin is not a hit:" >&2
            echo "$h" >&2
            exit 1
        fi
    done
done
disk_hits() { # both edges
    for a in $CDN_ADMIN $CDN_SF_ADMIN; do "${CLI[@]}" curl -fsS "http://$LO:$a/metrics"; done |
        awk '/^cdn_edge_cache_tier_hits_total\{tier="disk"\}/ {n += $2} END {printf "%d", n}'
}
before=$(disk_hits)

out=$ROOT/bench-results/disk-$(date +%Y%m%d-%H%M%S)
mkdir -p "$out"
printf 'size\tserver\trep\treq_s\tMB_s\tp99_ms\tcpu_us_per_req\n' >"$out/rows.tsv"
for s in $SIZES; do
    for rep in $(seq "$REPEATS"); do
        for srv in "${servers[@]}"; do
            t0=$(cpu_ticks "${pid[$srv]}")
            raw=$("${CLI[@]}" taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "http://$LO:${port[$srv]}/$s.bin")
            t1=$(cpu_ticks "${pid[$srv]}")
            echo "$raw" >"$out/$s-$srv-$rep.txt"
            n=$(awk '/requests in/ {print $1}' <<<"$raw")
            cpu=$(awk -v t=$((t1 - t0)) -v hz="$HZ" -v n="$n" 'BEGIN {printf "%.0f", n ? t / hz * 1e6 / n : 0}')
            rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$raw")
            mbs=$(awk '/^Transfer\/sec/ {v=$2; u=substr(v,length(v)-1); n=v+0; if (u=="GB") n*=1024; if (u=="KB") n/=1024; print n}' <<<"$raw")
            p99=$(awk '$1=="99%" {v=$2; n=v+0; if (v ~ /us$/) n/=1000; else if (v ~ /ms$/) n=n; else if (v ~ /s$/) n*=1000; print n}' <<<"$raw")
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$s" "$srv" "$rep" "$rps" "$mbs" "$p99" "$cpu" | tee -a "$out/rows.tsv"
        done
    done
done
after=$(disk_hits)

{
    mode="loopback"
    [[ $TWO_HOSTS == 1 ]] && mode="two hosts (network namespaces, veth, RPS)"
    echo "# Disk hits: edge vs nginx proxy_cache, $mode ($(date -u +%F\ %H:%M) UTC)"
    echo
    echo "wrk -t1 -c$CONNS -d${DURATION}s, $REPEATS interleaved runs, medians. Edge memory ${CDN_MEMORY:-1MiB}: with 1MiB, every"
    echo "answer below streamed from its disk tier ($((${after%.*} - ${before%.*})) disk hits counted during the runs)."
    echo
    echo "Server CPU: user + system time of the nginx worker or the edge process per request (receive work the"
    echo "kernel does in interrupt context is not in it)."
    echo
    echo "| size | server | req/s | MB/s | p99 ms | server CPU µs/req | req/s vs nginx | vs nginx sendfile |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|"
    awk -F'\t' 'NR>1 {k=$1"\t"$2; r[k]=r[k]" "$4; m[k]=m[k]" "$5; p[k]=p[k]" "$6; c[k]=c[k]" "$7; if (!(k in seen)) {seen[k]=1; order[++n]=k}}
        function med(s,   a, c, i, j, t) { c=split(s, a, " "); for (i=1;i<=c;i++) for (j=i+1;j<=c;j++) if (a[j]+0<a[i]+0) {t=a[i];a[i]=a[j];a[j]=t}; return a[int((c+1)/2)] }
        END { for (i=1;i<=n;i++) { split(order[i], f, "\t"); rq[f[1],f[2]]=med(r[order[i]]) }
              for (i=1;i<=n;i++) { split(order[i], f, "\t"); k=order[i]
                printf "| %s | %s | %.0f | %.0f | %.1f | %.0f | %.2f | %.2f |\n", f[1], f[2], med(r[k]), med(m[k]), med(p[k]), med(c[k]),
                    med(r[k])/rq[f[1],"nginx"], med(r[k])/rq[f[1],"nginx-sendfile"] } }' "$out/rows.tsv"
} | tee "$out/summary.md"
