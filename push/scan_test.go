package push

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// writeSite creates files (slash-separated path → content) under a new
// temporary directory and returns it.
func writeSite(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// text returns n bytes of compressible text.
func text(n int) string {
	const line = "The quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs.\n"
	return strings.Repeat(line, n/len(line)+1)[:n]
}

// random returns n bytes that do not compress.
func random(n int) string {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return string(b)
}

func TestScanDirSite(t *testing.T) {
	png := "\x89PNG\r\n\x1a\n" + strings.Repeat("\x00", 100)
	site := map[string]string{
		"index.html":               "<!doctype html><title>home</title>",
		"about/index.html":         "<!doctype html><title>about</title>",
		"assets/app.js":            "console.log(1)",
		"assets/style.css":         "body{margin:0}",
		"data.json":                `{"a":1}`,
		"logo.png":                 png,
		"blob":                     "\x89PNG\r\n\x1a\nno extension, sniffed",
		"README":                   "plain words, sniffed",
		"notes":                    "# markdown, typed by _headers",
		"404.html":                 "<!doctype html><title>not found</title>",
		".well-known/security.txt": "Contact: mailto:security@example.com",
		"sub/_headers":             "not the root's: served",
		".DS_Store":                "junk",
		".git/config":              "[core]",
		"assets/.env":              "SECRET=1",
		".well-known/.hidden":      "junk",
		"_headers": `# headers for every page
/*
  Cache-Control: public, max-age=60
/assets/*
  Cache-Control: public, max-age=31536000, immutable
  Surrogate-Key: assets static
/notes
  Content-Type: text/markdown; charset=utf-8
`,
		"_redirects": "# moved pages\n\n/old /new\n/blog/*\thttps://blog.example.com/  302\r\n  /x /y 308\n",
	}
	dir := writeSite(t, site)

	s, err := ScanDir(t.Context(), dir, ScanOptions{})
	if err != nil {
		t.Fatalf("ScanDir: %v", err)
	}
	m := s.Manifest

	pages := http.Header{"Cache-Control": {"public, max-age=60"}}
	assets := http.Header{"Cache-Control": {"public, max-age=31536000, immutable"}, "Surrogate-Key": {"assets static"}}
	want := map[string]struct {
		typ    string
		header http.Header
	}{
		"/index.html":               {"text/html; charset=utf-8", pages},
		"/about/index.html":         {"text/html; charset=utf-8", pages},
		"/assets/app.js":            {"text/javascript; charset=utf-8", assets},
		"/assets/style.css":         {"text/css; charset=utf-8", assets},
		"/data.json":                {"application/json; charset=utf-8", pages},
		"/logo.png":                 {"image/png", pages},
		"/blob":                     {"image/png", pages},
		"/README":                   {"text/plain; charset=utf-8", pages},
		"/notes":                    {"text/markdown; charset=utf-8", pages},
		"/404.html":                 {"text/html; charset=utf-8", pages},
		"/.well-known/security.txt": {"text/plain; charset=utf-8", pages},
		"/sub/_headers":             {"", pages}, // sniffed; checked below
	}
	if got, wantPaths := slices.Sorted(maps.Keys(m.Files)), slices.Sorted(maps.Keys(want)); !slices.Equal(got, wantPaths) {
		t.Fatalf("paths = %q, want %q", got, wantPaths)
	}
	var total int64
	for p, w := range want {
		f := m.Files[p]
		content := site[strings.TrimPrefix(p, "/")]
		total += int64(len(content))
		if f.Hash != HashOf([]byte(content)) || f.Size != int64(len(content)) {
			t.Errorf("%s: blob = %+v, want hash %s size %d", p, f.Blob, HashOf([]byte(content)), len(content))
		}
		if w.typ != "" && f.Type != w.typ {
			t.Errorf("%s: type = %q, want %q", p, f.Type, w.typ)
		}
		if !reflect.DeepEqual(f.Header, w.header) {
			t.Errorf("%s: header = %v, want %v", p, f.Header, w.header)
		}
		if src := s.Sources[f.Hash]; src.Coding != "" || filepath.Base(src.Path) != filepath.Base(p) {
			t.Errorf("%s: source = %+v", p, src)
		}
	}
	if got := m.Files["/sub/_headers"].Type; got != "text/plain; charset=utf-8" {
		t.Errorf("/sub/_headers: type = %q, want sniffed text/plain", got)
	}
	wantRedirects := []Redirect{
		{From: "/old", To: "/new", Status: 301},
		{From: "/blog/*", To: "https://blog.example.com/", Status: 302},
		{From: "/x", To: "/y", Status: 308},
	}
	if !reflect.DeepEqual(m.Redirects, wantRedirects) {
		t.Errorf("redirects = %+v, want %+v", m.Redirects, wantRedirects)
	}
	if m.NotFound != "/404.html" {
		t.Errorf("not_found = %q, want /404.html", m.NotFound)
	}
	if s.Files != len(want) || s.Bytes != total {
		t.Errorf("totals = %d files, %d bytes; want %d, %d", s.Files, s.Bytes, len(want), total)
	}
}

func TestScanDirPrecompress(t *testing.T) {
	tests := []struct {
		name, path, content string
		minCompress         int64
		want                []string // codings kept
	}{
		{name: "text 10KiB", path: "/a.txt", content: text(10 << 10), want: []string{"gzip", "zstd"}},
		{name: "javascript", path: "/app.js", content: text(5000), want: []string{"gzip", "zstd"}},
		{name: "sniffed text", path: "/LICENSE", content: text(5000), want: []string{"gzip", "zstd"}},
		{name: "big text", path: "/big.css", content: text(3 << 20), want: []string{"gzip", "zstd"}},
		{name: "random", path: "/r.txt", content: random(10 << 10)},
		{name: "under MinCompress", path: "/small.txt", content: text(1000)},
		{name: "at MinCompress", path: "/edge.txt", content: text(1024), want: []string{"gzip", "zstd"}},
		{name: "MinCompress option", path: "/mid.txt", content: text(4000), minCompress: 8000},
		{name: "image", path: "/zeros.png", content: strings.Repeat("\x00", 10<<10)},
		{name: "empty", path: "/empty.txt", content: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeSite(t, map[string]string{tt.path: tt.content})
			s, err := ScanDir(t.Context(), dir, ScanOptions{MinCompress: tt.minCompress})
			if err != nil {
				t.Fatalf("ScanDir: %v", err)
			}
			f := s.Manifest.Files[tt.path]
			if got := slices.Sorted(maps.Keys(f.Encoded)); !slices.Equal(got, tt.want) {
				t.Fatalf("encoded = %q, want %q", got, tt.want)
			}
			checkOpen(t, s, f.Blob, "", []byte(tt.content))
			for coding, b := range f.Encoded {
				if b.Size*10 >= f.Size*9 {
					t.Errorf("%s: %d bytes of %d kept", coding, b.Size, f.Size)
				}
				checkOpen(t, s, b, coding, []byte(tt.content))
			}
		})
	}
}

