#!/usr/bin/env bash
# h2spec.sh: HTTP/2 conformance of the edge's TLS listener (`make
# conformance`). Builds h2spec (github.com/summerwind/h2spec) into
# bin/tools from tools/h2spec, a module that pins it and every dependency
# (go.mod, go.sum), again whenever those files change; then runs e2e
# TestH2spec: a cdn edge on 127.0.0.79 (TLS, development certificate) in
# front of an in-process origin, h2spec against it, every test must pass.
# The test's processes and temporary directories go away with it, failed
# or not.
#
#   scripts/h2spec.sh                         # every test
#   scripts/h2spec.sh http2/6.5.3 http2/8.1   # some of h2spec's specs
#   REPORT=h2spec.xml scripts/h2spec.sh       # keep the JUnit report
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
H2SPEC=$PWD/bin/tools/h2spec

if [[ ! -x $H2SPEC || tools/h2spec/go.mod -nt $H2SPEC || tools/h2spec/go.sum -nt $H2SPEC ]]; then
    # h2spec v2.2.1 has no go.mod: tools/h2spec/go.mod lists the versions
    # of its imports and go.sum their hashes, so every build is the same
    # (-mod=readonly: a missing or changed pin fails instead of resolving).
    (cd tools/h2spec && GOFLAGS=-mod=readonly "$GO" build -o "$H2SPEC" github.com/summerwind/h2spec/cmd/h2spec)
fi
report=${REPORT:-}
[[ -z $report || $report == /* ]] || report=$PWD/$report

H2SPEC=$H2SPEC H2SPEC_ARGS="$*" H2SPEC_REPORT=$report \
    "$GO" test -count=1 -timeout 5m -run '^TestH2spec$' -v ./e2e/
