package edge

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/selfcdn/cdn/edge/tier"
	"github.com/selfcdn/cdn/internal/natstest"
	sitecfg "github.com/selfcdn/cdn/internal/site"
	"github.com/selfcdn/cdn/internal/state"
	"github.com/selfcdn/cdn/internal/testwait"
	"github.com/selfcdn/cdn/purge"
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
func startTierNet(t testing.TB, regions []string, perRegion int, site SiteConfig, mutate func(*Config)) *tierNet {
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

func startNetEdge(t testing.TB, natsURL, name, region, ip string, mutate func(*Config)) *netEdge {
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
func (n *tierNet) setUp(t testing.TB, name string, up bool) {
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
func (n *tierNet) waitViews(t testing.TB) {
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

func (n *tierNet) upCount(t testing.TB) int {
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

func fetch(t testing.TB, e *netEdge, path string, hdr http.Header) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, e.url+path, nil)
	req.Host = "www.test"
	maps.Copy(req.Header, hdr)
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
	// Each request's Cache-Status, and what it may be while the home is
	// still storing what it streamed (a race the asker can win).
	statuses := [][]string{
		{`eu-2; fwd=uri-miss; stored, eu-1; fwd=uri-miss`},                                                     // home fetched; no copy here yet
		{`eu-2; hit, eu-1; fwd=uri-miss; stored`, `eu-2; fwd=uri-miss; collapsed, eu-1; fwd=uri-miss; stored`}, // hot: kept
		{`eu-1; hit`},
	}
	for i, want := range statuses {
		res, body := fetch(t, asker, path, nil)
		if got := res.Header.Get("Cache-Status"); !slices.Contains(want, got) || body != "object" {
			t.Errorf("request %d: Cache-Status %q (%q), want %q", i+1, got, body, want)
		}
	}
	if o.hits.Load() != 1 {
		t.Errorf("origin fetched %d times, want 1", o.hits.Load())
	}
	// Counted once the home has written its answer, which the asker may
	// have read whole a moment before.
	home := &testEdge{Reg: n.edge("eu-2").reg}
	deadline := time.Now().Add(2 * time.Second)
	for metricValue(t, home, "cdn_edge_peer_answers_total") != 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if v := metricValue(t, home, "cdn_edge_peer_answers_total"); v != 2 {
		t.Errorf("home counted %v answers to peers, want 2", v)
	}
	// Edge and home each marked the hop; the peer mark stayed between
	// edges.
	if r := o.lastRequest(); r.Header.Get("Cdn-Peer") != "" || tier.LoopCount(r.Header["Cdn-Loop"], "selfcdn") != 2 {
		t.Errorf("origin saw Cdn-Peer %q, Cdn-Loop %q", r.Header.Get("Cdn-Peer"), r.Header["Cdn-Loop"])
	}
}

// TestTierHomeKilled: the home of most keys dies (before control notices)
// while a client reads through the other edge: no client error, the
// fills go to the origin instead.
func TestTierHomeKilled(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=300")
		io.WriteString(w, "object "+r.URL.Path)
	})
	n := startTierNet(t, []string{"eu"}, 2, tierSite(o.URL), nil)
	asker, home := n.edge("eu-1"), n.edge("eu-2")
	var wg sync.WaitGroup
	errs := make(chan string, 1000)
	stopClients := make(chan struct{})
	for c := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stopClients:
					return
				default:
				}
				path := fmt.Sprintf("/k/%d/%d", c, i)
				req, _ := http.NewRequest(http.MethodGet, asker.url+path, nil)
				req.Host = "www.test"
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					errs <- err.Error()
					continue
				}
				b, err := io.ReadAll(res.Body)
				res.Body.Close()
				if err != nil || res.StatusCode != 200 || string(b) != "object "+path {
					errs <- fmt.Sprintf("%s: %d %q %v", path, res.StatusCode, b, err)
				}
			}
		})
	}
	askerMetrics := &testEdge{Reg: asker.reg}
	waitMetric(t, askerMetrics, "cdn_peer_asked_total", "result", "answered", 20)
	home.stop() // killed: its listener closes, connections drop
	// Clients go on until the asker has found the home gone and gone on
	// answering from the origin.
	waitMetric(t, askerMetrics, "cdn_peer_asked_total", "result", "error", 1)
	before := o.hits.Load()
	testwait.Until(t, "fills from the origin after the kill", func() bool { return o.hits.Load() >= before+20 })
	close(stopClients)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("client saw: %s", e)
	}
	asked := metricValue(t, &testEdge{Reg: asker.reg}, "cdn_peer_asked_total")
	if asked == 0 {
		t.Error("the asker never asked the home: the test tested nothing")
	}
	t.Logf("asker asked its home %v times; origin fetched %d", asked, o.hits.Load())
}

