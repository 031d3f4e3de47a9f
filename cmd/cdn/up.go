package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/selfcdn/cdn/control"
	"github.com/selfcdn/cdn/edge"
	"github.com/selfcdn/cdn/edge/certs"
	"github.com/selfcdn/cdn/geodns"
	"github.com/selfcdn/cdn/internal/apiclient"
	"github.com/selfcdn/cdn/internal/atomicfile"
	"github.com/selfcdn/cdn/internal/demosite"
	"github.com/selfcdn/cdn/internal/metrics"
	"github.com/selfcdn/cdn/internal/natsauth"
	"github.com/selfcdn/cdn/origin/static"
)

// upInfo is DATA/up.json: every address `cdn up` listens on, for scripts.
type upInfo struct {
	Origin string `json:"origin"`
	// Control is the control API's base URL, AdminToken its bootstrap
	// admin token, NATS the URL edges follow.
	Control    string `json:"control"`
	AdminToken string `json:"admin_token"`
	NATS       string `json:"nats"`
	// GeoDNS is the DNS server's host:port (UDP and TCP).
	GeoDNS string `json:"geodns"`
	// GeoDNSNATSCreds is the NATS creds file geodns connects with
	// (read-only); OperatorCreds the operator's, for the `nats` CLI.
	GeoDNSNATSCreds string   `json:"geodns_nats_creds"`
	OperatorCreds   string   `json:"operator_creds"`
	Site            upSite   `json:"site"`
	Edges           []upEdge `json:"edges"`
	// CACert is the development CA's certificate: the edges' HTTPS
	// certificates chain to it (curl --cacert).
	CACert string `json:"ca_cert"`
	Data   string `json:"data"`
	PID    int    `json:"pid"`
	// Dashboard is a one-time sign-in link to the operator pages, for
	// the admin (usable once, within a day).
	Dashboard string `json:"dashboard"`
}

type upSite struct {
	Name  string   `json:"name"`
	Hosts []string `json:"hosts"`
}

type upEdge struct {
	Name   string `json:"name"`
	Region string `json:"region"`
	HTTP   string `json:"http"`
	// HTTPS is the base URL of HTTP/1.1, HTTP/2 (TCP) and HTTP/3 (UDP).
	HTTPS string `json:"https"`
	Admin string `json:"admin"`
	// NATSCreds is the creds file the edge connects to NATS with: it may
	// write only its own keys.
	NATSCreds string `json:"nats_creds"`
}

// upEdgeSpec is one edge `cdn up` starts.
type upEdgeSpec struct {
	name, region, ip string
	lat, lon         float64
}

// upEdges are the first edge of each region `cdn up` starts, each on its
// own loopback address, as they would be on their own hosts.
var upEdges = []upEdgeSpec{
	{"edge-a", "local-a", "127.0.0.2", 50.1, 8.7},   // Frankfurt
	{"edge-b", "local-b", "127.0.0.3", 40.7, -74.0}, // New York
	{"edge-c", "local-c", "127.0.0.4", 1.35, 103.8}, // Singapore
}

// upEdgeSet is perRegion edges in each region: edge-a, edge-a2, ...
// on 127.0.0.2, 127.0.1.2, ..., so a region's edges share the cache
// tier (edge/tier) and each key has one home among them.
func upEdgeSet(perRegion int) []upEdgeSpec {
	var out []upEdgeSpec
	for _, first := range upEdges {
		host := first.ip[strings.LastIndexByte(first.ip, '.')+1:]
		for i := range perRegion {
			e := first
			if i > 0 {
				e.name = fmt.Sprintf("%s%d", first.name, i+1)
				e.ip = fmt.Sprintf("127.0.%d.%s", i, host)
			}
			out = append(out, e)
		}
	}
	return out
}

var demoHosts = []string{"demo.cdn.test", "*"}

// upNetworks place documentation address ranges (as EDNS Client Subnets)
// near each edge, so `dig +subnet=...` shows GeoDNS at work without a
// geo database; the resolver's own loopback address is New York's.
var upNetworks = []geodns.NetworkConfig{
	{CIDR: "192.0.2.0/24", Region: "local-a"},
	{CIDR: "127.0.0.0/8", Region: "local-b"},
	{CIDR: "198.51.100.0/24", Region: "local-c"},
}

