package edge

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/selfcdn/cdn/edge/tier"
	"github.com/selfcdn/cdn/internal/natstest"
	"github.com/selfcdn/cdn/internal/state"
)

// tierNet is a network of edges on one NATS, with control's part played
// by the test: it writes the site, the peer secret and each edge's
// health verdict.
type tierNet struct {
	store *state.Store
	edges []*netEdge
}

type netEdge struct {
	name, region, url string
	srv               *Server
	reg               *prometheus.Registry
	stop              func()
}

// regionLoc places the test's regions: eu and us near each other, ap
// far from both.
var regionLoc = map[string][2]float64{"eu": {50.1, 8.7}, "us": {40.7, -74}, "ap": {1.35, 103.8}}

// startTierNet starts perRegion edges in each region on their own
// loopback addresses (127.0.0.10 up), all up and homes, serving site.
func startTierNet(t *testing.T, regions []string, perRegion int, site SiteConfig, mutate func(*Config)) *tierNet {
	t.Helper()
	srv := natstest.Start(t, "", "")
	store, err := state.Open(t.Context(), natstest.Connect(t, srv.URL), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.EnsurePeerSecret(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := store.PutSite(t.Context(), site, true); err != nil {
		t.Fatal(err)
	}
	n := &tierNet{store: store}
	ip := 10
	for _, region := range regions {
		for i := range perRegion {
			name := fmt.Sprintf("%s-%d", region, i+1)
			n.edges = append(n.edges, startNetEdge(t, srv.URL, name, region, fmt.Sprintf("127.0.0.%d", ip), mutate))
			ip++
		}
	}
	for _, e := range n.edges {
		n.setUp(t, e.name, true)
	}
	n.waitViews(t)
	return n
}

func startNetEdge(t *testing.T, natsURL, name, region, ip string, mutate func(*Config)) *netEdge {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	loc := regionLoc[region]
	cfg := DefaultConfig()
	cfg.Name, cfg.Region = name, region
	cfg.AccessLog = false
	cfg.Cache.Memory = 64 << 20
	cfg.Cache.Dir = t.TempDir()
	cfg.Cache.Disk = 0
	cfg.Listen = ln.Addr().String()
	cfg.Control = &ControlConfig{NATS: natsURL, Lat: loc[0], Lon: loc[1], PublicURL: "http://" + ln.Addr().String(),
		Heartbeat: 100 * time.Millisecond, PurgeCatchUp: time.Millisecond,
		Tier: tier.Config{Rampup: time.Millisecond, Timeout: 500 * time.Millisecond}}
	if mutate != nil {
		mutate(&cfg)
	}
	reg := prometheus.NewRegistry()
	srv, err := New(cfg, Deps{Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelError})), Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln, nil) }()
	stop := sync.OnceFunc(func() {
		cancel()
		<-done
	})
	t.Cleanup(stop)
	return &netEdge{name: name, region: region, url: "http://" + ln.Addr().String(), srv: srv, reg: reg, stop: stop}
}

