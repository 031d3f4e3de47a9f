#!/usr/bin/env bash
# testssl.sh: rate the edge's TLS with testssl.sh (`make testssl`).
#
# Starts `cdn origin` and `cdn edge` on 127.0.0.83 (the edge's site
# testssl.test has a development-CA certificate and HSTS for a year), runs
# Debian's testssl.sh against the edge's TLS port with the dev CA trusted
# (--add-ca), prints the findings that count and the grade, then stops what
# it started, by PID, and removes its temporary directory.
#
# The grade: testssl.sh 3.1 and later rate a server themselves (SSL Labs'
# server rating guide) and that rating is printed. Debian 12 ships 3.0.8,
# which has no rating: scripts/testssl-grade then applies the same guide
# to the findings testssl.sh reported (protocols, cipher strengths, key
# sizes, certificate trust and name, vulnerabilities, HSTS).
#
#   scripts/testssl.sh                 # full scan (a few minutes)
#   KEEP=/tmp/out scripts/testssl.sh   # keep testssl's JSON and log there
#   NO_CA=1 scripts/testssl.sh         # without --add-ca: the dev CA is
#                                      # not trusted, the grade is capped (T)
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
ADDR=${ADDR:-127.0.0.83}
HOST=testssl.test
ORIGIN_PORT=9380 PLAIN_PORT=9381 TLS_PORT=9443

if ! command -v testssl >/dev/null && ! command -v testssl.sh >/dev/null; then
    echo "testssl: installing Debian's testssl.sh" >&2
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends testssl.sh
fi
TESTSSL=$(command -v testssl || command -v testssl.sh)
"$GO" build -o bin/cdn ./cmd/cdn
"$GO" build -o bin/testssl-grade ./scripts/testssl-grade

work=$(mktemp -d /tmp/testssl.XXXXXX)
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    if [[ -n ${KEEP:-} ]]; then
        mkdir -p "$KEEP" && cp "$work"/testssl.json "$work"/testssl.log "$KEEP"/ 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/site"
printf '<!doctype html><title>testssl</title><p>rated\n' >"$work/site/index.html"
bin/cdn origin --dir "$work/site" --listen "$ADDR:$ORIGIN_PORT" --log-level warn &
pids+=($!)

cat >"$work/edge.yaml" <<EOF
name: testssl
listen: "$ADDR:$PLAIN_PORT"
admin_listen: ""
access_log: false
cache: {memory: 64MiB, dir: "$work/cache", disk: 0}
tls:
  listen: "$ADDR:$TLS_PORT"
  http3: false
  storage: "$work/certs"
  dev_ca: "$work/dev-ca"
sites:
  - name: testssl
    hosts: ["$HOST", "*"]     # "*": a handshake without SNI (some of testssl.sh's checks) gets a certificate for the address
    origin: "http://$ADDR:$ORIGIN_PORT"
    tls: dev
    https_redirect: true
    hsts: {max_age: 8760h, include_subdomains: true}
EOF
bin/cdn edge --config "$work/edge.yaml" --log-level warn &
pids+=($!)

ca=$work/dev-ca/ca.pem
url=https://$HOST:$TLS_PORT/
for _ in $(seq 100); do
    if [[ -f $ca ]] && curl -sf -o /dev/null --cacert "$ca" --resolve "$HOST:$TLS_PORT:$ADDR" "$url"; then
        break
    fi
    sleep 0.1
done
curl -sf -o /dev/null --cacert "$ca" --resolve "$HOST:$TLS_PORT:$ADDR" "$url" ||
    { echo "testssl: the edge does not answer $url" >&2; exit 1; }

args=(--quiet --warnings off --color 0 --ip "$ADDR" --nodns none --jsonfile "$work/testssl.json")
[[ -n ${NO_CA:-} ]] || args+=(--add-ca "$ca")
echo "testssl: $TESTSSL ${args[*]} $url" >&2
# testssl.sh exits non-zero when it finds anything of note; the grade says
# what that was.
"$TESTSSL" "${args[@]}" "$url" >"$work/testssl.log" 2>&1 || true
if [[ ! -s $work/testssl.json ]]; then
    cat "$work/testssl.log" >&2
    echo "testssl: no JSON output" >&2
    exit 1
fi
bin/testssl-grade "$work/testssl.json"
