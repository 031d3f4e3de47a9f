#!/usr/bin/env bash
# deploy/test.sh (make test-deploy): check the deploy kit with the tools an
# operator's host has.
#
#   1. go test ./deploy/: every example config passes the binary's own
#      --check-config, each unit's ExecStart uses real flags, the NATS
#      configs pass nats-server -t, and every metric the alerts and the
#      dashboard query is registered by the code.
#   2. systemd-analyze verify on the units (any warning fails), and
#      systemd-analyze security: each unit's exposure must stay under 3.0.
#   3. promtool check config, check rules and test rules (Debian's
#      prometheus package, installed here when missing; needs root).
#   4. docker build of deploy/Dockerfile, and the image's --check-config on
#      an example, when a Docker daemon answers; skipped (said so) if not.
#
# Binaries are built into a temporary directory, removed at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}

need() { # need COMMAND DEBIAN_PACKAGE
    command -v "$1" >/dev/null && return
    if [ "$(id -u)" != 0 ]; then
        echo "test-deploy: $1 is missing; install Debian's $2 (apt-get install $2) or run as root" >&2
        exit 1
    fi
    echo "test-deploy: installing Debian's $2 for $1" >&2
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$2" >/dev/null
}
need promtool prometheus
need systemd-analyze systemd

work=$(mktemp -d /tmp/test-deploy.XXXXXX)
trap 'rm -rf "$work"' EXIT
start=$(date +%s)

"$GO" build -o "$work/bin/cdn" ./cmd/cdn &
cdn_pid=$!
"$GO" build -o "$work/bin/nats-server" github.com/nats-io/nats-server/v2 &
nats_pid=$!
wait "$cdn_pid"
wait "$nats_pid"

echo "== go test ./deploy/"
DEPLOY_TEST_BIN="$work/bin" "$GO" test -count=1 ./deploy/

echo "== sysctl files name real settings"
for f in deploy/sysctl/*.conf; do
    while IFS='=' read -r key value; do
        key=$(echo "$key" | tr -d ' ')
        [[ -z $key || $key == \#* ]] && continue
        [[ -e /proc/sys/${key//.//} ]] || { echo "test-deploy: $f: no such sysctl: $key" >&2; exit 1; }
        [[ $(echo "$value" | tr -d ' ') =~ ^[0-9]+$ ]] || { echo "test-deploy: $f: $key: not a number: $value" >&2; exit 1; }
    done <"$f"
done

echo "== systemd-analyze verify, security"
mkdir -p "$work/units"
# The units name the installed paths; verify wants the binaries to exist.
for u in deploy/systemd/*.service; do
    sed -e "s#/usr/local/bin/cdn #$work/bin/cdn #" -e "s#/usr/local/bin/nats-server #$work/bin/nats-server #" "$u" >"$work/units/$(basename "$u")"
done
out=$(cd "$work/units" && systemd-analyze verify ./*.service 2>&1) || { echo "$out"; exit 1; }
if [ -n "$out" ]; then
    echo "$out"
    echo "test-deploy: systemd-analyze verify warned about the units" >&2
    exit 1
fi
echo "verify: ok ($(ls "$work/units" | tr '\n' ' '))"
for u in "$work"/units/*.service; do
    set +e
    level=$(systemd-analyze security --offline=yes --threshold=30 "$u" 2>&1)
    rc=$?
    set -e
    echo "$level" | grep 'Overall exposure' | sed 's/→ //'
    if [ $rc != 0 ]; then
        echo "test-deploy: $(basename "$u") is exposed above 3.0" >&2
        exit 1
    fi
done

echo "== promtool"
promtool check config deploy/prometheus/prometheus.yml
promtool test rules deploy/prometheus/rules_test.yml

echo "== docker build"
if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    docker build -q -f deploy/Dockerfile -t cdn-deploy-test .
    docker run --rm -v "$PWD/deploy/regions:/etc/cdn:ro" cdn-deploy-test edge --config /etc/cdn/eu/edge-1.yaml --check-config
    docker image rm cdn-deploy-test >/dev/null
else
    echo "docker: SKIPPED, no Docker daemon answers here (docker info failed); the Dockerfile was not built"
fi
echo "test-deploy: ok in $(($(date +%s) - start))s"
