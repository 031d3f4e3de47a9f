package edge

import (
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/selfcdn/cdn/edge/cache"
	"github.com/selfcdn/cdn/edge/freshness"
	"github.com/selfcdn/cdn/purge"
)

// purgeConfig is an edge with one catch-all site "s" for origin.
func purgeConfig(origin string) Config {
	cfg := DefaultConfig()
	cfg.AccessLog = false
	cfg.Sites = []SiteConfig{{Name: "s", Hosts: []string{"*"}, Origin: origin}}
	return cfg
}

// TestPurgeBothTiers: a purge applied to the edge's table removes an
// object whether it answers from memory or from disk, takes its encoded
// and Vary variants with it, and strips the tag headers from responses.
func TestPurgeBothTiers(t *testing.T) {
	version := 1
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Header().Set("Content-Type", "text/css")
		w.Header().Set("Surrogate-Key", "css "+strings.Trim(r.URL.Path, "/"))
		w.Header().Set("Cache-Tag", "site-wide")
		if r.URL.Path == "/vary.css" {
			w.Header().Set("Vary", "Accept-Language")
		}
		fmt.Fprintf(w, "%s v%d %s", r.URL.Path, version, strings.Repeat("x", 2000))
	}))
	defer o.Close()
	cfg := purgeConfig(o.URL)
	cfg.Cache.Dir, cfg.Cache.Disk = t.TempDir(), 64<<20
	cfg.Cache.MaxObject = 64 << 10
	srv, err := New(cfg, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.close(func() {})
	h := srv.handler
	get := func(path string, hdr ...string) (string, http.Header) {
		req := httptest.NewRequest("GET", "http://example.com"+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		h.bg.Wait()
		body := w.Body.String()
		if w.Result().Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(w.Body)
			if err != nil {
				t.Fatalf("GET %s: gzip: %v", path, err)
			}
			b, _ := io.ReadAll(zr)
			body = string(b)
		}
		return body[:min(len(body), strings.IndexByte(body+" ", ' ')+3)], w.Result().Header
	}
	paths := []string{"/a.css", "/b.css", "/vary.css"}
	for _, p := range paths {
		get(p)
		get(p, "Accept-Encoding", "gzip") // an encoded copy too
	}
	if _, hdr := get("/a.css"); hdr.Get("Surrogate-Key") != "" || hdr.Get("Cache-Tag") != "" {
		t.Errorf("tag headers reached the client: %v", hdr)
	}
	h.mem.Delete("http://example.com/b.css") // b.css now answers from disk
	version = 2
	tests := []struct {
		name string
		req  purge.Request
		path string
	}{
		{name: "memory, by URL", req: purge.Request{URLs: []string{"/a.css"}}, path: "/a.css"},
		{name: "disk, by tag", req: purge.Request{Tags: []string{"b.css"}}, path: "/b.css"},
		{name: "Vary variants", req: purge.Request{Prefixes: []string{"/vary"}}, path: "/vary.css"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if body, _ := get(tt.path, "Accept-Encoding", "gzip"); strings.Contains(body, "v2") {
				t.Fatalf("GET %s before the purge = %q, want the cached v1", tt.path, body)
			}
			h.purges.Apply("s", tt.req)
			for _, enc := range []string{"", "gzip"} {
				if body, _ := get(tt.path, "Accept-Encoding", enc); !strings.HasSuffix(body, "v2") {
					t.Errorf("GET %s (Accept-Encoding %q) after the purge = %q, want v2", tt.path, enc, body)
				}
			}
		})
	}
}

// BenchmarkTagPurgeMillion applies tag purges to an edge whose memory tier
// holds 1,000,000 objects, 1% of them under each of 100 tags. A purge
// costs the same whatever the cache holds: it adds a rule, and lookups
// check it. After the loop every object is looked up once: the purged
// groups must all be gone and the rest kept. Run with -benchtime 20x.
func BenchmarkTagPurgeMillion(b *testing.B) {
	const objects, groups = 1_000_000, 100
	cfg := purgeConfig("http://127.0.0.1:1")
	cfg.Cache.Memory = 4 << 30
	srv, err := New(cfg, Deps{})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.close(func() {})
	h := srv.handler
	s := h.routes.Load().Lookup("example.com")
	meta := freshness.Meta{Lifetime: time.Hour, ResponseTime: time.Now()}
	stamp := h.purges.Clock()
	key := func(i int) string { return fmt.Sprintf("http://example.com/o/%d", i) }
	for i := range objects {
		e := cache.NewEntry(200, http.Header{}, []byte("body"), meta, nil)
		e.Stamp, e.Tags = stamp, []string{"all", fmt.Sprintf("g%d", i%groups)}
		if !h.mem.Put(key(i), e) {
			b.Fatalf("object %d not admitted", i)
		}
	}
	purged := 0
	b.ResetTimer()
	for b.Loop() {
		h.purges.Apply("s", purge.Request{Tags: []string{fmt.Sprintf("g%d", purged%groups)}})
		purged++
	}
	b.StopTimer()
	start := time.Now()
	gone, missing := 0, 0
	for i := range objects {
		if _, ok := h.mem.Get(key(i)); !ok {
			missing++ // evicted: nothing to judge
			continue
		}
		e, _, v := h.find(s, key(i), http.Header{})
		e.Release()
		wantGone := i%groups < min(purged, groups)
		if (v == purge.Gone) != wantGone {
			b.Fatalf("object %d (group %d) after %d tag purges: %v", i, i%groups, purged, v)
		}
		if wantGone {
			gone++
		}
	}
	b.ReportMetric(float64(time.Since(start).Milliseconds()), "lookup-all-ms")
	b.ReportMetric(float64(gone), "objects-purged")
	b.ReportMetric(float64(missing), "objects-evicted")
}
