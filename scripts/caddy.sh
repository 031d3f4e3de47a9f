#!/usr/bin/env bash
# caddy.sh: builds Caddy, the HTTP/3 peer of bench-h3.sh, into bin/tools
# from the Go module proxy at a pinned version (go install checks it
# against the checksum database), again when the version changes. Prints
# the binary's path.
#
#   CADDY_VERSION=v2.11.9 scripts/caddy.sh
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
CADDY_VERSION=${CADDY_VERSION:-v2.11.9}
dir=$PWD/bin/tools/caddy-$CADDY_VERSION
if [[ ! -x $dir/caddy ]]; then
    echo "caddy.sh: building caddy $CADDY_VERSION" >&2
    mkdir -p "$dir"
    GOBIN=$dir GOFLAGS=${GOFLAGS:--p=1} "$GO" install "github.com/caddyserver/caddy/v2/cmd/caddy@$CADDY_VERSION" >&2
fi
echo "$dir/caddy"
