package origin

import (
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// checkGoroutines fails the test if goroutines started during it are
// still running once its cleanups ran. Call it first, so its cleanup
// runs last.
func checkGoroutines(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				t.Errorf("goroutines: %d after the test, %d before\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// fakeClock is a clock tests move forward by hand.
type fakeClock struct{ offset atomic.Int64 }

func (c *fakeClock) Now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *fakeClock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

// newTestPool returns a pool whose metrics go to a fresh registry and
// whose logs go to the test's output; it closes with the test.
func newTestPool(t *testing.T, cfg Config) (*Pool, *prometheus.Registry, *fakeClock) {
	t.Helper()
	reg := prometheus.NewRegistry()
	p := NewPool(cfg, reg, slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})))
	clock := new(fakeClock)
	p.now = clock.Now
	t.Cleanup(p.Close)
	return p, reg, clock
}

// countingOrigin is an httptest origin that counts requests and the
// connections made to it.
type countingOrigin struct {
	*httptest.Server
	hits  atomic.Int64
	conns atomic.Int64
}

func newCountingOrigin(t *testing.T, h http.HandlerFunc) *countingOrigin {
	t.Helper()
	o := &countingOrigin{}
	o.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.hits.Add(1)
		h(w, r)
	}))
	o.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			o.conns.Add(1)
		}
	}
	o.Start()
	t.Cleanup(o.Close)
	return o
}

// answer is a handler writing status and body.
func answer(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(status)
		w.Write([]byte(body))
	}
}

// deadURL is the URL of a port nobody listens on: dials are refused.
func deadURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := "http://" + ln.Addr().String()
	ln.Close()
	return u
}

// rawOrigin is a TCP server that hands each connection to serve: an
// origin that answers garbage, or nothing.
type rawOrigin struct {
	ln      net.Listener
	accepts atomic.Int64
	wg      sync.WaitGroup
}

func newRawOrigin(t *testing.T, serve func(net.Conn)) *rawOrigin {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &rawOrigin{ln: ln}
	o.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			o.accepts.Add(1)
			o.wg.Go(func() {
				defer c.Close()
				serve(c)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		o.wg.Wait()
	})
	return o
}

func (o *rawOrigin) URL() string { return "http://" + o.ln.Addr().String() }

// get sends a GET for uri through g.
func get(t *testing.T, g *Group, uri string) (*http.Response, Answered, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://ignored"+uri, nil)
	if err != nil {
		t.Fatal(err)
	}
	return g.Do(req, uri)
}
