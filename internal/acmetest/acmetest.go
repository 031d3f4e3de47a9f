// Package acmetest runs Let's Encrypt's pebble, an ACME CA, in-process
// for tests: its web API on a loopback HTTPS port, its CA, and its
// validation authority, which really validates http-01 and tls-alpn-01
// challenges against 127.0.0.1 (a DNS server of its own says every name
// is there). It records the orders and challenges it gets.
package acmetest

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
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

	"github.com/selfcdn/cdn/internal/syncbuf"
)

// Config says where the CA validates challenges, and for how long it
// issues certificates.
type Config struct {
	// HTTPPort and TLSPort are the ports on 127.0.0.1 where the
	// validation authority asks for http-01 and tls-alpn-01 answers.
	HTTPPort, TLSPort int
	// Validity is how long certificates are valid; 0 is pebble's 90 days.
	// A short one makes certmagic renew within a test.
	Validity time.Duration
}

// Pebble is a running CA.
type Pebble struct {
	// DirURL is the ACME directory.
	DirURL string
	// APIRootFile is a PEM file of the root the ACME API's HTTPS chains
	// to (an ACME client's CA root setting).
	APIRootFile string
	// Roots verifies the certificates it issues.
	Roots *x509.CertPool
	// Intermediate signs the leaf certificates.
	Intermediate *x509.Certificate

	mu         sync.Mutex // protects orders and challenges
	orders     [][]string // each new order's identifiers
	challenges []string   // the type of each challenge asked to validate
	log        syncbuf.Buffer
}

// Start runs pebble until the test ends. Its log goes into the test's
// output only if the test fails. It sets pebble's environment (no random
// sleeps, no nonce rejections, no reused authorizations, real
// validation), so tests using it cannot run in parallel.
func Start(t testing.TB, cfg Config) *Pebble {
	t.Helper()
	t.Setenv("PEBBLE_VA_NOSLEEP", "1")
	t.Setenv("PEBBLE_VA_ALWAYS_VALID", "0")
	t.Setenv("PEBBLE_WFE_NONCEREJECT", "0")
	t.Setenv("PEBBLE_AUTHZREUSE", "0")
	p := &Pebble{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("pebble's log:\n%s", p.log.String())
		}
	})
	logger := log.New(&p.log, "pebble ", log.Lmicroseconds)
	store := db.NewMemoryStore()
	// Profiles must not be empty: pebble picks one at random for orders
	// that name none.
	caImpl := ca.New(logger, store, "", "ecdsa", 0, 1, map[string]ca.Profile{
		"default": {Description: "default", ValidityPeriod: uint64(cfg.Validity / time.Second)},
	})
	// pebble's VA has no Close: its task loop (one goroutine, parked on a
	// channel) outlives the test.
	vaImpl := va.New(logger, cfg.HTTPPort, cfg.TLSPort, false, startResolver(t), store)
	w := wfe.New(logger, store, vaImpl, caImpl, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)
	srv := httptest.NewUnstartedServer(p.record(store, w.Handler()))
	srv.Config.ErrorLog = logger
	srv.StartTLS()
	t.Cleanup(srv.Close)

	p.APIRootFile = filepath.Join(t.TempDir(), "pebble-api.pem")
	if err := os.WriteFile(p.APIRootFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	p.Roots = x509.NewCertPool()
	p.Roots.AddCert(caImpl.GetRootCert(0).Cert)
	p.DirURL = srv.URL + wfe.DirectoryPath
	p.Intermediate = caImpl.GetIntermediateCert(0).Cert
	return p
}

// startResolver runs the DNS server pebble's validation authority asks
// (over TCP, as it does with a custom resolver): every name is
// 127.0.0.1, with no IPv6 address and no other records.
func startResolver(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
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

// record wraps pebble's API to note new orders and challenge responses
// from the JWS payloads.
func (p *Pebble) record(store *db.MemoryStore, h http.Handler) http.Handler {
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
		p.mu.Lock()
		if len(order.Identifiers) > 0 {
			var names []string
			for _, id := range order.Identifiers {
				names = append(names, id.Value)
			}
			p.orders = append(p.orders, names)
		}
		// A challenge's URL ends in its ID; a POST with a payload (not a
		// POST-as-GET) asks pebble to validate it.
		if id, ok := strings.CutPrefix(r.URL.Path, "/chalZ/"); ok && len(payload) > 0 {
			if c := store.GetChallengeByID(id); c != nil {
				c.RLock()
				p.challenges = append(p.challenges, c.Type)
				c.RUnlock()
			}
		}
		p.mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

// OrderNames are the names of every order, in order.
func (p *Pebble) OrderNames() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, o := range p.orders {
		out = append(out, o...)
	}
	return out
}

// Challenges are the types of the challenges validated, in order.
func (p *Pebble) Challenges() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.challenges)
}
