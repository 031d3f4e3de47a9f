package regions

import (
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// reporter adds a row to the suite's table.
type reporter func(fault, clients, metrics string)

// edgeAddrs are every edge's address in the regions given.
func edgeAddrs(rs ...region) []netip.Addr {
	var out []netip.Addr
	for _, r := range rs {
		for _, h := range edgeHosts {
			out = append(out, netip.MustParseAddr(addr(r, h)))
		}
	}
	return out
}

// answersVia is what GeoDNS in server answers a client of region from.
func (c *cluster) answersVia(t testing.TB, server, from region) []netip.Addr {
	cl := c.client(from, false)
	cl.dns = []string{addr(server, hostGeoDNS) + ":53"}
	ans, err := cl.resolve(t.Context(), "www.cdn.test")
	if err != nil {
		t.Logf("ask %s from %s: %v", server.name, from.name, err)
		return nil
	}
	return ans.addrs
}

// kill sends SIGKILL to a process and waits until it is gone.
func (c *cluster) kill(name string) time.Time {
	p := c.proc(name)
	p.cmd.Process.Signal(syscall.SIGKILL)
	at := time.Now()
	p.kill()
	return at
}

// appliedEverywhere waits until every edge of rs reports (in its own
// metrics) having applied purge version v, and returns how long it took.
func (c *cluster) appliedEverywhere(t testing.TB, v uint64, limit time.Duration, rs ...region) time.Duration {
	t.Helper()
	return waitFor(t, fmt.Sprintf("purge %d applied by every edge of %d regions", v, len(rs)), limit, func() bool {
		for _, r := range rs {
			for _, h := range edgeHosts {
				if metric(c.scrape(r, edgeMetrics(r, h)), "cdn_edge_purge_applied_version") < float64(v) {
					return false
				}
			}
		}
		return true
	})
}

// edgeKilled: an edge killed with -9 leaves the DNS answers within the
// health period, and its clients, trying the next address, see no error.
func edgeKilled(t *testing.T, c *cluster, report reporter) {
	eu := regions[0]
	victim := netip.MustParseAddr(addr(eu, hostEdge1))
	w := watchClient(c.client(eu, false), "www.cdn.test", "/index.html")
	time.Sleep(time.Second) // some fetches before the fault
	killed := c.kill(edgeName(eu, 1))
	out := waitFor(t, "the killed edge out of every GeoDNS answer", 20*time.Second, func() bool {
		for _, s := range regions {
			if slices.Contains(c.answersVia(t, s, eu), victim) {
				return false
			}
		}
		return true
	})
	time.Sleep(2 * time.Second) // fetches with the answers settled
	n, failed, _, _ := summary(w.stop(), killed, notAddr(victim))
	if failed > 0 {
		t.Errorf("%d of %d fetches failed after the kill; want the client to fail over to the other edge", failed, n)
	}
	if out > 10*time.Second {
		t.Errorf("the killed edge left DNS answers after %v, want within the health period (heartbeat timeout 4s + checks)", out)
	}
	down := metric(c.scrape(eu, controlURL(eu)+"/metrics"), "cdn_control_edges", `health="down"`)
	dnsDown := metric(c.scrape(eu, geodnsMetrics(eu)), "cdn_geodns_edges", `state="down"`)
	if down != 1 || dnsDown != 1 {
		t.Errorf("control says %g edges down, geodns-eu %g; want 1 and 1", down, dnsDown)
	}
	report("edge eu-1 killed (-9)",
		fmt.Sprintf("%d fetches after the kill, %d failed (next address); out of all DNS answers in %v", n, failed, out.Round(100*time.Millisecond)),
		fmt.Sprintf("cdn_control_edges{health=down} %g, cdn_geodns_edges{state=down} %g", down, dnsDown))

	c.startEdge(eu, 1)
	back := waitFor(t, "the restarted edge back in DNS answers", 30*time.Second, func() bool {
		return slices.Contains(c.answersVia(t, eu, eu), victim)
	})
	t.Logf("eu-1 restarted and back in DNS answers after %v", back.Round(100*time.Millisecond))
}

// originKilled: with the origin gone, cached objects are served, stale
// ones under stale-if-error; only uncached ones fail.
func originKilled(t *testing.T, c *cluster, report reporter) {
	eu := regions[0]
	cl := c.client(eu, false)
	c.write(c.path("site", "sie", "a.txt"), "stale is fine\n")
	edges := edgeAddrs(eu)
	for _, e := range edges {
		for range 2 { // a miss, then a hit
			if res, err := cl.get(t.Context(), "h2", e, "www.cdn.test", "/sie/a.txt"); err != nil || res.status != 200 {
				t.Fatalf("warm %s: %v %v", e, res.status, err)
			}
		}
	}
	errorsBefore := c.originErrors(eu)
	c.kill("origin")
	time.Sleep(2500 * time.Millisecond) // past max-age=1, counted in whole seconds
	served, stale := 0, 0
	for _, e := range edges {
		for _, proto := range protos {
			res, err := cl.get(t.Context(), proto, e, "www.cdn.test", "/sie/a.txt")
			if err != nil || res.status != 200 || res.body != "stale is fine\n" {
				t.Errorf("%s via %s with the origin down: %d %q %v; want the stale copy", proto, e, res.status, res.body, err)
				continue
			}
			served++
			if cs := res.header.Get("Cache-Status"); strings.Contains(cs, "stale-if-error") {
				stale++
			} else {
				t.Logf("%s via %s: Cache-Status %q, Age %q", proto, e, cs, res.header.Get("Age"))
			}
		}
	}
	if stale != served {
		t.Errorf("%d of %d answers said stale-if-error in Cache-Status", stale, served)
	}
	res, err := cl.get(t.Context(), "h2", edges[0], "www.cdn.test", "/sie/never-cached.txt")
	if err != nil || res.status < 500 {
		t.Errorf("an uncached object with the origin down: %d %v; want a 5xx", res.status, err)
	}
	errs := c.originErrors(eu) - errorsBefore
	if errs < 1 {
		t.Errorf("origin fetch errors rose by %g; want the failed fetches counted", errs)
	}
	report("origin killed (-9)",
		fmt.Sprintf("%d/%d stale answers (Cache-Status stale-if-error), uncached object %d", served, len(edges)*len(protos), res.status),
		fmt.Sprintf("cdn_edge_origin_fetches_total{result=error} +%g in eu", errs))
	c.startOrigin()
	c.waitHTTP(eu, fmt.Sprintf("http://%s:8700/index.html", addr(eu, hostOrigin)), 20*time.Second)
}

func (c *cluster) originErrors(r region) float64 {
	var sum float64
	for _, h := range edgeHosts {
		sum += metric(c.scrape(r, edgeMetrics(r, h)), "cdn_edge_origin_fetches_total", `result="error"`)
	}
	return sum
}

// controlKilled: with one control process gone, the other serves the
// API, and its purges reach every edge.
func controlKilled(t *testing.T, c *cluster, report reporter) {
	eu, us := regions[0], regions[1]
	killed := c.kill(controlName(eu))
	var edges struct {
		Edges []struct{ Name string } `json:"edges"`
	}
	if code, body, err := c.api(us, http.MethodGet, "/v1/edges", nil, &edges); err != nil || code != 200 || len(edges.Edges) != 6 {
		t.Fatalf("control-us lists edges: %d %s %v", code, body, err)
	}
	v, err := c.purge(us, "www", "/index.html")
	if err != nil {
		t.Fatal(err)
	}
	took := c.appliedEverywhere(t, v, 20*time.Second, regions...)
	reqs := metric(c.scrape(us, controlURL(us)+"/metrics"), "cdn_control_api_requests_total")
	report("control-eu killed (-9)",
		fmt.Sprintf("API on control-us: %d edges listed, purge v%d applied by 6/6 edges in %v", len(edges.Edges), v, took.Round(100*time.Millisecond)),
		fmt.Sprintf("control-us cdn_control_api_requests_total %g", reqs))
	_ = killed
	c.startControl(eu)
	c.waitHTTP(eu, controlURL(eu)+"/readyz", 60*time.Second)
}

// natsKilled: with one NATS node gone, purges and pushes go on.
func natsKilled(t *testing.T, c *cluster, report reporter) {
	eu, us := regions[0], regions[1]
	killed := c.kill(natsName(eu))
	var v uint64
	accepted := waitFor(t, "control-eu accepting a purge with its first NATS node dead", 30*time.Second, func() bool {
		var err error
		v, err = c.purge(eu, "www", "/index.html")
		return err == nil
	})
	took := c.appliedEverywhere(t, v, 30*time.Second, regions...)
	dir := c.path("docs-v1")
	c.write(dir+"/index.html", "docs v1\n")
	start := time.Now()
	out, err := c.cdnIn(us, "push", dir, "--site", "docs", "--control-url", controlURL(us), "--token", c.token, "--wait", "60s")
	if err != nil {
		t.Fatalf("cdn push with a NATS node down: %v\n%s", err, out)
	}
	pushed := time.Since(start)
	served := 0
	for _, r := range regions {
		res, err := c.client(r, false).fetch(t.Context(), "h3", "docs.cdn.test", "/")
		if err == nil && res.status == 200 && res.body == "docs v1\n" {
			served++
		} else {
			t.Errorf("%s client: docs after the push: %d %q %v", r.name, res.status, res.body, err)
		}
	}
	switches := 0.0
	for _, r := range regions {
		for _, h := range edgeHosts {
			switches += metric(c.scrape(r, edgeMetrics(r, h)), "cdn_edge_release_switches_total")
		}
	}
	report("nats-eu killed (-9)",
		fmt.Sprintf("purge v%d accepted after %v, on 6/6 edges in %v; push served in %v (%d/3 regions)",
			v, accepted.Round(100*time.Millisecond), took.Round(100*time.Millisecond), pushed.Round(100*time.Millisecond), served),
		fmt.Sprintf("cdn_edge_release_switches_total %g over 6 edges", switches))
	_ = killed
	c.startNATS(eu)
	c.waitHTTP(eu, fmt.Sprintf("http://%s:8222/healthz", addr(eu, hostNATS)), 60*time.Second)
}

// cdnIn runs a cdn command to completion inside region r.
func (c *cluster) cdnIn(r region, args ...string) (string, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", c.w.nsName(r, "dc"), cdnBin}, args...)...)
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-done:
		case <-time.After(90 * time.Second):
			cmd.Process.Kill()
		}
	}()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

var _ = os.Getpid
