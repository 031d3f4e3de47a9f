package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sync/errgroup"

	"github.com/selfcdn/cdn/edge"
	"github.com/selfcdn/cdn/internal/demosite"
	"github.com/selfcdn/cdn/internal/metrics"
	"github.com/selfcdn/cdn/origin/static"
)

// upInfo is DATA/up.json: every address `cdn up` listens on, for scripts.
type upInfo struct {
	Origin string   `json:"origin"`
	Site   upSite   `json:"site"`
	Edges  []upEdge `json:"edges"`
	Data   string   `json:"data"`
	PID    int      `json:"pid"`
}

type upSite struct {
	Name  string   `json:"name"`
	Hosts []string `json:"hosts"`
}

type upEdge struct {
	Name   string `json:"name"`
	Region string `json:"region"`
	HTTP   string `json:"http"`
	Admin  string `json:"admin"`
}

// upEdges are the edges `cdn up` starts: one per region, each on its own
// loopback address, as they would be on their own hosts.
var upEdges = []struct{ name, region, ip string }{
	{"edge-a", "local-a", "127.0.0.2"},
	{"edge-b", "local-b", "127.0.0.3"},
	{"edge-c", "local-c", "127.0.0.4"},
}

var demoHosts = []string{"demo.cdn.test", "*"}

func runUp(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		data, originAddr, edgePort, adminPort string
		accessLog                             bool
		lf                                    logFlags
	)
	fs.StringVar(&data, "data", ".data", "data directory: demo site, caches, up.json")
	fs.StringVar(&originAddr, "origin-listen", "127.0.0.1:8700", "origin address")
	fs.StringVar(&edgePort, "edge-port", "8080", "HTTP port of every edge (0 picks free ports)")
	fs.StringVar(&adminPort, "admin-port", "9090", "admin port of every edge (0 picks free ports)")
	fs.BoolVar(&accessLog, "access-log", false, "log every request")
	lf.register(fs, "text")
	if err := parse(fs, args); err != nil {
		return err
	}
	log, err := lf.logger(stderr)
	if err != nil {
		return err
	}
	data, err = filepath.Abs(data)
	if err != nil {
		return err
	}
	siteDir := filepath.Join(data, "site")
	if err := os.MkdirAll(siteDir, 0o755); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	if err := demosite.Install(siteDir); err != nil {
		return fmt.Errorf("install demo site: %w", err)
	}

	// Bind every socket first: up.json must list real addresses, and a
	// port in use should fail before anything starts.
	var listeners []net.Listener
	listen := func(addr string) (net.Listener, error) {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			for _, l := range listeners {
				l.Close()
			}
			return nil, fmt.Errorf("listen: %w", err)
		}
		listeners = append(listeners, ln)
		return ln, nil
	}
	originLn, err := listen(originAddr)
	if err != nil {
		return err
	}
	info := upInfo{
		Origin: "http://" + originLn.Addr().String(),
		Site:   upSite{Name: "demo", Hosts: demoHosts},
		Data:   data,
		PID:    os.Getpid(),
	}
	ocfg := static.DefaultConfig()
	ocfg.Dir, ocfg.Listen = siteDir, originLn.Addr().String()
	osrv, err := static.New(ocfg, static.Deps{Logger: log, Metrics: metrics.NewRegistry()})
	if err != nil {
		return fmt.Errorf("start origin: %w", err)
	}
	defer osrv.Close()

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return osrv.Serve(gctx, originLn) })
	for _, e := range upEdges {
		ln, err := listen(net.JoinHostPort(e.ip, edgePort))
		if err != nil {
			return err
		}
		admin, err := listen(net.JoinHostPort(e.ip, adminPort))
		if err != nil {
			return err
		}
		cfg := edge.DefaultConfig()
		cfg.Name, cfg.Region = e.name, e.region
		cfg.Listen, cfg.AdminListen = ln.Addr().String(), admin.Addr().String()
		cfg.Cache.Memory = 64 << 20
		cfg.Cache.Dir = filepath.Join(data, "edges", e.name)
		cfg.Cache.Disk = 1 << 30 // a demo: 1 GiB of disk per edge
		cfg.AccessLog = accessLog
		cfg.Sites = []edge.SiteConfig{{Name: "demo", Hosts: demoHosts, Origin: info.Origin}}
		srv, err := edge.New(cfg, edge.Deps{Logger: log.With("component", "edge", "edge", e.name)})
		if err != nil {
			return fmt.Errorf("start %s: %w", e.name, err)
		}
		g.Go(func() error { return srv.Serve(gctx, ln, admin) })
		info.Edges = append(info.Edges, upEdge{Name: e.name, Region: e.region,
			HTTP: "http://" + ln.Addr().String(), Admin: "http://" + admin.Addr().String()})
	}
	if err := writeJSON(filepath.Join(data, "up.json"), info); err != nil {
		return err
	}
	printTour(stderr, info)
	return g.Wait()
}

// writeJSON writes v to path atomically, so a script polling for the file
// never reads half of it.
func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return os.Rename(tmp, path)
}

func printTour(w io.Writer, info upInfo) {
	var b strings.Builder
	fmt.Fprintf(&b, "\nThe CDN is up (Ctrl-C stops it). Addresses are in %s.\n\n", filepath.Join(info.Data, "up.json"))
	fmt.Fprintf(&b, "  origin   %s  (serving %s)\n", info.Origin, filepath.Join(info.Data, "site"))
	for _, e := range info.Edges {
		fmt.Fprintf(&b, "  %-8s %s  region %s, metrics %s/metrics\n", e.Name, e.HTTP, e.Region, e.Admin)
	}
	e := info.Edges[0]
	fmt.Fprintf(&b, "\nTry it (the second request is a cache hit):\n\n")
	fmt.Fprintf(&b, "  curl -si -H 'Host: %s' %s/ | grep -iE '^(HTTP|cache-status|age)'\n", info.Site.Hosts[0], e.HTTP)
	fmt.Fprintf(&b, "  curl -si -H 'Host: %s' %s/ | grep -iE '^(HTTP|cache-status|age)'\n\n", info.Site.Hosts[0], e.HTTP)
	io.WriteString(w, b.String())
}
