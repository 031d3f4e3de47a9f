package regions

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/selfcdn/cdn/edge/certs"
	"github.com/selfcdn/cdn/internal/testwait"
)

// cluster is the whole network across the three regions, laid out as
// docs/deploy.md lays it out on three hosts: per region a NATS node, a
// GeoDNS server and two edges; control in eu and us; the origin in eu.
// The files and commands are the document's, with its host addresses.
type cluster struct {
	// owner is the test the processes live as long as; t the (sub)test
	// running now, which a failure fails.
	owner testing.TB
	t     testing.TB
	w     *wan
	dir   string
	token string // the bootstrap admin token
	roots *x509.CertPool

	mu    sync.Mutex // guards procs
	procs map[string]*proc
}

// Names of the processes.
func natsName(r region) string    { return "nats-" + r.name }
func controlName(r region) string { return "control-" + r.name }
func geodnsName(r region) string  { return "geodns-" + r.name }
func edgeName(r region, i int) string {
	return fmt.Sprintf("%s-%d", r.name, i)
}

var edgeHosts = []int{hostEdge1, hostEdge2}

// controlRegions run a control process; originRegion the origin.
var controlRegions = []region{regions[0], regions[1]}

const originRegion = 0

func (c *cluster) path(elem ...string) string {
	return filepath.Join(append([]string{c.dir}, elem...)...)
}

// natsURLs lists every node, r's own first.
func natsURLs(first region) []string {
	urls := []string{fmt.Sprintf("nats://%s:4222", addr(first, hostNATS))}
	for _, r := range regions {
		if r != first {
			urls = append(urls, fmt.Sprintf("nats://%s:4222", addr(r, hostNATS)))
		}
	}
	return urls
}

func controlURL(r region) string { return fmt.Sprintf("http://%s:8800", addr(r, hostControl)) }

// cdn runs a cdn command to completion in the root namespace (files
// only: creds, configs) and returns its standard output.
func (c *cluster) cdn(args ...string) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, cdnBin, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		c.t.Fatalf("cdn %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

func (c *cluster) write(path, text string) {
	c.t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		c.t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		c.t.Fatal(err)
	}
}

// start runs name's command in region r's namespace.
func (c *cluster) start(name string, r region, args ...string) *proc {
	c.t.Helper()
	p := startIn(c.owner, c.t, name, c.w.nsName(r, "dc"), args...)
	c.mu.Lock()
	c.procs[name] = p
	c.mu.Unlock()
	return p
}

func (c *cluster) proc(name string) *proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.procs[name]
}

// provision writes every file the processes read: the NATS authority
// (in control eu's data dir, copied to control us's), each node's
// config, each role's creds, the other configs, and the origin's site.
func (c *cluster) provision() {
	ctl := c.path("control-eu")
	for _, r := range regions {
		nodeDir := c.path(natsName(r))
		trust := c.cdn("control", "nats-config", "--data", ctl, "--resolver-dir", filepath.Join(nodeDir, "accounts"))
		c.write(filepath.Join(nodeDir, "auth.conf"), trust)
		c.write(filepath.Join(nodeDir, "nats.conf"), natsConf(r, nodeDir, "cdn"))
	}
	if err := os.MkdirAll(c.path("control-us"), 0o700); err != nil {
		c.t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", filepath.Join(ctl, "nats-auth"), c.path("control-us", "nats-auth")).CombinedOutput(); err != nil {
		c.t.Fatalf("copy the authority: %v: %s", err, out)
	}
	for _, r := range controlRegions {
		c.write(c.path(controlName(r)+".yaml"), controlConf(r, c.path(controlName(r))))
	}
	if err := os.MkdirAll(c.path("creds"), 0o700); err != nil {
		c.t.Fatal(err)
	}
	c.cdn("control", "creds", "--data", ctl, "--role", "geodns", "--out", c.path("creds", "geodns.creds"))
	for _, r := range regions {
		c.write(c.path(geodnsName(r)+".yaml"), geodnsConf(r, c.path("creds", "geodns.creds")))
		for i, h := range edgeHosts {
			name := edgeName(r, i+1)
			creds := c.path("creds", name+".creds")
			c.cdn("control", "creds", "--data", ctl, "--role", "edge", "--name", name, "--out", creds)
			c.write(c.path(name+".yaml"), edgeConf(r, name, h, creds, c.path(name), c.path("dev-ca")))
		}
	}
	// One development CA for every edge (the edges' HTTPS, for the
	// clients to trust); production sites use ACME instead.
	if _, err := certs.OpenDevCA(c.path("dev-ca")); err != nil {
		c.t.Fatal(err)
	}
	c.write(c.path("site", "_headers"), siteHeaders)
	c.write(c.path("site", "index.html"), "home\n")
}

