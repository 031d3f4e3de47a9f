package edge

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/valyala/fasthttp"
)

// discardWriter is the cheapest ResponseWriter: what a benchmark of the
// request path should measure is the path, not a recorder.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardWriter) WriteHeader(int)             {}

// benchEdge returns an edge whose cache holds http://example.com/obj.bin,
// a size-byte object.
func benchEdge(b *testing.B, size int) *Server {
	return benchEdgeType(b, size, "application/octet-stream")
}

// benchEdgeType is benchEdge with the object's Content-Type.
func benchEdgeType(b *testing.B, size int, contentType string) *Server {
	return benchEdgeLog(b, size, contentType, nil)
}

// benchEdgeLog is benchEdgeType with the access log written to accessLog
// (nil: off).
func benchEdgeLog(b *testing.B, size int, contentType string, accessLog io.Writer) *Server {
	body := make([]byte, size)
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Header().Set("Content-Type", contentType)
		w.Header().Set("ETag", `"x"`)
		w.Write(body)
	}))
	b.Cleanup(o.Close)
	cfg := DefaultConfig()
	cfg.AccessLog = accessLog != nil
	cfg.Cache.MaxObject = 4 << 20
	cfg.Sites = []SiteConfig{{Name: "s", Hosts: []string{"*"}, Origin: o.URL}}
	srv, err := New(cfg, Deps{AccessLog: accessLog})
	if err != nil {
		b.Fatal(err)
	}
	srv.handler.ServeHTTP(&discardWriter{h: http.Header{}}, httptest.NewRequest("GET", "http://example.com/obj.bin", nil))
	srv.handler.bg.Wait()
	return srv
}

func BenchmarkServeHit(b *testing.B) {
	for _, size := range []int{1 << 10, 64 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			h := benchEdge(b, size).Handler()
			req := httptest.NewRequest("GET", "http://example.com/obj.bin", nil)
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			b.SetBytes(int64(size))
			for b.Loop() {
				w.h = make(http.Header, 8) // net/http hands every response a fresh map
				h.ServeHTTP(w, req)
			}
			if cs := w.h.Get("Cache-Status"); cs != "edge; hit" {
				b.Fatalf("Cache-Status %q, want a hit", cs)
			}
		})
	}
}

// BenchmarkServeH1Hit measures the HTTP/1.1 front's hit path: fasthttp's
// request context in, the stored entry's header and body out.
func BenchmarkServeH1Hit(b *testing.B) {
	for _, size := range []int{1 << 10, 64 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			srv := benchEdge(b, size)
			var req fasthttp.Request
			req.SetRequestURI("http://example.com/obj.bin")
			var ctx fasthttp.RequestCtx
			ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, nil)
			b.ReportAllocs()
			b.SetBytes(int64(size))
			for b.Loop() {
				ctx.Response.Reset()
				if !srv.handler.serveH1Hit(&ctx) {
					b.Fatal("not served as a hit")
				}
			}
		})
	}
}

// BenchmarkServeH1HitAccessLog is the 1 KiB HTTP/1.1 hit with the access
// log on (the default), written to a file, against it off: what a line
// costs the hit path.
func BenchmarkServeH1HitAccessLog(b *testing.B) {
	for _, on := range []bool{false, true} {
		b.Run(fmt.Sprintf("access_log=%v", on), func(b *testing.B) {
			var log io.Writer
			if on {
				f, err := os.Create(filepath.Join(b.TempDir(), "access.log"))
				if err != nil {
					b.Fatal(err)
				}
				defer f.Close()
				log = f
			}
			srv := benchEdgeLog(b, 1<<10, "application/octet-stream", log)
			var req fasthttp.Request
			req.SetRequestURI("http://example.com/obj.bin")
			var ctx fasthttp.RequestCtx
			ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, nil)
			b.ReportAllocs()
			for b.Loop() {
				ctx.Response.Reset()
				if !srv.handler.serveH1Hit(&ctx) {
					b.Fatal("not served as a hit")
				}
			}
		})
	}
}

// BenchmarkServeH1HitCompressed is the HTTP/1.1 hit path for a browser
// that accepts zstd: the stored compressed copy, found without building a
// key.
func BenchmarkServeH1HitCompressed(b *testing.B) {
	srv := benchEdgeType(b, 64<<10, "text/css")
	var req fasthttp.Request
	req.SetRequestURI("http://example.com/obj.bin")
	req.Header.Set("Accept-Encoding", "gzip, deflate, br, zstd")
	var ctx fasthttp.RequestCtx
	ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, nil)
	srv.handler.serveH1Hit(&ctx) // compresses once
	b.ReportAllocs()
	for b.Loop() {
		ctx.Response.Reset()
		if !srv.handler.serveH1Hit(&ctx) {
			b.Fatal("not served as a hit")
		}
	}
	if ce := string(ctx.Response.Header.Peek("Content-Encoding")); ce != "zstd" {
		b.Fatalf("Content-Encoding %q, want zstd", ce)
	}
}
