package edge

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/selfcdn/cdn/edge/certs"
)

// tlsEdge is an edge serving HTTPS (TCP and UDP on one port) and plain
// HTTP on loopback.
type tlsEdge struct {
	*testEdge
	httpsAddr string // 127.0.0.1:port, TCP and UDP
	port      string
	roots     *x509.CertPool // the dev CA
	srv       *Server
}

// listenTCPUDP opens TCP and UDP sockets on one free loopback port.
func listenTCPUDP(t *testing.T) (net.Listener, net.PacketConn) {
	t.Helper()
	ln, pc, err := ListenHTTPS("127.0.0.1:0", true)
	if err != nil {
		t.Fatal(err)
	}
	return ln, pc
}

// startTLSEdge runs an edge whose site "www.example.test" (and
// *.example.test) gets dev certificates, with mutate applied.
func startTLSEdge(t *testing.T, originURL string, mutate func(*Config)) *tlsEdge {
	t.Helper()
	tcp, udp := listenTCPUDP(t)
	cfg := DefaultConfig()
	cfg.Name = "tls-edge"
	cfg.AccessLog = false
	cfg.Cache.Memory = 64 << 20
	cfg.Cache.Dir = t.TempDir()
	cfg.Cache.Disk = 0
	cfg.Listen = "127.0.0.1:0"
	cfg.TLS.Listen = tcp.Addr().String()
	cfg.TLS.HandshakeTimeout = 2 * time.Second
	// A client that vanished mid-test holds a QUIC connection until this.
	cfg.ShutdownTimeout = 2 * time.Second
	cfg.Sites = []SiteConfig{{Name: "site", Hosts: []string{"www.example.test", "*.example.test"}, Origin: originURL, TLS: certs.Dev}}
	if mutate != nil {
		mutate(&cfg)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.TLS.HTTP3 {
		udp.Close()
		udp = nil
	}
	e := runTLSEdge(t, cfg, Listeners{HTTP: ln, HTTPS: tcp, QUIC: udp})
	if ca := e.srv.certs.DevCA(); ca != nil {
		e.roots = ca.Pool()
	}
	return e
}

// runTLSEdge serves cfg on l until the test ends (or stop).
func runTLSEdge(t *testing.T, cfg Config, l Listeners) *tlsEdge {
	t.Helper()
	reg := prometheus.NewRegistry()
	srv, err := New(cfg, Deps{Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})), Registry: reg})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.ServeListeners(ctx, l) }()
	stop := sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve returned %v", err)
		}
	})
	t.Cleanup(stop)
	e := &tlsEdge{
		testEdge:  &testEdge{URL: "http://" + l.HTTP.Addr().String(), Reg: reg, stop: stop},
		httpsAddr: l.HTTPS.Addr().String(),
		srv:       srv,
	}
	_, e.port, _ = net.SplitHostPort(e.httpsAddr)
	return e
}

// client returns an HTTPS client for proto ("h1", "h2" or "h3") that
// reaches every host at the edge, verifying certificates against the dev
// CA.
func (e *tlsEdge) client(t *testing.T, proto string) *http.Client {
	return e.clientWith(t, proto, false)
}

// smallWindowClient is client with at most 64 KiB in flight per
// connection (a fixed TCP receive buffer; fixed QUIC flow-control windows).
func (e *tlsEdge) smallWindowClient(t *testing.T, proto string) *http.Client {
	return e.clientWith(t, proto, true)
}

