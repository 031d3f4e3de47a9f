package control

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/selfcdn/cdn/edge"
	"github.com/selfcdn/cdn/internal/natsauth"
	"github.com/selfcdn/cdn/internal/natstest"
)

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// running is a control or edge server started by a test.
type running struct {
	url  string // API or HTTP base URL
	stop func()
}

func logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// startControl runs control with embedded NATS on natsAddr and data in dir,
// and returns it with its bootstrap admin token.
func startControl(t testing.TB, dir, natsAddr string) (*running, string) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.DataDir = dir
	cfg.NATS.Listen = natsAddr
	cfg.Health = HealthConfig{Interval: 100 * time.Millisecond, Timeout: 500 * time.Millisecond,
		HeartbeatTimeout: 800 * time.Millisecond, FailAfter: 2, RecoverAfter: 2}
	r := runControl(t, cfg)
	waitFor(t, "control ready", time.Now().Add(10*time.Second), func() bool { return status(r.url+"/readyz", "") == 200 })
	return r, readToken(t, dir)
}

// runControl serves cfg on a loopback port until the test ends (or stop).
func runControl(t testing.TB, cfg Config) *running {
	t.Helper()
	srv, err := New(cfg, Deps{Logger: logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	r := &running{url: "http://" + ln.Addr().String(), stop: sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("control: %v", err)
		}
	})}
	t.Cleanup(r.stop)
	return r
}

// readToken reads the bootstrap admin token control saved in dir.
func readToken(t testing.TB, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, TokenFile))
	if err != nil {
		t.Fatalf("bootstrap token: %v", err)
	}
	return strings.TrimSpace(string(b))
}

// startEdge runs an edge linked to control's NATS.
// controlDir is control's data dir, whose authority mints the edge's NATS
// creds; "" for an unauthenticated external NATS.
func startEdge(t testing.TB, name, natsURL, controlDir, cacheDir string, adminURL string) *running {
	t.Helper()
	cfg := edge.DefaultConfig()
	cfg.Name, cfg.Region = name, "local-a"
	cfg.AccessLog = false
	cfg.Cache.Memory = 16 << 20
	cfg.Cache.Dir = cacheDir
	cfg.Cache.Disk = 0
	cfg.Control = &edge.ControlConfig{NATS: natsURL, Lat: 50, Lon: 8, Heartbeat: 100 * time.Millisecond, AdminURL: adminURL,
		Creds: edgeCredsFile(t, controlDir, name)}
	// The edges share a region and so a tier; its ramp-up would move
	// homes while the test runs (edge/tier tests it).
	cfg.Control.Tier.Rampup = time.Millisecond
	r, _ := serveEdge(t, cfg)
	return r
}

// edgeCredsFile mints NATS creds for the edge name from the authority in
// control's data dir into a file; "" when controlDir is.
func edgeCredsFile(t testing.TB, controlDir, name string) string {
	t.Helper()
	if controlDir == "" {
		return ""
	}
	auth, err := natsauth.Open(filepath.Join(controlDir, AuthDir))
	if err != nil {
		t.Fatalf("nats authority: %v", err)
	}
	creds, err := auth.Creds(natsauth.RoleEdge, name, natsauth.CredsOptions{})
	if err != nil {
		t.Fatalf("edge creds: %v", err)
	}
	path := filepath.Join(t.TempDir(), name+".creds")
	if err := natsauth.WriteCreds(path, creds); err != nil {
		t.Fatal(err)
	}
	return path
}

// serveEdge runs an edge from cfg on loopback ports until the test ends
// (or stop), returning it and its admin base URL.
func serveEdge(t testing.TB, cfg edge.Config) (*running, string) {
	t.Helper()
	srv, err := edge.New(cfg, edge.Deps{Logger: logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	admin, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln, admin) }()
	r := &running{url: "http://" + ln.Addr().String(), stop: sync.OnceFunc(func() {
		cancel()
		<-done
	})}
	t.Cleanup(r.stop)
	return r, "http://" + admin.Addr().String()
}