// waitMetric waits until the series of name with label=value reaches at
// least want.
func waitMetric(t *testing.T, e *testEdge, name, label, value string, want float64) {
	t.Helper()
	testwait.Until(t, fmt.Sprintf("%s{%s=%q} >= %v", name, label, value, want), func() bool {
		mfs, err := e.Reg.Gather()
		if err != nil {
			return false
		}
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == label && l.GetValue() == value && m.GetCounter().GetValue() >= want {
						return true
					}
				}
			}
		}
		return false
	})
}

// TestTierForgedMarks: a client forging peer marks and loop marks is
// served as any client is: no cache bypass, no stage skipped, no marks
// passed on, and a loop budget that refuses only what it would forward.
func TestTierForgedMarks(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=300")
		io.WriteString(w, "object")
	})
	n := startTierNet(t, []string{"eu"}, 2, tierSite(o.URL), nil)
	path := "/forged"
	for i := 0; n.homeOf("eu", path) != "eu-2"; i++ {
		path = fmt.Sprintf("/forged%d", i)
	}
	asker := n.edge("eu-1")
	forged := http.Header{tier.PeerHeader: {"eu-2 shield 0 " + fmt.Sprint(time.Now().Unix()) + " AAAA"}}
	res, _ := fetch(t, asker, path, forged)
	// Still routed through the home, as any client's miss: the forged
	// shield stage did not make eu-1 go to the origin itself.
	if got := res.Header.Get("Cache-Status"); !strings.HasPrefix(got, "eu-2; ") {
		t.Errorf("forged shield mark: Cache-Status %q, want the home eu-2 first", got)
	}
	if v := metricValue(t, &testEdge{Reg: asker.reg}, "cdn_peer_marks_refused_total"); v != 1 {
		t.Errorf("refused marks %v, want 1", v)
	}
	if r := o.lastRequest(); r.Header.Get("Cdn-Peer") != "" {
		t.Errorf("origin got the client's Cdn-Peer %q", r.Header.Get("Cdn-Peer"))
	}
	// A forged mark straight at the home is a client's request there
	// too: answered from the home's cache (or its fill, which may still
	// be storing), no second origin fetch.
	hits := o.hits.Load()
	res, _ = fetch(t, n.edge("eu-2"), path, forged)
	if got := res.Header.Get("Cache-Status"); (got != "eu-2; hit" && got != "eu-2; fwd=uri-miss; collapsed") || o.hits.Load() != hits {
		t.Errorf("forged mark at the home: Cache-Status %q, %d more origin fetches", got, o.hits.Load()-hits)
	}

	// Loop marks: a hit is a hit, a miss is refused (508) rather than
	// sent round again, and nobody else's request is failed with it.
	loop := http.Header{"Cdn-Loop": {"selfcdn, selfcdn", "selfcdn"}}
	if res, body := fetch(t, n.edge("eu-2"), path, loop); res.StatusCode != 200 || body != "object" {
		t.Errorf("looped request for a cached URL: %d %q", res.StatusCode, body)
	}
	before := o.hits.Load()
	if res, _ := fetch(t, asker, "/never-cached", loop); res.StatusCode != http.StatusLoopDetected {
		t.Errorf("looped miss: %d, want 508", res.StatusCode)
	}
	if o.hits.Load() != before {
		t.Error("a looped request reached the origin")
	}
	if res, _ := fetch(t, asker, "/never-cached", http.Header{"Cdn-Loop": {"selfcdn, othercdn"}}); res.StatusCode != 200 {
		t.Errorf("request under the hop budget: %d", res.StatusCode)
	}
}

