package control

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
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

	"github.com/selfcdn/cdn/edge"
	"github.com/selfcdn/cdn/internal/acmetest"
)

// tlsEdge is an edge with HTTPS, linked to control.
type tlsEdge struct {
	httpsAddr, cacheDir string
}

// startTLSEdge runs an edge named name with its plain and TLS listeners
// (made by the caller, so the CA can be told their ports), taking its
// sites and its shared certificates from control's NATS with its own
// edge credentials.
func startTLSEdge(t *testing.T, name, natsURL, controlDir string, plain, secure net.Listener, acme edge.ACMEConfig) *tlsEdge {
	t.Helper()
	cfg := edge.DefaultConfig()
	cfg.Name, cfg.Region = name, "local-a"
	cfg.AccessLog = false
	cfg.Cache.Memory = 16 << 20
	cfg.Cache.Dir = t.TempDir()
	cfg.Cache.Disk = 0
	cfg.Listen, cfg.TLS.Listen = plain.Addr().String(), secure.Addr().String()
	cfg.TLS.HTTP3 = false
	cfg.TLS.ACME = acme
	cfg.ShutdownTimeout = 2 * time.Second
	cfg.Control = &edge.ControlConfig{NATS: natsURL, Lat: 50, Lon: 8, Heartbeat: 100 * time.Millisecond,
		Creds: edgeCredsFile(t, controlDir, name)}
	srv, err := edge.New(cfg, edge.Deps{Logger: logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.ServeListeners(ctx, edge.Listeners{HTTP: plain, HTTPS: secure}) }()
	t.Cleanup(sync.OnceFunc(func() {
		cancel()
		<-done
	}))
	return &tlsEdge{httpsAddr: secure.Addr().String(), cacheDir: cfg.Cache.Dir}
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// TestEdgesShareACMECertificates: two edges linked to control, with the
// NATS credentials control mints for edges, get an ACME site from the
// API; pebble gets one order for its name, validated against one edge
// (which answers from the shared bucket whichever edge ordered), and
// both edges serve that one certificate, keeping only a copy on disk.
func TestEdgesShareACMECertificates(t *testing.T) {
	if testing.Short() {
		t.Skip("runs an ACME CA, control and two edges")
	}
	start := time.Now()
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprintf(w, "hello from %s", r.Host)
	}))
	defer origin.Close()
	plain1, secure1 := listen(t), listen(t)
	httpPort, tlsPort := plain1.Addr().(*net.TCPAddr).Port, secure1.Addr().(*net.TCPAddr).Port
	ca := acmetest.Start(t, acmetest.Config{HTTPPort: httpPort, TLSPort: tlsPort})
	acme := edge.ACMEConfig{CA: ca.DirURL, Email: "ops@tls.test", CARoot: ca.APIRootFile, HTTPPort: httpPort, TLSPort: tlsPort}

	dir, natsAddr := t.TempDir(), freeAddr(t)
	ctrl, token := startControl(t, dir, natsAddr)
	natsURL := "nats://" + natsAddr
	edges := []*tlsEdge{
		startTLSEdge(t, "e1", natsURL, dir, plain1, secure1, acme),
		startTLSEdge(t, "e2", natsURL, dir, listen(t), listen(t), acme),
	}
	site := fmt.Sprintf(`{"name":"tls","hosts":["www.tls.test"],"origin":%q,"tls":"acme"}`, origin.URL)
	if code, b := call(t, "POST", ctrl.url+"/v1/sites", token, site); code != 201 {
		t.Fatalf("create site: %d %s", code, b)
	}

	serials := make([]string, len(edges))
	waitFor(t, "both edges serving a certificate from the CA", time.Now().Add(60*time.Second), func() bool {
		for i, e := range edges {
			c, err := tls.Dial("tcp", e.httpsAddr, &tls.Config{ServerName: "www.tls.test", RootCAs: ca.Roots})
			if err != nil {
				return false
			}
			serials[i] = c.ConnectionState().PeerCertificates[0].SerialNumber.String()
			c.Close()
		}
		return true
	})
	if serials[0] != serials[1] {
		t.Errorf("edges serve different certificates %v, want one shared", serials)
	}
	if got := ca.OrderNames(); !slices.Equal(got, []string{"www.tls.test"}) {
		t.Errorf("orders at the CA = %v, want one for www.tls.test", got)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Roots}}}
	defer client.CloseIdleConnections()
	for _, e := range edges {
		_, port, _ := net.SplitHostPort(e.httpsAddr)
		req, _ := http.NewRequest("GET", "https://www.tls.test:"+port+"/", nil)
		client.Transport.(*http.Transport).DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, e.httpsAddr)
		}
		res, err := client.Do(req)
		if err != nil {
			t.Errorf("GET over HTTPS from %s: %v", e.httpsAddr, err)
			continue
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		client.CloseIdleConnections()
		if res.StatusCode != 200 || !strings.HasPrefix(string(b), "hello from") {
			t.Errorf("GET over HTTPS from %s: %d %q", e.httpsAddr, res.StatusCode, b)
		}
	}
	// On disk: only the copy of the shared store an edge serves from when
	// NATS is down at boot, never certificates of its own.
	for _, e := range edges {
		var copied bool
		filepath.WalkDir(e.cacheDir, func(path string, d os.DirEntry, err error) error {
			if err != nil || !(strings.HasSuffix(path, ".crt") || strings.HasSuffix(path, ".key")) {
				return nil
			}
			if !strings.Contains(path, string(filepath.Separator)+"shared-copy"+string(filepath.Separator)) {
				t.Errorf("certificate material of the edge's own on its disk: %s", path)
			}
			copied = copied || strings.HasSuffix(path, "www.tls.test.crt")
			return nil
		})
		if !copied {
			t.Errorf("no copy of the shared certificate under %s", e.cacheDir)
		}
	}
	t.Logf("two edges serve certificate %s from one order, %v after start (challenges %v)", serials[0], time.Since(start).Round(time.Millisecond), ca.Challenges())
}
