package static

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// testSite is the site most tests serve; bigBody is 1000 known bytes.
var testSite = map[string]string{
	"index.html":        "<!doctype html><h1>home</h1>",
	"style.css":         "body{color:red}",
	"app.js":            "console.log(1)",
	"data.json":         `{"a":1}`,
	"image.png":         "\x89PNG\r\n\x1a\n0000",
	"LICENSE":           "plain text, no extension\n",
	"big.bin":           bigBody,
	"docs/index.html":   "<h1>docs</h1>",
	"docs/guide.html":   "<h1>guide</h1>",
	"empty/.keep":       "",
	"assets/app.js":     "console.log('asset')",
	"blog/post.html":    "<h1>post</h1>",
	"sub/index.html/x":  "index.html is a directory here",
	"_headers":          testRules,
	"config/rules.conf": "/\n  X-Hidden-Rules: yes\n",
}

const testRules = `# test rules
/assets/*
  Cache-Control: public, max-age=31536000, immutable
  Surrogate-Key: assets static
/*.html
  Cache-Control: public, max-age=300
`

var bigBody = func() string {
	var b strings.Builder
	for i := range 1000 {
		b.WriteByte(byte('a' + i%26))
	}
	return b.String()
}()

// writeSite creates files (slash-separated names) under a new temp dir.
func writeSite(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// newTestServer serves dir with cfg's defaults and a fresh registry.
func newTestServer(t *testing.T, dir string, edit func(*Config)) (*Server, *prometheus.Registry) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Dir = dir
	if edit != nil {
		edit(&cfg)
	}
	reg := prometheus.NewRegistry()
	s, err := New(cfg, Deps{Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})), Metrics: reg})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, reg
}

// get sends method target with header pairs ("Name", "value", ...) to h.
func get(t *testing.T, h http.Handler, method, target string, header ...string) (*http.Response, string) {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	res := rec.Result()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return res, string(body)
}