// upGeoDNS is the GeoDNS config of `cdn up`: the zone cdn.test, the demo
// site's hosts from control, the edges' health from control.
func upGeoDNS(natsURL, creds, mmdb string) geodns.Config {
	cfg := geodns.DefaultConfig()
	cfg.AdminListen = ""
	cfg.Zones = []geodns.ZoneConfig{{Name: "cdn.test", Records: []string{
		"@ SOA ns1 hostmaster 1 7200 3600 1209600 60",
		"@ NS ns1",
		"ns1 A 127.0.0.1",
	}}}
	cfg.Control = &geodns.ControlConfig{NATS: natsURL, Creds: creds}
	cfg.Geo = geodns.GeoConfig{MMDB: mmdb, Networks: upNetworks}
	cfg.Answer.TTL = 5 * time.Second
	cfg.QueryLogSample = 1
	return cfg
}

func runUp(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		data, originAddr, edgePort, adminPort string
		controlAddr, natsAddr, dnsAddr, mmdb  string
		httpsPort                             string
		accessLog                             bool
		perRegion                             int
		lf                                    logFlags
	)
	fs.StringVar(&data, "data", ".data", "data directory: demo site, caches, up.json")
	fs.StringVar(&originAddr, "origin-listen", "127.0.0.1:8700", "origin address")
	fs.StringVar(&controlAddr, "control-listen", "127.0.0.1:8800", "control API address")
	fs.StringVar(&natsAddr, "nats-listen", "127.0.0.1:4222", "embedded NATS address (port 0 picks a free one)")
	fs.StringVar(&edgePort, "edge-port", "8080", "HTTP port of every edge (0 picks free ports)")
	fs.StringVar(&httpsPort, "https-port", "8443", "HTTPS port of every edge, TCP and UDP (0 picks free ports)")
	fs.StringVar(&adminPort, "admin-port", "9090", "admin port of every edge (0 picks free ports)")
	fs.StringVar(&dnsAddr, "geodns-listen", "127.0.0.1:8553", "GeoDNS address, UDP and TCP (port 0 picks a free one)")
	fs.StringVar(&mmdb, "mmdb", "", "MaxMind-format City database for GeoDNS (default: documentation ranges only)")
	fs.BoolVar(&accessLog, "access-log", false, "log every request")
	fs.IntVar(&perRegion, "edges-per-region", 1, "edges in each of the three regions (1-50); a region's edges share one cache tier")
	lf.register(fs, "text")
	if err := parse(fs, args); err != nil {
		return err
	}
	if perRegion < 1 || perRegion > 50 {
		return usageError{fmt.Errorf("--edges-per-region: want 1-50, got %d", perRegion)}
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

	controlLn, err := listen(controlAddr)
	if err != nil {
		return err
	}
	if natsAddr, err = pickPort(natsAddr); err != nil {
		return err
	}
	ccfg := control.DefaultConfig()
	ccfg.Listen, ccfg.DataDir, ccfg.NATS.Listen = controlLn.Addr().String(), filepath.Join(data, "control"), natsAddr
	csrv, err := control.New(ccfg, control.Deps{Logger: log.With("component", "control")})
	if err != nil {
		return fmt.Errorf("start control: %w", err)
	}
	info.Control, info.NATS = "http://"+controlLn.Addr().String(), "nats://"+natsAddr
	dnsPC, dnsLn, err := geodns.Listen(dnsAddr)
	if err != nil {
		for _, l := range listeners {
			l.Close()
		}
		return fmt.Errorf("geodns: %w", err)
	}
	info.GeoDNS = dnsLn.Addr().String()
	// Every part connects to NATS with creds of its own role, minted
	// from the authority control keeps (and creates now, if new).
	mint, err := upCreds(ccfg.DataDir, filepath.Join(data, "creds"))
	if err != nil {
		dnsPC.Close()
		dnsLn.Close()
		return err
	}
	info.OperatorCreds = filepath.Join(ccfg.DataDir, control.AuthDir, control.OperatorCredsFile)
	if info.GeoDNSNATSCreds, err = mint(natsauth.RoleGeoDNS, ""); err != nil {
		dnsPC.Close()
		dnsLn.Close()
		return err
	}
	gsrv, err := geodns.New(upGeoDNS(info.NATS, info.GeoDNSNATSCreds, mmdb), geodns.Deps{Logger: log.With("component", "geodns")})
	if err != nil {
		dnsPC.Close()
		dnsLn.Close()
		return fmt.Errorf("start geodns: %w", err)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return osrv.Serve(gctx, originLn) })
	g.Go(func() error { return csrv.Serve(gctx, controlLn) })
	g.Go(func() error { return gsrv.Serve(gctx, dnsPC, dnsLn, nil) })
	// The demo site goes in through the API, as an operator's would.
	if info.AdminToken, err = demoSiteViaControl(gctx, info, ccfg.DataDir); err != nil {
		for _, l := range listeners[2:] { // the edges' (origin and control close their own)
			l.Close()
		}
		cancel()
		return errors.Join(err, g.Wait())
	}
	// One development CA for every edge, made before they start, so the
	// one ca.pem verifies them all.
	caDir := filepath.Join(data, "dev-ca")
	if _, err := certs.OpenDevCA(caDir); err != nil {
		return err
	}
	info.CACert = filepath.Join(caDir, certs.CACertFile)
	for _, e := range upEdgeSet(perRegion) {
		ln, err := listen(net.JoinHostPort(e.ip, edgePort))
		if err != nil {
			return err
		}
		admin, err := listen(net.JoinHostPort(e.ip, adminPort))
		if err != nil {
			return err
		}
		tln, pc, err := edge.ListenHTTPS(net.JoinHostPort(e.ip, httpsPort), true)
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
		cfg.TLS.Listen, cfg.TLS.DevCA = tln.Addr().String(), caDir
		creds, err := mint(natsauth.RoleEdge, e.name)
		if err != nil {
			return err
		}
		cfg.Control = &edge.ControlConfig{NATS: info.NATS, Creds: creds, Lat: e.lat, Lon: e.lon, Heartbeat: time.Second}
		srv, err := edge.New(cfg, edge.Deps{Logger: log.With("component", "edge", "edge", e.name)})
		if err != nil {
			return fmt.Errorf("start %s: %w", e.name, err)
		}
		g.Go(func() error {
			return srv.ServeListeners(gctx, edge.Listeners{HTTP: ln, Admin: admin, HTTPS: tln, QUIC: pc})
		})
		info.Edges = append(info.Edges, upEdge{Name: e.name, Region: e.region,
			HTTP: "http://" + ln.Addr().String(), HTTPS: "https://" + tln.Addr().String(), Admin: "http://" + admin.Addr().String(),
			NATSCreds: creds})
	}
	// up.json says the CDN is up: only once control lists every edge, so a
	// `cdn push --wait` that reads it waits for all of them.
	if err := waitRegistered(gctx, info); err != nil {
		cancel()
		return errors.Join(err, g.Wait())
	}
	if info.Dashboard, err = dashboardLink(gctx, info); err != nil {
		log.Warn("no dashboard sign-in link", "err", err)
	}
	if err := writeJSON(filepath.Join(data, "up.json"), info); err != nil {
		return err
	}
	printTour(stderr, info)
	return g.Wait()
}

