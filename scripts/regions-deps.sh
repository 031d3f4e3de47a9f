#!/usr/bin/env bash
# What `make test-regions` needs beyond Go: iproute2 (ip netns, ip addr,
# ip route) and the TUN device. Installs iproute2 with apt-get when it is
# missing (the suite runs as root).
set -euo pipefail
if ! command -v ip >/dev/null; then
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2
fi
if [ ! -c /dev/net/tun ]; then
	mkdir -p /dev/net
	mknod /dev/net/tun c 10 200
	chmod 0666 /dev/net/tun
fi
# The commands docs/deploy.md shows, which the suite runs as written.
missing=""
command -v curl >/dev/null || missing="$missing curl"
command -v dig >/dev/null || missing="$missing dnsutils"
if [ -n "$missing" ]; then
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
fi
