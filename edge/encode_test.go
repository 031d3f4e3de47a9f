package edge

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/selfcdn/cdn/internal/cachekey"
)

func decode(t *testing.T, coding, body string) string {
	t.Helper()
	var r io.Reader
	switch coding {
	case "":
		return body
	case "gzip":
		zr, err := gzip.NewReader(strings.NewReader(body))
		if err != nil {
			t.Fatalf("gzip body: %v", err)
		}
		r = zr
	case "zstd":
		zr, err := zstd.NewReader(strings.NewReader(body))
		if err != nil {
			t.Fatalf("zstd body: %v", err)
		}
		defer zr.Close()
		r = zr
	default:
		t.Fatalf("unexpected Content-Encoding %q", coding)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("decode %s body: %v", coding, err)
	}
	return string(b)
}

// TestCompression checks the coding each Accept-Encoding gets, that every
// compressed answer decodes to the origin's bytes, and that the cache holds
// one copy per coding however many header values it sees.
func TestCompression(t *testing.T) {
	css := strings.Repeat("body { color: #123456; margin: 0 auto; }\n", 400)
	png := string(payload(20_000))
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("ETag", `"v1"`)
		switch r.URL.Path {
		case "/app.css":
			w.Header().Set("Content-Type", "text/css; charset=utf-8")
			io.WriteString(w, css)
		case "/tiny.css":
			w.Header().Set("Content-Type", "text/css")
			io.WriteString(w, "a{}")
		case "/keep.css":
			w.Header().Set("Content-Type", "text/css")
			w.Header().Set("Cache-Control", "max-age=600, no-transform")
			io.WriteString(w, css)
		case "/img.png":
			w.Header().Set("Content-Type", "image/png")
			io.WriteString(w, png)
		case "/pre.js":
			// Already encoded by the origin: passed through untouched.
			w.Header().Set("Content-Type", "text/javascript")
			w.Header().Set("Content-Encoding", "br")
			w.Header().Set("Vary", "Accept-Encoding")
			io.WriteString(w, "not really brotli, but opaque to the edge")
		}
	})
	e := startEdge(t, o.URL, nil, nil)
	for _, p := range []string{"/app.css", "/tiny.css", "/keep.css", "/img.png", "/pre.js"} {
		get(t, "GET", e.URL+p, http.Header{"Accept-Encoding": {"br"}})
	}
	tests := []struct {
		path, accept, want string
	}{
		{"/app.css", "identity", ""},
		{"/app.css", "gzip", "gzip"},
		{"/app.css", "gzip, deflate, br, zstd", "zstd"},
		{"/app.css", "gzip;q=1, zstd;q=0.5", "gzip"},
		{"/app.css", "GZIP", "gzip"},
		{"/app.css", "x-gzip", "gzip"},
		{"/app.css", "*", "zstd"},
		{"/app.css", "gzip;q=0", ""},
		{"/app.css", "br", ""},
		{"/app.css", "%%%;q=nope, ,,", ""},
		{"/tiny.css", "gzip", ""},
		{"/keep.css", "gzip", ""},
		{"/img.png", "gzip, zstd", ""},
	}
	for _, c := range []*http.Client{http.DefaultClient, h2cClient(t)} {
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%s%s/%s", protoName(c), tt.path, tt.accept), func(t *testing.T) {
				res, body := getWith(t, c, "GET", e.URL+tt.path, http.Header{"Accept-Encoding": {tt.accept}})
				ce := res.Header.Get("Content-Encoding")
				if ce != tt.want {
					t.Fatalf("Content-Encoding %q, want %q", ce, tt.want)
				}
				if cacheResult(res.Header.Get("Cache-Status")) != "hit" {
					t.Errorf("Cache-Status %q, want a hit", res.Header.Get("Cache-Status"))
				}
				if res.Header.Get("Content-Length") != fmt.Sprint(len(body)) {
					t.Errorf("Content-Length %q for a %d-byte body", res.Header.Get("Content-Length"), len(body))
				}
				want := map[string]string{"/app.css": css, "/tiny.css": "a{}", "/keep.css": css, "/img.png": png}[tt.path]
				if got := decode(t, ce, body); got != want {
					t.Errorf("decoded body: %d bytes, want the origin's %d", len(got), len(want))
				}
				if names, _ := cachekey.ParseVary(res.Header); tt.path == "/app.css" && !slices.Contains(names, "Accept-Encoding") {
					t.Errorf("Vary %q, want Accept-Encoding", res.Header.Values("Vary"))
				}
				if wantTag := map[string]string{"": `"v1"`, "gzip": `"v1-gzip"`, "zstd": `"v1-zstd"`}[ce]; res.Header.Get("Etag") != wantTag {
					t.Errorf("ETag %q, want %q", res.Header.Get("Etag"), wantTag)
				}
			})
		}
	}
	t.Run("already encoded by the origin", func(t *testing.T) {
		res, body := get(t, "GET", e.URL+"/pre.js", http.Header{"Accept-Encoding": {"br"}})
		if res.Header.Get("Content-Encoding") != "br" || body != "not really brotli, but opaque to the edge" {
			t.Errorf("pre-encoded body changed: %q %q", res.Header.Get("Content-Encoding"), body)
		}
	})
	if n := metricValue(t, e, "cdn_edge_compressed_total"); n != 2 {
		t.Errorf("bodies compressed = %v, want 2 (one gzip, one zstd, however many Accept-Encoding values)", n)
	}
	if n := o.hits.Load(); n != 5 {
		t.Errorf("origin requests = %d, want 5 (one per object)", n)
	}
}

