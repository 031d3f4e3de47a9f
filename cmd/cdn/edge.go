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
		memory, disk                                      config.Size
		check, accessLog                                  bool
		lf                                                logFlags
	)
	fs.StringVar(&cfgPath, "config", "", "edge config file (YAML); see configs/")
	fs.StringVar(&originURL, "origin", "", "without --config: the origin every host goes to")
	fs.StringVar(&listen, "listen", "", "HTTP/1.1 + h2c address (overrides the config)")
	fs.StringVar(&admin, "admin", "", "metrics and health address (overrides the config)")
	fs.StringVar(&cacheDir, "cache-dir", "", "directory for cache files (overrides the config)")
	fs.Var(&memory, "memory", "memory cache size, e.g. 512MiB (overrides the config)")
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
	default:
		return usageError{errors.New("give --config FILE or --origin URL")}
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