// checkOpen checks that s.Open(b.Hash) gives b.Size bytes that hash to
// b.Hash and decode with coding to want.
func checkOpen(t *testing.T, s *Scan, b Blob, coding string, want []byte) {
	t.Helper()
	if src := s.Sources[b.Hash]; src.Coding != coding {
		t.Errorf("Sources[%s] = %+v, want coding %q", b.Hash, src, coding)
	}
	r, size, err := s.Open(b.Hash)
	if err != nil {
		t.Fatalf("Open(%s): %v", coding, err)
	}
	got, err := io.ReadAll(r)
	if cerr := r.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("read %s blob: %v", coding, err)
	}
	if size != b.Size || int64(len(got)) != b.Size || HashOf(got) != b.Hash {
		t.Fatalf("Open(%s) = %d bytes hashing to %s (size %d), want %d bytes, %s", coding, len(got), HashOf(got), size, b.Size, b.Hash)
	}
	if decoded := decode(t, coding, got); !bytes.Equal(decoded, want) {
		t.Errorf("%s blob decodes to %d bytes, not the %d of the file", coding, len(decoded), len(want))
	}
}

func decode(t *testing.T, coding string, b []byte) []byte {
	t.Helper()
	var r io.Reader
	switch coding {
	case "":
		return b
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("gzip: %v", err)
		}
		r = zr
	case "zstd":
		zr, err := zstd.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("zstd: %v", err)
		}
		defer zr.Close()
		r = zr
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("decode %s: %v", coding, err)
	}
	return out
}

// TestEncodeDeterministic checks what variant names rely on: the same
// input compresses to the same bytes however it is cut into writes, as
// ScanDir and Open cut it differently.
func TestEncodeDeterministic(t *testing.T) {
	input := []byte(text(300<<10) + random(50<<10) + text(200<<10))
	for _, coding := range Codings {
		var want []byte
		for _, chunk := range []int{len(input), 1 << 20, 128 << 10, 32 << 10, 512, 7} {
			var out bytes.Buffer
			e := getEncoder(coding, &out)
			for b := input; len(b) > 0; b = b[min(chunk, len(b)):] {
				if _, err := e.Write(b[:min(chunk, len(b))]); err != nil {
					t.Fatal(err)
				}
			}
			if err := e.Close(); err != nil {
				t.Fatal(err)
			}
			putEncoder(coding, e, false)
			if want == nil {
				want = out.Bytes()
			} else if !bytes.Equal(out.Bytes(), want) {
				t.Errorf("%s in writes of %d bytes: %d bytes differ from the %d of one write", coding, chunk, out.Len(), len(want))
			}
		}
	}
}

