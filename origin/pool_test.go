package origin

import (
	"crypto/x509"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestHostAndSNI: each target sends its own Host header and TLS server
// name, and a certificate that does not match fails over.
func TestHostAndSNI(t *testing.T) {
	checkGoroutines(t)
	type seen struct{ host, sni string }
	var last atomic.Pointer[seen]
	// httptest's certificate is for example.com and 127.0.0.1.
	o := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		last.Store(&seen{host: r.Host, sni: r.TLS.ServerName})
	}))
	o.Config.ErrorLog = log.New(io.Discard, "", 0) // the bad certificate case
	o.StartTLS()
	t.Cleanup(o.Close)
	backup := newCountingOrigin(t, answer(200, "backup"))
	p, _, _ := newTestPool(t, Config{})
	p.roots = x509.NewCertPool()
	p.roots.AddCert(o.Certificate())
	addr := strings.TrimPrefix(o.URL, "https://")

	tests := []struct {
		name       string
		target     Target
		clientHost string
		want       seen
		wantBackup bool
	}{
		{name: "defaults", target: Target{URL: o.URL}, want: seen{host: addr, sni: ""}}, // no SNI for an IP
		{name: "host names the server", target: Target{URL: o.URL, Host: "example.com"}, want: seen{host: "example.com", sni: "example.com"}},
		{name: "host and sni", target: Target{URL: o.URL, Host: "www.site.test:443", SNI: "example.com"}, want: seen{host: "www.site.test:443", sni: "example.com"}},
		{name: "client host", target: Target{URL: o.URL, ClientHost: true}, clientHost: "client.test", want: seen{host: "client.test", sni: ""}},
		{name: "certificate for another name", target: Target{URL: o.URL, Host: "www.site.test"}, wantBackup: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			last.Store(nil)
			g, err := p.Group(GroupConfig{Targets: []Target{tt.target, {URL: backup.URL, Backup: true}}})
			if err != nil {
				t.Fatal(err)
			}
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://ignored/", nil)
			req.Host = tt.clientHost
			res, ans, err := g.Do(req, "/")
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if ans.Backup != tt.wantBackup {
				t.Fatalf("answered by %+v, want backup %v", ans, tt.wantBackup)
			}
			if got := last.Load(); !tt.wantBackup && (got == nil || *got != tt.want) {
				t.Errorf("origin saw %+v, want %+v", got, tt.want)
			}
		})
	}
	// One pool per endpoint: the same server name shares connections.
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.conns) != 4 { // backup; 127.0.0.1 (defaults, client host); example.com (twice); www.site.test
		t.Errorf("connection pools = %d, want 4", len(p.conns))
	}
}

// TestReload: building a site's group again keeps its targets' breakers,
// health checkers and connection pools; Retain stops the checkers of
// targets no group uses any more, and their goroutines go away.
func TestReload(t *testing.T) {
	checkGoroutines(t)
	var aChecks, bChecks atomic.Int64
	a := newCountingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			aChecks.Add(1)
			return
		}
		w.WriteHeader(503) // opens a's breaker
	})
	b := newCountingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			bChecks.Add(1)
		}
	})
	p, reg, _ := newTestPool(t, Config{})
	baseline := runtime.NumGoroutine()
	cfg := GroupConfig{Site: "s", Targets: []Target{{URL: a.URL, Name: "a"}, {URL: b.URL, Backup: true, Name: "b"}},
		Health:  HealthCheck{Path: "/healthz", Interval: 10 * time.Millisecond},
		Breaker: Breaker{Failures: 1, Cooldown: time.Hour}}
	g1, err := p.Group(cfg)
	if err != nil {
		t.Fatal(err)
	}
	res, ans, err := get(t, g1, "/x")
	if err != nil || !ans.Backup {
		t.Fatalf("first request: %v from %+v, want the backup's answer", err, ans)
	}
	res.Body.Close()

	g2, err := p.Group(cfg) // the reload
	if err != nil {
		t.Fatal(err)
	}
	p.Retain(g2)
	for i := range g2.targets {
		if g1.targets[i].member != g2.targets[i].member {
			t.Errorf("target %d: a new member after a reload with the same config", i)
		}
	}
	hitsA := a.hits.Load() - aChecks.Load()
	res, ans, err = get(t, g2, "/x")
	if err != nil || !ans.Backup || ans.Attempts != 1 {
		t.Fatalf("after the reload: %v from %+v, want the backup at once (a's breaker still open)", err, ans)
	}
	res.Body.Close()
	if got := a.hits.Load() - aChecks.Load(); got != hitsA {
		t.Errorf("a served %d requests after the reload, want none (its breaker is open)", got-hitsA)
	}

	// Reload without b: its checks stop, a's go on.
	g3, err := p.Group(GroupConfig{Site: "s", Targets: cfg.Targets[:1], Health: cfg.Health, Breaker: cfg.Breaker})
	if err != nil {
		t.Fatal(err)
	}
	p.Retain(g3)
	select {
	case <-g2.targets[1].check.done:
	default:
		t.Errorf("b's health checker still runs after no group uses b")
	}
	before := bChecks.Load()
	n := aChecks.Load()
	waitFor(t, "a's health checks to go on", func() bool { return aChecks.Load() > n+2 })
	if got := bChecks.Load(); got != before {
		t.Errorf("b checked %d times after it was dropped, want 0", got-before)
	}
	if n, err := testutil.GatherAndCount(reg, "cdn_origin_health"); err != nil || n != 1 {
		t.Errorf("cdn_origin_health series = %d, %v; want 1 (a only)", n, err)
	}

	// Nothing live: every checker and connection goes.
	p.Retain()
	waitFor(t, "goroutines back to before the groups", func() bool { return runtime.NumGoroutine() <= baseline })
	// A group built before keeps working after its targets were dropped.
	res, _, err = get(t, g3, "/x")
	if err != nil {
		t.Fatalf("a dropped group's request: %v", err)
	}
	res.Body.Close()
}

// TestPoolClose: Close stops every checker; Group fails after it.
func TestPoolClose(t *testing.T) {
	checkGoroutines(t)
	o := newCountingOrigin(t, answer(200, "ok"))
	p, _, _ := newTestPool(t, Config{})
	if _, err := p.Group(GroupConfig{Targets: []Target{{URL: o.URL}}, Health: HealthCheck{Path: "/", Interval: 10 * time.Millisecond}}); err != nil {
		t.Fatal(err)
	}
	p.Close()
	if _, err := p.Group(GroupConfig{Targets: []Target{{URL: o.URL}}}); err == nil {
		t.Errorf("Group after Close = nil error, want one")
	}
}

// TestHTTP2Origin: a target's own TLS settings keep HTTP/2 on.
func TestHTTP2Origin(t *testing.T) {
	checkGoroutines(t)
	var proto atomic.Pointer[string]
	o := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proto.Store(&r.Proto)
	}))
	o.EnableHTTP2 = true
	o.StartTLS()
	t.Cleanup(o.Close)
	p, _, _ := newTestPool(t, Config{})
	p.roots = x509.NewCertPool()
	p.roots.AddCert(o.Certificate())
	g, err := p.Group(GroupConfig{Targets: []Target{{URL: o.URL, Host: "example.com"}}})
	if err != nil {
		t.Fatal(err)
	}
	res, _, err := get(t, g, "/")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if got := proto.Load(); got == nil || *got != "HTTP/2.0" {
		t.Errorf("origin saw %v, want HTTP/2.0", got)
	}
}