func status(url, token string) int {
	req, _ := http.NewRequest("GET", url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode
}

func call(t testing.TB, method, url, token, body string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

// fetchVia asks the edge for a site's page, with the site's Host.
func fetchVia(edgeURL, host string) (int, string) {
	req, _ := http.NewRequest("GET", edgeURL+"/", nil)
	req.Host = host
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func waitFor(t testing.TB, what string, deadline time.Time, cond func() bool) {
	t.Helper()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// edgeHealth reads one edge's health and drain state from the API.
func edgeHealth(t testing.TB, api, token, name string) (string, bool) {
	code, b := call(t, "GET", api+"/v1/edges/"+name, token, "")
	if code != 200 {
		return fmt.Sprint(code), false
	}
	var v struct {
		Health   string `json:"health"`
		Draining bool   `json:"draining"`
	}
	json.Unmarshal(b, &v)
	return v.Health, v.Draining
}

func siteJSON(name, host, origin string) string {
	return fmt.Sprintf(`{"name":%q,"hosts":[%q],"origin":%q}`, name, host, origin)
}

// TestControlPlane drives control and real edges over an embedded NATS: a
// site added through the API is served within a second, health follows
// heartbeats and checks, drain works, a control restart loses nothing, and
// an edge starts from its saved sites while NATS is down.
func TestControlPlane(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprintf(w, "hello from %s", r.Host)
	}))
	defer origin.Close()
	dir, natsAddr := t.TempDir(), freeAddr(t)
	ctrl, token := startControl(t, dir, natsAddr)
	natsURL := "nats://" + natsAddr
	edgeDir := t.TempDir()
	e1 := startEdge(t, "e1", natsURL, dir, edgeDir, "")

	// A site added through the API reaches the running edge within a second.
	if code, b := call(t, "POST", ctrl.url+"/v1/sites", token, siteJSON("one", "one.test", origin.URL)); code != 201 {
		t.Fatalf("create site: %d %s", code, b)
	}
	added := time.Now()
	waitFor(t, "the new site served", added.Add(time.Second), func() bool {
		code, body := fetchVia(e1.url, "one.test")
		return code == 200 && strings.HasPrefix(body, "hello from")
	})
	t.Logf("site served by the edge %v after the API call", time.Since(added).Round(time.Millisecond))

	// The edge registered, and its checks bring it up.
	waitFor(t, "e1 up", time.Now().Add(5*time.Second), func() bool { h, _ := edgeHealth(t, ctrl.url, token, "e1"); return h == "up" })

	// Drain and undrain.
	if code, _ := call(t, "POST", ctrl.url+"/v1/edges/e1/drain", token, ""); code != 200 {
		t.Fatalf("drain: %d", code)
	}
	if h, d := edgeHealth(t, ctrl.url, token, "e1"); h != "up" || !d {
		t.Errorf("after drain: health %s draining %v, want up and draining", h, d)
	}
	call(t, "POST", ctrl.url+"/v1/edges/e1/undrain", token, "")
	if _, d := edgeHealth(t, ctrl.url, token, "e1"); d {
		t.Error("still draining after undrain")
	}

	// An edge whose health endpoint fails is down, heartbeat or not.
	sick := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "disk on fire", http.StatusServiceUnavailable)
	}))
	defer sick.Close()
	startEdge(t, "e2", natsURL, dir, t.TempDir(), sick.URL)
	waitFor(t, "e2 down while heartbeating", time.Now().Add(5*time.Second), func() bool {
		h, _ := edgeHealth(t, ctrl.url, token, "e2")
		return h == "down"
	})

	code, b := call(t, "GET", ctrl.url+"/v1/health", token, "")
	var h struct {
		Edges map[string]int `json:"edges"`
		Sites int            `json:"sites"`
	}
	json.Unmarshal(b, &h)
	if code != 200 || h.Edges["up"] != 1 || h.Edges["down"] != 1 || h.Sites != 1 {
		t.Errorf("GET /v1/health = %d %s, want 1 up, 1 down, 1 site", code, b)
	}

	// Heartbeat loss: a stopped edge goes down.
	e1.stop()
	waitFor(t, "e1 down after it stopped", time.Now().Add(5*time.Second), func() bool {
		h, _ := edgeHealth(t, ctrl.url, token, "e1")
		return h == "down"
	})

	// A control restart loses nothing: sites, tokens, edge states.
	ctrl.stop()
	ctrl, token2 := startControl(t, dir, natsAddr)
	if token2 != token {
		t.Errorf("restart minted a new bootstrap token")
	}
	if code, b := call(t, "GET", ctrl.url+"/v1/sites/one", token, ""); code != 200 {
		t.Errorf("site after control restart: %d %s", code, b)
	}

	// NATS down: an edge starts from its saved sites and serves them...
	ctrl.stop()
	e3 := startEdge(t, "e1", natsURL, dir, edgeDir, "")
	waitFor(t, "the saved site served with NATS down", time.Now().Add(5*time.Second), func() bool {
		code, _ := fetchVia(e3.url, "one.test")
		return code == 200
	})
	// ...and picks up changes once NATS is back.
	ctrl, _ = startControl(t, dir, natsAddr)
	call(t, "POST", ctrl.url+"/v1/sites", token, siteJSON("two", "two.test", origin.URL))
	waitFor(t, "a site added after NATS came back", time.Now().Add(10*time.Second), func() bool {
		code, body := fetchVia(e3.url, "two.test")
		return code == 200 && strings.HasPrefix(body, "hello from")
	})
}

