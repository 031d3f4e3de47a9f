GO    ?= go
BIN   := bin/cdn
# Core packages run with the race detector.
RACE  := ./edge/... ./origin/... ./internal/... ./control/... ./purge/... ./push/... ./geodns/...
FUZZ  := ./edge:FuzzServeH1 ./edge:FuzzOriginHead ./edge/h2:FuzzServeConn ./edge/byterange:FuzzParse ./edge/contentcoding:FuzzNegotiate ./edge/cache:FuzzReadObject ./edge/cache:FuzzScanPack ./internal/cachekey:FuzzNew ./internal/cachekey:FuzzVariant ./edge/freshness:FuzzParse ./internal/headerrules:FuzzParse ./origin/static:FuzzCleanPath ./control/api:FuzzSiteRequest ./purge:FuzzRequest ./purge:FuzzTags ./geodns:FuzzServeDNS ./geodns:FuzzParseQuery ./push:FuzzCheckPath ./push:FuzzDecode ./push:FuzzParseRedirects ./push:FuzzReadBlobBatch ./edge/tier:FuzzMark ./internal/accesslog:FuzzAppendString ./control/dashboard:FuzzOpenSession
DATA  ?= .data

.PHONY: help build run test test-race test-e2e test-browser test-deploy test-regions soak fuzz bench bench-go bench-peers bench-accesslog bench-tier bench-zipf bench-disk-start bench-disk bench-purge bench-dns bench-tls bench-h3 bench-push bench-push-compare bench-pushed conformance testssl lint
help: ## list targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n",$$1,$$2}'

build: ## build bin/cdn
	$(GO) build -o $(BIN) ./cmd/cdn

run: build ## the whole CDN on this machine: origin + three edges (see up.json in DATA)
	$(BIN) up --data $(DATA)

test: lint test-race test-e2e test-browser conformance test-deploy ## lint, unit tests with -race, end-to-end and browser tests, the deploy kit; under 10 min on 2 cores

test-race: ## unit and integration tests, race detector on
	$(GO) test -race -timeout 8m $(RACE)
	$(GO) test -timeout 5m ./cmd/... ./configs/...

conformance: ## h2spec against the edge's TLS listener (h2spec and its dependencies pinned in tools/h2spec)
	GO=$(GO) scripts/h2spec.sh

testssl: ## testssl.sh (Debian's) against an edge with a dev-CA certificate and HSTS; prints the grade
	GO=$(GO) scripts/testssl.sh

test-deploy: ## the deploy kit: --check-config on every example, systemd-analyze verify, promtool, nats-server -t (installs Debian's prometheus when missing)
	GO=$(GO) deploy/test.sh

test-e2e: ## real cdn processes on loopback
	$(GO) test -count=1 -timeout 5m -skip '^TestDashboard$$' ./e2e/...

test-browser: ## the operator dashboard in headless chromium (installs Debian's chromium if missing); screenshots in DASHBOARD_ARTIFACTS (default: TMPDIR/cdn-dashboard-artifacts)
	scripts/install-chromium.sh
	CDN_REQUIRE_BROWSER=1 $(GO) test -count=1 -timeout 5m -run '^TestDashboard$$' -v ./e2e/

test-regions: ## three regions in network namespaces over a simulated WAN, with faults (root; e2e/regions)
	scripts/regions-deps.sh
	CDN_REGIONS=1 $(GO) test -count=1 -timeout 9m -v -run 'TestWAN|TestRegions|TestBadInput' ./e2e/regions/

soak: ## 15 minutes of traffic, purges, pushes and random faults across the three regions (root; SOAK=15m)
	scripts/regions-deps.sh
	CDN_REGIONS=1 CDN_SOAK=1 CDN_SOAK_DURATION=$(or $(SOAK),15m) $(GO) test -count=1 -timeout 40m -v -run 'TestSoak' ./e2e/regions/

fuzz: ## each fuzz target for 20s
	@for f in $(FUZZ); do $(GO) test -run '^$$' -fuzz "^$${f#*:}$$" -fuzztime 20s $${f%:*} || exit 1; done

