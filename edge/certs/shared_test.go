package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/selfcdn/cdn/internal/acmetest"
	"github.com/selfcdn/cdn/internal/certstore"
	"github.com/selfcdn/cdn/internal/natstest"
)

// sharedNet is a network of edges whose certificate managers share one
// NATS bucket (each over its own connection and certstore client), and
// the ACME CA they order from. The CA validates challenges on edge 0's
// listeners, whichever edge ordered: edge 0 answers from the shared
// storage, as any edge a CA's request lands on would.
type sharedNet struct {
	natsURL string
	ca      *acmetest.Pebble
	acme    ACMEConfig
	// front are edge 0's HTTP and TLS listeners, made before the CA.
	front [2]net.Listener
}

// sharedEdge is one edge's certificate side.
type sharedEdge struct {
	name    string
	m       *Manager
	store   *certstore.Storage
	reg     *prometheus.Registry
	link    *natstest.Link // its network path to NATS, to cut
	tlsAddr string
	dir     string // its certificate storage directory
	stop    func() // stops its manager and storage; the test's end does too
}

// sharedLockTTL is how long a cut-off holder keeps its lock.
const sharedLockTTL = 2 * time.Second

func startSharedNet(t *testing.T, validity time.Duration) *sharedNet {
	t.Helper()
	srv := natstest.Start(t, "", "")
	if err := certstore.CreateBucket(t.Context(), natstest.Connect(t, srv.URL), 1); err != nil {
		t.Fatal(err) // as control does
	}
	n := &sharedNet{natsURL: srv.URL, front: [2]net.Listener{listenTCP(t), listenTCP(t)}}
	httpPort, tlsPort := n.front[0].Addr().(*net.TCPAddr).Port, n.front[1].Addr().(*net.TCPAddr).Port
	n.ca = acmetest.Start(t, acmetest.Config{HTTPPort: httpPort, TLSPort: tlsPort, Validity: validity})
	n.acme = ACMEConfig{CA: n.ca.DirURL, Email: "ops@shared.test", CARoot: n.ca.APIRootFile, HTTPPort: httpPort, TLSPort: tlsPort}
	return n
}

func listenTCP(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// startEdge starts edge i serving sites until the test ends; hook, if
// set, runs before each of its ACME orders.
func (n *sharedNet) startEdge(t *testing.T, i int, sites []Site, hook func(name string)) *sharedEdge {
	t.Helper()
	e := &sharedEdge{name: fmt.Sprintf("edge-%d", i), reg: prometheus.NewRegistry(), link: natstest.Proxy(t, n.natsURL)}
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})).With("edge", e.name)
	nc, err := nats.Connect(e.link.URL, nats.ReconnectWait(50*time.Millisecond), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	e.store = certstore.New(certstore.Config{Owner: e.name, LockTTL: sharedLockTTL, Poll: 50 * time.Millisecond, Logger: log})
	e.dir = t.TempDir()
	e.m, err = New(Config{
		Storage: e.dir, Shared: e.store, SharedReady: e.store.Bound(),
		ACME: n.acme, NextProtos: []string{"h2", "http/1.1"}, Logger: log, Registry: e.reg,
		renewCheck: 250 * time.Millisecond, disableARI: true, beforeOrder: hook,
	})
	if err != nil {
		t.Fatal(err)
	}
	httpLn, tlsLn := n.front[0], n.front[1]
	if i != 0 {
		httpLn, tlsLn = listenTCP(t), listenTCP(t)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !e.m.HandleHTTPChallenge(w, r) {
			http.NotFound(w, r)
		}
	})}
	go hs.Serve(httpLn)
	t.Cleanup(func() { hs.Close() })
	e.tlsAddr = serveOn(t, tlsLn, e.m)
	if err := e.m.Update(sites); err != nil {
		t.Fatal(err)
	}
	stopRun := runManager(t, e.m)
	e.stop = sync.OnceFunc(func() {
		stopRun()
		e.m.Close()
		sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer scancel()
		e.store.Close(sctx)
	})
	t.Cleanup(e.stop)
	// As the edge's control link does once NATS answers.
	if err := e.store.Bind(t.Context(), nc); err != nil {
		t.Fatal(err)
	}
	return e
}

