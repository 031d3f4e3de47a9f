package regions

import (
	"context"
	"crypto/x509"
	"fmt"
	"net/http"

	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// row is one line of the table the suite prints at the end.
type row struct{ fault, clients, metrics string }

// TestRegions brings the network up across three regions, checks that
// every region's clients are served by their own region over h1, h2 and
// h3, then injects each fault in turn and records what clients saw and
// what the metrics told.
func TestRegions(t *testing.T) {
	c := newCluster(t)
	var table []row
	defer func() {
		printTable(t, table)
		fmt.Printf("WAN: %d packets carried, %d lost (%.1f%% of inter-region ones), %d dropped by the cut\n",
			c.w.carried.Load(), c.w.lost.Load(), 100*lossRate, c.w.cutDrops.Load())
	}()
	report := func(fault, clients, metrics string) { table = append(table, row{fault, clients, metrics}) }

	for _, f := range []struct {
		name string
		run  func(*testing.T, *cluster, reporter)
	}{
		{"steady", steady},
		{"edge killed", edgeKilled},
		{"origin killed", originKilled},
		{"control killed", controlKilled},
		{"nats node killed", natsKilled},
		{"region cut off", regionCut},
		{"bad input", badInput},
		{"everything restarted", restartAll},
	} {
		ok := t.Run(f.name, func(t *testing.T) { c.t = t; f.run(t, c, report) })
		c.t = t
		if !ok {
			break // the faults build on each other's recovery
		}
	}
}

// newCluster makes the WAN and starts the whole network on it.
func newCluster(t *testing.T) *cluster {
	dir, err := os.MkdirTemp("", "cdn-regions-data-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	w, err := newWAN(fmt.Sprintf("%s%d", nsPrefix, os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.close) // after every process's cleanup (they run first)
	c := &cluster{owner: t, t: t, w: w, dir: dir, procs: map[string]*proc{}}
	start := time.Now()
	c.provision()
	c.startAll()
	t.Logf("network up in %v", time.Since(start).Round(time.Millisecond))
	b, err := os.ReadFile(c.path("control-eu", "admin-token"))
	if err != nil {
		t.Fatal(err)
	}
	c.token = strings.TrimSpace(string(b))
	pem, err := os.ReadFile(c.path("dev-ca", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	c.roots = x509.NewCertPool()
	c.roots.AppendCertsFromPEM(pem)
	origin := fmt.Sprintf("http://%s:8700", addr(regions[originRegion], hostOrigin))
	for _, s := range []map[string]any{
		{"name": "www", "hosts": []string{"www.cdn.test"}, "origin": origin, "tls": "dev"},
		{"name": "docs", "hosts": []string{"docs.cdn.test"}, "push_only": true, "tls": "dev"},
	} {
		if err := c.putSite(s); err != nil {
			t.Fatalf("put site %s: %v", s["name"], err)
		}
	}
	return c
}

// steady: each region's client resolves to its own region's edges and
// fetches over h1, h2 and h3.
func steady(t *testing.T, c *cluster, report reporter) {
	ctx := t.Context()
	// Edges count once control judged them healthy and GeoDNS heard.
	ready := waitFor(t, "every GeoDNS answering each region with its own edges", 30*time.Second, func() bool {
		for _, s := range regions {
			for _, from := range regions {
				for _, a := range c.answersVia(t, s, from) {
					if r, _ := regionOf(a); r != from {
						return false
					}
				}
			}
		}
		return true
	})
	t.Logf("GeoDNS answers settled %v after the sites were created", ready.Round(100*time.Millisecond))
	var lines []string
	for _, r := range regions {
		cl := c.client(r, false)
		for _, proto := range protos {
			var res result
			var err error
			took := waitFor(t, fmt.Sprintf("%s client over %s", r.name, proto), 30*time.Second, func() bool {
				res, err = cl.fetch(ctx, proto, "www.cdn.test", "/index.html")
				return err == nil && res.status == http.StatusOK
			})
			got, _ := regionOf(res.edge)
			if got != r {
				t.Errorf("%s client over %s served by %s (%s), want its own region", r.name, proto, res.edge, got.name)
			}
			if res.body != "home\n" {
				t.Errorf("%s client over %s: body %q", r.name, proto, res.body)
			}
			lines = append(lines, fmt.Sprintf("%s %s→%s %v", r.name, proto, res.edge, took.Round(time.Millisecond)))
		}
	}
	page := c.scrape(regions[2], geodnsMetrics(regions[2]))
	report("none (steady state)", "every region served by its own edges over h1, h2, h3",
		fmt.Sprintf("geodns-ap ECS queries %g", metric(page, "cdn_geodns_client_subnet_queries_total")))
	t.Logf("first fetches: %s", strings.Join(lines, "; "))
	docChecks(t, c)
}

// waitFor polls cond every 100ms until it holds, failing t after limit;
// it returns how long it took.
func waitFor(t testing.TB, what string, limit time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Since(start)
}

func printTable(t *testing.T, rows []row) {
	var b strings.Builder
	fmt.Fprintf(&b, "\n%-34s | %-70s | %s\n", "fault", "what clients saw", "what the metrics said")
	fmt.Fprintf(&b, "%s\n", strings.Repeat("-", 160))
	for _, r := range rows {
		fmt.Fprintf(&b, "%-34s | %-70s | %s\n", r.fault, r.clients, r.metrics)
	}
	t.Log(b.String())
	fmt.Print(b.String())
}

var _ = netip.Addr{}
var _ = filepath.Join
var _ context.Context
