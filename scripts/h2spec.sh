#!/usr/bin/env bash
# h2spec.sh: HTTP/2 conformance of the edge's TLS listener (`make
# conformance`). Installs h2spec (github.com/summerwind/h2spec, built from
# its Go module) into bin/tools once, then runs e2e TestH2spec: a cdn edge
# on 127.0.0.79 (TLS, development certificate) in front of an in-process
# origin, h2spec against it, every test must pass. The test's processes
# and temporary directories go away with it, failed or not.
#
#   scripts/h2spec.sh                         # every test
#   scripts/h2spec.sh http2/6.5.3 http2/8.1   # some of h2spec's specs
#   REPORT=h2spec.xml scripts/h2spec.sh       # keep the JUnit report
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
H2SPEC_VERSION=${H2SPEC_VERSION:-v2.2.1+incompatible}
H2SPEC=$PWD/bin/tools/h2spec

if [[ ! -x $H2SPEC ]]; then
    # The module has no go.mod: -mod=mod lets `go install` resolve its
    # imports (at their latest versions).
    GOBIN=$PWD/bin/tools GOFLAGS=-mod=mod \
        "$GO" install "github.com/summerwind/h2spec/cmd/h2spec@$H2SPEC_VERSION"
fi
report=${REPORT:-}
[[ -z $report || $report == /* ]] || report=$PWD/$report

H2SPEC=$H2SPEC H2SPEC_ARGS="$*" H2SPEC_REPORT=$report \
    "$GO" test -count=1 -timeout 5m -run '^TestH2spec$' -v ./e2e/
