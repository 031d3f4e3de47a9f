package contentcoding

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

func TestCompressible(t *testing.T) {
	tests := []struct {
		contentType string
		want        bool
	}{
		{contentType: "text/html", want: true},
		{contentType: "text/css", want: true},
		{contentType: "text/plain; charset=utf-8", want: true},
		{contentType: "Text/HTML;Charset=UTF-8", want: true},
		{contentType: " text/javascript ", want: true},
		{contentType: "text/event-stream"},
		{contentType: "application/json", want: true},
		{contentType: "application/ld+json", want: true},
		{contentType: "application/problem+json", want: true},
		{contentType: "application/manifest+json", want: true},
		{contentType: "application/javascript", want: true},
		{contentType: "application/ecmascript", want: true},
		{contentType: "application/xml", want: true},
		{contentType: "application/rss+xml", want: true},
		{contentType: "application/atom+xml", want: true},
		{contentType: "application/xhtml+xml", want: true},
		{contentType: "application/wasm", want: true},
		{contentType: "application/yaml", want: true},
		{contentType: "application/vnd.ms-fontobject", want: true},
		{contentType: "image/svg+xml", want: true},
		{contentType: "IMAGE/SVG+XML; charset=utf-8", want: true},
		{contentType: "image/x-icon", want: true},
		{contentType: "image/vnd.microsoft.icon", want: true},
		{contentType: "font/ttf", want: true},
		{contentType: "font/otf", want: true},
		{contentType: "font/woff"},
		{contentType: "font/woff2"},
		{contentType: "image/png"},
		{contentType: "image/jpeg"},
		{contentType: "image/webp"},
		{contentType: "image/avif"},
		{contentType: "audio/mpeg"},
		{contentType: "video/mp4"},
		{contentType: "application/zip"},
		{contentType: "application/gzip"},
		{contentType: "application/x-gzip"},
		{contentType: "application/zstd"},
		{contentType: "application/pdf"},
		{contentType: "application/octet-stream"},
		{contentType: "application/vnd.api+zip"},
		{contentType: ""},
		{contentType: "text"},
		{contentType: "text/"},
		{contentType: ";charset=utf-8"},
		{contentType: "*/*"},
	}
	for _, tt := range tests {
		if got := Compressible(tt.contentType); got != tt.want {
			t.Errorf("Compressible(%q) = %v, want %v", tt.contentType, got, tt.want)
		}
	}
}

func TestETag(t *testing.T) {
	tests := []struct {
		name, etag string
		c          Coding
		want       string
	}{
		{name: "strong gzip", etag: `"abc"`, c: Gzip, want: `"abc-gzip"`},
		{name: "strong zstd", etag: `"abc"`, c: Zstd, want: `"abc-zstd"`},
		{name: "weak", etag: `W/"abc"`, c: Gzip, want: `W/"abc-gzip"`},
		{name: "empty tag", etag: `""`, c: Zstd, want: `"-zstd"`},
		{name: "no etag", etag: "", c: Gzip, want: ""},
		{name: "identity", etag: `"abc"`, c: Identity, want: `"abc"`},
		{name: "identity weak", etag: `W/"abc"`, c: Identity, want: `W/"abc"`},
		{name: "unquoted kept distinct", etag: "abc", c: Gzip, want: "abc-gzip"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ETag(tt.etag, tt.c); got != tt.want {
				t.Errorf("ETag(%q, %q) = %q, want %q", tt.etag, tt.c, got, tt.want)
			}
		})
	}
}

// text returns n bytes of deterministic, word-like text: compressible, but
// not a single repeated run that any coder shrinks to nothing.
func text(n int) []byte {
	words := strings.Fields(`the edge serves cached content close to the client while the
		origin keeps the source of truth; a purge removes stale objects and a fill
		fetches them again <div class="card"> {"id": 42, "name": "static"} function()`)
	r := rand.New(rand.NewPCG(1, 2))
	var b bytes.Buffer
	for b.Len() < n {
		b.WriteString(words[r.IntN(len(words))])
		if r.IntN(8) == 0 {
			b.WriteByte('\n')
		} else {
			b.WriteByte(' ')
		}
	}
	return b.Bytes()[:n]
}

