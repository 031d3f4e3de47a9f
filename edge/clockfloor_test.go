package edge

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/selfcdn/cdn/purge"
)

// TestClockBehindAfterRestart: an edge that restarts on its disk cache
// with its clock a day behind (a region back from a bad NTP state) still
// purges the objects an earlier run stored, and its Vary generations do
// not repeat the earlier run's.
func TestClockBehindAfterRestart(t *testing.T) {
	version := 1
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=3600")
		fmt.Fprintf(w, "v%d", version)
	}))
	defer o.Close()
	cfg := purgeConfig(o.URL)
	cfg.Cache.Dir, cfg.Cache.Disk = t.TempDir(), 64<<20
	get := func(s *Server) string {
		w := httptest.NewRecorder()
		s.handler.ServeHTTP(w, httptest.NewRequest("GET", "http://example.com/a.css", nil))
		s.handler.bg.Wait()
		return w.Body.String()
	}
	start := func(now time.Time) *Server {
		srv, err := New(cfg, Deps{Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		return srv
	}
	now := time.Now()
	first := start(now)
	if got := get(first); got != "v1" {
		t.Fatalf("first run: %q, want v1", got)
	}
	firstGen := first.handler.fill.Gen()
	first.close(func() {})

	version = 2
	second := start(now.Add(-24 * time.Hour))
	defer second.close(func() {})
	if second.handler.fill.Gen() <= firstGen {
		t.Errorf("Vary generations restart at %d, at or below the earlier run's %d", second.handler.fill.Gen(), firstGen)
	}
	if got := get(second); got != "v1" {
		t.Fatalf("second run before the purge: %q, want v1 from disk", got)
	}
	second.handler.purges.Apply("s", purge.Request{URLs: []string{"/a.css"}})
	if got := get(second); !strings.HasPrefix(got, "v2") {
		t.Errorf("after a purge with the clock a day behind: %q, want v2 (the purge missed the stored object)", got)
	}
}

// TestStartClock: the saved floor wins over a clock behind it, a clock
// ahead wins over the floor, and a broken floor file is an error.
func TestStartClock(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	first, err := startClock(dir, now)
	if err != nil || first != uint64(now.UnixNano()) {
		t.Fatalf("startClock on an empty dir = %d, %v; want the clock, %d", first, err, now.UnixNano())
	}
	behind, err := startClock(dir, now.Add(-time.Hour))
	if err != nil || behind != first+clockReserve {
		t.Errorf("startClock an hour behind = %d, %v; want the floor + reserve %d", behind, err, first+clockReserve)
	}
	ahead := now.Add(time.Hour)
	if got, err := startClock(dir, ahead); err != nil || got != uint64(ahead.UnixNano()) {
		t.Errorf("startClock an hour ahead = %d, %v; want the clock %d", got, err, ahead.UnixNano())
	}
	if got, _ := startClock("", now); got != uint64(now.UnixNano()) {
		t.Errorf("startClock without a cache dir = %d, want the clock", got)
	}
}