// siteHeaders makes everything fresh for an hour (purges, not expiry,
// change what edges serve), and /sie/ fresh for a second and usable
// stale for ten minutes when the origin fails (RFC 5861); the later
// rule's header replaces the earlier's.
const siteHeaders = `/*
  Cache-Control: public, max-age=3600
/sie/*
  Cache-Control: public, max-age=1, stale-if-error=600
`

func natsConf(r region, dir, clusterName string) string {
	return natsConfAt(natsName(r), addr(r, hostNATS), dir, clusterName)
}

// natsConfAt is the configuration of a node named name on host, in the
// cluster clusterName, with routes to the three nodes.
func natsConfAt(name, host, dir, clusterName string) string {
	var routes []string
	for _, o := range regions {
		routes = append(routes, fmt.Sprintf("nats://%s:6222", addr(o, hostNATS)))
	}
	return fmt.Sprintf(`server_name: %s
listen: %s:4222
http: %s:8222
# Find a dead route or client (a cut WAN link drops packets, resets
# nothing) in about 15 s instead of the default 4 minutes.
ping_interval: "5s"
ping_max: 3
jetstream { store_dir: %q }
cluster {
  name: %s
  listen: %s:6222
  routes: [%s]
}
include "auth.conf"
`, name, host, host, filepath.Join(dir, "js"), clusterName, host, strings.Join(routes, ", "))
}

func controlConf(r region, data string) string {
	auth := filepath.Join(data, "nats-auth")
	return fmt.Sprintf(`listen: %s:8800
data_dir: %s
nats:
  urls: [%s]
  creds: %s
  system_creds: %s
  replicas: 3
health:
  interval: 1s
  timeout: 1s
  heartbeat_timeout: 4s
  fail_after: 2
  recover_after: 2
`, addr(r, hostControl), data, strings.Join(natsURLs(r), ", "), filepath.Join(auth, "control.creds"), filepath.Join(auth, "system.creds"))
}

func geodnsConf(r region, creds string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "listen: %s:53\nadmin_listen: %s:9153\n", addr(r, hostGeoDNS), addr(r, hostGeoDNS))
	fmt.Fprintf(&b, "zones:\n  - name: cdn.test\n    records:\n      - \"@ SOA ns1 hostmaster 1 7200 3600 1209600 60\"\n")
	for _, o := range regions {
		fmt.Fprintf(&b, "      - \"@ NS ns-%s\"\n      - \"ns-%s A %s\"\n", o.name, o.name, addr(o, hostGeoDNS))
	}
	fmt.Fprintf(&b, "answer:\n  records: 2\n  ttl: 2s\ngeo:\n  networks:\n")
	for _, o := range regions {
		fmt.Fprintf(&b, "    - {cidr: 10.77.%d.0/24, region: %s}\n    - {cidr: 10.78.%d.0/24, region: %s}\n", o.n, o.name, o.n, o.name)
	}
	fmt.Fprintf(&b, "control:\n  nats: %s\n  creds: %s\n", strings.Join(natsURLs(r), ","), creds)
	fmt.Fprintf(&b, "rate_limit:\n  exempt: [10.0.0.0/8]\n")
	return b.String()
}