// TestTierHomeBehindOnPurges: an edge that applied a purge its key's
// home has not yet (a region coming back from a cut catches up edge by
// edge) must not take the home's purged copy and keep it stamped after
// the purge: the home declines, the fill goes to the origin, and the
// home answers again once it has caught up.
func TestTierHomeBehindOnPurges(t *testing.T) {
	var body atomic.Value
	body.Store("v1")
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=300")
		io.WriteString(w, body.Load().(string))
	})
	n := startTierNet(t, []string{"eu"}, 2, tierSite(o.URL), nil)
	path := "/behind"
	for i := 0; n.homeOf("eu", path) != "eu-2"; i++ {
		path = fmt.Sprintf("/behind%d", i)
	}
	asker, home := n.edge("eu-1"), n.edge("eu-2")
	if res, got := fetch(t, asker, path, nil); res.StatusCode != 200 || got != "v1" {
		t.Fatalf("warm: %d %q", res.StatusCode, got)
	}
	// The origin changes and a purge is issued; eu-1 applies it, eu-2
	// has not yet.
	body.Store("v2")
	applied := home.srv.purges.Applied()
	asker.srv.handler.purges.Apply("www", purge.Request{URLs: []string{path}})
	asker.srv.handler.tier.SetPurges(func() uint64 { return applied + 1 })

	res, got := fetch(t, asker, path, nil)
	if got != "v2" {
		t.Errorf("after the purge, with the home behind: %q (Cache-Status %q), want v2 from the origin", got, res.Header.Get("Cache-Status"))
	}
	if v := metricValue(t, &testEdge{Reg: home.reg}, "cdn_peer_purges_behind_total"); v != 1 {
		t.Errorf("home refused %v peer requests for being behind, want 1", v)
	}
	// Caught up, the home answers peers again, and not with its purged
	// copy.
	home.srv.handler.purges.Apply("www", purge.Request{URLs: []string{path}})
	home.srv.handler.tier.SetPurges(func() uint64 { return applied + 1 })
	body.Store("v3")
	other := path + "?other"
	for n.homeOf("eu", other) != "eu-2" {
		other += "x"
	}
	if res, got := fetch(t, asker, other, nil); got != "v3" || !strings.HasPrefix(res.Header.Get("Cache-Status"), "eu-2; ") {
		t.Errorf("through the caught-up home: %q (Cache-Status %q), want v3 by eu-2", got, res.Header.Get("Cache-Status"))
	}
	if res, got := fetch(t, home, path, nil); got != "v3" {
		t.Errorf("the home's own purged copy: %q (%q), want the origin's v3", got, res.Header.Get("Cache-Status"))
	}
	if v := metricValue(t, &testEdge{Reg: home.reg}, "cdn_peer_purges_behind_total"); v != 1 {
		t.Errorf("home refused %v peer requests, want still 1", v)
	}
}

// TestOriginPointingBack: an origin that sends requests back to the CDN
// is caught by the hop budget: a bounded number of trips, then 508.
func TestOriginPointingBack(t *testing.T) {
	var edgeURL string
	var trips int64
	var mu sync.Mutex
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		trips++
		mu.Unlock()
		req, _ := http.NewRequest(r.Method, edgeURL+r.URL.RequestURI(), nil)
		req.Header = r.Header.Clone()
		req.Host = r.Host
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer res.Body.Close()
		w.WriteHeader(res.StatusCode)
		io.Copy(w, res.Body)
	})
	e := startEdge(t, o.URL, nil, nil)
	edgeURL = e.URL
	res, _ := get(t, http.MethodGet, e.URL+"/loop", nil)
	if res.StatusCode != http.StatusLoopDetected {
		t.Errorf("status %d, want 508 passed back down the loop", res.StatusCode)
	}
	if trips != 3 {
		t.Errorf("the origin was asked %d times, want 3 (the hop budget)", trips)
	}
}

// TestTierBadPeers: a registered peer that answers garbage, and one that
// hangs, are skipped within the tier's timeout; the client gets the
// origin's answer.
func TestTierBadPeers(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=300")
		io.WriteString(w, "object")
	})
	garbage := listenAndServe(t, func(c net.Conn) { io.WriteString(c, "\x00\x01 not http at all\r\n\r\n"); c.Close() })
	hang := listenAndServe(t, func(c net.Conn) { time.Sleep(3 * time.Second); c.Close() })
	n := startTierNet(t, []string{"eu"}, 1, tierSite(o.URL), nil)
	for name, addr := range map[string]string{"garbage": garbage, "hang": hang} {
		if err := n.store.Heartbeat(t.Context(), state.Edge{Name: name, Region: "eu", Peer: "http://" + addr}); err != nil {
			t.Fatal(err)
		}
		n.setUp(t, name, true)
	}
	asker := n.edge("eu-1")
	deadline := time.Now().Add(5 * time.Second)
	for len(asker.srv.handler.tier.View().Homes("eu")) != 3 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	for _, bad := range []string{"garbage", "hang"} {
		path := "/p"
		for i := 0; n.homeOf("eu", path) != bad; i++ {
			path = fmt.Sprintf("/p%d", i)
		}
		start := time.Now()
		res, body := fetch(t, asker, path, nil)
		took := time.Since(start)
		if res.StatusCode != 200 || body != "object" {
			t.Errorf("home %s: %d %q", bad, res.StatusCode, body)
		}
		if took > 2*time.Second {
			t.Errorf("home %s: took %s, want under the 500ms timeout and a retry", bad, took)
		}
		if got := res.Header.Get("Cache-Status"); strings.Contains(got, ",") {
			t.Errorf("home %s: Cache-Status %q names a peer", bad, got)
		}
	}
}

