package edge

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"io/fs"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/selfcdn/cdn/edge/certs"
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
	p := startPebble(t, startResolver(t), httpPort, tlsPort)

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
	cfg.TLS.ACME = ACMEConfig{CA: p.dirURL, Email: "ops@acme.test", CARoot: p.apiRootFile, HTTPPort: httpPort, TLSPort: tlsPort}
	cfg.Sites = []SiteConfig{{Name: "acme", Hosts: []string{"www.acme.test"}, Origin: o.URL, TLS: certs.ACME}}
	// Cleanups run last-in first-out: the edge (and certmagic's obtain,
	// on its context) stops before the CA, the resolver and the origin.
	e := runTLSEdge(t, cfg, Listeners{HTTP: plainLn, HTTPS: tlsLn})
	e.roots = p.roots
	reg := e.Reg

	// The edge manages its exact ACME names as soon as it serves: wait
	// for certmagic's event, without a handshake (which could ask for the
	// certificate on demand instead).
	deadline := time.Now().Add(60 * time.Second)
	for {
		ev := certEvents(t, reg)
		if ev["cert_failed"] > 0 {
			t.Fatalf("issuance failed (the edge logged why); pebble saw orders %v, challenges %v", p.traffic.orderNames(), p.traffic.challengeTypes())
		}
		if ev["cert_obtained"] > 0 {
			break
		}
		if time.Now().After(deadline) {
			// certmagic's Manage* only allowlists the names of a config
			// with OnDemand set, and obtains nothing until a handshake.
			t.Fatalf("no certificate obtained in the background within 60s (pebble saw orders %v, challenges %v)", p.traffic.orderNames(), p.traffic.challengeTypes())
		}
		time.Sleep(50 * time.Millisecond)
	}
	issued := time.Since(start)

	// The handshake verifies against pebble's root through the
	// intermediate the edge sends.
	conn, err := tls.Dial("tcp", e.httpsAddr, &tls.Config{ServerName: "www.acme.test", RootCAs: p.roots, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatalf("handshake for www.acme.test: %v", err)
	}
	st := conn.ConnectionState()
	conn.Close()
	leaf := st.PeerCertificates[0]
	if !slices.Equal(leaf.DNSNames, []string{"www.acme.test"}) {
		t.Errorf("leaf names %v, want [www.acme.test]", leaf.DNSNames)
	}
	if !bytes.Equal(leaf.RawIssuer, p.intermediate.RawSubject) || leaf.CheckSignatureFrom(p.intermediate) != nil {
		t.Errorf("leaf issued by %q, want pebble's intermediate %q", leaf.Issuer, p.intermediate.Subject)
	}
	if len(st.PeerCertificates) < 2 || !st.PeerCertificates[1].Equal(p.intermediate) {
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
		c, err := tls.Dial("tcp", e.httpsAddr, &tls.Config{ServerName: name, RootCAs: p.roots})
		if err == nil {
			c.Close()
		}
		if err == nil || !strings.Contains(err.Error(), "unrecognized name") {
			t.Errorf("%s: handshake error %v, want an unrecognized_name alert", name, err)
		}
	}
	if got := p.traffic.orderNames(); !slices.Equal(got, []string{"www.acme.test"}) {
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
	t.Logf("issued after %v (challenge %v); whole test %v", issued.Round(time.Millisecond), p.traffic.challengeTypes(), time.Since(start).Round(time.Millisecond))
}

// certEvents are the edge's cdn_edge_cert_events_total, by event.
func certEvents(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "cdn_edge_cert_events_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "event" {
					out[l.GetValue()] += m.GetCounter().GetValue()
				}
			}
		}
	}
	return out
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

// startResolver runs the DNS server pebble's validation authority asks
// (over TCP, as it does with a custom resolver): every name is
// 127.0.0.1, with no IPv6 address and no other records.
func startResolver(t *testing.T) string {
	t.Helper()
	ln := listenLoopback(t)
	srv := &dns.Server{Listener: ln, Net: "tcp", Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		for _, q := range r.Question {
			if q.Qtype == dns.TypeA {
				m.Answer = append(m.Answer, &dns.A{
					Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
					A:   net.IPv4(127, 0, 0, 1),
				})
			}
		}
		w.WriteMsg(m)
	})}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	served := make(chan error, 1)
	go func() { served <- srv.ActivateAndServe() }()
	select {
	case <-started:
	case err := <-served:
		t.Fatalf("DNS server: %v", err)
	}
	t.Cleanup(func() {
		srv.Shutdown()
		<-served
	})
	return ln.Addr().String()
}

