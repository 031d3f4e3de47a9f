package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/selfcdn/cdn/control"
	"github.com/selfcdn/cdn/internal/config"
	"github.com/selfcdn/cdn/internal/natsauth"
)

func runControl(ctx context.Context, args []string, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "creds":
			return runControlCreds(args[1:], os.Stdout, stderr)
		case "nats-config":
			return runControlNATSConfig(args[1:], os.Stdout, stderr)
		}
	}
	fs := flag.NewFlagSet("control", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		cfgPath, listen, data, natsListen, natsURLs string
		check                                       bool
		lf                                          logFlags
	)
	fs.StringVar(&cfgPath, "config", "", "control config file (YAML); see configs/")
	fs.StringVar(&listen, "listen", "", "HTTP API address (overrides the config)")
	fs.StringVar(&data, "data", "", "data directory: embedded NATS, bootstrap token (overrides the config)")
	fs.StringVar(&natsListen, "nats-listen", "", "embedded NATS client address (overrides the config)")
	fs.StringVar(&natsURLs, "nats", "", "external NATS URLs, comma-separated; none runs NATS embedded (overrides the config)")
	fs.BoolVar(&check, "check-config", false, "validate the configuration and exit")
	lf.register(fs, "json")
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg := control.DefaultConfig()
	if cfgPath != "" {
		if err := config.Load(cfgPath, &cfg); err != nil {
			return usageError{err}
		}
	}
	if listen != "" {
		cfg.Listen = listen
	}
	if data != "" {
		cfg.DataDir = data
	}
	if natsListen != "" {
		cfg.NATS.Listen = natsListen
	}
	if natsURLs != "" {
		cfg.NATS.URLs = strings.Split(natsURLs, ",")
	}
	log, err := checked(cfg, check, lf, stderr)
	if log == nil {
		return err
	}
	srv, err := control.New(cfg, control.Deps{Logger: log.With("component", "control")})
	if err != nil {
		return fmt.Errorf("start control: %w", err)
	}
	return srv.Run(ctx)
}

// controlDataDir is the data dir of `cdn control creds|nats-config`:
// --data, else the config's, else the default.
func controlDataDir(cfgPath, data string) (string, error) {
	if data != "" {
		return data, nil
	}
	cfg := control.DefaultConfig()
	if cfgPath != "" {
		if err := config.Load(cfgPath, &cfg); err != nil {
			return "", usageError{err}
		}
	}
	return cfg.DataDir, nil
}

// runControlCreds prints a new .creds file for a role, minted from the
// authority in control's data dir (created there if there is none yet,
// so a network can be provisioned before control first starts).
func runControlCreds(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("control creds", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfgPath, data, role, name, out string
	fs.StringVar(&cfgPath, "config", "", "control config file (YAML): its data_dir holds the authority")
	fs.StringVar(&data, "data", "", "control's data directory (overrides the config)")
	fs.StringVar(&role, "role", "", "edge, geodns, control or operator")
	fs.StringVar(&name, "name", "", "the edge's name (role edge)")
	fs.StringVar(&out, "out", "", "write the creds to this file (mode 0600) instead of standard output")
	if err := parse(fs, args); err != nil {
		return err
	}
	if role == "" {
		return usageError{errors.New("--role is required: edge, geodns, control or operator")}
	}
	if err := natsauth.CheckName(natsauth.Role(role), name); err != nil {
		return usageError{err}
	}
	dir, err := controlDataDir(cfgPath, data)
	if err != nil {
		return err
	}
	auth, err := natsauth.Open(filepath.Join(dir, control.AuthDir))
	if err != nil {
		return err
	}
	creds, err := auth.Creds(natsauth.Role(role), name, natsauth.CredsOptions{})
	if err != nil {
		return err
	}
	if out != "" {
		// Provisioning writes into a fresh tree (/etc/cdn/creds/...).
		if err := os.MkdirAll(filepath.Dir(out), 0o700); err != nil {
			return fmt.Errorf("write creds: %w", err)
		}
		return natsauth.WriteCreds(out, creds)
	}
	_, err = stdout.Write(creds)
	return err
}

// runControlNATSConfig prints the nats-server configuration block that
// makes an external NATS server (each node of a cluster) trust the
// authority in control's data dir.
func runControlNATSConfig(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("control nats-config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfgPath, data, resolverDir string
	fs.StringVar(&cfgPath, "config", "", "control config file (YAML): its data_dir holds the authority")
	fs.StringVar(&data, "data", "", "control's data directory (overrides the config)")
	fs.StringVar(&resolverDir, "resolver-dir", "/var/lib/nats/accounts", "where each NATS server keeps account JWTs")
	if err := parse(fs, args); err != nil {
		return err
	}
	dir, err := controlDataDir(cfgPath, data)
	if err != nil {
		return err
	}
	auth, err := control.OpenAuthority(dir)
	if err != nil {
		return err
	}
	text, err := auth.ServerConfig(resolverDir)
	if err != nil {
		return err
	}
	_, err = io.WriteString(stdout, text)
	return err
}
