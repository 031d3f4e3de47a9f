// Command cdn is the one binary of the CDN: every part is a subcommand
// (edge, origin, control, geodns, status, purge, push, releases,
// rollback, up), listed in main.go's table, each in a file of its own.
//
// A server subcommand parses its flags, loads its config file (defaults,
// then the strict YAML, then Validate; --check-config stops there for
// edge, control and geodns), builds the logger and the part's Deps, and
// calls the part's Run, which returns once the signal context (SIGINT,
// SIGTERM) ends and the part has drained. Only this package builds a
// logger or picks an exit code: 0; 2 for a usage or config error; the
// documented codes of cdn purge and cdn push (configs/ci); else 1, with
// one line on stderr.
package main
