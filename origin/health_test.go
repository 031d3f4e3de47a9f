package origin

import (
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// waitFor polls cond until it holds or a deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestActiveHealth: failing checks mark a primary down, and requests go
// to the backup first without touching it; passing checks bring it back.
func TestActiveHealth(t *testing.T) {
	checkGoroutines(t)
	var sick atomic.Bool
	var checks, served atomic.Int64
	primary := newCountingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/app/healthz" {
			checks.Add(1)
			if sick.Load() {
				w.WriteHeader(500)
			}
			return
		}
		served.Add(1)
	})
	backup := newCountingOrigin(t, answer(200, "backup"))
	p, _, _ := newTestPool(t, Config{})
	g, err := p.Group(GroupConfig{Site: "s",
		Targets: []Target{{URL: primary.URL + "/app/", Name: "primary"}, {URL: backup.URL, Backup: true, Name: "backup"}},
		Health:  HealthCheck{Path: "/healthz", Interval: 10 * time.Millisecond, FailAfter: 2, RecoverAfter: 2}})
	if err != nil {
		t.Fatal(err)
	}
	health := p.m.health.WithLabelValues("primary")
	answeredBy := func() Answered {
		t.Helper()
		res, ans, err := get(t, g, "/page")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return ans
	}
	waitFor(t, "a first health check", func() bool { return checks.Load() > 0 })
	if got := testutil.ToFloat64(health); got != 1 {
		t.Errorf("cdn_origin_health = %v while checks pass, want 1", got)
	}
	if ans := answeredBy(); ans.Backup {
		t.Errorf("answered by %+v while the primary is up, want the primary", ans)
	}

	sick.Store(true)
	waitFor(t, "the primary marked down", func() bool { return testutil.ToFloat64(health) == 0 })
	before := served.Load()
	for range 5 {
		if ans := answeredBy(); !ans.Backup {
			t.Errorf("answered by %+v while the primary is down, want the backup", ans)
		}
	}
	if got := served.Load() - before; got != 0 {
		t.Errorf("primary served %d requests while marked down, want 0", got)
	}

	sick.Store(false)
	waitFor(t, "the primary marked up", func() bool { return testutil.ToFloat64(health) == 1 })
	if ans := answeredBy(); ans.Backup {
		t.Errorf("answered by %+v after the primary recovered, want the primary", ans)
	}
}

// TestDownTargetStillTried: a target marked down is tried after the
// healthy ones, not dropped: health checks can be wrong.
func TestDownTargetStillTried(t *testing.T) {
	checkGoroutines(t)
	primary := newCountingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			w.WriteHeader(503)
		}
	})
	backup := newCountingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			w.WriteHeader(503) // checks pass, requests fail
		}
	})
	p, _, _ := newTestPool(t, Config{})
	g, err := p.Group(GroupConfig{Targets: []Target{{URL: primary.URL}, {URL: backup.URL, Backup: true}},
		Health: HealthCheck{Path: "/healthz", Interval: 10 * time.Millisecond, FailAfter: 1}})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the primary marked down", func() bool { return !g.targets[0].healthy() })
	res, ans, err := get(t, g, "/page")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 || ans.Backup || ans.Attempts != 2 {
		t.Errorf("Do = %d from %+v, want 200 from the primary after the backup failed", res.StatusCode, ans)
	}
}
