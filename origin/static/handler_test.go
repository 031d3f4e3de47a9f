package static

import (
	"io"
	"mime"
	"mime/multipart"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestServeFiles(t *testing.T) {
	s, _ := newTestServer(t, writeSite(t, testSite), nil)
	tests := []struct {
		name, method, target string
		wantStatus           int
		wantType             string // prefix of Content-Type
		wantBody             string
		wantLocation         string
		wantCacheControl     string
		wantSurrogateKey     string
	}{
		{name: "html", target: "/index.html", wantStatus: 200, wantType: "text/html", wantBody: testSite["index.html"], wantCacheControl: "public, max-age=300"},
		{name: "css", target: "/style.css", wantStatus: 200, wantType: "text/css", wantBody: testSite["style.css"], wantCacheControl: "public, max-age=60"},
		{name: "js", target: "/app.js", wantStatus: 200, wantType: "text/javascript", wantBody: testSite["app.js"]},
		{name: "json", target: "/data.json", wantStatus: 200, wantType: "application/json", wantBody: testSite["data.json"]},
		{name: "png", target: "/image.png", wantStatus: 200, wantType: "image/png", wantBody: testSite["image.png"]},
		{name: "sniffed", target: "/LICENSE", wantStatus: 200, wantType: "text/plain", wantBody: testSite["LICENSE"]},
		{name: "root index", target: "/", wantStatus: 200, wantType: "text/html", wantBody: testSite["index.html"], wantCacheControl: "public, max-age=60"},
		{name: "dir index", target: "/docs/", wantStatus: 200, wantType: "text/html", wantBody: testSite["docs/index.html"]},
		{name: "dir redirect", target: "/docs?x=1", wantStatus: 301, wantLocation: "/docs/?x=1"},
		{name: "file trailing slash", target: "/style.css/", wantStatus: 301, wantLocation: "/style.css"},
		{name: "dir without index", target: "/empty/", wantStatus: 404},
		{name: "index.html is a dir", target: "/sub/", wantStatus: 404},
		{name: "missing", target: "/nope.html", wantStatus: 404, wantType: "text/plain", wantCacheControl: "public, max-age=60"},
		{name: "missing asset keeps default cache-control", target: "/assets/gone.js", wantStatus: 404, wantCacheControl: "public, max-age=60"},
		{name: "under a file", target: "/style.css/x", wantStatus: 404},
		{name: "head", method: "HEAD", target: "/style.css", wantStatus: 200, wantType: "text/css", wantBody: ""},
		{name: "post", method: "POST", target: "/style.css", wantStatus: 405},
		{name: "delete", method: "DELETE", target: "/", wantStatus: 405},
		{name: "rules asset", target: "/assets/app.js", wantStatus: 200, wantBody: testSite["assets/app.js"], wantCacheControl: "public, max-age=31536000, immutable", wantSurrogateKey: "assets static"},
		{name: "rules dir index", target: "/docs/", wantStatus: 200, wantBody: testSite["docs/index.html"], wantCacheControl: "public, max-age=60"},
		{name: "rules file not served", target: "/_headers", wantStatus: 404},
		{name: "non-canonical path", target: "/docs/./guide.html", wantStatus: 200, wantBody: testSite["docs/guide.html"]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method := tt.method
			if method == "" {
				method = "GET"
			}
			res, body := get(t, s, method, tt.target)
			if res.StatusCode != tt.wantStatus {
				t.Fatalf("%s %s status = %d, want %d (body %q)", method, tt.target, res.StatusCode, tt.wantStatus, body)
			}
			if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, tt.wantType) {
				t.Errorf("Content-Type = %q, want prefix %q", ct, tt.wantType)
			}
			if tt.wantStatus == 200 && body != tt.wantBody {
				t.Errorf("body = %q, want %q", body, tt.wantBody)
			}
			if got := res.Header.Get("Location"); got != tt.wantLocation {
				t.Errorf("Location = %q, want %q", got, tt.wantLocation)
			}
			if got := res.Header.Get("Cache-Control"); tt.wantCacheControl != "" && got != tt.wantCacheControl {
				t.Errorf("Cache-Control = %q, want %q", got, tt.wantCacheControl)
			}
			if got := res.Header.Get("Surrogate-Key"); got != tt.wantSurrogateKey {
				t.Errorf("Surrogate-Key = %q, want %q", got, tt.wantSurrogateKey)
			}
			if tt.wantStatus == 405 && res.Header.Get("Allow") != "GET, HEAD" {
				t.Errorf("Allow = %q, want %q", res.Header.Get("Allow"), "GET, HEAD")
			}
			if tt.wantStatus == 200 && (res.Header.Get("Last-Modified") == "" || res.Header.Get("Etag") == "") {
				t.Errorf("Last-Modified = %q, ETag = %q; want both set", res.Header.Get("Last-Modified"), res.Header.Get("Etag"))
			}
		})
	}
}

