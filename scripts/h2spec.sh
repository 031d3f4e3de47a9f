#!/usr/bin/env bash
# h2spec.sh: HTTP/2 conformance of the edge's TLS listener. Runs h2spec
# (github.com/summerwind/h2spec, built from its Go module into bin/tools)
# against an edge on loopback whose only site ("*", tls: dev) fronts a
# cdn origin serving a one-file directory. Exits with h2spec's status.
#
#   scripts/h2spec.sh                     # every test
#   scripts/h2spec.sh http2/8.1.2.2       # only some (h2spec's spec ids)
#   H2SPEC_TIMEOUT=2 REPORT=h2spec.xml scripts/h2spec.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
GO=${GO:-go}
CDN=${CDN:-$ROOT/bin/cdn}
H2SPEC_VERSION=${H2SPEC_VERSION:-v2.2.1+incompatible}
H2SPEC=$ROOT/bin/tools/h2spec
H2SPEC_TIMEOUT=${H2SPEC_TIMEOUT:-2} # seconds h2spec waits for each frame
LO=127.0.0.1

[[ -x $CDN ]] || "$GO" build -o "$CDN" ./cmd/cdn
if [[ ! -x $H2SPEC ]]; then
    # The module has no go.mod: -mod=mod lets `go install` resolve it.
    GOBIN=$ROOT/bin/tools GOFLAGS=-mod=mod \
        "$GO" install "github.com/summerwind/h2spec/cmd/h2spec@$H2SPEC_VERSION"
fi

RUN=$(mktemp -d "${TMPDIR:-/tmp}/cdn-h2spec.XXXXXX")
REPORT=${REPORT:-$RUN/h2spec.xml}
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$RUN"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# free_ports N: N loopback TCP ports nothing listens on (the kernel's pick).
free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}
read -r ORIGIN_PORT HTTP_PORT ADMIN_PORT TLS_PORT < <(free_ports 4)

mkdir -p "$RUN/site" "$RUN/certs"
# h2spec asks for / (GET, HEAD and POST with bodies); the flow-control
# tests need a 200 with a body of more than a few bytes.
head -c 4096 /dev/zero | tr '\0' 'x' >"$RUN/site/index.html"
cat >"$RUN/edge.yaml" <<EOF
name: h2spec
listen: "$LO:$HTTP_PORT"
admin_listen: "$LO:$ADMIN_PORT"
access_log: false
cache:
  memory: 16MiB
tls:
  listen: "$LO:$TLS_PORT"
  http3: false
  storage: "$RUN/certs"
sites:
  - name: h2spec
    hosts: ["*"]            # h2spec sends no SNI for an IP: the dev CA mints for 127.0.0.1
    origin: "http://$LO:$ORIGIN_PORT"
    tls: dev
EOF

"$CDN" origin --dir "$RUN/site" --listen "$LO:$ORIGIN_PORT" --log-level warn 2>"$RUN/origin.log" &
pids+=($!)
"$CDN" edge --config "$RUN/edge.yaml" --log-level warn 2>"$RUN/edge.log" &
pids+=($!)

# Ready: a GET over TLS returns 200 (it also mints the certificate and
# fills the cache before h2spec starts its timers).
ready=
for _ in $(seq 100); do
    for p in "${pids[@]}"; do
        kill -0 "$p" 2>/dev/null || { echo "h2spec.sh: a cdn process exited:" >&2; cat "$RUN"/*.log >&2; exit 1; }
    done
    if curl -skf -o /dev/null --max-time 2 "https://$LO:$TLS_PORT/"; then
        ready=1
        break
    fi
    sleep 0.1
done
[[ -n $ready ]] || { echo "h2spec.sh: the edge did not answer on $LO:$TLS_PORT" >&2; cat "$RUN"/*.log >&2; exit 1; }

status=0
"$H2SPEC" -t -k -h "$LO" -p "$TLS_PORT" -o "$H2SPEC_TIMEOUT" -j "$REPORT" "$@" >"$RUN/h2spec.out" 2>&1 || status=$?
# The failures with their expected/actual lines, then the totals.
if [[ $status -ne 0 ]]; then
    if grep -q '^Failures:' "$RUN/h2spec.out"; then
        sed -n '/^Failures:/,$p' "$RUN/h2spec.out"
    else
        cat "$RUN/h2spec.out"
    fi
    [[ -s $RUN/edge.log ]] && { echo "--- edge log"; tail -n 20 "$RUN/edge.log"; }
else
    tail -n 1 "$RUN/h2spec.out"
fi
[[ $REPORT == "$RUN"/* ]] || echo "h2spec.sh: JUnit report in $REPORT"
exit "$status"