func edgeConf(r region, name string, host int, creds, cache, devCA string) string {
	a := addr(r, host)
	return fmt.Sprintf(`name: %s
region: %s
listen: %s:80
admin_listen: %s:9090
access_log: false
tls:
  listen: %s:443
  dev_ca: %s
cache:
  memory: 32MiB
  dir: %s
  disk: 256MiB
control:
  nats: %s
  creds: %s
  lat: %g
  lon: %g
  public_url: http://%s
  public_addrs: [%s]
  heartbeat: 1s
`, name, r.name, a, a, a, devCA, cache, strings.Join(natsURLs(r), ","), creds, r.lat, r.lon, a, a)
}

// startNATS starts region r's node; the nodes wait for each other, so
// all three start before any is waited for.
func (c *cluster) startNATS(r region) *proc {
	return c.start(natsName(r), r, "nats", "--config", c.path(natsName(r), "nats.conf"), "--log-format", "text")
}

func (c *cluster) startControl(r region) *proc {
	return c.start(controlName(r), r, "control", "--config", c.path(controlName(r)+".yaml"), "--log-format", "text")
}

func (c *cluster) startGeoDNS(r region) *proc {
	return c.start(geodnsName(r), r, "geodns", "--config", c.path(geodnsName(r)+".yaml"), "--log-format", "text")
}

func (c *cluster) startEdge(r region, i int) *proc {
	name := edgeName(r, i)
	return c.start(name, r, "edge", "--config", c.path(name+".yaml"), "--log-format", "text")
}

func (c *cluster) startOrigin() *proc {
	r := regions[originRegion]
	return c.start("origin", r, "origin", "--dir", c.path("site"), "--listen", addr(r, hostOrigin)+":8700", "--log-format", "text")
}

// startAll starts every process and waits until each is ready.
func (c *cluster) startAll() {
	c.t.Helper()
	for _, r := range regions {
		c.startNATS(r)
	}
	for _, r := range regions {
		c.waitHTTP(r, fmt.Sprintf("http://%s:8222/healthz", addr(r, hostNATS)), 60*time.Second)
	}
	c.startOrigin()
	for _, r := range controlRegions {
		c.startControl(r)
		c.waitHTTP(r, controlURL(r)+"/readyz", 60*time.Second)
	}
	for _, r := range regions {
		c.startGeoDNS(r)
		for i := range edgeHosts {
			c.startEdge(r, i+1)
		}
	}
	for _, r := range regions {
		c.waitHTTP(r, fmt.Sprintf("http://%s:9153/readyz", addr(r, hostGeoDNS)), 30*time.Second)
		for _, h := range edgeHosts {
			c.waitHTTP(r, fmt.Sprintf("http://%s:9090/readyz", addr(r, h)), 30*time.Second)
		}
	}
}

// httpIn is an HTTP client whose connections are made inside ns.
func httpIn(ns string, timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, address string) (conn net.Conn, err error) {
			err = inNS(ns, func() error {
				conn, err = (&net.Dialer{}).DialContext(ctx, network, address)
				return err
			})
			return conn, err
		},
	}}
}

// waitHTTP waits until a GET of url, made inside region r, answers 200.
func (c *cluster) waitHTTP(r region, url string, limit time.Duration) {
	c.t.Helper()
	hc := httpIn(c.w.nsName(r, "dc"), 2*time.Second)
	testwait.Within(c.t, url, limit, func() bool {
		res, err := hc.Get(url)
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	})
}

// client is a user in region r's client namespace (or, local, inside the
// region's own network), resolving through r's GeoDNS first.
func (c *cluster) client(r region, local bool) *client {
	ns, ecs := c.w.nsName(r, "cl"), netip.MustParsePrefix(fmt.Sprintf("10.78.%d.0/24", r.n))
	if local {
		ns, ecs = c.w.nsName(r, "dc"), netip.MustParsePrefix(fmt.Sprintf("10.77.%d.0/24", r.n))
	}
	servers := []string{addr(r, hostGeoDNS) + ":53"}
	for _, o := range regions {
		if o != r {
			servers = append(servers, addr(o, hostGeoDNS)+":53")
		}
	}
	return &client{ns: ns, ecs: ecs, dns: servers, roots: c.roots}
}