// upCreds opens control's NATS authority and returns a function that
// writes a role's creds into dir (once: a restart reuses them, so the
// authority does not collect a user per start) and returns the path.
func upCreds(controlData, dir string) (func(natsauth.Role, string) (string, error), error) {
	auth, err := control.OpenAuthority(controlData)
	if err != nil {
		return nil, fmt.Errorf("nats authority: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creds dir: %w", err)
	}
	return func(role natsauth.Role, name string) (string, error) {
		file := string(role)
		if name != "" {
			file = name
		}
		path := filepath.Join(dir, file+".creds")
		if _, err := os.Stat(path); err == nil {
			return path, nil
		}
		creds, err := auth.Creds(role, name, natsauth.CredsOptions{})
		if err != nil {
			return "", err
		}
		return path, natsauth.WriteCreds(path, creds)
	}, nil
}

// waitRegistered waits (up to 30 s) until control lists every edge of
// info as registered.
func waitRegistered(ctx context.Context, info upInfo) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		missing, err := unregistered(ctx, info)
		if err == nil && len(missing) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("edges not registered with control after 30s: %v (%v)", missing, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// unregistered lists the edges of info that control does not list yet.
func unregistered(ctx context.Context, info upInfo) ([]string, error) {
	var body struct {
		Edges []struct{ Name string } `json:"edges"`
	}
	c := apiclient.Client{BaseURL: info.Control, Token: info.AdminToken}
	if err := c.Do(ctx, apiclient.Request{Path: "/v1/edges"}, &body); err != nil {
		return nil, err
	}
	registered := map[string]bool{}
	for _, e := range body.Edges {
		registered[e.Name] = true
	}
	var missing []string
	for _, e := range info.Edges {
		if !registered[e.Name] {
			missing = append(missing, e.Name)
		}
	}
	return missing, nil
}

// writeJSON writes v to path atomically, so a script polling for the file
// never reads half of it.
func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(path, append(b, '\n'), 0o644)
}

