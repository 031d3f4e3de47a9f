package control

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/selfcdn/cdn/edge"
	"github.com/selfcdn/cdn/purge"
)

// versionedOrigin serves "<path> v<N>" with ETag "vN", tagged by the first
// path segment; bump changes a path's body, hold blocks the answer until
// released (with the version current when the request arrived, as an
// origin that already read the old file would).
type versionedOrigin struct {
	*httptest.Server
	mu          sync.Mutex // protects the maps
	version     map[string]int
	hits        map[string]int
	conditional map[string]int
	hold        map[string]chan struct{}
}

func newVersionedOrigin(t testing.TB) *versionedOrigin {
	o := &versionedOrigin{version: map[string]int{}, hits: map[string]int{}, conditional: map[string]int{}, hold: map[string]chan struct{}{}}
	o.Server = httptest.NewServer(http.HandlerFunc(o.serve))
	t.Cleanup(o.Close)
	return o
}

func (o *versionedOrigin) serve(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	o.mu.Lock()
	o.hits[p]++
	hold := o.hold[p]
	v := o.version[p] + 1
	if r.Header.Get("If-None-Match") != "" {
		o.conditional[p]++
	}
	o.mu.Unlock()
	if hold != nil {
		<-hold
	}
	etag := fmt.Sprintf(`"v%d"`, v)
	w.Header().Set("Cache-Control", "max-age=3600")
	w.Header().Set("ETag", etag)
	w.Header().Set("Surrogate-Key", "all "+strings.Split(strings.TrimPrefix(p, "/"), "/")[0])
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	fmt.Fprintf(w, "%s v%d", p, v)
}

func (o *versionedOrigin) bump(paths ...string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, p := range paths {
		o.version[p]++
	}
}

func (o *versionedOrigin) count(m map[string]int, path string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return m[path]
}

// purgeNet is control (embedded NATS), an origin, a site and edges with
// disk caches, for purge tests.
type purgeNet struct {
	t     testing.TB
	api   string
	token string
	nats  string
	// ctlDir is control's data dir (its NATS authority).
	ctlDir string
	origin *versionedOrigin
	client *purge.Client
	edges  map[string]*purgeEdge
	// heartbeat is the edges' (0: the edge's default).
	heartbeat time.Duration
}

type purgeEdge struct {
	*running
	admin string
	dir   string
}

const purgeHost = "www.example.test"

func newPurgeNet(t testing.TB, edges int, tune func(*Config)) *purgeNet {
	return newPurgeNetWith(t, edges, tune, false)
}

// newPurgeNetWith is newPurgeNet; shipped runs control's health checks
// and the edges' heartbeats at their defaults (2 s), as benchmarks
// measure them, where tests use 100 ms ones to see edges come and go
// quickly (and start edges one by one).
func newPurgeNetWith(t testing.TB, edges int, tune func(*Config), shipped bool) *purgeNet {
	t.Helper()
	dir, natsAddr := t.TempDir(), freeAddr(t)
	cfg := DefaultConfig()
	cfg.DataDir = dir
	cfg.NATS.Listen = natsAddr
	heartbeat := time.Duration(0)
	if !shipped {
		cfg.Health = HealthConfig{Interval: 100 * time.Millisecond, Timeout: 500 * time.Millisecond,
			HeartbeatTimeout: 800 * time.Millisecond, FailAfter: 2, RecoverAfter: 1}
		heartbeat = 100 * time.Millisecond
	}
	if tune != nil {
		tune(&cfg)
	}
	ctrl := runControl(t, cfg)
	waitFor(t, "control ready", time.Now().Add(10*time.Second), func() bool { return status(ctrl.url+"/readyz", "") == 200 })
	n := &purgeNet{t: t, api: ctrl.url, token: readToken(t, dir), nats: "nats://" + natsAddr, ctlDir: dir, origin: newVersionedOrigin(t),
		edges: map[string]*purgeEdge{}, heartbeat: heartbeat}
	n.client = &purge.Client{BaseURL: n.api, Token: n.token}
	if code, b := call(t, "POST", n.api+"/v1/sites", n.token, siteJSON("www", purgeHost, n.origin.URL)); code != 201 {
		t.Fatalf("create site: %d %s", code, b)
	}
	if !shipped {
		for i := range edges {
			n.start(fmt.Sprintf("e%d", i+1), t.TempDir())
		}
	} else {
		// All at once: each waits a few 2 s health rounds to be up.
		for i := range edges {
			n.launch(fmt.Sprintf("e%d", i+1), t.TempDir())
		}
		for name, e := range n.edges {
			n.waitUp(name, e)
		}
	}
	n.waitTier()
	return n
}

