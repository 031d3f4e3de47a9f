package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/selfcdn/cdn/internal/config"
	"github.com/selfcdn/cdn/internal/logging"
)

// command is one subcommand: it parses its own flags and runs until ctx
// ends or it fails.
type command struct {
	name, usage string
	run         func(ctx context.Context, args []string, stderr io.Writer) error
}

var commands = []command{
	{"edge", "run a caching edge (standalone, from a config file or --origin)", runEdge},
	{"origin", "run the reference static-site origin", runOrigin},
	{"control", "run the control plane (API, health checks, embedded NATS)", runControl},
	{"geodns", "run the authoritative GeoDNS server (nearest healthy edges)", runGeoDNS},
	{"nats", "run a NATS JetStream node from a nats-server config (a cluster node of the network)", runNATS},
	{"status", "summarize the network: edges, regions, health (CDN_CONTROL_URL, CDN_TOKEN)", runStatus},
	{"purge", "purge URLs, prefixes, tags or a site, and wait for the edges (for CI)", runPurge},
	{"push", "deploy a directory as a site's next release, on every edge at once", runPush},
	{"releases", "list a site's pushed releases", runReleases},
	{"rollback", "switch a site to an earlier (or held) release", runRollback},
	{"up", "run control, origin and edges on this machine, for a first try", runUp},
}

// exitUsage marks errors that are the caller's (bad flags, bad config):
// exit code 2, like flag's own.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// exitError asks for a given exit code, for subcommands whose codes are
// documented for scripts (cdn purge).
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }
func (e exitError) Unwrap() error { return e.err }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		return 2
	}
	for _, c := range commands {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], stderr)
		if code := exitCode(err); code != 0 {
			fmt.Fprintf(stderr, "cdn %s: %v\n", c.name, err)
			return code
		}
		return 0
	}
	fmt.Fprintf(stderr, "cdn: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

// exitCode maps a subcommand's error to the process's exit code: 0 for
// none or -h, the code an exitError asks for, 2 for usage errors (like
// flag's own), else 1.
func exitCode(err error) int {
	var exit exitError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &exit):
		return exit.code
	case errors.As(err, new(usageError)):
		return 2
	default:
		return 1
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: cdn <command> [flags]\n\ncommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.usage)
	}
	fmt.Fprintln(w, "\nrun 'cdn <command> -h' for its flags")
}

// logFlags are the logging flags every subcommand takes.
type logFlags struct{ level, format string }

func (l *logFlags) register(fs *flag.FlagSet, format string) {
	fs.StringVar(&l.level, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&l.format, "log-format", format, "log format: json or text")
}

func (l *logFlags) logger(w io.Writer) (*slog.Logger, error) {
	log, err := logging.New(w, l.level, l.format)
	if err != nil {
		return nil, usageError{err}
	}
	// Libraries that write through the standard log package (quic-go's
	// warning that it could not raise its UDP buffers) come out as our
	// lines too, at info level, instead of bare text among the JSON.
	slog.SetDefault(log)
	return log, nil
}

// parse parses args into fs, turning flag errors into usage errors.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	return nil
}

// checked validates cfg and, unless --check-config only asked for that,
// builds the logger. A nil logger means stop and return err (nil when the
// check passed).
func checked(cfg config.Validator, checkOnly bool, lf logFlags, stderr io.Writer) (*slog.Logger, error) {
	if err := cfg.Validate(); err != nil {
		return nil, usageError{fmt.Errorf("check config: %w", err)}
	}
	if checkOnly {
		fmt.Fprintln(stderr, "configuration ok")
		return nil, nil
	}
	return lf.logger(stderr)
}
