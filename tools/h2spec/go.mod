// The pinned build of h2spec for `make conformance` (scripts/h2spec.sh).
// h2spec v2.2.1 has no go.mod of its own (only dep's Gopkg files), so
// its dependencies are pinned here, with their sums in go.sum, rather
// than resolved anew on every install. A module of its own, so h2spec's
// dependencies stay out of the CDN's go.mod.
module github.com/selfcdn/cdn/tools/h2spec

go 1.26.8

tool github.com/summerwind/h2spec/cmd/h2spec

require (
	github.com/fatih/color v1.19.0 // indirect
	github.com/inconshreveable/mousetrap v1.1.0 // indirect
	github.com/mattn/go-colorable v0.1.14 // indirect
	github.com/mattn/go-isatty v0.0.20 // indirect
	github.com/spf13/cobra v1.10.2 // indirect
	github.com/spf13/pflag v1.0.9 // indirect
	github.com/summerwind/h2spec v2.2.1+incompatible // indirect
	golang.org/x/net v0.63.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
	golang.org/x/text v0.44.0 // indirect
)
