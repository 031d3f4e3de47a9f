package origin

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestBreakerStates walks the state machine: closed, open after N
// failures, half-open after the cooldown with one probe, and back.
func TestBreakerStates(t *testing.T) {
	type step struct {
		after   time.Duration // since the start
		do      string        // "allow", "fail", "ok", "ignore" (the last allowed request's outcome)
		wantOK  bool          // for allow
		wantNow breakerState
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{name: "opens after 3 failures in a row", steps: []step{
			{do: "fail", wantNow: stateClosed}, {do: "fail", wantNow: stateClosed}, {do: "ok", wantNow: stateClosed},
			{do: "fail"}, {do: "fail"}, {do: "fail", wantNow: stateOpen},
			{do: "allow", wantOK: false, wantNow: stateOpen},
		}},
		{name: "probe succeeds", steps: []step{
			{do: "fail"}, {do: "fail"}, {do: "fail", wantNow: stateOpen},
			{after: time.Second, do: "allow", wantOK: true, wantNow: stateHalfOpen},
			{after: time.Second, do: "allow", wantOK: false, wantNow: stateHalfOpen}, // one probe at a time
			{after: time.Second, do: "ok", wantNow: stateClosed},
			{after: time.Second, do: "allow", wantOK: true, wantNow: stateClosed},
		}},
		{name: "probe fails", steps: []step{
			{do: "fail"}, {do: "fail"}, {do: "fail", wantNow: stateOpen},
			{after: time.Second, do: "allow", wantOK: true, wantNow: stateHalfOpen},
			{after: time.Second, do: "fail", wantNow: stateOpen},
			{after: 1500 * time.Millisecond, do: "allow", wantOK: false, wantNow: stateOpen}, // a new cooldown
			{after: 2 * time.Second, do: "allow", wantOK: true, wantNow: stateHalfOpen},
		}},
		{name: "probe abandoned frees the slot", steps: []step{
			{do: "fail"}, {do: "fail"}, {do: "fail", wantNow: stateOpen},
			{after: time.Second, do: "allow", wantOK: true, wantNow: stateHalfOpen},
			{after: time.Second, do: "ignore", wantNow: stateHalfOpen},
			{after: time.Second, do: "allow", wantOK: true, wantNow: stateHalfOpen},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gauge := prometheus.NewGauge(prometheus.GaugeOpts{Name: "g"})
			b := newBreaker(Breaker{Failures: 3, Cooldown: time.Second}, gauge, nil)
			start := time.Now()
			probe := false
			for i, s := range tt.steps {
				now := start.Add(s.after)
				switch s.do {
				case "allow":
					var ok bool
					ok, probe = b.allow(now)
					if ok != s.wantOK {
						t.Errorf("step %d: allow = %v, want %v", i, ok, s.wantOK)
					}
				case "fail":
					b.record(outcomeFailure, probe, now)
					probe = false
				case "ok":
					b.record(outcomeSuccess, probe, now)
					probe = false
				case "ignore":
					b.record(outcomeIgnored, probe, now)
					probe = false
				}
				if got := b.current(); got != s.wantNow {
					t.Errorf("step %d (%s): state %s, want %s", i, s.do, got, s.wantNow)
				}
				if got := testutil.ToFloat64(gauge); got != float64(s.wantNow) {
					t.Errorf("step %d: gauge %v, want %v", i, got, float64(s.wantNow))
				}
			}
		})
	}
}

// TestBreakerSparesDeadOrigin: once the breaker opens, a failing primary
// is no longer connected to for every request; after the cooldown one
// probe finds it back and closes the breaker.
func TestBreakerSparesDeadOrigin(t *testing.T) {
	checkGoroutines(t)
	var broken atomic.Bool
	broken.Store(true)
	primary := newCountingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if broken.Load() {
			// Drop the connection without an answer: each request
			// costs the edge a new connection.
			c, _, _ := w.(http.Hijacker).Hijack()
			c.Close()
			return
		}
		w.Write([]byte("primary"))
	})
	backup := newCountingOrigin(t, answer(200, "backup"))
	p, reg, clock := newTestPool(t, Config{})
	g, err := p.Group(GroupConfig{Site: "s", Targets: []Target{{URL: primary.URL, Name: "primary"}, {URL: backup.URL, Backup: true, Name: "backup"}},
		Breaker: Breaker{Failures: 3, Cooldown: time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	send := func(n int, wantBackup bool) {
		t.Helper()
		for i := range n {
			res, ans, err := get(t, g, "/")
			if err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
			res.Body.Close()
			if ans.Backup != wantBackup {
				t.Errorf("request %d answered by %+v, want backup %v", i, ans, wantBackup)
			}
		}
	}
	send(20, true)
	if got := primary.conns.Load(); got != 3 {
		t.Errorf("connections to the failing primary = %d, want 3 (then the breaker opens)", got)
	}
	if got := testutil.ToFloat64(p.m.breaker.WithLabelValues("primary")); got != float64(stateOpen) {
		t.Errorf("cdn_origin_breaker_state = %v, want 2 (open)", got)
	}

	broken.Store(false)
	send(5, true) // still cooling down: the primary is not asked
	clock.Advance(time.Minute)
	send(5, false) // the first is the probe; it closes the breaker
	if got := primary.hits.Load(); got != 3+5 {
		t.Errorf("primary hits = %d, want 3 failed + 5 answered", got)
	}
	if got := testutil.ToFloat64(p.m.breaker.WithLabelValues("primary")); got != float64(stateClosed) {
		t.Errorf("cdn_origin_breaker_state = %v, want 0 (closed)", got)
	}
	if n, err := testutil.GatherAndCount(reg, "cdn_origin_breaker_state"); err != nil || n != 2 {
		t.Errorf("cdn_origin_breaker_state series = %d, %v; want 2", n, err)
	}
}

// TestAllBreakersOpen: with every breaker open the group still tries its
// origins, primary first, rather than fail without trying; an origin that
// answers closes its breaker.
func TestAllBreakersOpen(t *testing.T) {
	checkGoroutines(t)
	var up atomic.Bool
	var mu sync.Mutex
	var order []string // origins asked, in order; guarded by mu
	mk := func(name string) *httptest.Server {
		return newCountingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			order = append(order, name)
			mu.Unlock()
			if !up.Load() {
				w.WriteHeader(503)
			}
		}).Server
	}
	primary, backup := mk("primary"), mk("backup")
	p, _, _ := newTestPool(t, Config{})
	g, err := p.Group(GroupConfig{Targets: []Target{{URL: backup.URL, Backup: true}, {URL: primary.URL}}, Breaker: Breaker{Failures: 1, Cooldown: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	res, _, err := get(t, g, "/") // opens both
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	for _, tg := range g.targets {
		if s := tg.br.current(); s != stateOpen {
			t.Fatalf("breaker of %s = %s, want open", tg.label, s)
		}
	}
	mu.Lock()
	order = nil
	mu.Unlock()
	up.Store(true)
	res, ans, err := get(t, g, "/")
	if err != nil || res.StatusCode != 200 || ans.Backup {
		t.Fatalf("Do with every breaker open = %v, %+v; want 200 from the primary", err, ans)
	}
	res.Body.Close()
	mu.Lock()
	defer mu.Unlock()
	if len(order) != 1 || order[0] != "primary" {
		t.Errorf("origins asked = %v, want [primary]", order)
	}
	if s := g.targets[1].br.current(); s != stateClosed {
		t.Errorf("primary breaker after it answered = %s, want closed", s)
	}
}