// waitTier waits until every edge homes keys on all of them: until then
// a key's home moves as each edge comes up (and a second request at an
// edge may find its object at another home).
func (n *purgeNet) waitTier() {
	n.t.Helper()
	want := fmt.Sprintf("cdn_tier_region_homes %d\n", len(n.edges))
	for name, e := range n.edges {
		waitFor(n.t, name+" homing keys on every edge", time.Now().Add(10*time.Second), func() bool {
			res, err := http.Get(e.admin + "/metrics")
			if err != nil {
				return false
			}
			defer res.Body.Close()
			b, _ := io.ReadAll(res.Body)
			return strings.Contains(string(b), want)
		})
	}
}

// start runs an edge (again, on its old cache dir) and waits until it
// serves the site and control judges it up.
func (n *purgeNet) start(name, dir string) *purgeEdge {
	n.t.Helper()
	e := n.launch(name, dir)
	n.waitUp(name, e)
	return e
}

// launch runs an edge (again, on its old cache dir).
func (n *purgeNet) launch(name, dir string) *purgeEdge {
	t := n.t
	t.Helper()
	cfg := edge.DefaultConfig()
	cfg.Name, cfg.Region, cfg.AccessLog = name, "local-a", false
	cfg.Cache.Memory, cfg.Cache.Dir, cfg.Cache.Disk = 16<<20, dir, 64<<20
	cfg.Control = &edge.ControlConfig{NATS: n.nats, Lat: 50, Lon: 8, Heartbeat: n.heartbeat,
		Creds: edgeCredsFile(t, n.ctlDir, name)}
	// The edges share a region and so a tier; its ramp-up would move
	// homes while the test runs (edge/tier tests it).
	cfg.Control.Tier.Rampup = time.Millisecond
	r, admin := serveEdge(t, cfg)
	e := &purgeEdge{running: r, admin: admin, dir: dir}
	n.edges[name] = e
	return e
}

// waitUp waits until edge e is ready (it has the sites and has applied
// the purges it missed) and control judges it up.
func (n *purgeNet) waitUp(name string, e *purgeEdge) {
	t := n.t
	t.Helper()
	waitFor(t, name+" ready", time.Now().Add(10*time.Second), func() bool { return status(e.admin+"/readyz", "") == 200 })
	waitFor(t, name+" up", time.Now().Add(30*time.Second), func() bool { h, _ := edgeHealth(t, n.api, n.token, name); return h == "up" })
}

func (e *purgeEdge) get(path string) (code int, body, cacheStatus string) {
	req, _ := http.NewRequest("GET", e.url+path, nil)
	req.Host = purgeHost
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error(), ""
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b), res.Header.Get("Cache-Status")
}

// warm fetches paths through every edge and checks they are then hits.
func (n *purgeNet) warm(paths ...string) {
	n.t.Helper()
	for name, e := range n.edges {
		for _, p := range paths {
			_, _, first := e.get(p)
			if _, body, cs := e.get(p); !strings.Contains(cs, "hit") {
				n.t.Fatalf("%s %s after a fetch (%q): %q, Cache-Status %q; want a hit", name, p, first, body, cs)
			}
		}
	}
}

// expect checks what every edge serves for path, on the first request.
func (n *purgeNet) expect(path, want string) {
	n.t.Helper()
	for name, e := range n.edges {
		if _, body, cs := e.get(path); body != want {
			n.t.Errorf("edge %s GET %s = %q (Cache-Status %q), want %q", name, path, body, cs, want)
		}
	}
}