// pickPort turns port 0 in addr into a free port: the embedded NATS server
// takes an address, not a listener.
func pickPort(addr string) (string, error) {
	if _, port, err := net.SplitHostPort(addr); err != nil || port != "0" {
		return addr, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("listen: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// demoSiteViaControl waits for control, then puts the demo site in through
// its API with the bootstrap admin token, which it returns.
func demoSiteViaControl(ctx context.Context, info upInfo, controlData string) (string, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := http.Get(info.Control + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return "", fmt.Errorf("control at %s not ready: %v", info.Control, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	b, err := os.ReadFile(filepath.Join(controlData, control.TokenFile))
	if err != nil {
		return "", fmt.Errorf("bootstrap token: %w", err)
	}
	token := strings.TrimSpace(string(b))
	body, _ := json.Marshal(map[string]any{"name": info.Site.Name, "hosts": info.Site.Hosts, "origin": info.Origin, "tls": "dev"})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPut, info.Control+"/v1/sites/"+info.Site.Name, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("put the demo site: %w", err)
	}
	msg, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return "", fmt.Errorf("put the demo site: %s: %s", res.Status, msg)
	}
	return token, nil
}

func printTour(w io.Writer, info upInfo) {
	var b strings.Builder
	fmt.Fprintf(&b, "\nThe CDN is up (Ctrl-C stops it). Addresses are in %s.\n\n", filepath.Join(info.Data, "up.json"))
	fmt.Fprintf(&b, "  control  %s  (NATS %s)\n", info.Control, info.NATS)
	fmt.Fprintf(&b, "  geodns   %s  (UDP and TCP, zone cdn.test)\n", info.GeoDNS)
	fmt.Fprintf(&b, "  origin   %s  (serving %s)\n", info.Origin, filepath.Join(info.Data, "site"))
	for _, e := range info.Edges {
		fmt.Fprintf(&b, "  %-8s %s  region %s, metrics %s/metrics\n", e.Name, e.HTTP, e.Region, e.Admin)
	}
	e := info.Edges[0]
	fmt.Fprintf(&b, "\nTry it (the second request is a cache hit):\n\n")
	fmt.Fprintf(&b, "  curl -si -H 'Host: %s' %s/ | grep -iE '^(HTTP|cache-status|age)'\n", info.Site.Hosts[0], e.HTTP)
	fmt.Fprintf(&b, "  curl -si -H 'Host: %s' %s/ | grep -iE '^(HTTP|cache-status|age)'\n\n", info.Site.Hosts[0], e.HTTP)
	u, _ := url.Parse(e.HTTPS)
	fmt.Fprintf(&b, "Over HTTPS (HTTP/2; HTTP/3 on the same UDP port), trusting the development CA:\n\n")
	fmt.Fprintf(&b, "  curl -si --cacert %s --resolve %s:%s:%s https://%s:%s/ | grep -iE '^(HTTP|cache-status|alt-svc)'\n\n",
		info.CACert, info.Site.Hosts[0], u.Port(), u.Hostname(), info.Site.Hosts[0], u.Port())
	host, port, _ := net.SplitHostPort(info.GeoDNS)
	fmt.Fprintf(&b, "GeoDNS answers %s with the nearest healthy edge (by EDNS Client Subnet, else your address):\n\n", info.Site.Hosts[0])
	fmt.Fprintf(&b, "  dig @%s -p %s %s +short                         # from here: %s\n", host, port, info.Site.Hosts[0], info.Edges[1].Name)
	fmt.Fprintf(&b, "  dig @%s -p %s %s +short +subnet=192.0.2.0/24     # a client near %s\n", host, port, info.Site.Hosts[0], info.Edges[0].Name)
	fmt.Fprintf(&b, "  dig @%s -p %s %s +short +subnet=198.51.100.0/24  # a client near %s\n\n", host, port, info.Site.Hosts[0], info.Edges[2].Name)
	if info.Dashboard != "" {
		fmt.Fprintf(&b, "The operator dashboard (this sign-in link works once):\n\n  %s\n\n", info.Dashboard)
	}
	fmt.Fprintf(&b, "The network, from control:\n\n")
	fmt.Fprintf(&b, "  CDN_CONTROL_URL=%s CDN_TOKEN=$(jq -r .admin_token %s) bin/cdn status\n\n", info.Control, filepath.Join(info.Data, "up.json"))
	io.WriteString(w, b.String())
}

// dashboardLink asks control for a one-time dashboard sign-in link for
// the admin token.
func dashboardLink(ctx context.Context, info upInfo) (string, error) {
	var body struct {
		Path string `json:"path"`
	}
	c := apiclient.Client{BaseURL: info.Control, Token: info.AdminToken}
	if err := c.Do(ctx, apiclient.Request{Method: http.MethodPost, Path: "/dashboard/links"}, &body); err != nil {
		return "", err
	}
	return info.Control + body.Path, nil
}
