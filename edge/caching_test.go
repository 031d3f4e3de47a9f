package edge

import (
	"fmt"
	"maps"
	"net/http"
	"testing"
	"time"
)

// step is one request in a caching scenario and what must come of it.
type step struct {
	advance    time.Duration // move the edge's clock first
	method     string        // default GET
	header     http.Header
	originDown bool // the origin answers 500 for this step
	wantStatus int  // default 200
	wantCache  string
	wantBody   string // "" skips the check; bodies are "v<origin hit number>"
	wantHits   int64  // origin requests so far, after this step
}

func TestCachingRules(t *testing.T) {
	lastMod := time.Now().Add(-100 * time.Hour).UTC().Format(http.TimeFormat)
	tests := []struct {
		name   string
		status int
		header http.Header // origin response header
		etag   bool        // origin answers If-None-Match with 304
		site   func(*SiteConfig)
		steps  []step
	}{
		{
			name: "max-age hit then expiry", header: http.Header{"Cache-Control": {"max-age=60"}},
			steps: []step{
				{wantCache: "miss", wantBody: "v1", wantHits: 1},
				{advance: 30 * time.Second, wantCache: "hit", wantBody: "v1", wantHits: 1},
				{advance: 31 * time.Second, wantCache: "miss", wantBody: "v2", wantHits: 2},
			},
		},
		{
			name: "s-maxage beats max-age", header: http.Header{"Cache-Control": {"max-age=0, s-maxage=60"}},
			steps: []step{{wantCache: "miss", wantHits: 1}, {advance: 10 * time.Second, wantCache: "hit", wantHits: 1}},
		},
		{
			name: "expires", header: http.Header{"Expires": {time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)}},
			steps: []step{{wantCache: "miss", wantHits: 1}, {advance: 30 * time.Minute, wantCache: "hit", wantHits: 1}},
		},
		{
			name: "no-store is never stored", header: http.Header{"Cache-Control": {"no-store"}},
			steps: []step{{wantCache: "pass", wantBody: "v1", wantHits: 1}, {wantCache: "pass", wantBody: "v2", wantHits: 2}},
		},
		{
			name: "private is never stored", header: http.Header{"Cache-Control": {"private, max-age=60"}},
			steps: []step{{wantCache: "pass", wantHits: 1}, {wantCache: "pass", wantHits: 2}},
		},
		{
			name: "set-cookie is never stored", header: http.Header{"Cache-Control": {"max-age=60"}, "Set-Cookie": {"s=1"}},
			steps: []step{{wantCache: "pass", wantHits: 1}, {wantCache: "pass", wantHits: 2}},
		},
		{
			name: "no-cache revalidates every time", header: http.Header{"Cache-Control": {"no-cache"}}, etag: true,
			steps: []step{
				{wantCache: "miss", wantBody: "v1", wantHits: 1},
				{wantCache: "revalidated", wantBody: "v1", wantHits: 2},
				{wantCache: "revalidated", wantBody: "v1", wantHits: 3},
			},
		},
		{
			name: "stale with etag is revalidated by 304", header: http.Header{"Cache-Control": {"max-age=10"}}, etag: true,
			steps: []step{
				{wantCache: "miss", wantHits: 1},
				{advance: 20 * time.Second, wantCache: "revalidated", wantBody: "v1", wantHits: 2},
				{advance: 5 * time.Second, wantCache: "hit", wantBody: "v1", wantHits: 2},
			},
		},
		{
			name: "heuristic freshness from last-modified", header: http.Header{"Last-Modified": {lastMod}},
			steps: []step{{wantCache: "miss", wantHits: 1}, {advance: time.Hour, wantCache: "hit", wantHits: 1}},
		},
		{
			name: "age from upstream counts", header: http.Header{"Cache-Control": {"max-age=60"}, "Age": {"50"}},
			steps: []step{{wantCache: "miss", wantHits: 1}, {advance: 5 * time.Second, wantCache: "hit", wantHits: 1}, {advance: 10 * time.Second, wantCache: "miss", wantHits: 2}},
		},
		{
			name: "request no-cache revalidates", header: http.Header{"Cache-Control": {"max-age=60"}}, etag: true,
			steps: []step{{wantCache: "miss", wantHits: 1}, {header: http.Header{"Cache-Control": {"no-cache"}}, wantCache: "revalidated", wantHits: 2}},
		},
		{
			name: "request max-age", header: http.Header{"Cache-Control": {"max-age=60"}},
			steps: []step{
				{wantCache: "miss", wantHits: 1},
				{advance: 20 * time.Second, header: http.Header{"Cache-Control": {"max-age=30"}}, wantCache: "hit", wantHits: 1},
				{header: http.Header{"Cache-Control": {"max-age=10"}}, wantCache: "miss", wantHits: 2},
			},
		},
		{
			name: "only-if-cached", header: http.Header{"Cache-Control": {"max-age=60"}},
			steps: []step{
				{header: http.Header{"Cache-Control": {"only-if-cached"}}, wantStatus: 504, wantCache: "error", wantHits: 0},
				{wantCache: "miss", wantHits: 1},
				{header: http.Header{"Cache-Control": {"only-if-cached"}}, wantCache: "hit", wantHits: 1},
			},
		},
		{
			name: "must-revalidate forbids stale", header: http.Header{"Cache-Control": {"max-age=10, must-revalidate, stale-while-revalidate=60, stale-if-error=60"}},
			steps: []step{{wantCache: "miss", wantHits: 1}, {advance: 20 * time.Second, originDown: true, wantStatus: 500, wantHits: 2}},
		},
		{
			name: "stale-if-error", header: http.Header{"Cache-Control": {"max-age=10, stale-if-error=60"}},
			steps: []step{
				{wantCache: "miss", wantBody: "v1", wantHits: 1},
				{advance: 20 * time.Second, originDown: true, wantCache: "stale-error", wantBody: "v1", wantHits: 2},
				{advance: 60 * time.Second, originDown: true, wantStatus: 500, wantHits: 3},
			},
		},
		{
			name: "cdn-cache-control overrides cache-control", header: http.Header{"Cache-Control": {"no-store"}, "Cdn-Cache-Control": {"max-age=60"}},
			steps: []step{{wantCache: "miss", wantHits: 1}, {wantCache: "hit", wantHits: 1}},
		},
		{
			name: "authorization not stored", header: http.Header{"Cache-Control": {"max-age=60"}},
			steps: []step{
				{header: http.Header{"Authorization": {"Bearer a"}}, wantCache: "pass", wantHits: 1},
				{wantCache: "miss", wantHits: 2},
			},
		},
		{
			name: "authorization with public stored", header: http.Header{"Cache-Control": {"public, max-age=60"}},
			steps: []step{{header: http.Header{"Authorization": {"Bearer a"}}, wantCache: "miss", wantHits: 1}, {wantCache: "hit", wantHits: 1}},
		},
		{
			name: "unsafe method invalidates", header: http.Header{"Cache-Control": {"max-age=60"}},
			steps: []step{
				{wantCache: "miss", wantHits: 1},
				{method: http.MethodPost, wantCache: "method", wantHits: 2},
				{wantCache: "miss", wantHits: 3},
			},
		},
		{
			name: "head miss fills for get", header: http.Header{"Cache-Control": {"max-age=60"}},
			// The HEAD's answer ends with its header, maybe before the fill
			// does: the GET is a hit or joins the fill, never a second fetch.
			steps: []step{{method: http.MethodHead, wantCache: "miss", wantHits: 1}, {wantBody: "v1", wantHits: 1}},
		},
		{
			name: "site default ttl", header: http.Header{},
			site:  func(s *SiteConfig) { s.TTL.Default = time.Minute },
			steps: []step{{wantCache: "miss", wantHits: 1}, {advance: 50 * time.Second, wantCache: "hit", wantHits: 1}, {advance: 20 * time.Second, wantCache: "miss", wantHits: 2}},
		},
		{
			name: "site max ttl", header: http.Header{"Cache-Control": {"max-age=3600"}},
			site:  func(s *SiteConfig) { s.TTL.Max = 10 * time.Second },
			steps: []step{{wantCache: "miss", wantHits: 1}, {advance: 20 * time.Second, wantCache: "miss", wantHits: 2}},
		},
		{
			name: "site min ttl", header: http.Header{"Cache-Control": {"max-age=1"}},
			site:  func(s *SiteConfig) { s.TTL.Min = time.Minute },
			steps: []step{{wantCache: "miss", wantHits: 1}, {advance: 30 * time.Second, wantCache: "hit", wantHits: 1}},
		},
		{
			name: "404 cached with default ttl", status: 404, header: http.Header{},
			site:  func(s *SiteConfig) { s.TTL.Default = time.Minute },
			steps: []step{{wantStatus: 404, wantCache: "miss", wantHits: 1}, {wantStatus: 404, wantCache: "hit", wantHits: 1}},
		},
		{
			name: "vary star never stored", header: http.Header{"Cache-Control": {"max-age=60"}, "Vary": {"*"}},
			steps: []step{{wantCache: "pass", wantHits: 1}, {wantCache: "pass", wantHits: 2}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var down bool
			var o *countingOrigin
			clk := newClock()
			o = newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
				n := o.hits.Load()
				if down {
					http.Error(w, "origin down", http.StatusInternalServerError)
					return
				}
				// The origin's clock agrees with the edge's.
				w.Header().Set("Date", clk.Now().UTC().Format(http.TimeFormat))
				maps.Copy(w.Header(), tt.header)
				if tt.etag {
					w.Header().Set("ETag", `"same"`)
					if r.Header.Get("If-None-Match") == `"same"` {
						w.WriteHeader(http.StatusNotModified)
						return
					}
				}
				w.WriteHeader(cmpOr(tt.status, 200))
				fmt.Fprintf(w, "v%d", n)
			})
			e := startEdge(t, o.URL, clk, func(c *Config) {
				if tt.site != nil {
					tt.site(&c.Sites[0])
				}
			})
			for i, s := range tt.steps {
				e.Clock.Advance(s.advance)
				down = s.originDown
				res, body := get(t, cmpOr(s.method, http.MethodGet), e.URL+"/obj", s.header)
				cs := res.Header.Get("Cache-Status")
				if cs == "" {
					t.Errorf("step %d: no Cache-Status header", i)
				}
				if res.StatusCode != cmpOr(s.wantStatus, 200) {
					t.Errorf("step %d: status %d, want %d", i, res.StatusCode, cmpOr(s.wantStatus, 200))
				}
				if s.wantCache != "" && cacheResult(cs) != s.wantCache {
					t.Errorf("step %d: Cache-Status %q (%s), want %s", i, cs, cacheResult(cs), s.wantCache)
				}
				if s.wantBody != "" && body != s.wantBody {
					t.Errorf("step %d: body %q, want %q", i, body, s.wantBody)
				}
				if got := o.hits.Load(); got != s.wantHits {
					t.Errorf("step %d: origin hits %d, want %d", i, got, s.wantHits)
				}
			}
		})
	}
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}