func TestScanDirDeterministic(t *testing.T) {
	files := map[string]string{"_headers": "/*\n  Cache-Control: no-cache\n", "_redirects": "/a /b\n/c /d 302\n"}
	for i := range 40 {
		files[fmt.Sprintf("d/%c/f%02d.txt", 'a'+i%5, i)] = text(2000 + 100*i)
	}
	files["same.txt"] = files["d/a/f00.txt"] // a shared blob
	dir := writeSite(t, files)
	var want []byte
	for _, workers := range []int{1, 4, 1} {
		s, err := ScanDir(t.Context(), dir, ScanOptions{Workers: workers})
		if err != nil {
			t.Fatalf("ScanDir: %v", err)
		}
		got, err := s.Manifest.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if want == nil {
			want = got
		} else if !bytes.Equal(got, want) {
			t.Errorf("scan with %d workers encodes differently:\n%s\nwant\n%s", workers, got, want)
		}
		if len(s.Sources) != len(s.Manifest.Blobs()) {
			t.Errorf("%d sources for %d blobs", len(s.Sources), len(s.Manifest.Blobs()))
		}
	}
}

func TestOpenChanged(t *testing.T) {
	dir := writeSite(t, map[string]string{"a.txt": text(4000), "b.txt": text(3000)})
	s, err := ScanDir(t.Context(), dir, ScanOptions{})
	if err != nil {
		t.Fatalf("ScanDir: %v", err)
	}
	a, b := s.Manifest.Files["/a.txt"], s.Manifest.Files["/b.txt"]
	// Same size, other bytes: noticed at the end of the read.
	if err := os.WriteFile(filepath.Join(dir, "a.txt"), []byte(strings.ToUpper(text(4000))), 0o644); err != nil {
		t.Fatal(err)
	}
	// Another size: noticed by Open.
	if err := os.WriteFile(filepath.Join(dir, "b.txt"), []byte(text(10)), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, blob := range []Blob{a.Blob, a.Encoded["gzip"], a.Encoded["zstd"], b.Blob} {
		r, _, err := s.Open(blob.Hash)
		if err == nil {
			_, err = io.ReadAll(r)
			r.Close()
		}
		if !errors.Is(err, ErrChanged) {
			t.Errorf("read %s from a changed file: err = %v, want ErrChanged", blob.Hash, err)
		}
	}
	if _, _, err := s.Open(HashOf([]byte("never scanned"))); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open(unknown) = %v, want fs.ErrNotExist", err)
	}
}

// TestOpenCloseEarly checks that closing an encoded blob's reader before
// its end stops the compressing goroutine rather than hanging.
func TestOpenCloseEarly(t *testing.T) {
	dir := writeSite(t, map[string]string{"big.txt": text(4 << 20)})
	s, err := ScanDir(t.Context(), dir, ScanOptions{})
	if err != nil {
		t.Fatalf("ScanDir: %v", err)
	}
	for coding, b := range s.Manifest.Files["/big.txt"].Encoded {
		r, _, err := s.Open(b.Hash)
		if err != nil {
			t.Fatalf("Open(%s): %v", coding, err)
		}
		if _, err := io.ReadFull(r, make([]byte, 100)); err != nil {
			t.Errorf("read %s: %v", coding, err)
		}
		if err := r.Close(); err != nil {
			t.Errorf("close %s: %v", coding, err)
		}
	}
}

func TestOpenHandBuiltScan(t *testing.T) {
	dir := writeSite(t, map[string]string{"a.txt": text(4000)})
	scanned, err := ScanDir(t.Context(), dir, ScanOptions{})
	if err != nil {
		t.Fatalf("ScanDir: %v", err)
	}
	// Without the index ScanDir fills, Open searches the manifest.
	s := &Scan{Manifest: scanned.Manifest, Sources: scanned.Sources}
	f := s.Manifest.Files["/a.txt"]
	checkOpen(t, s, f.Blob, "", []byte(text(4000)))
	checkOpen(t, s, f.Encoded["zstd"], "zstd", []byte(text(4000)))
}

func TestScanDirCancelled(t *testing.T) {
	dir := writeSite(t, map[string]string{"a.txt": text(4000)})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := ScanDir(ctx, dir, ScanOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("ScanDir(cancelled) = %v, want context.Canceled", err)
	}
}