// serveOn serves TLS handshakes with m's config on ln.
func serveOn(t *testing.T, ln net.Listener, m *Manager) string {
	t.Helper()
	tln := tls.NewListener(ln, m.TLSConfig())
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := tln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				c.SetDeadline(time.Now().Add(5 * time.Second))
				c.(*tls.Conn).Handshake()
				c.Close()
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

// serials is the certificate serial each edge serves for name ("" if
// the handshake failed), by edge.
func serials(edges []*sharedEdge, name string, roots *x509.CertPool) []string {
	out := make([]string, len(edges))
	for i, e := range edges {
		if leaf, err := handshake(e.tlsAddr, name, roots); err == nil {
			out[i] = leaf.SerialNumber.String()
		}
	}
	return out
}

// waitSameCert waits until every edge serves one certificate for each
// name, verified by the CA's roots and not one of old, and returns its
// serial by name.
func waitSameCert(t *testing.T, edges []*sharedEdge, names []string, roots *x509.CertPool, old map[string]string, within time.Duration) map[string]string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := map[string]string{}
		var last []string
		for _, name := range names {
			s := serials(edges, name, roots)
			last = s
			if s[0] != "" && s[0] != old[name] && !slices.ContainsFunc(s, func(x string) bool { return x != s[0] }) {
				got[name] = s[0]
			}
		}
		if len(got) == len(names) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("edges did not all serve one new certificate within %v; serials of %s: %q", within, names[len(names)-1], last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ordersByName counts the CA's orders for each name.
func ordersByName(ca *acmetest.Pebble) map[string]int {
	out := map[string]int{}
	for _, n := range ca.OrderNames() {
		out[n]++
	}
	return out
}

// TestSharedCertificatesOneOrder runs six edges sharing one NATS: each
// name is ordered once for all of them, all six serve that certificate,
// then one edge renews it (one more order per name) and all six serve
// the renewed certificate.
func TestSharedCertificatesOneOrder(t *testing.T) {
	if testing.Short() {
		t.Skip("runs an ACME CA and six certificate managers")
	}
	start := time.Now()
	// Renewal comes when a third of the lifetime is left (ARI is off):
	// 16s after issuance, and the renewed certificate's own renewal 16s
	// after that, the margin for all six to pick up the first renewal.
	const validity = 24 * time.Second
	n := startSharedNet(t, validity)
	names := []string{"www.shared.test", "img.shared.test"}
	sites := []Site{{Name: "shared", Hosts: names, Mode: ACME}}
	edges := make([]*sharedEdge, 6)
	for i := range edges {
		edges[i] = n.startEdge(t, i, sites, nil)
	}
	first := waitSameCert(t, edges, names, n.ca.Roots, nil, 60*time.Second)
	issued := time.Since(start)
	want := map[string]int{"www.shared.test": 1, "img.shared.test": 1}
	if got := ordersByName(n.ca); !maps.Equal(got, want) {
		t.Fatalf("orders at the CA = %v, want one per name %v", got, want)
	}
	if ch := n.ca.Challenges(); len(ch) != len(names) {
		t.Errorf("challenges validated = %v, want one per name", ch)
	}

	renewed := waitSameCert(t, edges, names, n.ca.Roots, first, 3*validity)
	want = map[string]int{"www.shared.test": 2, "img.shared.test": 2}
	if got := ordersByName(n.ca); !maps.Equal(got, want) {
		t.Errorf("orders at the CA after renewal = %v, want two per name %v (one renewal, by one edge)", got, want)
	}
	// Every certificate obtained was one order, by one edge.
	var obtainedBy []string
	var obtained float64
	for _, e := range edges {
		if v := testutil.ToFloat64(e.m.metrics.events.WithLabelValues("cert_obtained")); v > 0 {
			obtainedBy = append(obtainedBy, fmt.Sprintf("%s×%v", e.name, v))
			obtained += v
		}
	}
	if obtained != 4 {
		t.Errorf("edges obtained %v certificates (%v), want 4: two names, issued and renewed once each", obtained, obtainedBy)
	}
	t.Logf("six edges: first certificates %v after %v, renewed %v after %v; obtained by %v; challenges %v",
		first, issued.Round(time.Millisecond), renewed, time.Since(start).Round(time.Millisecond), obtainedBy, n.ca.Challenges())
}

// TestSharedCertificatesHolderCutOff cuts the lock holder off NATS in
// the middle of an issuance (it holds the lock and is about to order):
// it orders nothing, its lock expires on the server, another edge
// orders once, and every other edge gets that certificate once it is
// stored. When the holder comes back its stale lock fences nothing of
// the new holder's.
func TestSharedCertificatesHolderCutOff(t *testing.T) {
	if testing.Short() {
		t.Skip("runs an ACME CA and six certificate managers")
	}
	start := time.Now()
	n := startSharedNet(t, 0)
	names := []string{"www.shared.test"}
	sites := []Site{{Name: "shared", Hosts: names, Mode: ACME}}

	// The first edge about to order (the one holding the lock) stops
	// there until the test has cut it off.
	holding, proceed := make(chan int, 1), make(chan struct{})
	var once sync.Once
	hook := func(i int) func(string) {
		return func(string) {
			caught := false
			once.Do(func() { caught = true })
			if caught {
				holding <- i
				<-proceed
			}
		}
	}
	edges := make([]*sharedEdge, 6)
	// Edges 1-5 race for the lock; edge 0, where the CA validates, joins
	// once the holder is caught, so the holder is never the edge the CA
	// asks.
	for i := 1; i < 6; i++ {
		edges[i] = n.startEdge(t, i, sites, hook(i))
	}
	var h int
	select {
	case h = <-holding:
	case <-time.After(60 * time.Second):
		t.Fatal("no edge got to ordering within 60s")
	}
	edges[0] = n.startEdge(t, 0, sites, hook(0))
	holder := edges[h]
	holder.link.Cut()
	cut := time.Now()
	close(proceed)

	var others []*sharedEdge
	for i, e := range edges {
		if i != h {
			others = append(others, e)
		}
	}
	certs := waitSameCert(t, others, names, n.ca.Roots, nil, 60*time.Second)
	took := time.Since(cut)
	if got := ordersByName(n.ca); !maps.Equal(got, map[string]int{"www.shared.test": 1}) {
		t.Errorf("orders at the CA = %v, want exactly one for www.shared.test", got)
	}
	if v := testutil.ToFloat64(holder.m.metrics.events.WithLabelValues("order_held_back")); v < 1 {
		t.Errorf("the cut-off holder's held-back orders = %v, want ≥ 1", v)
	}
	if took < sharedLockTTL/2 {
		t.Errorf("another edge stored the certificate %v after the holder was cut off, before its lock's TTL %v", took, sharedLockTTL)
	}
	if s := serials([]*sharedEdge{holder}, names[0], n.ca.Roots); s[0] != "" {
		t.Errorf("the cut-off holder serves a certificate (%s) it could not have loaded", s[0])
	}

	// Back on the network, the old holder's lock is not its own any
	// more (another edge held it since): it cannot confirm it.
	holder.link.Heal()
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if err = holder.store.ConfirmLock(t.Context(), "issue_cert_www.shared.test"); errors.Is(err, certstore.ErrLockLost) {
			break
		}
	}
	if !errors.Is(err, certstore.ErrLockLost) {
		t.Errorf("the old holder confirming its lock after the cut: %v, want ErrLockLost", err)
	}
	t.Logf("holder edge-%d cut off; the others served %v %v later, one order in all; whole test %v",
		h, certs, took.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}

// TestSharedCopyServesWithoutNATS: an edge that loaded its certificate
// from the shared bucket (another edge ordered it) restarts while NATS is
// unreachable, and serves that certificate from its local copy.
func TestSharedCopyServesWithoutNATS(t *testing.T) {
	if testing.Short() {
		t.Skip("runs an ACME CA")
	}
	n := startSharedNet(t, 0)
	names := []string{"www.shared.test"}
	sites := []Site{{Name: "shared", Hosts: names, Mode: ACME}}
	edges := []*sharedEdge{n.startEdge(t, 0, sites, nil), n.startEdge(t, 1, sites, nil)}
	first := waitSameCert(t, edges, names, n.ca.Roots, nil, 60*time.Second)
	e := edges[0]
	if testutil.ToFloat64(e.m.metrics.events.WithLabelValues("cert_obtained")) > 0 {
		e = edges[1] // the edge that did not order
	}
	e.stop()

	// The same edge again, on the same disk, with a shared storage that
	// never binds (NATS down at boot).
	m, err := New(Config{
		Storage: e.dir, Shared: certstore.New(certstore.Config{Owner: e.name}), SharedReady: make(chan struct{}),
		SharedWait: 100 * time.Millisecond, ACME: n.acme, NextProtos: []string{"h2", "http/1.1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	addr := serveOn(t, listenTCP(t), m)
	if err := m.Update(sites); err != nil {
		t.Fatal(err)
	}
	defer runManager(t, m)()
	restarted := []*sharedEdge{{name: e.name + " restarted", tlsAddr: addr}}
	again := waitSameCert(t, restarted, names, n.ca.Roots, nil, 10*time.Second)
	if again[names[0]] != first[names[0]] {
		t.Errorf("restarted without NATS, the edge serves %s, want the certificate it had, %s", again[names[0]], first[names[0]])
	}
	if got := n.ca.OrderNames(); len(got) != 1 {
		t.Errorf("orders at the CA = %v, want the first one only", got)
	}
}

// TestSharedStorageKeepsDevLocal: with the shared storage bound, a dev
// site still gets its certificate from the edge's own development CA,
// on its own disk, and nothing of it goes to the shared bucket.
func TestSharedStorageKeepsDevLocal(t *testing.T) {
	srv := natstest.Start(t, "", "")
	nc := natstest.Connect(t, srv.URL)
	if err := certstore.CreateBucket(t.Context(), nc, 1); err != nil {
		t.Fatal(err)
	}
	store := certstore.New(certstore.Config{Owner: "edge-dev"})
	if err := store.Bind(t.Context(), nc); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	m, err := New(Config{Storage: dir, DevCA: dir + "/ca", Shared: store, SharedReady: store.Bound()})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.Update([]Site{{Name: "dev", Hosts: []string{"dev.test"}, Mode: Dev}}); err != nil {
		t.Fatal(err)
	}
	defer runManager(t, m)()
	addr := serve(t, m)
	var err2 error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if _, err2 = handshake(addr, "dev.test", m.DevCA().Pool()); err2 == nil {
			break
		}
	}
	if err2 != nil {
		t.Fatalf("dev certificate with shared storage bound: %v", err2)
	}
	if keys, err := store.List(t.Context(), "certificates", true); err == nil {
		t.Errorf("the shared bucket holds %v for a dev site", keys)
	}
}