func (n *purgeNet) purge(r purge.Request) purge.Result {
	n.t.Helper()
	res, err := n.client.Purge(n.t.Context(), "www", r, purge.Options{Wait: 10 * time.Second})
	if err != nil {
		n.t.Fatalf("purge %+v: %v", r, err)
	}
	if res.Status == nil || !res.Status.Applied || len(res.Status.Edges) != len(n.edges) {
		n.t.Fatalf("purge %+v answered without every edge applied: %+v", r, res.Status)
	}
	return res
}

// TestPurge: after a purge returns with wait, no edge serves the old body,
// for each kind of purge; soft purges revalidate; an idempotency key
// returns the first version; a fill racing a purge does not bring the old
// body back; an edge away for ten purges applies all ten on return.
func TestPurge(t *testing.T) {
	n := newPurgeNet(t, 3, nil)
	o := n.origin
	paths := []string{"/css/a.css", "/css/b.css", "/js/c.js", "/img/d.png"}
	n.warm(paths...)
	o.bump(paths...)

	t.Run("kinds", func(t *testing.T) {
		n.expect("/css/a.css", "/css/a.css v1") // still cached
		n.purge(purge.Request{URLs: []string{"https://" + purgeHost + "/css/a.css"}})
		n.expect("/css/a.css", "/css/a.css v2")
		n.expect("/css/b.css", "/css/b.css v1")
		n.purge(purge.Request{Tags: []string{"css"}})
		n.expect("/css/b.css", "/css/b.css v2")
		n.expect("/js/c.js", "/js/c.js v1")
		n.purge(purge.Request{Prefixes: []string{"/js/"}})
		n.expect("/js/c.js", "/js/c.js v2")
		n.expect("/img/d.png", "/img/d.png v1")
		n.purge(purge.Request{All: true})
		n.expect("/img/d.png", "/img/d.png v2")
		n.expect("/css/a.css", "/css/a.css v2") // refetched, and unchanged
	})

	t.Run("soft", func(t *testing.T) {
		n.warm("/soft.html")
		before, fetches := o.count(o.conditional, "/soft.html"), o.count(o.hits, "/soft.html")
		n.purge(purge.Request{URLs: []string{"/soft.html"}, Soft: true})
		for name, e := range n.edges {
			// Served while it is revalidated (the origin says 304), or
			// already revalidated: the edges share one region, and a
			// peer asking the key's home made it revalidate first.
			if _, body, cs := e.get("/soft.html"); body != "/soft.html v1" || !strings.Contains(cs, "stale") && !strings.Contains(cs, "hit") {
				t.Errorf("%s after a soft purge: %q, Cache-Status %q; want the stored body, stale or revalidated", name, body, cs)
			}
			waitFor(t, name+" revalidated", time.Now().Add(5*time.Second), func() bool {
				_, _, cs := e.get("/soft.html")
				return strings.HasSuffix(cs, name+"; hit")
			})
		}
		// Validated, never fetched whole: at most one conditional request
		// per edge, and one for the region when its home asked first.
		if got := o.count(o.conditional, "/soft.html") - before; got < 1 || got > len(n.edges) {
			t.Errorf("conditional requests after a soft purge = %d, want 1 to %d", got, len(n.edges))
		}
		if got := o.count(o.hits, "/soft.html") - fetches; got != o.count(o.conditional, "/soft.html")-before {
			t.Errorf("%d requests reached the origin after a soft purge, not all conditional", got)
		}
	})

	t.Run("idempotency", func(t *testing.T) {
		opts := purge.Options{IdempotencyKey: "deploy-42"}
		first, err := n.client.Purge(t.Context(), "www", purge.Request{Tags: []string{"js"}}, opts)
		if err != nil {
			t.Fatal(err)
		}
		again, err := n.client.Purge(t.Context(), "www", purge.Request{Tags: []string{"js"}}, opts)
		if err != nil || again.Version != first.Version || !again.Duplicate {
			t.Errorf("retry = %+v, %v; want version %d, duplicate", again, err, first.Version)
		}
	})

	t.Run("fill racing a purge", func(t *testing.T) {
		e := n.edges["e1"]
		release := make(chan struct{})
		o.mu.Lock()
		o.hold["/race.js"] = release
		o.mu.Unlock()
		got := make(chan string, 1)
		go func() { _, body, _ := e.get("/race.js"); got <- body }()
		waitFor(t, "the fill to reach the origin", time.Now().Add(5*time.Second), func() bool { return o.count(o.hits, "/race.js") == 1 })
		n.purge(purge.Request{URLs: []string{"/race.js"}})
		o.bump("/race.js")
		o.mu.Lock()
		delete(o.hold, "/race.js")
		o.mu.Unlock()
		close(release)
		if body := <-got; body != "/race.js v1" {
			t.Fatalf("the racing fill got %q, want the v1 the origin read before the purge", body)
		}
		if _, body, cs := e.get("/race.js"); body != "/race.js v2" {
			t.Errorf("after the racing fill: %q (Cache-Status %q), want v2: a fill started before a purge was kept", body, cs)
		}
	})

	t.Run("release version in the cache key", func(t *testing.T) {
		n.warm("/app.js")
		o.bump("/app.js")
		site := fmt.Sprintf(`{"name":"www","hosts":[%q],"origin":%q,"cache_key":{"version":"r2"}}`, purgeHost, o.URL)
		if code, b := call(t, "PUT", n.api+"/v1/sites/www", n.token, site); code != 200 {
			t.Fatalf("PUT site: %d %s", code, b)
		}
		for name, e := range n.edges {
			waitFor(t, name+" to switch to release r2", time.Now().Add(5*time.Second), func() bool {
				_, body, _ := e.get("/app.js")
				return body == "/app.js v2"
			})
		}
	})

	t.Run("edge away for ten purges", func(t *testing.T) {
		var ps []string
		for i := range 10 {
			ps = append(ps, fmt.Sprintf("/away/%d", i))
		}
		n.warm(ps...)
		o.bump(ps...)
		e3 := n.edges["e3"]
		e3.stop()
		delete(n.edges, "e3")
		var last uint64
		for _, p := range ps {
			res, err := n.client.Purge(t.Context(), "www", purge.Request{URLs: []string{p}}, purge.Options{})
			if err != nil {
				t.Fatal(err)
			}
			last = res.Version
		}
		back := n.start("e3", e3.dir)
		waitFor(t, "e3 to apply the ten purges", time.Now().Add(10*time.Second), func() bool {
			st, err := n.client.Status(t.Context(), last, 0)
			return err == nil && edgeApplied(st, "e3")
		})
		for _, p := range ps {
			if _, body, cs := back.get(p); body != p+" v2" {
				t.Errorf("e3 back: GET %s = %q (Cache-Status %q), want v2", p, body, cs)
			}
		}
	})
}