func TestETagStableAndStrong(t *testing.T) {
	dir := writeSite(t, testSite)
	s, _ := newTestServer(t, dir, nil)
	res1, _ := get(t, s, "GET", "/style.css")
	res2, _ := get(t, s, "HEAD", "/style.css")
	e1, e2 := res1.Header.Get("Etag"), res2.Header.Get("Etag")
	// "sha256-prefix": 32 hex digits in quotes, no W/ prefix.
	if len(e1) != 34 || e1[0] != '"' || e1[33] != '"' {
		t.Errorf("ETag = %q, want a strong quoted 32-hex-digit tag", e1)
	}
	if e1 != e2 {
		t.Errorf("ETag changed between requests: %q then %q", e1, e2)
	}
	// A new version of the file gets a new ETag.
	p := filepath.Join(dir, "style.css")
	if err := os.WriteFile(p, []byte("body{color:blue}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, time.Time{}, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	res3, _ := get(t, s, "GET", "/style.css")
	if e3 := res3.Header.Get("Etag"); e3 == e1 {
		t.Errorf("ETag after rewrite = %q, want a different tag than %q", e3, e1)
	}
}

func TestConditionalAndRange(t *testing.T) {
	s, _ := newTestServer(t, writeSite(t, testSite), nil)
	first, _ := get(t, s, "GET", "/big.bin")
	etag, lastMod := first.Header.Get("Etag"), first.Header.Get("Last-Modified")
	tests := []struct {
		name       string
		header     []string
		wantStatus int
		wantBody   string // checked when non-empty
		wantType   string // prefix of Content-Type, checked when non-empty
	}{
		{name: "if-none-match", header: []string{"If-None-Match", etag}, wantStatus: 304},
		{name: "if-none-match other", header: []string{"If-None-Match", `"other"`}, wantStatus: 200, wantBody: bigBody},
		{name: "if-modified-since", header: []string{"If-Modified-Since", lastMod}, wantStatus: 304},
		{name: "if-match mismatch", header: []string{"If-Match", `"other"`}, wantStatus: 412},
		{name: "if-match", header: []string{"If-Match", etag}, wantStatus: 200, wantBody: bigBody},
		{name: "if-unmodified-since past", header: []string{"If-Unmodified-Since", "Mon, 01 Jan 2001 00:00:00 GMT"}, wantStatus: 412},
		{name: "single range", header: []string{"Range", "bytes=10-19"}, wantStatus: 206, wantBody: bigBody[10:20]},
		{name: "suffix range", header: []string{"Range", "bytes=-5"}, wantStatus: 206, wantBody: bigBody[995:]},
		{name: "open range", header: []string{"Range", "bytes=990-"}, wantStatus: 206, wantBody: bigBody[990:]},
		{name: "multi range", header: []string{"Range", "bytes=0-4,100-109"}, wantStatus: 206, wantType: "multipart/byteranges"},
		{name: "if-range match", header: []string{"Range", "bytes=0-1", "If-Range", etag}, wantStatus: 206, wantBody: bigBody[:2]},
		{name: "if-range mismatch", header: []string{"Range", "bytes=0-1", "If-Range", `"other"`}, wantStatus: 200, wantBody: bigBody},
		{name: "unsatisfiable", header: []string{"Range", "bytes=5000-6000"}, wantStatus: 416},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, body := get(t, s, "GET", "/big.bin", tt.header...)
			if res.StatusCode != tt.wantStatus {
				t.Fatalf("GET /big.bin %v status = %d, want %d", tt.header, res.StatusCode, tt.wantStatus)
			}
			if tt.wantBody != "" && body != tt.wantBody {
				t.Errorf("body = %q, want %q", body, tt.wantBody)
			}
			if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, tt.wantType) {
				t.Errorf("Content-Type = %q, want prefix %q", ct, tt.wantType)
			}
			if tt.wantStatus == 304 && body != "" {
				t.Errorf("304 body = %q, want empty", body)
			}
		})
	}
}

