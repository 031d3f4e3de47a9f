package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/selfcdn/cdn/control"
	"github.com/selfcdn/cdn/internal/config"
)

func runControl(ctx context.Context, args []string, stderr io.Writer) error {
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
