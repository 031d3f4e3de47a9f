package edge

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/selfcdn/cdn/internal/testwait"
)

func TestStaleWhileRevalidate(t *testing.T) {
	clk := newClock()
	var o *countingOrigin
	o = newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Date", clk.Now().UTC().Format(http.TimeFormat))
		w.Header().Set("Cache-Control", "max-age=10, stale-while-revalidate=60")
		fmt.Fprintf(w, "v%d", o.hits.Load())
	})
	e := startEdge(t, o.URL, clk, nil)
	get(t, "GET", e.URL+"/swr", nil)
	clk.Advance(20 * time.Second)
	res, body := get(t, "GET", e.URL+"/swr", nil)
	if got := cacheResult(res.Header.Get("Cache-Status")); got != "stale" || body != "v1" {
		t.Fatalf("inside the swr window: %s %q, want stale \"v1\"", got, body)
	}
	if age := res.Header.Get("Age"); age != "20" {
		t.Errorf("Age = %q, want 20", age)
	}
	testwait.Until(t, "background refresh", func() bool { return o.hits.Load() == 2 })
	// A GET in the moment between the refresh's answer and its store
	// finds the entry stale still and starts another refresh: the entry
	// that ends up cached may be v3.
	testwait.Until(t, "refreshed entry", func() bool {
		res, body := get(t, "GET", e.URL+"/swr", nil)
		return cacheResult(res.Header.Get("Cache-Status")) == "hit" && body != "v1"
	})
}

func TestVaryVariants(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Vary", "Accept-Language")
		fmt.Fprintf(w, "lang=%s", r.Header.Get("Accept-Language"))
	})
	e := startEdge(t, o.URL, nil, nil)
	tests := []struct {
		lang, wantCache, wantBody string
		wantHits                  int64
	}{
		{lang: "en", wantCache: "miss", wantBody: "lang=en", wantHits: 1},
		{lang: "fr", wantCache: "miss", wantBody: "lang=fr", wantHits: 2},
		{lang: "EN", wantCache: "hit", wantBody: "lang=en", wantHits: 2}, // normalized
		{lang: "fr", wantCache: "hit", wantBody: "lang=fr", wantHits: 2},
	}
	for i, tt := range tests {
		res, body := get(t, "GET", e.URL+"/v", http.Header{"Accept-Language": {tt.lang}})
		if got := cacheResult(res.Header.Get("Cache-Status")); got != tt.wantCache || body != tt.wantBody {
			t.Errorf("request %d (%s): %s %q, want %s %q", i, tt.lang, got, body, tt.wantCache, tt.wantBody)
		}
		if got := o.hits.Load(); got != tt.wantHits {
			t.Errorf("request %d: origin hits %d, want %d", i, got, tt.wantHits)
		}
	}
}

func TestVariantsBounded(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Vary", "X-Junk")
		io.WriteString(w, "x")
	})
	e := startEdge(t, o.URL, nil, func(c *Config) { c.Cache.MaxVariants = 3 })
	for i := range 10 {
		get(t, "GET", e.URL+"/b", http.Header{"X-Junk": {fmt.Sprint(i)}})
	}
	// Variants 0-2 were stored; 3-9 were not.
	for i, want := range map[int]string{0: "hit", 2: "hit", 5: "miss", 9: "miss"} {
		res, _ := get(t, "GET", e.URL+"/b", http.Header{"X-Junk": {fmt.Sprint(i)}})
		if got := cacheResult(res.Header.Get("Cache-Status")); got != want {
			t.Errorf("variant %d: %s, want %s", i, got, want)
		}
	}
}