// setUp writes control's verdict on an edge.
func (n *tierNet) setUp(t *testing.T, name string, up bool) {
	t.Helper()
	h := state.HealthUp
	if !up {
		h = state.HealthDown
	}
	if err := n.store.SetEdgeStatus(t.Context(), state.EdgeStatus{Name: name, Health: h, Since: time.Now().Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
}

// waitViews waits until every running edge routes by the same view,
// with the homes written up, and has the site.
func (n *tierNet) waitViews(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok := true
		var epoch uint64
		for i, e := range n.edges {
			v := e.srv.handler.tier.View()
			if i == 0 {
				epoch = v.Epoch()
			}
			if v.Epoch() != epoch || len(e.srv.handler.tier.Plan("x", "", tier.StageNone)) > 1 || !e.srv.sitesLoaded.Load() {
				ok = false
			}
		}
		if ok && n.homes() == n.upCount(t) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("edges never agreed on the membership")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (n *tierNet) homes() int {
	v := n.edges[0].srv.handler.tier.View()
	total := 0
	for _, r := range []string{"eu", "us", "ap"} {
		total += len(v.Homes(r))
	}
	return total
}

func (n *tierNet) upCount(t *testing.T) int {
	st, err := n.store.EdgeStatuses(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	c := 0
	for _, s := range st {
		if s.Health == state.HealthUp {
			c++
		}
	}
	return c
}

// homeOf is the edge that homes path in region.
func (n *tierNet) homeOf(region, path string) string {
	key := "http://www.test" + path
	return n.edges[0].srv.handler.tier.View().Rank(region, key, time.Now(), time.Millisecond)[0].Name
}

func (n *tierNet) edge(name string) *netEdge {
	for _, e := range n.edges {
		if e.name == name {
			return e
		}
	}
	return nil
}

func fetch(t *testing.T, e *netEdge, path string, hdr http.Header) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, e.url+path, nil)
	req.Host = "www.test"
	for k, v := range hdr {
		req.Header[k] = v
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s%s: %v", e.name, path, err)
	}
	b, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		t.Fatalf("GET %s%s: body: %v", e.name, path, err)
	}
	return res, string(b)
}

func tierSite(originURL string) SiteConfig {
	return SiteConfig{Name: "www", Hosts: []string{"www.test"}, Origin: originURL}
}

// TestTierOneFetchPerRegion: two edges in each of three regions, one cold
// URL asked at every edge at once: one origin fetch per region without a
// shield, one in all with one.
func TestTierOneFetchPerRegion(t *testing.T) {
	for _, tt := range []struct {
		name   string
		shield string
		want   int64
	}{
		{"no shield", "", 3},
		{"shield us", "us", 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
				time.Sleep(50 * time.Millisecond) // every edge asks while the first fetch runs
				w.Header().Set("Cache-Control", "max-age=300")
				io.WriteString(w, "cold object "+r.URL.Path)
			})
			site := tierSite(o.URL)
			site.Shield.Region = tt.shield
			n := startTierNet(t, []string{"eu", "us", "ap"}, 2, site, nil)
			for round := range 3 {
				path := fmt.Sprintf("/cold/%d", round)
				before := o.hits.Load()
				var wg sync.WaitGroup
				for _, e := range n.edges {
					for range 3 {
						wg.Go(func() {
							res, body := fetch(t, e, path, nil)
							if res.StatusCode != 200 || body != "cold object "+path {
								t.Errorf("%s: %d %q", e.name, res.StatusCode, body)
							}
						})
					}
				}
				wg.Wait()
				if got := o.hits.Load() - before; got != tt.want {
					t.Errorf("%s: %d origin fetches for 18 requests at 6 edges, want %d", path, got, tt.want)
				}
			}
			// The second wave finds the object at home everywhere.
			before := o.hits.Load()
			for _, e := range n.edges {
				if res, _ := fetch(t, e, "/cold/0", nil); res.StatusCode != 200 {
					t.Errorf("%s: %d", e.name, res.StatusCode)
				}
			}
			if o.hits.Load() != before {
				t.Errorf("warm URL fetched again from the origin")
			}
		})
	}
}

// TestTierCacheStatusAndHotCopies: an edge that is not the key's home
// names the home in Cache-Status, keeps no copy of a key asked once, and
// keeps one once the key is asked again.
func TestTierCacheStatusAndHotCopies(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=300")
		io.WriteString(w, "object")
	})
	n := startTierNet(t, []string{"eu"}, 2, tierSite(o.URL), nil)
	path := "/hot"
	for i := 0; n.homeOf("eu", path) != "eu-2"; i++ {
		path = fmt.Sprintf("/hot%d", i)
	}
	asker := n.edge("eu-1")
	statuses := []string{
		`eu-2; fwd=uri-miss; stored, eu-1; fwd=uri-miss`, // home fetched; no copy here yet
		`eu-2; hit, eu-1; fwd=uri-miss; stored`,          // asked again: hot, kept
		`eu-1; hit`,
	}
	for i, want := range statuses {
		res, body := fetch(t, asker, path, nil)
		if got := res.Header.Get("Cache-Status"); got != want || body != "object" {
			t.Errorf("request %d: Cache-Status %q (%q), want %q", i+1, got, body, want)
		}
	}
	if o.hits.Load() != 1 {
		t.Errorf("origin fetched %d times, want 1", o.hits.Load())
	}
	if v := metricValue(t, &testEdge{Reg: n.edge("eu-2").reg}, "cdn_edge_peer_answers_total"); v != 2 {
		t.Errorf("home counted %v answers to peers, want 2", v)
	}
	// Edge and home each marked the hop; the peer mark stayed between
	// edges.
	if r := o.lastRequest(); r.Header.Get("Cdn-Peer") != "" || tier.LoopCount(r.Header["Cdn-Loop"], "selfcdn") != 2 {
		t.Errorf("origin saw Cdn-Peer %q, Cdn-Loop %q", r.Header.Get("Cdn-Peer"), r.Header["Cdn-Loop"])
	}
}