func TestMultiRangeParts(t *testing.T) {
	s, _ := newTestServer(t, writeSite(t, testSite), nil)
	res, body := get(t, s, "GET", "/big.bin", "Range", "bytes=0-4,100-109")
	_, params, err := mime.ParseMediaType(res.Header.Get("Content-Type"))
	if err != nil {
		t.Fatalf("parse Content-Type %q: %v", res.Header.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(strings.NewReader(body), params["boundary"])
	want := []struct{ contentRange, body string }{
		{"bytes 0-4/1000", bigBody[0:5]},
		{"bytes 100-109/1000", bigBody[100:110]},
	}
	for i, w := range want {
		p, err := mr.NextPart()
		if err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
		got, _ := io.ReadAll(p)
		if cr := p.Header.Get("Content-Range"); cr != w.contentRange || string(got) != w.body {
			t.Errorf("part %d = %q %q, want %q %q", i, cr, got, w.contentRange, w.body)
		}
	}
	if _, err := mr.NextPart(); err != io.EOF {
		t.Errorf("after 2 parts NextPart error = %v, want io.EOF", err)
	}
}

func TestNotFoundPage(t *testing.T) {
	files := map[string]string{"index.html": "home", "404.html": "<h1>custom 404</h1>"}
	s, _ := newTestServer(t, writeSite(t, files), nil)
	tests := []struct {
		name, method string
		wantBody     string
	}{
		{name: "get", method: "GET", wantBody: files["404.html"]},
		{name: "head", method: "HEAD", wantBody: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, body := get(t, s, tt.method, "/missing")
			if res.StatusCode != 404 || body != tt.wantBody {
				t.Errorf("%s /missing = %d %q, want 404 %q", tt.method, res.StatusCode, body, tt.wantBody)
			}
			if ct := res.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
				t.Errorf("Content-Type = %q, want text/html; charset=utf-8", ct)
			}
		})
	}
}

func TestPathTraversal(t *testing.T) {
	outside := writeSite(t, map[string]string{"secret.txt": "SECRET"})
	dir := writeSite(t, map[string]string{"index.html": "home", "real.txt": "inside"})
	for _, l := range []struct{ target, name string }{
		{filepath.Join(outside, "secret.txt"), "leak.txt"},
		{outside, "leakdir"},
		{"../../../../../../etc/passwd", "passwd"},
		{filepath.Join(dir, "real.txt"), "absolute.txt"}, // os.Root refuses absolute links
		{"real.txt", "alias.txt"},                        // relative and inside: served
	} {
		if err := os.Symlink(l.target, filepath.Join(dir, l.name)); err != nil {
			t.Fatal(err)
		}
	}
	s, _ := newTestServer(t, dir, nil)
	tests := []struct {
		name, target string
		wantStatus   int
	}{
		{name: "dot dot", target: "/../etc/passwd", wantStatus: 400},
		{name: "encoded dot dot", target: "/%2e%2e/%2e%2e/etc/passwd", wantStatus: 400},
		{name: "encoded dot dot dir", target: "/%2e%2e/", wantStatus: 400},
		{name: "inner dot dot", target: "/a/../../etc/passwd", wantStatus: 400},
		{name: "encoded slash", target: "/..%2fetc%2fpasswd", wantStatus: 400},
		{name: "NUL", target: "/index.html%00.txt", wantStatus: 400},
		{name: "symlink to outside file", target: "/leak.txt", wantStatus: 404},
		{name: "symlink to outside dir", target: "/leakdir/secret.txt", wantStatus: 404},
		{name: "relative symlink out", target: "/passwd", wantStatus: 404},
		{name: "absolute symlink inside", target: "/absolute.txt", wantStatus: 404},
		{name: "relative symlink inside", target: "/alias.txt", wantStatus: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, body := get(t, s, "GET", tt.target)
			if res.StatusCode != tt.wantStatus {
				t.Errorf("GET %s status = %d, want %d", tt.target, res.StatusCode, tt.wantStatus)
			}
			if strings.Contains(body, "SECRET") || strings.Contains(body, "root:") {
				t.Errorf("GET %s leaked outside content: %q", tt.target, body)
			}
		})
	}
}

