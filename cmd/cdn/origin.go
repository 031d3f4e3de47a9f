package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/selfcdn/cdn/internal/config"
	"github.com/selfcdn/cdn/internal/metrics"
	"github.com/selfcdn/cdn/origin/static"
)

func runOrigin(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("origin", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		cfgPath, dir, listen, rules string
		check                       bool
		lf                          logFlags
	)
	fs.StringVar(&cfgPath, "config", "", "origin config file (YAML)")
	fs.StringVar(&dir, "dir", "", "site root to serve (overrides the config)")
	fs.StringVar(&listen, "listen", "", "address to serve on (overrides the config)")
	fs.StringVar(&rules, "rules", "", "_headers-style rules file (default DIR/_headers)")
	fs.BoolVar(&check, "check-config", false, "validate the configuration and exit")
	lf.register(fs, "json")
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg := static.DefaultConfig()
	if cfgPath != "" {
		if err := config.DecodeFile(cfgPath, &cfg); err != nil {
			return usageError{err}
		}
	}
	if dir != "" {
		cfg.Dir = dir
	}
	if listen != "" {
		cfg.Listen = listen
	}
	if rules != "" {
		cfg.RulesFile = rules
	}
	log, err := checked(cfg, check, lf, stderr)
	if log == nil {
		return err
	}
	srv, err := static.New(cfg, static.Deps{Logger: log, Metrics: metrics.NewRegistry()})
	if err != nil {
		return fmt.Errorf("start origin: %w", err)
	}
	defer srv.Close()
	return srv.Run(ctx)
}
