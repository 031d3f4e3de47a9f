package edge

import (
	"bytes"
	"crypto/tls"
	"io"
	"io/fs"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/selfcdn/cdn/edge/certs"
	"github.com/selfcdn/cdn/internal/acmetest"
)

// TestACMEIssuesFromPebble has an ACME site's certificate issued by
// Let's Encrypt's pebble, run in-process, with the CA's challenges
// (http-01 on the edge's plain port, tls-alpn-01 on its TLS port; the
// client picks either) answered by the edge itself; then serves HTTPS
// with it, and refuses a name no site has without asking the CA for it.
func TestACMEIssuesFromPebble(t *testing.T) {
	if testing.Short() {
		t.Skip("runs an ACME CA in-process")
	}
	start := time.Now()
	// The edge's sockets first: the CA's validation authority is told
	// their ports.
	tlsLn := listenLoopback(t)
	plainLn := listenLoopback(t)
	tlsPort, httpPort := tcpPort(tlsLn), tcpPort(plainLn)
	p := acmetest.Start(t, acmetest.Config{HTTPPort: httpPort, TLSPort: tlsPort})

	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, "issued by pebble")
	})
	cfg := DefaultConfig()
	cfg.Name = "acme-edge"
	cfg.AccessLog = false
	cfg.Cache.Memory = 64 << 20
	cfg.Cache.Dir = t.TempDir()
	cfg.Cache.Disk = 0
	cfg.Listen = plainLn.Addr().String()
	cfg.TLS.Listen = tlsLn.Addr().String()
	cfg.TLS.HTTP3 = false
	cfg.TLS.HandshakeTimeout = 5 * time.Second
	cfg.ShutdownTimeout = 2 * time.Second
	// The challenge ports are the edge's own listeners, so certmagic
	// binds nothing itself (not 80, not 443).
	cfg.TLS.ACME = ACMEConfig{CA: p.DirURL, Email: "ops@acme.test", CARoot: p.APIRootFile, HTTPPort: httpPort, TLSPort: tlsPort}
	cfg.Sites = []SiteConfig{{Name: "acme", Hosts: []string{"www.acme.test"}, Origin: o.URL, TLS: certs.ACME}}
	// Cleanups run last-in first-out: the edge (and certmagic's obtain,
	// on its context) stops before the CA, the resolver and the origin.
	e := runTLSEdge(t, cfg, Listeners{HTTP: plainLn, HTTPS: tlsLn})
	e.roots = p.Roots
	reg := e.Reg

	// The edge manages its exact ACME names as soon as it serves: wait
	// for certmagic's event, without a handshake (which could ask for the
	// certificate on demand instead).
	deadline := time.Now().Add(60 * time.Second)
	for {
		ev := countersByLabel(t, reg, "cdn_edge_cert_events_total", "event")
		if ev["cert_failed"] > 0 {
			t.Fatalf("issuance failed (the edge logged why); pebble saw orders %v, challenges %v", p.OrderNames(), p.Challenges())
		}
		if ev["cert_obtained"] > 0 {
			break
		}
		if time.Now().After(deadline) {
			// certmagic's Manage* only allowlists the names of a config
			// with OnDemand set, and obtains nothing until a handshake.
			t.Fatalf("no certificate obtained in the background within 60s (pebble saw orders %v, challenges %v)", p.OrderNames(), p.Challenges())
		}
		time.Sleep(50 * time.Millisecond)
	}
	issued := time.Since(start)

	// The handshake verifies against pebble's root through the
	// intermediate the edge sends.
	conn, err := tls.Dial("tcp", e.httpsAddr, &tls.Config{ServerName: "www.acme.test", RootCAs: p.Roots, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatalf("handshake for www.acme.test: %v", err)
	}
	st := conn.ConnectionState()
	conn.Close()
	leaf := st.PeerCertificates[0]
	if !slices.Equal(leaf.DNSNames, []string{"www.acme.test"}) {
		t.Errorf("leaf names %v, want [www.acme.test]", leaf.DNSNames)
	}
	if !bytes.Equal(leaf.RawIssuer, p.Intermediate.RawSubject) || leaf.CheckSignatureFrom(p.Intermediate) != nil {
		t.Errorf("leaf issued by %q, want pebble's intermediate %q", leaf.Issuer, p.Intermediate.Subject)
	}
	if len(st.PeerCertificates) < 2 || !st.PeerCertificates[1].Equal(p.Intermediate) {
		t.Errorf("chain of %d certificates does not carry pebble's intermediate next to the leaf", len(st.PeerCertificates))
	}
	if st.NegotiatedProtocol != "h2" {
		t.Errorf("ALPN %q, want h2", st.NegotiatedProtocol)
	}

	// And HTTPS is served with it, over HTTP/2.
	res, body := getWith(t, e.client(t, "h2"), "GET", e.url("www.acme.test", "/"), nil)
	if res.StatusCode != 200 || body != "issued by pebble" || res.ProtoMajor != 2 {
		t.Errorf("GET over HTTPS: %d HTTP/%d %q", res.StatusCode, res.ProtoMajor, body)
	}
	if res.TLS == nil || len(res.TLS.VerifiedChains) == 0 || !res.TLS.PeerCertificates[0].Equal(leaf) {
		t.Errorf("the response did not come over the verified ACME certificate")
	}

	// A name no site has is refused, and nothing is ordered for it.
	for _, name := range []string{"evil.acme.test", "acme.test"} {
		c, err := tls.Dial("tcp", e.httpsAddr, &tls.Config{ServerName: name, RootCAs: p.Roots})
		if err == nil {
			c.Close()
		}
		if err == nil || !strings.Contains(err.Error(), "unrecognized name") {
			t.Errorf("%s: handshake error %v, want an unrecognized_name alert", name, err)
		}
	}
	if got := p.OrderNames(); !slices.Equal(got, []string{"www.acme.test"}) {
		t.Errorf("pebble got orders for %v, want one for www.acme.test", got)
	}
	var stored []string
	filepath.WalkDir(cfg.storageDir(), func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			stored = append(stored, filepath.Base(path))
		}
		return nil
	})
	if !slices.Contains(stored, "www.acme.test.crt") {
		t.Errorf("no www.acme.test.crt in the certificate storage: %v", stored)
	}
	for _, f := range stored {
		if strings.Contains(f, "evil") || strings.HasPrefix(f, "acme.test.") {
			t.Errorf("storage holds %s for a name no site has (all: %v)", f, stored)
		}
	}
	if v := metricValue(t, e.testEdge, "cdn_edge_tls_unknown_name_total"); v != 2 {
		t.Errorf("cdn_edge_tls_unknown_name_total = %v, want 2", v)
	}
	t.Logf("issued after %v (challenge %v); whole test %v", issued.Round(time.Millisecond), p.Challenges(), time.Since(start).Round(time.Millisecond))
}

// listenLoopback opens a TCP socket on a free loopback port, closed when
// the test ends if nothing closed it before.
func listenLoopback(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func tcpPort(ln net.Listener) int { return ln.Addr().(*net.TCPAddr).Port }
