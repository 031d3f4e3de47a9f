package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/selfcdn/cdn/edge"
	"github.com/selfcdn/cdn/internal/config"
)

func runEdge(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("edge", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		cfgPath, originURL, listen, admin, cacheDir, name string
		controlNATS, region, publicURL                    string
		lat, lon                                          float64
		memory, disk                                      config.Size
		natsCreds                                         string
		check, accessLog                                  bool
		lf                                                logFlags
	)
	fs.StringVar(&cfgPath, "config", "", "edge config file (YAML); see configs/")
	fs.StringVar(&originURL, "origin", "", "without --config: the origin every host goes to")
	fs.StringVar(&listen, "listen", "", "HTTP/1.1 + h2c address (overrides the config)")
	fs.StringVar(&admin, "admin", "", "metrics and health address (overrides the config)")
	fs.StringVar(&cacheDir, "cache-dir", "", "directory for cache files (overrides the config)")
	fs.Var(&memory, "memory", "memory cache size, e.g. 512MiB (overrides the config)")
	fs.StringVar(&controlNATS, "control", "", "control plane NATS URL: sites come from control (overrides the config)")
	fs.StringVar(&natsCreds, "nats-creds", "", "NATS .creds file of this edge (cdn control creds --role edge --name NAME; overrides the config)")
	fs.StringVar(&region, "region", "", "region of this edge, for GeoDNS (overrides the config)")
	fs.StringVar(&publicURL, "public-url", "", "base URL clients reach this edge at, registered with control (default http://LISTEN)")
	fs.Float64Var(&lat, "lat", 0, "latitude of this edge (with --control)")
	fs.Float64Var(&lon, "lon", 0, "longitude of this edge (with --control)")
	fs.Var(&disk, "disk", "disk cache size under --cache-dir, e.g. 20GiB; 0 turns it off (overrides the config)")
	fs.StringVar(&name, "name", "", "edge name in Via and Cache-Status (overrides the config)")
	fs.BoolVar(&accessLog, "access-log", true, "log every request (JSON)")
	fs.BoolVar(&check, "check-config", false, "validate the configuration and exit")
	lf.register(fs, "json")
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg := edge.DefaultConfig()
	switch {
	case cfgPath != "" && originURL != "":
		return usageError{errors.New("give --config or --origin, not both")}
	case cfgPath != "":
		if err := config.Load(cfgPath, &cfg); err != nil {
			return usageError{err}
		}
	case originURL != "":
		cfg.Sites = []edge.SiteConfig{{Name: "default", Hosts: []string{"*"}, Origin: originURL}}
	case controlNATS != "":
	default:
		return usageError{errors.New("give --config FILE, --origin URL or --control NATS_URL")}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if listen != "" {
		cfg.Listen = listen
	}
	if set["admin"] {
		cfg.AdminListen = admin
	}
	if cacheDir != "" {
		cfg.Cache.Dir = cacheDir
	}
	if memory > 0 {
		cfg.Cache.Memory = memory
	}
	if set["disk"] {
		cfg.Cache.Disk = disk
	}
	if name != "" {
		cfg.Name = name
	}
	if region != "" {
		cfg.Region = region
	}
	if controlNATS != "" {
		if cfg.Control == nil {
			cfg.Control = &edge.ControlConfig{}
		}
		cfg.Control.NATS = controlNATS
	}
	if natsCreds != "" {
		if cfg.Control == nil {
			return usageError{errors.New("--nats-creds needs --control (or control: in the config)")}
		}
		cfg.Control.Creds = natsCreds
	}
	if cfg.Control != nil && (set["lat"] || set["lon"]) {
		cfg.Control.Lat, cfg.Control.Lon = lat, lon
	}
	if cfg.Control != nil && publicURL != "" {
		cfg.Control.PublicURL = publicURL
	}
	if set["access-log"] || cfgPath == "" {
		cfg.AccessLog = accessLog
	}
	log, err := checked(cfg, check, lf, stderr)
	if log == nil {
		return err
	}
	srv, err := edge.New(cfg, edge.Deps{Logger: log.With("component", "edge", "edge", cfg.Name)})
	if err != nil {
		return fmt.Errorf("start edge: %w", err)
	}
	return srv.Run(ctx)
}