bench: bench-go bench-peers bench-accesslog bench-disk bench-dns bench-tls bench-h3 bench-tier bench-zipf bench-purge bench-push ## bench-go, then the load tests beside nginx, Varnish, PowerDNS, gdnsd and Caddy, the hit ratio, purge and push (docs/performance.md)

bench-go: ## hot-path benchmarks (benchstat-ready)
	$(GO) test -run '^$$' -bench . -skip 'ZipfHitRatio|OpenDisk|TagPurgeMillion|TierZipf|TierPeerHop' -benchmem -count 6 ./edge/... ./purge/ ./geodns/... | tee bench.txt

bench-push: ## push a 10,000-file / ~500 MB site to 3 edge processes, then one-file changes
	$(GO) test ./e2e/ -run '^$$' -bench Push -benchtime 1x -timeout 20m

bench-push-compare: ## the push benchmark of BASE (default 014a91c) and this tree, interleaved, 3 runs each
	scripts/bench-push-compare.sh

bench-pushed: build ## pushed files served over HTTP/1.1 beside nginx static and the edge's own cache hits
	scripts/bench-pushed.sh

bench-tls: ## HTTPS hits over h1 (wrk), h2 (h2load) and h3 (scripts/h3load) beside nginx with TLS and h2
	scripts/bench-tls.sh

bench-h3: ## HTTP/3 hits: the edge beside the edge at dd0d285, its own HTTP/2 over TLS and Caddy's HTTP/3 file server (scripts/caddy.sh builds it), one Go client (scripts/h3load)
	GO=$(GO) scripts/bench-h3.sh

bench-zipf: ## hit ratio of the two tiers on Zipf traffic (with and without disk admission), beside a plain LRU and W-TinyLFU of the same bytes
	$(GO) test ./edge/cache/ -run '^$$' -bench ZipfHitRatio

bench-purge: ## purge propagation to 16 edges (p50/p99 over 1000), throughput under load, a tag purge on 1,000,000 objects
	$(GO) test ./control/ -run '^$$' -bench PurgePropagation -benchtime 1000x
	$(GO) test ./control/ -run '^$$' -bench PurgeThroughput -benchtime 2000x
	$(GO) test ./edge/ -run '^$$' -bench TagPurgeMillion -benchtime 20x
	$(GO) test ./purge/ -run '^$$' -bench Check -benchmem

bench-purge-compare: ## purge propagation and throughput of BASE (default dd0d285) and this tree, interleaved, 3 runs each
	scripts/bench-purge-compare.sh

bench-disk-start: ## restart time and index memory with 1,000,000 objects on disk (~4 GiB of files)
	$(GO) test ./edge/cache/ -run '^$$' -bench OpenDisk -benchtime 5x -timeout 30m -args -disk-objects 1000000

bench-disk: build ## 1 MiB and 100 MiB hits from disk beside nginx proxy_cache on disk, on loopback, then between two network namespaces
	scripts/bench-disk.sh
	TWO_HOSTS=1 scripts/bench-disk.sh

bench-dns: build ## geodns beside PowerDNS and gdnsd: dnsperf q/s (plain, ECS, ECS mix), CPU per query and latency at a fixed rate (BASE_BIN= adds an old build)
	scripts/bench-dns.sh

bench-peers: build ## wrk/h2load: cache hits through the edge beside nginx proxy_cache and Varnish
	scripts/bench-peers.sh

bench-accesslog: build ## 1 KiB hits: the edge with its access log on and off beside nginx with and without a buffered access log
	SIZES="1k" REPEATS=5 scripts/bench-accesslog.sh

bench-tier: ## the region's tier: Zipf over 8 edges with and without it (origin fetches, hit ratio), and what a peer hop adds to a hit
	$(GO) test ./edge/ -run '^$$' -bench TierZipf -benchtime 100000x -timeout 30m
	$(GO) test ./edge/ -run '^$$' -bench TierPeerHop -benchtime 5000x -count 3

STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

lint: ## gofmt, vet, staticcheck, modernizers
	@test -z "$$(gofmt -l .)" || { gofmt -l .; exit 1; }
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	@test -z "$$($(GO) fix -diff ./... 2>&1)" || { $(GO) fix -diff ./...; exit 1; }