func TestRulesFileOption(t *testing.T) {
	dir := writeSite(t, testSite)
	s, _ := newTestServer(t, dir, func(c *Config) {
		c.RulesFile = filepath.Join(dir, "config", "rules.conf")
		c.DefaultCacheControl = ""
	})
	tests := []struct {
		name, target, header, want string
		wantStatus                 int
	}{
		{name: "explicit rules apply", target: "/", header: "X-Hidden-Rules", want: "yes", wantStatus: 200},
		{name: "_headers ignored", target: "/assets/app.js", header: "Surrogate-Key", want: "", wantStatus: 200},
		{name: "no default cache-control", target: "/assets/app.js", header: "Cache-Control", want: "", wantStatus: 200},
		{name: "rules file not served", target: "/config/rules.conf", header: "X-Hidden-Rules", want: "", wantStatus: 404},
		{name: "_headers still not served", target: "/_headers", wantStatus: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, _ := get(t, s, "GET", tt.target)
			if res.StatusCode != tt.wantStatus || (tt.header != "" && res.Header.Get(tt.header) != tt.want) {
				t.Errorf("GET %s = %d %s: %q; want %d %q", tt.target, res.StatusCode, tt.header, res.Header.Get(tt.header), tt.wantStatus, tt.want)
			}
		})
	}
}

func TestMetrics(t *testing.T) {
	s, reg := newTestServer(t, writeSite(t, testSite), nil)
	for _, target := range []string{"/style.css", "/app.js", "/docs", "/nope"} {
		get(t, s, "GET", target)
	}
	get(t, s, "POST", "/")
	tests := []struct {
		name, family, code string
		want               float64
	}{
		{name: "2xx", family: "cdn_origin_requests_total", code: "2xx", want: 2},
		{name: "3xx", family: "cdn_origin_requests_total", code: "3xx", want: 1},
		{name: "4xx", family: "cdn_origin_requests_total", code: "4xx", want: 2},
		{name: "5xx", family: "cdn_origin_requests_total", code: "5xx", want: 0},
		{name: "bytes", family: "cdn_origin_response_bytes_total", want: float64(len(testSite["style.css"]) + len(testSite["app.js"]))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := counterValue(t, reg, tt.family, tt.code); got < tt.want || (tt.code != "" && got != tt.want) {
				t.Errorf("%s{code=%q} = %v, want %v", tt.family, tt.code, got, tt.want)
			}
		})
	}
}

// counterValue reads a counter from reg: the series with label code (or
// the only series when code is empty). prometheus/testutil would pull a
// new module into go.mod, so this reads the gathered families directly.
func counterValue(t *testing.T, reg prometheus.Gatherer, family, code string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != family {
			continue
		}
		for _, m := range mf.GetMetric() {
			if code == "" {
				return m.GetCounter().GetValue()
			}
			for _, l := range m.GetLabel() {
				if l.GetName() == "code" && l.GetValue() == code {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no series %s{code=%q}", family, code)
	return 0
}
