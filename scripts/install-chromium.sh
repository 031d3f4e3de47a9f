#!/usr/bin/env bash
# install-chromium.sh: Debian's chromium for the dashboard's browser tests
# (e2e TestDashboard, driven with chromedp), installed when it is missing.
# Needs root (apt-get); as another user it says what to run and fails.
# The tests start it headless with its own empty profile, no sandbox (CI
# runs as root) and no background networking.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
if [[ $(id -u) != 0 ]]; then
    echo "install-chromium.sh: chromium is missing; as root: apt-get update && apt-get install -y chromium" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
chromium --version