// pebble is an ACME CA run in-process.
type pebble struct {
	dirURL      string // the ACME directory
	apiRootFile string // PEM of the root the ACME API's HTTPS chains to
	roots       *x509.CertPool
	// intermediate signs the leaf certificates.
	intermediate *x509.Certificate
	traffic      *acmeTraffic
}

// startPebble runs pebble's CA, validation authority (which validates
// http-01 on httpPort and tls-alpn-01 on tlsPort of whatever resolver
// says, i.e. 127.0.0.1) and ACME API until the test ends. Its log goes
// into the test's output only if the test fails.
func startPebble(t *testing.T, resolver string, httpPort, tlsPort int) *pebble {
	t.Helper()
	// Read by the constructors: no random sleeps before validating, no
	// bad-nonce rejections, no reused authorizations, real validation.
	t.Setenv("PEBBLE_VA_NOSLEEP", "1")
	t.Setenv("PEBBLE_VA_ALWAYS_VALID", "0")
	t.Setenv("PEBBLE_WFE_NONCEREJECT", "0")
	t.Setenv("PEBBLE_AUTHZREUSE", "0")
	var out lockedBuffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("pebble's log:\n%s", out.String())
		}
	})
	logger := log.New(&out, "pebble ", log.Lmicroseconds)
	store := db.NewMemoryStore()
	// Profiles must not be empty: pebble picks one at random for orders
	// that name none.
	caImpl := ca.New(logger, store, "", "ecdsa", 0, 1, map[string]ca.Profile{"default": {Description: "default"}})
	// pebble's VA has no Close: its task loop (one goroutine, parked on a
	// channel) outlives the test.
	vaImpl := va.New(logger, httpPort, tlsPort, false, resolver, store)
	w := wfe.New(logger, store, vaImpl, caImpl, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)
	tr := &acmeTraffic{}
	srv := httptest.NewUnstartedServer(tr.record(store, w.Handler()))
	srv.Config.ErrorLog = logger
	srv.StartTLS()
	t.Cleanup(srv.Close)

	rootFile := filepath.Join(t.TempDir(), "pebble-api.pem")
	if err := os.WriteFile(rootFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(caImpl.GetRootCert(0).Cert)
	return &pebble{
		dirURL:       srv.URL + wfe.DirectoryPath,
		apiRootFile:  rootFile,
		roots:        roots,
		intermediate: caImpl.GetIntermediateCert(0).Cert,
		traffic:      tr,
	}
}

// acmeTraffic is what the ACME client asked pebble for.
type acmeTraffic struct {
	mu         sync.Mutex
	orders     [][]string // each new order's identifiers
	challenges []string   // the type of each challenge it asked to validate
}

// record wraps pebble's API to note new orders and challenge responses
// from the JWS payloads.
func (a *acmeTraffic) record(store *db.MemoryStore, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			h.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		var jws struct {
			Payload string `json:"payload"`
		}
		json.Unmarshal(body, &jws)
		payload, _ := base64.RawURLEncoding.DecodeString(jws.Payload)
		var order struct {
			Identifiers []struct {
				Value string `json:"value"`
			} `json:"identifiers"`
		}
		json.Unmarshal(payload, &order)
		a.mu.Lock()
		if len(order.Identifiers) > 0 {
			var names []string
			for _, id := range order.Identifiers {
				names = append(names, id.Value)
			}
			a.orders = append(a.orders, names)
		}
		// A challenge's URL ends in its ID; a POST with a payload (not a
		// POST-as-GET) asks pebble to validate it.
		if id, ok := strings.CutPrefix(r.URL.Path, "/chalZ/"); ok && len(payload) > 0 {
			if c := store.GetChallengeByID(id); c != nil {
				c.RLock()
				a.challenges = append(a.challenges, c.Type)
				c.RUnlock()
			}
		}
		a.mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

// orderNames are the names of every order, in order.
func (a *acmeTraffic) orderNames() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, o := range a.orders {
		out = append(out, o...)
	}
	return out
}

func (a *acmeTraffic) challengeTypes() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.challenges)
}

// lockedBuffer is a buffer several goroutines write to.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
