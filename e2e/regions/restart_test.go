package regions

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"
)

// netState is what the network holds that must survive a restart.
type netState struct {
	Sites    []string
	Releases []uint64
	Live     uint64
}

func (c *cluster) state(t *testing.T) netState {
	t.Helper()
	var st netState
	var sites struct {
		Sites []struct{ Name string } `json:"sites"`
	}
	if code, body, err := c.api(regions[1], http.MethodGet, "/v1/sites", nil, &sites); err != nil || code != 200 {
		t.Fatalf("list sites: %d %s %v", code, body, err)
	}
	for _, s := range sites.Sites {
		st.Sites = append(st.Sites, s.Name)
	}
	slices.Sort(st.Sites)
	var rel struct {
		Live     json.Number `json:"live"`
		Releases []struct {
			Number uint64 `json:"number"`
		} `json:"releases"`
	}
	if code, body, err := c.api(regions[1], http.MethodGet, "/v1/sites/docs/releases", nil, &rel); err != nil || code != 200 {
		t.Fatalf("list releases: %d %s %v", code, body, err)
	}
	for _, r := range rel.Releases {
		st.Releases = append(st.Releases, r.Number)
	}
	live, _ := rel.Live.Int64()
	st.Live = uint64(live)
	return st
}

// restartAll stops every process (SIGTERM, each must exit cleanly),
// starts them all again on their data, and checks that the network is
// as it was: sites, releases, every edge's purge version, and clients
// of every region served over h1, h2 and h3.
func restartAll(t *testing.T, c *cluster, report reporter) {
	eu := regions[0]
	last, err := c.purge(eu, "www", "/nothing-cached-here.txt")
	if err != nil {
		t.Fatal(err)
	}
	c.appliedEverywhere(t, last, 30*time.Second, regions...)
	before := c.state(t)

	start := time.Now()
	var order []string
	for _, r := range regions {
		order = append(order, edgeName(r, 1), edgeName(r, 2), geodnsName(r))
	}
	for _, r := range controlRegions {
		order = append(order, controlName(r))
	}
	order = append(order, "origin")
	for _, r := range regions {
		order = append(order, natsName(r))
	}
	for _, name := range order {
		c.proc(name).stop(t)
	}
	stopped := time.Since(start)
	c.startAll()
	up := time.Since(start)
	lowest := float64(last)
	for _, r := range regions {
		for _, h := range edgeHosts {
			lowest = min(lowest, metric(c.scrape(r, edgeMetrics(r, h)), "cdn_edge_purge_applied_version"))
		}
	}
	if lowest < float64(last) {
		t.Errorf("an edge restarted at purge version %g, want %d (kept on disk)", lowest, last)
	}
	after := c.state(t)
	if fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("state after the restart %+v, want %+v", after, before)
	}
	served := 0
	for _, r := range regions {
		cl := c.client(r, false)
		for _, proto := range protos {
			var res, docs result
			waitFor(t, fmt.Sprintf("%s client over %s after the restart", r.name, proto), 30*time.Second, func() bool {
				var err1, err2 error
				res, err1 = cl.fetch(t.Context(), proto, "www.cdn.test", "/v.txt")
				docs, err2 = cl.fetch(t.Context(), proto, "docs.cdn.test", "/")
				return err1 == nil && err2 == nil && res.status == 200 && docs.status == 200
			})
			if res.body != "v3\n" || docs.body != "docs v1\n" {
				t.Errorf("%s over %s after the restart: %q and %q; want v3 and docs v1", r.name, proto, res.body, docs.body)
				continue
			}
			served++
		}
	}
	report("everything restarted (SIGTERM)",
		fmt.Sprintf("all 15 processes stopped cleanly in %v, up again in %v; %d/9 region×protocol fetches right",
			stopped.Round(100*time.Millisecond), (up-stopped).Round(100*time.Millisecond), served),
		fmt.Sprintf("cdn_edge_purge_applied_version ≥ %d on 6/6 at start; sites %v, releases %v (live %d) unchanged",
			last, after.Sites, after.Releases, after.Live))
}
