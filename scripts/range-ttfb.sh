#!/usr/bin/env bash
# range-ttfb.sh: time to first byte of a range at the end of a 1 GiB object
# that is not cached yet, against the time the whole object takes to come
# through; then the same range once the object is on disk. Loopback only.
#
#   REPEATS=3 scripts/range-ttfb.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${RUN:-/tmp/cdn-range-ttfb}
REPEATS=${REPEATS:-3}
LO=127.0.0.1 ORIGIN=9300 EDGE=9301 ADMIN=9302
[[ -x bin/cdn ]] || go build -o bin/cdn ./cmd/cdn

pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$RUN"
}
trap cleanup EXIT
rm -rf "$RUN"
mkdir -p "$RUN/site"
head -c $((1 << 30)) /dev/urandom >"$RUN/site/big.bin"
printf '/*\n  Cache-Control: public, max-age=3600\n' >"$RUN/site/_headers"
bin/cdn origin --dir "$RUN/site" --listen "$LO:$ORIGIN" --log-level warn &
pids+=($!)
bin/cdn edge --origin "http://$LO:$ORIGIN" --listen "$LO:$EDGE" --admin "$LO:$ADMIN" \
    --memory 256MiB --cache-dir "$RUN/cdn" --disk 10GiB --access-log=false --log-level warn &
pids+=($!)
for _ in $(seq 100); do curl -fsS "http://$LO:$ADMIN/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS -o /dev/null "http://$LO:$ORIGIN/big.bin" # warm the origin's page cache

last=$(((1 << 30) - 1))
want=$(tail -c 1024 "$RUN/site/big.bin" | sha256sum | cut -d' ' -f1)
printf 'run\tcase\tstatus\tttfb_ms\ttotal_ms\tcache_status\n'
for i in $(seq "$REPEATS"); do
    url="http://$LO:$EDGE/big.bin?run=$i" # a new key: a miss every run
    r=$(curl -sS -r "$((last - 1023))-$last" -o "$RUN/part" -D "$RUN/h" -w '%{http_code}\t%{time_starttransfer}\t%{time_total}' "$url")
    [[ $(sha256sum <"$RUN/part" | cut -d' ' -f1) == "$want" ]] || { echo "range body differs" >&2; exit 1; }
    cs=$(awk -F': ' 'tolower($1)=="cache-status" {gsub("\r",""); print $2}' "$RUN/h")
    awk -F'\t' -v i="$i" -v cs="$cs" '{printf "%s\tmiss, last 1 KiB\t%s\t%.1f\t%.1f\t%s\n", i, $1, $2*1000, $3*1000, cs}' <<<"$r"
    # The whole object through the same edge, as a second client would get it.
    r=$(curl -sS -o /dev/null -w '%{http_code}\t%{time_starttransfer}\t%{time_total}' "$url")
    awk -F'\t' -v i="$i" '{printf "%s\twhole object (fill in flight)\t%s\t%.1f\t%.1f\t\n", i, $1, $2*1000, $3*1000}' <<<"$r"
    for _ in $(seq 300); do # until the fill is on disk
        curl -sSI "$url" | grep -qi '^cache-status: .*; hit' && break
        sleep 0.1
    done
    r=$(curl -sS -r "$((last - 1023))-$last" -o "$RUN/part" -D "$RUN/h" -w '%{http_code}\t%{time_starttransfer}\t%{time_total}' "$url")
    cs=$(awk -F': ' 'tolower($1)=="cache-status" {gsub("\r",""); print $2}' "$RUN/h")
    awk -F'\t' -v i="$i" -v cs="$cs" '{printf "%s\thit, last 1 KiB\t%s\t%.1f\t%.1f\t%s\n", i, $1, $2*1000, $3*1000, cs}' <<<"$r"
done
