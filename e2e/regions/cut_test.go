package regions

import (
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// regionCut: the ap region loses its WAN link. Its users (on the
// internet, not behind the cut) fail over to the other regions; clients
// inside the region keep being served from its edges' caches; purges
// issued meanwhile are all applied there once the link is back, and its
// users come back to it.
func regionCut(t *testing.T, c *cluster, report reporter) {
	eu, us, ap := regions[0], regions[1], regions[2]
	local, remote := c.client(ap, true), c.client(ap, false)
	c.write(c.path("site", "v.txt"), "v1\n")
	edges := edgeAddrs(ap)
	for _, e := range edges {
		for _, proto := range protos { // the first is a miss, the rest hits
			if res, err := local.get(t.Context(), proto, e, "www.cdn.test", "/v.txt"); err != nil || res.body != "v1\n" {
				t.Fatalf("warm %s over %s: %d %q %v", e, proto, res.status, res.body, err)
			}
		}
	}
	w := watchClient(remote, "www.cdn.test", "/v.txt")
	time.Sleep(time.Second)
	c.w.cutOff(ap.name)
	cut := time.Now()
	defer func() {
		if t.Failed() {
			s := w.snapshot()
			for _, x := range s[max(0, len(s)-6):] {
				t.Logf("sample at %v: %v %v %v", x.at.Sub(cut).Round(time.Millisecond), x.res.edge, x.res.status, x.err)
			}
			t.Logf("geodns-eu answers ap's users with %v", c.answersVia(t, eu, ap))
		}
	}()
	failover := waitFor(t, "ap's users served by another region", 60*time.Second, func() bool {
		_, _, _, seen := summary(w.snapshot(), cut, inRegion(regions[0], regions[1]))
		return seen
	})

	// Inside the region, the edges serve what they hold.
	localServed := 0
	for _, e := range edges {
		for _, proto := range protos {
			res, err := local.get(t.Context(), proto, e, "www.cdn.test", "/v.txt")
			if err != nil || res.status != 200 || res.body != "v1\n" {
				t.Errorf("local client via %s over %s during the cut: %d %q %v; want the cached v1", e, proto, res.status, res.body, err)
				continue
			}
			localServed++
		}
	}

	// Purges issued while the region is away.
	var versions []uint64
	var waits []string
	for i, body := range []string{"v2\n", "v3\n"} {
		c.write(c.path("site", "v.txt"), body)
		v, took, err := c.purgeRetry(eu, "www", fmt.Sprintf("cut-%d-%d", os.Getpid(), i), 60*time.Second, "/v.txt")
		if err != nil {
			t.Fatal(err)
		}
		versions = append(versions, v)
		waits = append(waits, took.Round(100*time.Millisecond).String())
	}
	last := versions[len(versions)-1]
	c.appliedEverywhere(t, last, 30*time.Second, regions[0], regions[1])
	waitFor(t, "ap's users (served elsewhere) getting v3", 20*time.Second, func() bool {
		s := w.snapshot()
		return len(s) > 0 && s[len(s)-1].err == nil && s[len(s)-1].res.body == "v3\n"
	})
	// Read until control answers: during the cut a read of the registry
	// can time out (a request routed to a replica behind the cut), and
	// the API then fails (500) rather than lists.
	var downs []string
	readDowns := func() bool {
		var status struct {
			Edges []struct {
				Name, Health string
			} `json:"edges"`
		}
		code, _, err := c.api(eu, http.MethodGet, "/v1/edges", nil, &status)
		downs = downs[:0]
		for _, e := range status.Edges {
			if e.Health == "down" {
				downs = append(downs, e.Name)
			}
		}
		slices.Sort(downs)
		return err == nil && code == http.StatusOK && slices.Contains(downs, "ap-1") && slices.Contains(downs, "ap-2")
	}
	start := time.Now()
	for !readDowns() && time.Since(start) < 30*time.Second {
		time.Sleep(500 * time.Millisecond)
	}
	if !slices.Contains(downs, "ap-1") || !slices.Contains(downs, "ap-2") {
		t.Errorf("control says down: %v after %v of asking; want ap-1, ap-2 among them", downs, time.Since(start).Round(100*time.Millisecond))
	}
	if len(downs) > 2 {
		t.Logf("down during the cut besides ap's edges: %v", downs)
	}
	downMetric := metric(c.scrape(eu, controlURL(eu)+"/metrics"), "cdn_control_edges", `health="down"`)

	c.w.restore(ap.name)
	restored := time.Now()
	caughtUp := c.appliedEverywhere(t, last, 60*time.Second, ap)
	for _, e := range edges {
		if res, err := local.get(t.Context(), "h2", e, "www.cdn.test", "/v.txt"); err != nil || res.body != "v3\n" {
			t.Errorf("local client via %s after the link returned: %d %q %v; want v3", e, res.status, res.body, err)
		}
	}
	back := waitFor(t, "ap's users back on ap's edges", 60*time.Second, func() bool {
		_, _, _, seen := summary(w.snapshot(), restored, inRegion(ap))
		return seen
	})
	waitFor(t, "control judging ap's edges up again", 60*time.Second, func() bool { return c.edgesUp(us) == 6 })
	t.Logf("ap's edges judged up %v after the link returned", time.Since(restored).Round(100*time.Millisecond))
	all := w.stop()
	n, failed, _, _ := summary(all, cut, func(netip.Addr) bool { return true })
	// Purged bodies served after the link returned: ap's GeoDNS sends
	// users back to ap's edges at once, before their purges caught up.
	purged, lastPurged := 0, time.Duration(0)
	for _, s := range all {
		if s.at.After(restored) && s.err == nil && s.res.body != "v3\n" {
			purged++
			lastPurged = s.at.Sub(restored)
		}
	}
	t.Logf("after the link returned, %d fetches got a purged body, the last %v after", purged, lastPurged.Round(100*time.Millisecond))
	applied := metric(c.scrape(ap, edgeMetrics(ap, hostEdge1)), "cdn_edge_purge_applied_version")
	report("region ap cut off (WAN link down)",
		fmt.Sprintf("users: on eu/us after %v, %d/%d fetches failed; back on ap %v after the link, %d purged bodies until %v; local: %d/%d cached",
			failover.Round(100*time.Millisecond), failed, n, back.Round(100*time.Millisecond), purged, lastPurged.Round(100*time.Millisecond), localServed, len(edges)*len(protos)),
		fmt.Sprintf("cdn_control_edges{health=down} %g during; purges v%d, v%d accepted in %s (retried 503s), applied on ap %v after the link (cdn_edge_purge_applied_version %g)",
			downMetric, versions[0], last, strings.Join(waits, ", "), caughtUp.Round(100*time.Millisecond), applied))
}
