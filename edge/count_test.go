package edge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/selfcdn/cdn/internal/natstest"
	"github.com/selfcdn/cdn/internal/state"
	"github.com/selfcdn/cdn/purge"
)

// countedEdge is an edge with a disk tier holding /a.css, /b.css,
// /img/c.png and /vary.css (two variants), each with a gzip copy where
// it is text, tagged by type.
func countedEdge(t *testing.T, disk bool) *Server {
	t.Helper()
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=3600")
		kind := "css"
		if strings.HasSuffix(r.URL.Path, ".png") {
			kind = "img"
		}
		w.Header().Set("Content-Type", map[string]string{"css": "text/css", "img": "image/png"}[kind])
		w.Header().Set("Surrogate-Key", kind)
		if r.URL.Path == "/vary.css" {
			w.Header().Set("Vary", "Accept-Language")
		}
		fmt.Fprintf(w, "%s %s", r.URL.Path, strings.Repeat("x", 2000))
	}))
	t.Cleanup(o.Close)
	cfg := purgeConfig(o.URL)
	if disk {
		cfg.Cache.Dir, cfg.Cache.Disk = t.TempDir(), 64<<20
	}
	srv, err := New(cfg, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.close(func() {}) })
	for _, p := range []string{"/a.css", "/b.css", "/img/c.png", "/vary.css"} {
		for _, hdr := range [][2]string{{"Accept-Encoding", "gzip"}, {"Accept-Language", "fr"}, {"Accept-Language", "de"}} {
			req := httptest.NewRequest("GET", "http://example.com"+p, nil)
			req.Header.Set(hdr[0], hdr[1])
			srv.handler.ServeHTTP(httptest.NewRecorder(), req)
			srv.handler.bg.Wait()
		}
	}
	return srv
}

// TestCountPurge: the blast radius of a purge is the URLs on disk it
// would newly match, each URL once whatever its variants and encodings.
func TestCountPurge(t *testing.T) {
	srv := countedEdge(t, true)
	h := srv.handler
	tests := []struct {
		name string
		site string
		req  purge.Request
		want int
	}{
		{"everything", "s", purge.Request{All: true}, 4},
		{"one URL", "s", purge.Request{URLs: []string{"/a.css"}}, 1},
		{"one absolute URL", "s", purge.Request{URLs: []string{"http://example.com/b.css"}}, 1},
		{"a URL of another host", "s", purge.Request{URLs: []string{"http://other.test/b.css"}}, 0},
		{"a prefix", "s", purge.Request{Prefixes: []string{"/img/"}}, 1},
		{"a tag", "s", purge.Request{Tags: []string{"css"}}, 3},
		{"soft, by tag", "s", purge.Request{Tags: []string{"img"}, Soft: true}, 1},
		{"nothing stored", "s", purge.Request{URLs: []string{"/none"}}, 0},
		{"another site", "other", purge.Request{All: true}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			matched, scanned, err := h.countPurge(t.Context(), tt.site, tt.req)
			if err != nil || matched != tt.want || scanned != 4 {
				t.Errorf("countPurge = %d of %d, %v; want %d of 4", matched, scanned, err, tt.want)
			}
		})
	}
	// What is purged already is no more blast.
	h.purges.Apply("s", purge.Request{Tags: []string{"css"}})
	if matched, _, err := h.countPurge(t.Context(), "s", purge.Request{All: true}); err != nil || matched != 1 {
		t.Errorf("after purging the css: everything matches %d (%v), want 1", matched, err)
	}
	// A count never changes what is served.
	if n := h.purges.Rules(); n != 1 {
		t.Errorf("%d purge rules after counting, want the one applied", n)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, _, err := h.countPurge(ctx, "s", purge.Request{All: true}); !errors.Is(err, context.Canceled) {
		t.Errorf("a count cut short: %v, want context.Canceled", err)
	}
	if _, _, err := countedEdge(t, false).handler.countPurge(t.Context(), "s", purge.Request{All: true}); !errors.Is(err, errNoDisk) {
		t.Errorf("no disk tier: %v, want errNoDisk", err)
	}
}

// TestAnswerCounts: the count asked over NATS, as control asks it.
func TestAnswerCounts(t *testing.T) {
	srv := countedEdge(t, true)
	srv.cfg.Name = "edge-a"
	ns := natstest.Start(t, "", "")
	nc := natstest.Connect(t, ns.URL)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { srv.answerCounts(ctx, nc); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	ask := func(body string) state.CountAnswer {
		t.Helper()
		var m *nats.Msg
		var err error
		for range 50 { // until the subscription is in place
			if m, err = nc.Request(state.CountSubject("edge-a"), []byte(body), time.Second); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("ask: %v", err)
		}
		var a state.CountAnswer
		if err := json.Unmarshal(m.Data, &a); err != nil {
			t.Fatalf("answer %q: %v", m.Data, err)
		}
		return a
	}
	if a := ask(`{"site":"s","purge":{"tags":["css"]}}`); a.Edge != "edge-a" || a.Matched != 3 || a.Scanned != 4 || a.Error != "" {
		t.Errorf("answer %+v, want 3 of 4 from edge-a", a)
	}
	for _, bad := range []string{`not json`, `{"site":"s","purge":"all"}`, `{"site":"s","purge":{"urls":5}}`} {
		if a := ask(bad); a.Error == "" || a.Matched != 0 {
			t.Errorf("%s: answer %+v, want an error", bad, a)
		}
	}
}

// TestReportStats: every second the edge publishes what it served since
// the last report, by site, from its request counters.
func TestReportStats(t *testing.T) {
	srv := countedEdge(t, false) // 12 requests: misses, then hits
	srv.cfg.Name, srv.cfg.Region = "edge-a", "r1"
	ns := natstest.Start(t, "", "")
	nc := natstest.Connect(t, ns.URL)
	sub, err := nc.SubscribeSync(state.StatsSubject("edge-a"))
	if err != nil {
		t.Fatal(err)
	}
	nc.Flush()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { srv.reportStats(ctx, nc); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	// Four more requests, after the reporter's first reading.
	time.Sleep(100 * time.Millisecond)
	for _, p := range []string{"/a.css", "/a.css", "/b.css", "/img/c.png"} {
		srv.handler.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "http://example.com"+p, nil))
	}
	var got state.SiteFigure
	deadline := time.Now().Add(5 * time.Second)
	for got.Requests < 4 && time.Now().Before(deadline) {
		m, err := sub.NextMsg(2 * time.Second)
		if err != nil {
			t.Fatalf("no report: %v", err)
		}
		var s state.EdgeStats
		if err := json.Unmarshal(m.Data, &s); err != nil {
			t.Fatal(err)
		}
		if s.Edge != "edge-a" || s.Region != "r1" || s.Seconds <= 0 {
			t.Errorf("report %+v", s)
		}
		got.Add(s.Sites["s"])
	}
	if got.Requests != 4 || got.Hits != 4 || got.Misses != 0 || got.Bytes == 0 || got.HitBytes != got.Bytes {
		t.Errorf("reported %+v, want the 4 hits since the first reading, every byte from cache", got)
	}
}