func (e *tlsEdge) clientWith(t *testing.T, proto string, small bool) *http.Client {
	t.Helper()
	tc := &tls.Config{RootCAs: e.roots}
	if proto == "h3" {
		var qconf *quic.Config
		if small {
			qconf = &quic.Config{
				InitialStreamReceiveWindow: 64 << 10, MaxStreamReceiveWindow: 64 << 10,
				InitialConnectionReceiveWindow: 64 << 10, MaxConnectionReceiveWindow: 64 << 10,
			}
		}
		tr := &http3.Transport{
			TLSClientConfig: tc,
			QUICConfig:      qconf,
			Dial: func(ctx context.Context, _ string, tc *tls.Config, qc *quic.Config) (*quic.Conn, error) {
				return quic.DialAddrEarly(ctx, e.httpsAddr, tc, qc)
			},
		}
		t.Cleanup(func() { tr.Close() })
		return &http.Client{Transport: tr, Timeout: 10 * time.Second}
	}
	var p http.Protocols
	if proto == "h2" {
		p.SetHTTP2(true)
	} else {
		p.SetHTTP1(true)
	}
	dial := func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, e.httpsAddr)
	}
	if small {
		dial = smallWindowDial(dial)
	}
	tr := &http.Transport{
		TLSClientConfig: tc,
		Protocols:       &p,
		DialContext:     dial,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// url is an https URL for host and path on the edge's port.
func (e *tlsEdge) url(host, path string) string { return "https://" + host + ":" + e.port + path }

// TestHTTPSProtocolsShareOneCache fetches one object over HTTP/1.1, HTTP/2
// and HTTP/3 on the TLS port: the first fills the cache, the others hit
// it with the same bytes, and h1 and h2 advertise h3.
func TestHTTPSProtocolsShareOneCache(t *testing.T) {
	body := strings.Repeat("tls object ", 20_000) // 220 KB
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, body)
	})
	e := startTLSEdge(t, o.URL, nil)
	wantAltSvc := `h3=":` + e.port + `"; ma=86400`
	for i, tt := range []struct {
		proto, cache, altSvc string
		major                int
	}{
		{proto: "h1", cache: "miss", altSvc: wantAltSvc, major: 1},
		{proto: "h2", cache: "hit", altSvc: wantAltSvc, major: 2},
		{proto: "h3", cache: "hit", altSvc: "", major: 3},
		{proto: "h1", cache: "hit", altSvc: wantAltSvc, major: 1},
	} {
		res, got := getWith(t, e.client(t, tt.proto), "GET", e.url("www.example.test", "/obj"), nil)
		if res.ProtoMajor != tt.major || res.TLS == nil {
			t.Errorf("#%d %s: answered over HTTP/%d (TLS %v)", i, tt.proto, res.ProtoMajor, res.TLS != nil)
		}
		if got != body {
			t.Errorf("#%d %s: body of %d bytes, want the origin's %d", i, tt.proto, len(got), len(body))
		}
		if c := cacheResult(res.Header.Get("Cache-Status")); c != tt.cache {
			t.Errorf("#%d %s: cache %s (%q), want %s", i, tt.proto, c, res.Header.Get("Cache-Status"), tt.cache)
		}
		if a := res.Header.Get("Alt-Svc"); a != tt.altSvc {
			t.Errorf("#%d %s: Alt-Svc %q, want %q", i, tt.proto, a, tt.altSvc)
		}
	}
	if n := o.hits.Load(); n != 1 {
		t.Errorf("origin saw %d requests, want 1", n)
	}
	// Plain HTTP is its own cache key (scheme), and still served.
	req, _ := http.NewRequest("GET", e.URL+"/obj", nil)
	req.Host = "www.example.test"
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if got := string(b); res.StatusCode != 200 || got != body || res.Header.Get("Alt-Svc") != "" {
		t.Errorf("plain HTTP: %d, %d bytes, Alt-Svc %q", res.StatusCode, len(got), res.Header.Get("Alt-Svc"))
	}
}

// TestHTTPSRedirectAndHSTS checks a site's https_redirect (308 to the same
// URL on the TLS port, ACME challenges exempt) and its HSTS header.
func TestHTTPSRedirectAndHSTS(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, "secure")
	})
	e := startTLSEdge(t, o.URL, func(c *Config) {
		c.Sites[0].HTTPSRedirect = true
		c.Sites[0].HSTS = HSTSConfig{MaxAge: 365 * 24 * time.Hour, IncludeSubdomains: true}
		c.Sites = append(c.Sites, SiteConfig{Name: "plain", Hosts: []string{"plain.test"}, Origin: o.URL})
	})
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tt := range []struct {
		name, host, path string
		status           int
		location         string
	}{
		{name: "redirected", host: "www.example.test", path: "/a/b?x=1", status: 308, location: e.url("www.example.test", "/a/b?x=1")},
		{name: "port in Host dropped", host: "www.example.test:8080", path: "/", status: 308, location: e.url("www.example.test", "/")},
		{name: "site without redirect", host: "plain.test", path: "/", status: 200},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", e.URL+tt.path, nil)
			req.Host = tt.host
			res, err := noFollow.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != tt.status || res.Header.Get("Location") != tt.location {
				t.Errorf("got %d Location %q, want %d %q", res.StatusCode, res.Header.Get("Location"), tt.status, tt.location)
			}
		})
	}
	for _, proto := range []string{"h1", "h2", "h3"} {
		// Twice: a miss through the full path, then a hit (h1's fast path).
		for range 2 {
			res, _ := getWith(t, e.client(t, proto), "GET", e.url("www.example.test", "/"), nil)
			if got := res.Header.Get("Strict-Transport-Security"); got != "max-age=31536000; includeSubDomains" {
				t.Errorf("%s %s: Strict-Transport-Security %q", proto, res.Header.Get("Cache-Status"), got)
			}
		}
	}
}

