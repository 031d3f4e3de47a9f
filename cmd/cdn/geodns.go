package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/selfcdn/cdn/geodns"
	"github.com/selfcdn/cdn/internal/config"
)

func runGeoDNS(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("geodns", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		cfgPath, listen, admin, natsURL, mmdb string
		natsCreds                             string
		check                                 bool
		lf                                    logFlags
	)
	fs.StringVar(&cfgPath, "config", "", "geodns config file (YAML); see configs/ (required)")
	fs.StringVar(&listen, "listen", "", "DNS address, UDP and TCP (overrides the config)")
	fs.StringVar(&admin, "admin-listen", "", "metrics and readiness address (overrides the config)")
	fs.StringVar(&natsURL, "nats", "", "control's NATS URL (overrides control.nats in the config)")
	fs.StringVar(&natsCreds, "nats-creds", "", "NATS .creds file (cdn control creds --role geodns; overrides control.creds)")
	fs.StringVar(&mmdb, "mmdb", "", "MaxMind-format City database (overrides geo.mmdb)")
	fs.BoolVar(&check, "check-config", false, "validate the configuration and exit")
	lf.register(fs, "json")
	if err := parse(fs, args); err != nil {
		return err
	}
	if cfgPath == "" {
		return usageError{fmt.Errorf("--config is required: the zones to serve live there (see configs/local/geodns.yaml)")}
	}
	cfg := geodns.DefaultConfig()
	if err := config.DecodeFile(cfgPath, &cfg); err != nil {
		return usageError{err}
	}
	if listen != "" {
		cfg.Listen = listen
	}
	if admin != "" {
		cfg.AdminListen = admin
	}
	if natsURL != "" {
		if cfg.Control == nil {
			cfg.Control = &geodns.ControlConfig{}
		}
		cfg.Control.NATS = natsURL
	}
	if natsCreds != "" {
		if cfg.Control == nil {
			return usageError{fmt.Errorf("--nats-creds needs --nats (or control: in the config)")}
		}
		cfg.Control.Creds = natsCreds
	}
	if mmdb != "" {
		cfg.Geo.MMDB = mmdb
	}
	log, err := checked(cfg, check, lf, stderr)
	if log == nil {
		return err
	}
	srv, err := geodns.New(cfg, geodns.Deps{Logger: log.With("component", "geodns")})
	if err != nil {
		return usageError{fmt.Errorf("%s: %w", cfgPath, err)}
	}
	return srv.Run(ctx)
}