// TestCompressedRangesAndValidators: ranges and conditionals apply to the
// compressed bytes, with the compressed variant's own ETag.
func TestCompressedRangesAndValidators(t *testing.T) {
	js := strings.Repeat("function f(a){return a*2}\n", 2000)
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("Content-Type", "text/javascript")
		w.Header().Set("ETag", `"js1"`)
		io.WriteString(w, js)
	})
	e := startEdge(t, o.URL, nil, nil)
	get(t, "GET", e.URL+"/app.js", nil)
	gz := http.Header{"Accept-Encoding": {"gzip"}}
	_, whole := get(t, "GET", e.URL+"/app.js", gz)
	for _, c := range []*http.Client{http.DefaultClient, h2cClient(t)} {
		res, part := getWith(t, c, "GET", e.URL+"/app.js", http.Header{"Accept-Encoding": {"gzip"}, "Range": {"bytes=10-109"}})
		if res.StatusCode != 206 || part != whole[10:110] || res.Header.Get("Content-Encoding") != "gzip" {
			t.Errorf("%s range of the gzip variant: %d %q, %d bytes; want bytes 10-109 of the gzip body",
				protoName(c), res.StatusCode, res.Header.Get("Content-Encoding"), len(part))
		}
		if cr := res.Header.Get("Content-Range"); cr != fmt.Sprintf("bytes 10-109/%d", len(whole)) {
			t.Errorf("Content-Range %q, want the gzip body's length %d", cr, len(whole))
		}
		res, _ = getWith(t, c, "GET", e.URL+"/app.js", http.Header{"Accept-Encoding": {"gzip"}, "If-None-Match": {`"js1-gzip"`}})
		if res.StatusCode != 304 {
			t.Errorf("%s If-None-Match of the gzip ETag: %d, want 304", protoName(c), res.StatusCode)
		}
		res, body := getWith(t, c, "GET", e.URL+"/app.js", http.Header{"Accept-Encoding": {"gzip"}, "Range": {"bytes=0-9"}, "If-Range": {`"js1"`}})
		if res.StatusCode != 200 || !bytes.Equal([]byte(body), []byte(whole)) {
			t.Errorf("%s If-Range with the identity ETag on the gzip variant: %d, want the whole 200", protoName(c), res.StatusCode)
		}
	}
}