// TestHTTPSBadInput: an unknown name gets an unrecognized_name alert and
// no certificate is minted for it; plain HTTP on the TLS port gets a 400
// that says to use https; a client that never finishes its handshake is
// cut off after the handshake timeout.
func TestHTTPSBadInput(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "x") })
	e := startTLSEdge(t, o.URL, nil)
	t.Run("unknown SNI", func(t *testing.T) {
		for _, name := range []string{"evil.test", "a.b.example.test", "example.test"} {
			_, err := tls.Dial("tcp", e.httpsAddr, &tls.Config{ServerName: name, RootCAs: e.roots})
			if err == nil || !strings.Contains(err.Error(), "unrecognized name") {
				t.Errorf("%s: handshake error %v, want an unrecognized_name alert", name, err)
			}
		}
		// A wildcard site's one-label name is known and gets a certificate.
		c, err := tls.Dial("tcp", e.httpsAddr, &tls.Config{ServerName: "img.example.test", RootCAs: e.roots})
		if err != nil {
			t.Fatalf("img.example.test: %v", err)
		}
		c.Close()
		var minted []string
		filepath.WalkDir(e.srv.cfg.storageDir(), func(p string, d os.DirEntry, err error) error {
			if err == nil && strings.HasSuffix(p, ".crt") {
				minted = append(minted, filepath.Base(p))
			}
			return nil
		})
		for _, m := range minted {
			if strings.Contains(m, "evil") || m == "example.test.crt" || strings.HasPrefix(m, "a.b.") {
				t.Errorf("a certificate was minted for an unknown name: %s (all: %v)", m, minted)
			}
		}
		if v := metricValue(t, e.testEdge, "cdn_edge_tls_unknown_name_total"); v < 3 {
			t.Errorf("cdn_edge_tls_unknown_name_total = %v, want >= 3", v)
		}
	})
	t.Run("plain HTTP on the TLS port", func(t *testing.T) {
		res, err := http.Get("http://" + e.httpsAddr + "/")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 400 || !strings.Contains(string(b), "https://") {
			t.Errorf("got %d %q, want 400 naming https://", res.StatusCode, b)
		}
	})
	t.Run("handshake never finished", func(t *testing.T) {
		c, err := net.Dial("tcp", e.httpsAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "\x16\x03\x01") // the start of a ClientHello, then silence
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		start := time.Now()
		_, err = io.ReadAll(c)
		if took := time.Since(start); err != nil || took > 5*time.Second {
			t.Errorf("connection ended after %s (%v), want a close within the 2s handshake timeout", took, err)
		}
	})
	t.Run("QUIC handshake never finished", func(t *testing.T) {
		// A QUIC Initial that is garbage and one that is never followed
		// up: the server keeps serving others.
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		ua, _ := net.ResolveUDPAddr("udp", e.httpsAddr)
		junk := make([]byte, 1200)
		junk[0] = 0xc0 // long header, Initial
		for range 50 {
			pc.WriteTo(junk, ua)
		}
		// A real client that stops after its first flight: quic-go with a
		// context that ends mid-handshake.
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		quic.DialAddr(ctx, e.httpsAddr, &tls.Config{ServerName: "www.example.test", RootCAs: e.roots, NextProtos: []string{"h3"}}, nil)
		res, got := getWith(t, e.client(t, "h3"), "GET", e.url("www.example.test", "/after"), nil)
		if res.StatusCode != 200 || got != "x" {
			t.Errorf("after junk: %d %q", res.StatusCode, got)
		}
	})
}

// TestHTTPSFiles serves a site from operator-given certificate files and
// picks up new files without a restart.
func TestHTTPSFiles(t *testing.T) {
	dir := t.TempDir()
	ca, err := certs.OpenDevCA(filepath.Join(dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "site.crt"), filepath.Join(dir, "site.key")
	writeLeaf(t, ca, "files.test", certFile, keyFile)
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "from files") })
	e := startTLSEdge(t, o.URL, func(c *Config) {
		c.Sites = []SiteConfig{{Name: "files", Hosts: []string{"files.test"}, Origin: o.URL, TLS: certs.Files, CertFile: certFile, KeyFile: keyFile}}
	})
	e.roots = ca.Pool()
	res, got := getWith(t, e.client(t, "h2"), "GET", e.url("files.test", "/"), nil)
	if res.StatusCode != 200 || got != "from files" {
		t.Fatalf("got %d %q", res.StatusCode, got)
	}

	// A missing file is a clear error at start, naming the file.
	cfg := e.srv.cfg
	cfg.Sites[0].CertFile = filepath.Join(dir, "missing.crt")
	if _, err := New(cfg, Deps{}); err == nil || !strings.Contains(err.Error(), "missing.crt") {
		t.Errorf("New with a missing certificate file: %v, want an error naming it", err)
	}
}

// writeLeaf writes a certificate for name from ca, and its key.
func writeLeaf(t *testing.T, ca *certs.DevCA, name, certFile, keyFile string) {
	t.Helper()
	certPEM, keyPEM, err := ca.IssueFiles(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
}
