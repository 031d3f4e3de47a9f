package static

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name     string
		edit     func(*Config)
		wantErrs []string // each must appear in the error; none means valid
	}{
		{name: "defaults with dir", edit: func(c *Config) { c.Dir = "site" }},
		{name: "defaults without dir", edit: func(c *Config) {}, wantErrs: []string{"dir is required"}},
		{
			name: "everything wrong",
			edit: func(c *Config) {
				c.Listen = "9000"
				c.DefaultCacheControl = "public\r\nX-Evil: 1"
				c.ShutdownTimeout = 0
			},
			wantErrs: []string{"dir is required", "listen must be host:port", "default_cache_control must not contain", "shutdown_timeout must be > 0"},
		},
		{name: "empty cache-control allowed", edit: func(c *Config) { c.Dir = "."; c.DefaultCacheControl = "" }},
		{name: "any port", edit: func(c *Config) { c.Dir = "."; c.Listen = ":0" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tt.edit(&cfg)
			err := cfg.Validate()
			if len(tt.wantErrs) == 0 && err != nil {
				t.Errorf("Validate() = %v, want nil", err)
			}
			if len(tt.wantErrs) > 0 && err == nil {
				t.Fatalf("Validate() = nil, want errors %q", tt.wantErrs)
			}
			for _, want := range tt.wantErrs {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Validate() = %v, want it to contain %q", err, want)
				}
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	bad := writeSite(t, map[string]string{"_headers": "/\n  Bad Name: x\n"})
	tests := []struct {
		name    string
		edit    func(*Config)
		wantErr string
		wantIs  error
	}{
		{name: "invalid config", edit: func(c *Config) { c.Dir = "" }, wantErr: "check config: dir is required"},
		{name: "missing dir", edit: func(c *Config) { c.Dir = filepath.Join(t.TempDir(), "nope") }, wantErr: "open site", wantIs: os.ErrNotExist},
		{name: "bad _headers", edit: func(c *Config) { c.Dir = bad }, wantErr: "line 2: header name"},
		{name: "missing rules file", edit: func(c *Config) { c.Dir = bad; c.RulesFile = filepath.Join(bad, "nope") }, wantErr: "open rules", wantIs: os.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tt.edit(&cfg)
			s, err := New(cfg, Deps{})
			if err == nil {
				s.Close()
				t.Fatalf("New() = nil error, want %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) || (tt.wantIs != nil && !errors.Is(err, tt.wantIs)) {
				t.Errorf("New() = %v, want %q (is %v)", err, tt.wantErr, tt.wantIs)
			}
		})
	}
}

func TestNewRegistersOnce(t *testing.T) {
	dir := writeSite(t, map[string]string{"index.html": "x"})
	cfg := DefaultConfig()
	cfg.Dir = dir
	reg := prometheus.NewRegistry()
	s, err := New(cfg, Deps{Metrics: reg})
	if err != nil {
		t.Fatalf("first New: %v", err)
	}
	defer s.Close()
	if s2, err := New(cfg, Deps{Metrics: reg}); err == nil {
		s2.Close()
		t.Errorf("second New on the same registry = nil error, want a registration error")
	}
}

func TestServeShutdown(t *testing.T) {
	s, _ := newTestServer(t, writeSite(t, testSite), nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()

	client := &http.Client{Timeout: 5 * time.Second}
	tests := []struct {
		name, path string
		wantStatus int
		wantBody   string
	}{
		{name: "file", path: "/style.css", wantStatus: 200, wantBody: testSite["style.css"]},
		{name: "encoded traversal on the wire", path: "/%2e%2e/%2e%2e/etc/passwd", wantStatus: 400},
		{name: "plain traversal on the wire", path: "/../../etc/passwd", wantStatus: 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := client.Get("http://" + ln.Addr().String() + tt.path)
			if err != nil {
				t.Fatalf("GET %s: %v", tt.path, err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != tt.wantStatus || (tt.wantBody != "" && string(body) != tt.wantBody) {
				t.Errorf("GET %s = %d %q, want %d %q", tt.path, res.StatusCode, body, tt.wantStatus, tt.wantBody)
			}
		})
	}
	client.CloseIdleConnections()

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve() after cancel = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return within 10s of cancel")
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Errorf("listener %s still accepts after Serve returned", ln.Addr())
	}
}

func TestRunListenError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s, _ := newTestServer(t, writeSite(t, testSite), func(c *Config) { c.Listen = ln.Addr().String() })
	if err := s.Run(t.Context()); err == nil {
		t.Errorf("Run on a busy address %s = nil, want a listen error", ln.Addr())
	}
}

func TestNilDeps(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Dir = writeSite(t, map[string]string{"index.html": "home"})
	s, err := New(cfg, Deps{Logger: nil, Metrics: nil})
	if err != nil {
		t.Fatalf("New with nil deps: %v", err)
	}
	defer s.Close()
	if res, body := get(t, s, "GET", "/"); res.StatusCode != 200 || body != "home" {
		t.Errorf("GET / = %d %q, want 200 %q", res.StatusCode, body, "home")
	}
}
