// Command cdn is the one binary of the CDN: every part is a subcommand
// (edge, origin, control, geodns, nats, status, purge, push, releases,
// rollback, up), listed in main.go's table, in files by part (edge.go,
// push.go, ...).
//
// A server subcommand parses its flags, loads its config file (defaults,
// then the strict YAML, then Validate; --check-config stops there),
// builds the logger and the part's Deps, and calls the part's Run, which
// returns once the signal context (SIGINT, SIGTERM) ends and the part
// has drained. Only this package builds a logger or picks an exit code:
// 0; 2 for a usage or config error; the codes cdn purge (configs/ci) and
// cdn push document in their usage; else 1, with one line on stderr.
package main