// decompress undoes c with a decoder configured as browsers are: zstd frames
// must fit an 8 MiB window (RFC 9659 §3).
func decompress(t *testing.T, c Coding, data []byte) []byte {
	t.Helper()
	switch c {
	case Gzip:
		r, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("open gzip stream: %v", err)
		}
		out, err := io.ReadAll(r)
		if err != nil {
			t.Fatalf("read gzip stream: %v", err)
		}
		return out
	case Zstd:
		d, err := zstd.NewReader(nil, zstd.WithDecoderMaxWindow(8<<20), zstd.WithDecoderConcurrency(1))
		if err != nil {
			t.Fatalf("create zstd decoder: %v", err)
		}
		defer d.Close()
		out, err := d.DecodeAll(data, nil)
		if err != nil {
			t.Fatalf("decode zstd frame: %v", err)
		}
		return out
	}
	t.Fatalf("decompress: unexpected coding %d", uint8(c))
	return nil
}

func TestCompressRoundTrip(t *testing.T) {
	sizes := []int{0, 1, MinSize, 64 << 10, 300 << 10}
	if !testing.Short() {
		// Above zstd's 8 MiB window, so the frame needs a window descriptor.
		sizes = append(sizes, 9<<20)
	}
	random := make([]byte, 32<<10)
	rand.NewChaCha8([32]byte{3, 4}).Read(random)
	for _, c := range []Coding{Gzip, Zstd} {
		for _, n := range sizes {
			body := text(n)
			t.Run(fmt.Sprintf("%s-%d", c, n), func(t *testing.T) {
				out, err := Compress(c, body)
				if err != nil {
					t.Fatalf("Compress(%s, %d bytes): %v", c, n, err)
				}
				if len(out) == 0 {
					t.Fatalf("Compress(%s, %d bytes) returned nothing; want a valid stream", c, n)
				}
				if n >= MinSize && len(out) >= n/2 {
					t.Errorf("Compress(%s, %d bytes of text) = %d bytes, want under half", c, n, len(out))
				}
				if cap(out) != len(out) {
					t.Errorf("Compress(%s, %d bytes) has cap %d for len %d, want exact", c, n, cap(out), len(out))
				}
				if got := decompress(t, c, out); !bytes.Equal(got, body) {
					t.Errorf("decompress(Compress(%s, %d bytes)) = %d bytes, differs from input", c, n, len(got))
				}
			})
		}
		t.Run(fmt.Sprintf("%s-random", c), func(t *testing.T) {
			out, err := Compress(c, random)
			if err != nil {
				t.Fatalf("Compress(%s, random): %v", c, err)
			}
			if got := decompress(t, c, out); !bytes.Equal(got, random) {
				t.Errorf("decompress(Compress(%s, random)) differs from input", c)
			}
		})
	}
}

func TestCompressErrors(t *testing.T) {
	for _, c := range []Coding{Identity, Coding(7)} {
		if out, err := Compress(c, []byte("body")); err == nil {
			t.Errorf("Compress(%q, body) = %d bytes, nil; want an error", c, len(out))
		}
	}
}

// Concurrent calls share the pooled gzip writers, the scratch buffers and
// the one zstd encoder; each must still get exactly what a lone call gets
// (the same bytes, which keeps variants identical across edges). Run with
// -race to check the sharing itself.
func TestCompressConcurrent(t *testing.T) {
	bodies := make([][]byte, 8)
	for i := range bodies {
		bodies[i] = text(4<<10 + i*7919)
	}
	for _, c := range []Coding{Gzip, Zstd} {
		want := make([][]byte, len(bodies))
		for i, body := range bodies {
			out, err := Compress(c, body)
			if err != nil {
				t.Fatalf("Compress(%s, body %d): %v", c, i, err)
			}
			want[i] = out
		}
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				for round := range 20 {
					i := (g + round) % len(bodies)
					got, err := Compress(c, bodies[i])
					if err != nil {
						t.Errorf("goroutine %d: Compress(%s, body %d): %v", g, c, i, err)
						return
					}
					if !bytes.Equal(got, want[i]) {
						t.Errorf("goroutine %d: Compress(%s, body %d) = %d bytes, differs from the sequential %d bytes", g, c, i, len(got), len(want[i]))
						return
					}
				}
			})
		}
		wg.Wait()
		for i, out := range want {
			if got := decompress(t, c, out); !bytes.Equal(got, bodies[i]) {
				t.Errorf("decompress(Compress(%s, body %d)) differs from input", c, i)
			}
		}
	}
}

func BenchmarkCompress(b *testing.B) {
	body := text(64 << 10)
	for _, c := range []Coding{Gzip, Zstd} {
		b.Run(fmt.Sprintf("%s-64KiB", c), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			var n int
			for b.Loop() {
				out, err := Compress(c, body)
				if err != nil {
					b.Fatalf("Compress(%s, 64 KiB): %v", c, err)
				}
				n = len(out)
			}
			b.ReportMetric(float64(n)/float64(len(body)), "ratio")
		})
	}
}