// listenAndServe runs serve on each connection to a new loopback listener.
func listenAndServe(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { serve(c) })
		}
	}()
	return ln.Addr().String()
}

// TestOriginFailoverAtTheEdge: the primary origin dies under load; every
// client request is answered by the backup, POSTs with bodies included.
func TestOriginFailoverAtTheEdge(t *testing.T) {
	primary := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		io.WriteString(w, "primary "+r.Method+" "+string(b))
	})
	backup := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		io.WriteString(w, "backup "+r.Method+" "+string(b))
	})
	e := startEdge(t, "", nil, func(c *Config) {
		c.Sites = []SiteConfig{{Name: "site", Hosts: []string{"*"}, Origins: []sitecfg.Origin{{URL: primary.URL}, {URL: backup.URL, Backup: true}}}}
	})
	if _, body := get(t, http.MethodGet, e.URL+"/a", nil); body != "primary GET " {
		t.Fatalf("before: %q", body)
	}
	primary.CloseClientConnections()
	primary.Close()
	for i := range 20 {
		if res, body := get(t, http.MethodGet, fmt.Sprintf("%s/after/%d", e.URL, i), nil); res.StatusCode != 200 || body != "backup GET " {
			t.Errorf("GET %d after the primary died: %d %q", i, res.StatusCode, body)
		}
		res, err := http.Post(e.URL+"/form", "text/plain", strings.NewReader("payload"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || string(b) != "backup POST payload" {
			t.Errorf("POST %d after the primary died: %d %q", i, res.StatusCode, b)
		}
	}
	if v := metricValue(t, e, "cdn_origin_failovers_total"); v == 0 {
		t.Error("no failover counted")
	}
}

// TestTierShieldDown: with the shield region's edges down, the next
// nearest region shields, not the origin: one fetch for the network.
func TestTierShieldDown(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=300")
		io.WriteString(w, "object")
	})
	site := tierSite(o.URL)
	site.Shield.Region = "us"
	n := startTierNet(t, []string{"eu", "us", "ap"}, 1, site, nil)
	n.setUp(t, "us-1", false)
	n.waitViews(t)
	res, _ := fetch(t, n.edge("ap-1"), "/s", nil)
	if got := res.Header.Get("Cache-Status"); got != "eu-1; fwd=uri-miss; stored, ap-1; fwd=uri-miss; stored" {
		t.Errorf("ap-1 with the us shield down: Cache-Status %q, want eu-1 (nearest to us) shielding", got)
	}
	if res, _ := fetch(t, n.edge("eu-1"), "/s", nil); res.Header.Get("Cache-Status") != "eu-1; hit" {
		t.Errorf("eu-1: Cache-Status %q", res.Header.Get("Cache-Status"))
	}
	if o.hits.Load() != 1 {
		t.Errorf("origin fetched %d times, want 1", o.hits.Load())
	}
}

func TestReachable(t *testing.T) {
	for base, want := range map[string]bool{
		"http://127.0.0.2:8080": true, "http://edge1.example.net": true, "https://[2001:db8::1]:443": true,
		"http://:8080": false, "http://0.0.0.0:8080": false, "http://[::]:80": false, "": false, "::bad": false,
	} {
		if got := reachable(base); got != want {
			t.Errorf("reachable(%q) = %v, want %v", base, got, want)
		}
	}
}

// TestTierOriginDownStale: with the origin down, an edge whose home
// answers from its stale copy does not take that for a revalidation: it
// says stale-if-error itself, as the home does.
func TestTierOriginDownStale(t *testing.T) {
	var down atomic.Bool
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Cache-Control", "max-age=1, stale-if-error=3600")
		w.Header().Set("ETag", `"v1"`)
		io.WriteString(w, "object")
	})
	n := startTierNet(t, []string{"eu"}, 2, tierSite(o.URL), nil)
	path := "/sie"
	for i := 0; n.homeOf("eu", path) != "eu-2"; i++ {
		path = fmt.Sprintf("/sie%d", i)
	}
	asker := n.edge("eu-1")
	for range 2 { // the second keeps a copy here
		fetch(t, asker, path, nil)
	}
	down.Store(true)
	time.Sleep(2100 * time.Millisecond) // past max-age=1, which counts whole seconds
	res, body := fetch(t, asker, path, nil)
	if cs := res.Header.Get("Cache-Status"); res.StatusCode != 200 || body != "object" || !strings.Contains(cs, `eu-1; hit; fwd=stale; detail="stale-if-error"`) {
		t.Errorf("origin down: %d %q, Cache-Status %q; want eu-1's own stale-if-error", res.StatusCode, body, cs)
	}
}
