package edge

import (
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// clock is a test clock that starts at the real time (origins stamp real
// Date headers) and moves only when told.
type clock struct {
	mu sync.Mutex // protects t
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now()} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// testEdge is an edge serving on a loopback port in front of an origin.
type testEdge struct {
	URL   string
	Clock *clock
	Reg   *prometheus.Registry
	// stop ends the edge before the test does (to restart it); safe to
	// call more than once.
	stop func()
}

// startEdge runs an edge with one catch-all site for originURL, on clk
// (nil: a new clock), with mutate applied to its config, until the test ends.
func startEdge(t *testing.T, originURL string, clk *clock, mutate func(*Config)) *testEdge {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Name = "test-edge"
	cfg.AccessLog = false
	cfg.Cache.Memory = 64 << 20
	cfg.Cache.MaxObject = 1 << 20
	cfg.Cache.Dir = t.TempDir()
	cfg.Cache.Disk = 0 // memory only; the disk tier's tests turn it on
	cfg.Listen = "127.0.0.1:0"
	cfg.Sites = []SiteConfig{{Name: "site", Hosts: []string{"*"}, Origin: originURL}}
	if mutate != nil {
		mutate(&cfg)
	}
	if clk == nil {
		clk = newClock()
	}
	reg := prometheus.NewRegistry()
	srv, err := New(cfg, Deps{Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})), Registry: reg, Now: clk.Now})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	// A test that restarts an edge passes the first one's address.
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	ctx, cancel := contextWithCancel(t)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln, nil) }()
	stop := sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve returned %v", err)
		}
	})
	t.Cleanup(stop)
	return &testEdge{URL: "http://" + ln.Addr().String(), Clock: clk, Reg: reg, stop: stop}
}

// countingOrigin is an httptest origin that counts the requests it gets.
type countingOrigin struct {
	*httptest.Server
	hits atomic.Int64
	mu   sync.Mutex // protects last
	last *http.Request
}

func newOrigin(t testing.TB, h http.HandlerFunc) *countingOrigin {
	t.Helper()
	o := &countingOrigin{}
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.hits.Add(1)
		o.mu.Lock()
		o.last = r.Clone(r.Context())
		o.mu.Unlock()
		h(w, r)
	}))
	t.Cleanup(o.Close)
	return o
}

func (o *countingOrigin) lastRequest() *http.Request {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.last
}

// get sends a request to the edge over HTTP/1.1 and returns the response
// with its body read.
func get(t *testing.T, method, url string, hdr http.Header) (*http.Response, string) {
	t.Helper()
	return getWith(t, http.DefaultClient, method, url, hdr)
}

// getWith is get through a given client (h2cClient for HTTP/2).
func getWith(t *testing.T, c *http.Client, method, url string, hdr http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
	if err != nil {
		t.Fatalf("NewRequest: %v", err)
	}
	maps.Copy(req.Header, hdr)
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("read body of %s %s: %v", method, url, err)
	}
	return res, string(b)
}

// cacheResult reduces a Cache-Status value to what the tests assert.
func cacheResult(cs string) string {
	switch {
	case strings.Contains(cs, "stale-while-revalidate"):
		return "stale"
	case strings.Contains(cs, "stale-if-error"):
		return "stale-error"
	case strings.Contains(cs, "; hit"):
		return "hit"
	case strings.Contains(cs, "fwd-status=304"):
		return "revalidated"
	case strings.Contains(cs, "not-storable"):
		return "pass"
	case strings.Contains(cs, "fwd=method"):
		return "method"
	case strings.Contains(cs, "collapsed"):
		return "collapsed"
	case strings.Contains(cs, "stored"):
		return "miss"
	case strings.HasSuffix(cs, "; fwd=uri-miss"):
		return "miss-unstored"
	case strings.Contains(cs, "fwd=miss; detail="):
		return "error"
	case cs == "":
		return "none"
	}
	return "other: " + cs
}

// metricValue sums every series of the named metric in the edge's registry.
func metricValue(t *testing.T, e *testEdge, name string) float64 {
	t.Helper()
	mfs, err := e.Reg.Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

// getBody fetches url and returns its body, or the error as text; unlike
// get it is safe in a goroutine (no t.Fatal).
func getBody(url string) string {
	res, err := http.Get(url)
	if err != nil {
		return "error: " + err.Error()
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return "error: " + err.Error()
	}
	return string(b)
}

// countersByLabel sums the counter family name by the values of one of
// its labels.
func countersByLabel(t *testing.T, reg *prometheus.Registry, name, label string) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label {
					out[l.GetValue()] += m.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}
