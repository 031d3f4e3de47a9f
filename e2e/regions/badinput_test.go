package regions

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// badInput: what the issue lists as bad input, each met with a clear
// error while the network loses nothing.
func badInput(t *testing.T, c *cluster, report reporter) {
	eu, us := regions[0], regions[1]
	var seen []string
	t.Run("nats node with another cluster name", func(t *testing.T) {
		dir := c.path("nats-other")
		c.write(filepath.Join(dir, "auth.conf"), c.cdn("control", "nats-config", "--data", c.path("control-eu"), "--resolver-dir", filepath.Join(dir, "accounts")))
		c.write(filepath.Join(dir, "nats.conf"), natsConfAt("nats-other", addr(eu, hostSpare), dir, "other"))
		p := startIn(c.owner, t, "nats-other", c.w.nsName(eu, "dc"), "nats", "--config", filepath.Join(dir, "nats.conf"), "--log-format", "text")
		defer p.kill()
		// The cluster answers the route with an error the newcomer logs.
		const refusal = `Rejecting connection, cluster name \"other\" does not match \"cdn\"`
		waitFor(t, "the cluster refusing the route of a node named for another cluster", 30*time.Second, func() bool {
			return strings.Contains(p.out.String(), refusal)
		})
		if routez := c.scrapeText(eu, fmt.Sprintf("http://%s:8222/routez", addr(eu, hostNATS))); strings.Contains(routez, "nats-other") {
			t.Errorf("nats-eu has a route to nats-other:\n%s", routez)
		}
		v, err := c.purge(eu, "www", "/index.html")
		if err != nil {
			t.Fatal(err)
		}
		c.appliedEverywhere(t, v, 30*time.Second, regions...)
		seen = append(seen, `nats-other: route refused, "cluster name \"other\" does not match \"cdn\""`)
	})
	// A process started with creds that are not its own stops at once.
	refused := func(t *testing.T, name, want string, r region, args ...string) {
		t.Helper()
		p := startIn(c.owner, t, name, c.w.nsName(r, "dc"), args...)
		select {
		case <-p.done:
		case <-time.After(20 * time.Second):
			p.kill()
			t.Fatalf("%s still running 20s after its start, want it refused", name)
		}
		out := p.out.String()
		if p.err == nil || !strings.Contains(out, want) {
			t.Fatalf("%s exited with %v and said:\n%s\nwant a failure saying %q", name, p.err, out, want)
		}
		said := out[strings.Index(out, "are for"):]
		said, _, _ = strings.Cut(said, ":")
		seen = append(seen, fmt.Sprintf("%s: exit %d, %q", name, p.cmd.ProcessState.ExitCode(), said))
	}
	t.Run("edge joining with another's name", func(t *testing.T) {
		creds := c.path("creds", "us-3.creds")
		c.cdn("control", "creds", "--data", c.path("control-eu"), "--role", "edge", "--name", "us-3", "--out", creds)
		refused(t, "edge as us-1", "are for edge us-3, not this edge us-1", us, "edge", "--config", c.path("us-1.yaml"),
			"--nats-creds", creds, "--cache-dir", c.path("us-3"), "--listen", addr(us, hostSpare)+":80", "--admin", addr(us, hostSpare)+":9090")
	})
	t.Run("edge copied with another's name and creds", func(t *testing.T) {
		// A new host in us given eu-2's config and creds: both run, and
		// both heartbeat as eu-2. Control tells the operator.
		conf := c.path("eu-2-copy.yaml")
		c.write(conf, edgeConf(us, "eu-2", hostSpare, c.path("creds", "eu-2.creds"), c.path("eu-2-copy"), c.path("dev-ca")))
		p := startIn(c.owner, t, "eu-2 copy", c.w.nsName(us, "dc"), "edge", "--config", conf, "--log-format", "text")
		const said = "two edges heartbeat under one name"
		var where string
		took := waitFor(t, "control saying two edges heartbeat as eu-2", 30*time.Second, func() bool {
			for _, r := range controlRegions {
				if strings.Contains(c.proc(controlName(r)).out.String(), said) {
					where = controlName(r)
					return true
				}
			}
			return false
		})
		conflicts := 0.0
		for _, r := range controlRegions {
			conflicts += metric(c.scrape(r, controlURL(r)+"/metrics"), "cdn_control_edge_name_conflicts_total")
		}
		if conflicts < 1 {
			t.Errorf("cdn_control_edge_name_conflicts_total %g, want it counted", conflicts)
		}
		p.stop(t)
		seen = append(seen, fmt.Sprintf("a copy of eu-2 on a new host: %s logs %q after %v (cdn_control_edge_name_conflicts_total %g)",
			where, said, took.Round(100*time.Millisecond), conflicts))
		waitFor(t, "eu-2 registered at its own address again", 20*time.Second, func() bool {
			var e struct{ HTTP string }
			code, _, err := c.api(us, http.MethodGet, "/v1/edges/eu-2", nil, &e)
			return err == nil && code == 200 && strings.Contains(e.HTTP, addr(eu, hostEdge2))
		})
	})
	t.Run("creds for the wrong role", func(t *testing.T) {
		refused(t, "geodns with an edge's creds", "are for edge eu-1, not this geodns", eu, "geodns", "--config", c.path("geodns-eu.yaml"),
			"--nats-creds", c.path("creds", "eu-1.creds"), "--listen", addr(eu, hostSpare)+":53", "--admin-listen", addr(eu, hostSpare)+":9153")
		refused(t, "edge with geodns's creds", "are for geodns, not this edge us-1", us, "edge", "--config", c.path("us-1.yaml"),
			"--nats-creds", c.path("creds", "geodns.creds"), "--cache-dir", c.path("us-x"), "--listen", addr(us, hostSpare)+":80", "--admin", addr(us, hostSpare)+":9090")
	})
	// Nothing lost: the six edges are up, us-1 still under its own
	// address, in one listing. The rogue node's route attempts are
	// followed, in some runs, by seconds of "JetStream system temporarily
	// unavailable", heartbeats failing and edges judged down and up again:
	// the cluster gets a minute to settle.
	var edges struct {
		Edges []struct {
			Name, Health, HTTP string
		} `json:"edges"`
	}
	up := 0
	settled := waitFor(t, "six edges registered and up", 60*time.Second, func() bool {
		edges.Edges = nil
		if code, _, err := c.api(us, http.MethodGet, "/v1/edges", nil, &edges); err != nil || code != 200 {
			return false
		}
		up = 0
		for _, e := range edges.Edges {
			if e.Health == "up" {
				up++
			}
		}
		return len(edges.Edges) == 6 && up == 6
	})
	for _, e := range edges.Edges {
		if e.Name == "us-1" && !strings.Contains(e.HTTP, addr(us, hostEdge1)) {
			t.Errorf("us-1 is registered at %s, want %s", e.HTTP, addr(us, hostEdge1))
		}
	}
	t.Logf("six edges up %v after the bad input", settled.Round(100*time.Millisecond))
	report("bad input",
		strings.Join(seen, "; "), fmt.Sprintf("%d edges registered, %d up; the cluster applied a purge meanwhile", len(edges.Edges), up))
}

// scrapeText is scrape for any page.
func (c *cluster) scrapeText(r region, url string) string { return c.scrape(r, url) }

// edgesUp is how many edges control in r judges up (0 when it cannot
// tell).
func (c *cluster) edgesUp(r region) int {
	var edges struct {
		Edges []struct{ Health string } `json:"edges"`
	}
	if code, _, err := c.api(r, http.MethodGet, "/v1/edges", nil, &edges); err != nil || code != 200 {
		return 0
	}
	up := 0
	for _, e := range edges.Edges {
		if e.Health == "up" {
			up++
		}
	}
	return up
}