// TestControlWaitsForNATS: control started before its NATS answers 503
// and retries, then serves once NATS is up.
func TestControlWaitsForNATS(t *testing.T) {
	natsAddr := freeAddr(t)
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.NATS.URLs = []string{"nats://" + natsAddr}
	api := runControl(t, cfg).url // listening already: these wait for the 503 handler
	if code := status(api+"/readyz", ""); code != 503 {
		t.Errorf("readyz without NATS = %d, want 503", code)
	}
	if code := status(api+"/v1/sites", "x"); code != 503 {
		t.Errorf("API without NATS = %d, want 503", code)
	}
	natstest.Start(t, natsAddr, "")
	waitFor(t, "control ready once NATS is up", time.Now().Add(15*time.Second), func() bool { return status(api+"/readyz", "") == 200 })
}

// TestTwoControlsShareNATS: control processes over one NATS hold nothing of
// their own; what one writes, the other serves at once.
func TestTwoControlsShareNATS(t *testing.T) {
	ns := natstest.Start(t, "", "")
	var apis []string
	dirs := []string{t.TempDir(), t.TempDir()}
	for _, dir := range dirs {
		cfg := DefaultConfig()
		cfg.DataDir = dir
		cfg.NATS.URLs = []string{ns.URL}
		api := runControl(t, cfg).url
		waitFor(t, "control ready", time.Now().Add(10*time.Second), func() bool { return status(api+"/readyz", "") == 200 })
		apis = append(apis, api)
	}
	token := readToken(t, dirs[0])
	if _, err := os.Stat(filepath.Join(dirs[1], TokenFile)); !os.IsNotExist(err) {
		t.Errorf("the second control minted a bootstrap token of its own (stat: %v)", err)
	}
	if code, body := call(t, "POST", apis[0]+"/v1/sites", token, siteJSON("shared", "shared.test", "http://127.0.0.1:1")); code != 201 {
		t.Fatalf("create through the first: %d %s", code, body)
	}
	if code, body := call(t, "GET", apis[1]+"/v1/sites/shared", token, ""); code != 200 {
		t.Errorf("read through the second: %d %s", code, body)
	}
	if code, _ := call(t, "POST", apis[1]+"/v1/tokens", token, `{"scopes":["read"]}`); code != 201 {
		t.Errorf("the first control's token on the second: %d", code)
	}
}
