package edge

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/selfcdn/cdn/internal/cachekey"
	"github.com/selfcdn/cdn/internal/testwait"
)

// Regression tests for issue 20's HTTP semantics at the edge: the stored
// Date is kept and Age carries the time in cache (RFC 9111 §5.1, RFC 9110
// §6.6.1), and every answer to a client that accepts gzip or zstd is
// compressed where the type is, misses, revalidations and stale answers as
// well as hits.

// TestDateKeptAgeCounts stores a response whose Date is an hour old and
// reads it 100 s later over HTTP/1.1 and h2c: the miss and the hit carry
// the origin's Date, unchanged, and the hit's Age is the hour plus the 100
// s in cache. A response without Date gets one (RFC 9110 §6.6.1).
func TestDateKeptAgeCounts(t *testing.T) {
	clk := newClock()
	originDate := clk.Now().Add(-time.Hour).UTC().Format(http.TimeFormat)
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=86400")
		if r.URL.Path == "/nodate" {
			w.Header()["Date"] = nil // net/http then sends none
		} else {
			w.Header().Set("Date", originDate)
		}
		io.WriteString(w, "dated "+r.URL.Path)
	})
	e := startEdge(t, o.URL, clk, nil)
	for _, c := range []*http.Client{http.DefaultClient, h2cClient(t)} {
		t.Run(protoName(c), func(t *testing.T) {
			path := "/dated-" + protoName(c)
			miss, _ := getWith(t, c, "GET", e.URL+path, nil)
			if got := miss.Header.Get("Date"); got != originDate {
				t.Errorf("miss Date = %q, want the origin's %q", got, originDate)
			}
			clk.Advance(100 * time.Second)
			// The miss's client may see its response end a moment before
			// the fill has stored it; a GET in that moment joins the fill
			// ("collapsed"). Ask again until it is a hit.
			var hit *http.Response
			testwait.Until(t, "a hit over "+protoName(c), func() bool {
				var body string
				hit, body = getWith(t, c, "GET", e.URL+path, nil)
				r := cacheResult(hit.Header.Get("Cache-Status"))
				if r != "hit" && r != "collapsed" || body != "dated "+path {
					t.Fatalf("second GET: %q %q, want a hit", hit.Header.Get("Cache-Status"), body)
				}
				return r == "hit"
			})
			if got := hit.Header.Values("Date"); len(got) != 1 || got[0] != originDate {
				t.Errorf("hit Date = %q, want the stored %q", got, originDate)
			}
			if got := hit.Header.Get("Age"); got != "3700" {
				t.Errorf("hit Age = %q, want 3700 (an hour old on arrival, 100 s in cache)", got)
			}
			if miss.Close || hit.Close {
				t.Errorf("connection closed after the miss (%v) or the hit (%v), want kept alive", miss.Close, hit.Close)
			}
			clk.Advance(-100 * time.Second)
		})
	}
	for _, c := range []*http.Client{http.DefaultClient, h2cClient(t)} {
		res, _ := getWith(t, c, "GET", e.URL+"/nodate", nil)
		if d := res.Header.Values("Date"); len(d) != 1 {
			t.Errorf("%s: response to an origin without Date has Date %q, want one", protoName(c), d)
		} else if _, err := http.ParseTime(d[0]); err != nil {
			t.Errorf("%s: Date %q: %v", protoName(c), d[0], err)
		}
	}
}