func TestNotModifiedRefreshesHeaders(t *testing.T) {
	clk := newClock()
	var o *countingOrigin
	o = newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Date", clk.Now().UTC().Format(http.TimeFormat))
		w.Header().Set("ETag", `"e1"`)
		w.Header().Set("Cache-Control", "max-age=10")
		w.Header().Set("X-Generation", fmt.Sprint(o.hits.Load()))
		if r.Header.Get("If-None-Match") == `"e1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		io.WriteString(w, "body")
	})
	e := startEdge(t, o.URL, clk, nil)
	get(t, "GET", e.URL+"/n", nil)
	clk.Advance(30 * time.Second)
	res, body := get(t, "GET", e.URL+"/n", nil)
	if body != "body" || res.Header.Get("X-Generation") != "2" || res.Header.Get("Content-Length") != "4" {
		t.Errorf("after 304: body %q, X-Generation %q, Content-Length %q; want \"body\", 2, 4",
			body, res.Header.Get("X-Generation"), res.Header.Get("Content-Length"))
	}
	if got := o.lastRequest().Header.Get("If-None-Match"); got != `"e1"` {
		t.Errorf("revalidation sent If-None-Match %q, want \"e1\"", got)
	}
}

func TestConditionalAndRangeFromCache(t *testing.T) {
	const body = "0123456789abcdefghij"
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("ETag", `"r1"`)
		w.Header().Set("Last-Modified", "Mon, 02 Jan 2026 15:04:05 GMT")
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, body)
	})
	e := startEdge(t, o.URL, nil, nil)
	get(t, "GET", e.URL+"/r", nil) // fill
	tests := []struct {
		name       string
		header     http.Header
		wantStatus int
		wantBody   string
	}{
		{name: "if-none-match", header: http.Header{"If-None-Match": {`"r1"`}}, wantStatus: 304},
		{name: "if-none-match other", header: http.Header{"If-None-Match": {`"zz"`}}, wantStatus: 200, wantBody: body},
		{name: "if-modified-since", header: http.Header{"If-Modified-Since": {"Tue, 03 Jan 2026 00:00:00 GMT"}}, wantStatus: 304},
		{name: "range", header: http.Header{"Range": {"bytes=2-5"}}, wantStatus: 206, wantBody: "2345"},
		{name: "suffix range", header: http.Header{"Range": {"bytes=-3"}}, wantStatus: 206, wantBody: "hij"},
		{name: "if-range match", header: http.Header{"Range": {"bytes=0-0"}, "If-Range": {`"r1"`}}, wantStatus: 206, wantBody: "0"},
		{name: "if-range mismatch", header: http.Header{"Range": {"bytes=0-0"}, "If-Range": {`"old"`}}, wantStatus: 200, wantBody: body},
		{name: "unsatisfiable", header: http.Header{"Range": {"bytes=100-200"}}, wantStatus: 416},
		{name: "absurd range", header: http.Header{"Range": {"bytes=99999999999999999999999-"}}, wantStatus: 416},
		{name: "garbage range", header: http.Header{"Range": {"lines=1-2"}}, wantStatus: 200, wantBody: body},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, got := get(t, "GET", e.URL+"/r", tt.header)
			if res.StatusCode != tt.wantStatus || (tt.wantBody != "" && got != tt.wantBody) {
				t.Errorf("status %d body %q, want %d %q", res.StatusCode, got, tt.wantStatus, tt.wantBody)
			}
			if cacheResult(res.Header.Get("Cache-Status")) != "hit" {
				t.Errorf("Cache-Status %q, want a hit", res.Header.Get("Cache-Status"))
			}
		})
	}
	t.Run("multi range", func(t *testing.T) {
		res, got := get(t, "GET", e.URL+"/r", http.Header{"Range": {"bytes=0-1,10-11"}})
		mt, params, _ := mime.ParseMediaType(res.Header.Get("Content-Type"))
		if res.StatusCode != 206 || mt != "multipart/byteranges" {
			t.Fatalf("status %d type %q, want 206 multipart/byteranges", res.StatusCode, mt)
		}
		mr := multipart.NewReader(strings.NewReader(got), params["boundary"])
		var parts []string
		for {
			p, err := mr.NextPart()
			if err != nil {
				break
			}
			b, _ := io.ReadAll(p)
			parts = append(parts, string(b))
		}
		if strings.Join(parts, "|") != "01|ab" {
			t.Errorf("parts %q, want [01 ab]", parts)
		}
	})
}

func TestForwardingHeaders(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Connection", "X-Secret")
		w.Header().Set("X-Secret", "hop")
		w.Header().Set("Keep-Alive", "timeout=5")
		io.WriteString(w, "ok")
	})
	e := startEdge(t, o.URL, nil, nil)
	res, _ := get(t, "GET", e.URL+"/f", http.Header{"X-Forwarded-For": {"10.0.0.1"}, "Connection": {"X-Client-Hop"}, "X-Client-Hop": {"1"}, "Range": {"bytes=0-0"}})
	req := o.lastRequest()
	checks := []struct{ name, got, want string }{
		{"origin X-Forwarded-For", req.Header.Get("X-Forwarded-For"), "10.0.0.1, 127.0.0.1"},
		{"origin X-Forwarded-Proto", req.Header.Get("X-Forwarded-Proto"), "http"},
		{"origin Via", req.Header.Get("Via"), "1.1 test-edge"},
		{"origin X-Client-Hop", req.Header.Get("X-Client-Hop"), ""},
		{"origin Range (fills fetch whole objects)", req.Header.Get("Range"), ""},
		{"client X-Secret", res.Header.Get("X-Secret"), ""},
		{"client Keep-Alive", res.Header.Get("Keep-Alive"), ""},
		{"client Via", res.Header.Get("Via"), "1.1 test-edge"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
}

func TestUnknownHost(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {})
	e := startEdge(t, o.URL, nil, func(c *Config) { c.Sites[0].Hosts = []string{"known.test"} })
	req, _ := http.NewRequest("GET", e.URL+"/", nil)
	req.Host = "other.test"
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMisdirectedRequest || res.Header.Get("Cache-Status") == "" {
		t.Errorf("unknown host: %d, Cache-Status %q; want 421 with a Cache-Status", res.StatusCode, res.Header.Get("Cache-Status"))
	}
	if o.hits.Load() != 0 {
		t.Errorf("origin got %d requests for an unknown host, want 0", o.hits.Load())
	}
}

func TestPassStreamsRequestBody(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprintf(w, "%s %d", r.Method, len(b))
	})
	e := startEdge(t, o.URL, nil, func(c *Config) { c.MaxBodyBytes = 1000 })
	res, err := http.Post(e.URL+"/p", "application/octet-stream", bytes.NewReader(make([]byte, 500)))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if string(b) != "POST 500" {
		t.Errorf("POST body = %q, want \"POST 500\"", b)
	}
	res, err = http.Post(e.URL+"/p", "application/octet-stream", bytes.NewReader(make([]byte, 5000)))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("oversize POST: status %d, want 413", res.StatusCode)
	}
}

func TestVaryEdgeCases(t *testing.T) {
	clk := newClock()
	var vary string
	var o *countingOrigin
	o = newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Date", clk.Now().UTC().Format(http.TimeFormat))
		w.Header().Set("Cache-Control", "max-age=10")
		w.Header().Set("Vary", vary)
		w.Header().Set("ETag", `"same"`)
		fmt.Fprintf(w, "v%d %s", o.hits.Load(), r.Header.Get("Accept-Language"))
	})
	e := startEdge(t, o.URL, clk, func(c *Config) { c.Cache.MaxVariants = 2 })
	lang := func(l string) http.Header { return http.Header{"Accept-Language": {l}} }
	result := func(path string, h http.Header) (string, string) {
		res, body := get(t, "GET", e.URL+path, h)
		return cacheResult(res.Header.Get("Cache-Status")), body
	}

	t.Run("unsafe method orphans every variant", func(t *testing.T) {
		vary = "Accept-Language"
		result("/inv", lang("en"))
		result("/inv", lang("fr"))
		if got, _ := result("/inv", lang("fr")); got != "hit" {
			t.Fatalf("fr before POST: %s, want hit", got)
		}
		get(t, "POST", e.URL+"/inv", nil)
		result("/inv", lang("en")) // builds a new Vary index
		if got, body := result("/inv", lang("fr")); got != "miss" {
			t.Errorf("fr after POST: %s %q, want a miss, not the variant stored before", got, body)
		}
	})
	t.Run("refetching one variant does not use up the bound", func(t *testing.T) {
		vary = "Accept-Language"
		for range 5 {
			result("/refetch", lang("en"))
			clk.Advance(20 * time.Second) // stale: the next GET refetches
		}
		result("/refetch", lang("en"))
		if got, _ := result("/refetch", lang("en")); got != "hit" {
			t.Errorf("after 5 refetches of one variant: %s, want hit", got)
		}
	})
	t.Run("vary on a header the edge sets itself", func(t *testing.T) {
		vary = "Via"
		result("/via", nil)
		if got, _ := result("/via", nil); got != "hit" {
			t.Errorf("second request: %s, want hit (the variant is the client's, not the edge's own Via)", got)
		}
	})
}

func TestPreconditionFailedFromCache(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("ETag", `"a"`)
		io.WriteString(w, "content")
	})
	e := startEdge(t, o.URL, nil, nil)
	get(t, "GET", e.URL+"/p", nil)
	for _, c := range []*http.Client{http.DefaultClient, h2cClient(t)} {
		req, _ := http.NewRequestWithContext(t.Context(), "GET", e.URL+"/p", nil)
		req.Header.Set("If-Match", `"b"`)
		res, err := c.Do(req)
		if err != nil {
			t.Fatalf("If-Match request: %v", err)
		}
		b, err := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusPreconditionFailed || err != nil {
			t.Errorf("HTTP/%d If-Match mismatch: %d, body %q, %v; want 412 and a clean end", res.ProtoMajor, res.StatusCode, b, err)
		}
	}
}

// TestFillDoesNotResurrectInvalidated checks RFC 9111 §4.4 against a fill
// in flight: a GET whose fetch began before a POST changed the resource
// must not store the old body after the POST invalidated the URL.
func TestFillDoesNotResurrectInvalidated(t *testing.T) {
	release := make(chan struct{})
	var o *countingOrigin
	o = newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		n := o.hits.Load()
		w.Header().Set("Cache-Control", "max-age=600")
		if r.Method == http.MethodPost {
			io.WriteString(w, "updated")
			return
		}
		if n == 1 {
			<-release // the first GET's fetch is in flight across the POST
		}
		fmt.Fprintf(w, "v%d", n)
	})
	e := startEdge(t, o.URL, nil, nil)
	first := make(chan string, 1)
	go func() { first <- getBody(e.URL + "/doc") }()
	testwait.Until(t, "the first fetch", func() bool { return o.hits.Load() == 1 })
	if res, _ := get(t, "POST", e.URL+"/doc", nil); res.StatusCode != 200 {
		t.Fatalf("POST: %d", res.StatusCode)
	}
	close(release)
	if body := <-first; body != "v1" {
		t.Fatalf("first GET = %q, want v1", body)
	}
	res, body := get(t, "GET", e.URL+"/doc", nil)
	if got := cacheResult(res.Header.Get("Cache-Status")); got != "miss" || body == "v1" {
		t.Errorf("GET after the POST: %s %q; want a fresh fetch, not the body fetched before the POST", got, body)
	}
}