func edgeApplied(st purge.Status, name string) bool {
	for _, e := range st.Edges {
		if e.Edge == name {
			return e.Applied
		}
	}
	return false
}

// TestPurgeLogRetention: an edge away while more purges were written than
// the log keeps purges its sites whole when it returns, even objects no
// purge named.
func TestPurgeLogRetention(t *testing.T) {
	n := newPurgeNet(t, 1, func(c *Config) { c.Purges.MaxPurges = 3 })
	o := n.origin
	n.warm("/kept.html")
	o.bump("/kept.html")
	e1 := n.edges["e1"]
	e1.stop()
	for i := range 6 {
		if _, err := n.client.Purge(t.Context(), "www", purge.Request{URLs: []string{fmt.Sprintf("/other/%d", i)}}, purge.Options{}); err != nil {
			t.Fatal(err)
		}
	}
	back := n.start("e1", e1.dir)
	if _, body, cs := back.get("/kept.html"); body != "/kept.html v2" {
		t.Errorf("after missing purges past the log: %q (Cache-Status %q), want v2: the site was not purged", body, cs)
	}
	if got := metricValue(t, back.admin, "cdn_edge_purge_log_gaps_total"); got != "1" {
		t.Errorf("cdn_edge_purge_log_gaps_total = %s, want 1", got)
	}
}

// metricValue reads one unlabelled metric from an edge's /metrics.
func metricValue(t testing.TB, admin, name string) string {
	t.Helper()
	res, err := http.Get(admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	return "absent"
}