// TestCompressedBeyondHits asks for a compressible object as gzip and
// zstd, over HTTP/1.1 and h2c, in every way the edge can answer: a miss
// (of known and unknown length, GET and HEAD), a revalidation (a browser's
// hard reload sends Cache-Control: no-cache), an answer kept stale for an
// origin error, and a stale-while-revalidate hit. Every one comes
// compressed, decodes to the origin's bytes, says Vary: Accept-Encoding
// and carries the coding's own ETag. A miss larger than max_object streams
// through as identity (documented in edge/README.md).
func TestCompressedBeyondHits(t *testing.T) {
	css := strings.Repeat("body { color: #123456; margin: 0 auto; }\n", 400) // 16 KB
	big := strings.Repeat("p { padding: 1px }\n", 70_000)                    // 1.3 MB, above max_object
	var failing atomic.Bool
	clk := newClock()
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		// The edge's clock moves in this test: Date follows it, so a
		// response is as old as the edge thinks.
		w.Header().Set("Date", clk.Now().UTC().Format(http.TimeFormat))
		if failing.Load() && strings.HasPrefix(r.URL.Path, "/sie") {
			http.Error(w, "origin down", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/css")
		w.Header().Set("ETag", `"c1"`)
		switch {
		case strings.HasPrefix(r.URL.Path, "/sie"):
			w.Header().Set("Cache-Control", "max-age=1, stale-if-error=600")
		case strings.HasPrefix(r.URL.Path, "/swr"):
			w.Header().Set("Cache-Control", "max-age=1, stale-while-revalidate=600")
		default:
			w.Header().Set("Cache-Control", "max-age=600")
		}
		if r.Header.Get("If-None-Match") == `"c1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		body := css
		if strings.HasPrefix(r.URL.Path, "/big") {
			body = big
		}
		if strings.HasPrefix(r.URL.Path, "/chunked") {
			// No Content-Length: the edge learns the size at the end.
			io.WriteString(w, body[:100])
			w.(http.Flusher).Flush()
			io.WriteString(w, body[100:])
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		io.WriteString(w, body)
	})
	e := startEdge(t, o.URL, clk, nil)
	identity := http.Header{"Accept-Encoding": {"identity"}}
	// store fetches url as identity and waits until it is stored: the
	// client has the whole body a moment before the fill leaves its flight,
	// and a request in that moment would join it.
	store := func(t *testing.T, c *http.Client, url string) {
		t.Helper()
		getWith(t, c, "GET", url, identity)
		testwait.Until(t, url+" stored", func() bool {
			res, _ := getWith(t, c, "GET", url, http.Header{"Accept-Encoding": {"identity"}, "Cache-Control": {"only-if-cached"}})
			return cacheResult(res.Header.Get("Cache-Status")) == "hit"
		})
	}
	tests := []struct {
		name   string
		path   string
		method string
		prime  func(t *testing.T, c *http.Client, url string) // before the request under test
		header http.Header
		want   string // Content-Encoding when the client takes gzip or zstd
		cache  string // cacheResult of the answer
		body   string
	}{
		{name: "miss", path: "/miss", want: "coded", cache: "miss", body: css},
		{name: "miss of unknown length", path: "/chunked", want: "coded", cache: "miss", body: css},
		{name: "head miss", path: "/head", method: "HEAD", want: "coded", cache: "miss"},
		{name: "hard reload revalidated", path: "/reload", header: http.Header{"Cache-Control": {"no-cache"}, "Pragma": {"no-cache"}},
			prime: store,
			want:  "coded", cache: "revalidated", body: css},
		{name: "max-age=0 revalidated", path: "/reload0", header: http.Header{"Cache-Control": {"max-age=0"}},
			prime: store,
			want:  "coded", cache: "revalidated", body: css},
		{name: "stale for an origin error", path: "/sie",
			prime: func(t *testing.T, c *http.Client, url string) {
				store(t, c, url)
				clk.Advance(10 * time.Second)
				failing.Store(true)
			},
			want: "coded", cache: "stale-error", body: css},
		{name: "stale while revalidate", path: "/swr",
			prime: func(t *testing.T, c *http.Client, url string) {
				store(t, c, url)
				clk.Advance(10 * time.Second)
			},
			want: "coded", cache: "stale", body: css},
		{name: "miss above max_object streams as identity", path: "/big", want: "", cache: "miss-unstored", body: big},
	}
	n := 0
	for _, c := range []*http.Client{http.DefaultClient, h2cClient(t)} {
		for _, coding := range []string{"gzip", "zstd"} {
			for _, tt := range tests {
				t.Run(fmt.Sprintf("%s/%s/%s", protoName(c), coding, tt.name), func(t *testing.T) {
					n++
					failing.Store(false)
					url := fmt.Sprintf("%s%s-%d", e.URL, tt.path, n)
					if tt.prime != nil {
						tt.prime(t, c, url)
					}
					hdr := http.Header{"Accept-Encoding": {"br, " + coding}}
					maps.Copy(hdr, tt.header)
					method := cmp.Or(tt.method, "GET")
					// The priming fill is stored a moment before its flight
					// leaves the group; a request in that moment joins it
					// (and gets its fresh answer). Ask again.
					var res *http.Response
					var body string
					testwait.Until(t, "an answer that does not join the priming fill", func() bool {
						res, body = getWith(t, c, method, url, hdr)
						return tt.prime == nil || cacheResult(res.Header.Get("Cache-Status")) != "collapsed"
					})
					want := tt.want
					if want == "coded" {
						want = coding
					}
					ce := res.Header.Get("Content-Encoding")
					if res.StatusCode != 200 || ce != want || cacheResult(res.Header.Get("Cache-Status")) != tt.cache {
						t.Fatalf("%s %s: %d, Content-Encoding %q, Cache-Status %q; want 200, %q, %s",
							method, tt.path, res.StatusCode, ce, res.Header.Get("Cache-Status"), want, tt.cache)
					}
					if method == "GET" {
						if got := decode(t, ce, body); got != tt.body {
							t.Errorf("decoded body: %d bytes, want the origin's %d", len(got), len(tt.body))
						}
						if cl := res.Header.Get("Content-Length"); cl != "" && cl != strconv.Itoa(len(body)) {
							t.Errorf("Content-Length %s for a %d-byte body", cl, len(body))
						}
					}
					if want == "" {
						return
					}
					if names, _ := cachekey.ParseVary(res.Header); !slices.Contains(names, "Accept-Encoding") {
						t.Errorf("Vary %q, want Accept-Encoding", res.Header.Values("Vary"))
					}
					if tag := res.Header.Get("Etag"); tag != `"c1-`+want+`"` {
						t.Errorf("ETag %q, want %q", tag, `"c1-`+want+`"`)
					}
					// The next hit agrees: same coding, same ETag.
					hit, hitBody := getWith(t, c, "GET", url, http.Header{"Accept-Encoding": {coding}})
					if hit.Header.Get("Content-Encoding") != want || hit.Header.Get("Etag") != res.Header.Get("Etag") || decode(t, want, hitBody) != css {
						t.Errorf("next GET: Content-Encoding %q ETag %q, want %q %q and the same bytes",
							hit.Header.Get("Content-Encoding"), hit.Header.Get("Etag"), want, res.Header.Get("Etag"))
					}
				})
			}
		}
	}
}

// TestSetH1DateAllocs: keeping the stored Date costs an HTTP/1.1 hit no
// allocation (its parser is pooled).
func TestSetH1DateAllocs(t *testing.T) {
	var rh fasthttp.ResponseHeader
	date := "Sun, 06 Dec 2026 06:04:11 GMT"
	if n := testing.AllocsPerRun(100, func() { setH1Date(&rh, date) }); n > 0 && !raceEnabled {
		t.Errorf("setH1Date allocates %.0f times per response, want 0", n)
	}
	if got := string(rh.Peek("Date")); got != date {
		t.Errorf("Date after setH1Date = %q, want %q", got, date)
	}
}
