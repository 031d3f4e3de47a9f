package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/selfcdn/cdn/internal/natsembed"
)

// runNATS runs one NATS JetStream node from a stock nats-server
// configuration file: a cluster node on a host that runs no control
// process (or beside one that uses it as an external cluster), without
// installing nats-server. The same file works with nats-server itself.
func runNATS(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("nats", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		cfgPath string
		check   bool
		lf      logFlags
	)
	fs.StringVar(&cfgPath, "config", "", "nats-server configuration file (required; include the block `cdn control nats-config` prints)")
	fs.BoolVar(&check, "check-config", false, "validate the configuration and exit")
	lf.register(fs, "json")
	if err := parse(fs, args); err != nil {
		return err
	}
	if cfgPath == "" {
		return usageError{errors.New("--config is required (a nats-server configuration file; see docs/deploy.md)")}
	}
	opts, err := natsOptions(cfgPath)
	if err != nil {
		return usageError{err}
	}
	if check {
		fmt.Fprintln(stderr, "configuration ok")
		return nil
	}
	log, err := lf.logger(stderr)
	if err != nil {
		return err
	}
	log = log.With("component", "nats", "server", opts.ServerName)
	ns, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("nats server: %w", err)
	}
	ns.SetLoggerV2(natsembed.Logger{Log: log}, opts.Debug, opts.Trace, false)
	go ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return fmt.Errorf("nats server %s not ready after 30s", opts.ServerName)
	}
	log.Info("nats node ready", "url", ns.ClientURL(), "cluster", opts.Cluster.Name)
	select {
	case <-ctx.Done():
	case <-waitShutdown(ns):
		return errors.New("nats server stopped")
	}
	ns.Shutdown()
	ns.WaitForShutdown()
	return nil
}

// waitShutdown is closed when ns has shut down by itself.
func waitShutdown(ns *server.Server) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		ns.WaitForShutdown()
		close(done)
	}()
	return done
}

// natsOptions reads a nats-server configuration file and refuses the
// ones this network must not run: a node nobody's credentials protect, a
// node without JetStream, a cluster node without a name.
func natsOptions(path string) (*server.Options, error) {
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	var errs []error
	if len(opts.TrustedOperators) == 0 {
		errs = append(errs, errors.New("no operator: include what `cdn control nats-config` prints, or anyone could connect"))
	}
	if !opts.JetStream {
		errs = append(errs, errors.New("jetstream is off: the CDN's state lives in JetStream (add `jetstream { store_dir: ... }`)"))
	}
	if opts.Cluster.Port != 0 && opts.Cluster.Name == "" {
		errs = append(errs, errors.New("cluster.name is empty: every node of the CDN's cluster must name the same cluster"))
	}
	if opts.ServerName == "" {
		errs = append(errs, errors.New("server_name is empty: JetStream's cluster needs each node named"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("check %s: %w", path, err)
	}
	opts.NoSigs = true // the process handles its own signals
	return opts, nil
}
