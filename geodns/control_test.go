package geodns

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/nats-io/nats.go"

	"github.com/selfcdn/cdn/control"
	"github.com/selfcdn/cdn/internal/natsauth"
	"github.com/selfcdn/cdn/internal/state"
	"github.com/selfcdn/cdn/internal/testwait"
)

// fakeEdge registers and heartbeats like an edge, with an admin server
// control's health checks probe; fail makes it answer 503.
type fakeEdge struct {
	state.Edge
	fail  atomic.Bool
	admin *httptest.Server
}

// controlNet is a real control plane (embedded NATS, health checks every
// 100 ms, down after 2 failures) with edges heartbeating into it.
type controlNet struct {
	api, token, nats string
	stopControl      func()
	store            *state.Store
	edges            map[string]*fakeEdge
	// dir is control's data dir (its NATS authority).
	dir string
}

// geodnsCreds mints geodns's NATS creds from control's authority.
func (cn *controlNet) geodnsCreds(t *testing.T) string {
	t.Helper()
	auth, err := control.OpenAuthority(cn.dir)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := auth.Creds(natsauth.RoleGeoDNS, "", natsauth.CredsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "geodns.creds")
	if err := natsauth.WriteCreds(path, creds); err != nil {
		t.Fatal(err)
	}
	return path
}

func startControlNet(t *testing.T) *controlNet {
	t.Helper()
	dir := t.TempDir()
	natsLn, _ := net.Listen("tcp", "127.0.0.1:0")
	natsAddr := natsLn.Addr().String()
	natsLn.Close()
	cfg := control.DefaultConfig()
	cfg.DataDir, cfg.NATS.Listen = dir, natsAddr
	cfg.Health = control.HealthConfig{Interval: 100 * time.Millisecond, Timeout: 500 * time.Millisecond,
		HeartbeatTimeout: 2 * time.Second, FailAfter: 2, RecoverAfter: 1}
	srv, err := control.New(cfg, control.Deps{Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	cn := &controlNet{api: "http://" + ln.Addr().String(), nats: "nats://" + natsAddr, dir: dir, edges: map[string]*fakeEdge{}}
	cn.stopControl = sync.OnceFunc(func() { cancel(); <-done })
	t.Cleanup(cn.stopControl)
	testwait.Within(t, "control ready", 10*time.Second, func() bool {
		res, err := http.Get(cn.api + "/readyz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == 200
	})
	tok, err := os.ReadFile(filepath.Join(dir, control.TokenFile))
	if err != nil {
		t.Fatal(err)
	}
	cn.token = strings.TrimSpace(string(tok))
	// The fake edges heartbeat as the operator: one connection writes
	// every edge's key, which no edge's own creds may.
	nc, err := nats.Connect(cn.nats, nats.UserCredentials(filepath.Join(dir, control.AuthDir, control.OperatorCredsFile)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if cn.store, err = state.Bind(context.Background(), nc, state.Access{Writes: []string{state.EdgesBucket}}); err != nil {
		t.Fatal(err)
	}
	return cn
}

// addEdge registers an edge and heartbeats it every 100 ms until the test
// ends or control goes.
func (cn *controlNet) addEdge(t *testing.T, e state.Edge) *fakeEdge {
	fe := &fakeEdge{Edge: e}
	fe.admin = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if fe.fail.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(fe.admin.Close)
	fe.Admin, fe.HTTP, fe.Capacity = fe.admin.URL, "http://"+e.Addrs[0]+":80", 1
	cn.edges[e.Name] = fe
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for ctx.Err() == nil {
			cn.store.Heartbeat(ctx, fe.Edge)
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
	return fe
}

func (cn *controlNet) call(t *testing.T, method, path, body string) {
	t.Helper()
	req, _ := http.NewRequest(method, cn.api+path, bytes.NewReader([]byte(body)))
	req.Header.Set("Authorization", "Bearer "+cn.token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode >= 300 {
		t.Fatalf("%s %s: %s", method, path, res.Status)
	}
}

// GeoDNS follows control: sites' hosts, edges and their health, drains;
// a down edge leaves answers within control's health period; the last
// state stays when NATS goes away.
func TestFollowsControl(t *testing.T) {
	cn := startControlNet(t)
	cn.call(t, "PUT", "/v1/sites/demo", `{"name":"demo","hosts":["demo.cdn.test","*.shop.cdn.test","*"],"origin":"http://127.0.0.1:9"}`)
	cn.addEdge(t, state.Edge{Name: "fra-1", Region: "eu", Lat: 50.1, Lon: 8.7, Addrs: []string{"127.0.2.1"}})
	cn.addEdge(t, state.Edge{Name: "fra-2", Region: "eu", Lat: 50.1, Lon: 8.7, Addrs: []string{"127.0.2.2"}})
	cn.addEdge(t, state.Edge{Name: "nrt-1", Region: "as", Lat: 35.7, Lon: 139.7, Addrs: []string{"127.0.3.1", "fd00::3:1"}})

	cfg := testConfig(t)
	cfg.Edges, cfg.Hosts = nil, nil
	cfg.Control = &ControlConfig{NATS: cn.nats, Creds: cn.geodnsCreds(t)}
	cfg.Answer.Records = 2
	g := start(t, cfg, Deps{})
	g2 := start(t, cfg, Deps{}) // a second instance: they share nothing but NATS
	europeFrom := func(g *running) []string {
		r := ask(t, g.addr, "udp", query("demo.cdn.test.", dns.TypeA, "192.0.2.0/24"))
		got := answers(r)
		slices.Sort(got)
		return got
	}
	europe := func() []string { return europeFrom(g) }
	is := func(want ...string) func() bool {
		return func() bool { return slices.Equal(europeFrom(g), want) && slices.Equal(europeFrom(g2), want) }
	}
	testwait.Within(t, "ready with both European edges healthy", 10*time.Second, is("127.0.2.1", "127.0.2.2"))
	// Tokyo's health is checked on its own schedule: the European edges
	// being up says nothing about it yet.
	testwait.Within(t, "AAAA for a wildcard host from Europe: Tokyo's IPv6 address", 10*time.Second, func() bool {
		r := ask(t, g.addr, "udp", query("x.shop.cdn.test.", dns.TypeAAAA, "192.0.2.0/24"))
		return strings.Join(answers(r), ",") == "fd00::3:1"
	})

	// Down: control's checks fail twice 100 ms apart, then the watch.
	cn.edges["fra-1"].fail.Store(true)
	took := testwait.Within(t, "fra-1 out of answers after it fails its checks", 5*time.Second, is("127.0.2.2"))
	t.Logf("a failing edge left the answers %s after its health checks began to fail (health interval 100ms, fail_after 2)", took.Round(time.Millisecond))
	cn.edges["fra-1"].fail.Store(false)
	testwait.Within(t, "fra-1 back after recovering", 5*time.Second, is("127.0.2.1", "127.0.2.2"))

	// Drained: out of answers at once, though healthy.
	cn.call(t, "POST", "/v1/edges/fra-2/drain", "")
	testwait.Within(t, "fra-2 out of answers once drained", 5*time.Second, is("127.0.2.1"))

	// Europe empty: the next nearest region (Tokyo) answers.
	cn.edges["fra-1"].fail.Store(true)
	testwait.Within(t, "Tokyo answers Europe", 5*time.Second, is("127.0.3.1"))

	// Nothing healthy: every edge answers, and the metric says so.
	cn.edges["nrt-1"].fail.Store(true)
	testwait.Within(t, "fail open", 5*time.Second, is("127.0.2.1", "127.0.2.2", "127.0.3.1"))
	if counterValue(t, g.reg, "cdn_geodns_fail_open_total") == 0 {
		t.Fatal("fail-open answers not counted")
	}
	for _, name := range []string{"fra-1", "nrt-1"} {
		cn.edges[name].fail.Store(false)
	}
	testwait.Within(t, "healthy again", 5*time.Second, is("127.0.2.1"))

	// A site's hosts follow the site.
	cn.call(t, "DELETE", "/v1/sites/demo", "")
	testwait.Within(t, "deleted site's host gone", 5*time.Second, func() bool {
		return ask(t, g.addr, "udp", query("demo.cdn.test.", dns.TypeA, "")).Rcode == dns.RcodeNameError
	})
	cn.call(t, "PUT", "/v1/sites/demo", `{"name":"demo","hosts":["demo.cdn.test"],"origin":"http://127.0.0.1:9"}`)
	testwait.Within(t, "site back", 5*time.Second, is("127.0.2.1"))

	// Control and its NATS gone: the last state keeps answering.
	cn.stopControl()
	testwait.Within(t, "link down noticed", 10*time.Second, func() bool { return gaugeValue(t, g, "cdn_geodns_control_connected") == 0 })
	for range 5 {
		if got := europe(); !slices.Equal(got, []string{"127.0.2.1"}) {
			t.Fatalf("without NATS: %v, want the last state's answer", got)
		}
	}
	// Nor does stopping wait for NATS: stopping a watch deletes its
	// consumer, a request that waited out JetStream's 5 s timeout.
	stopping := time.Now()
	g.stop()
	g2.stop()
	if took := time.Since(stopping); took > 2*time.Second {
		t.Errorf("two servers took %v to stop without NATS", took)
	}
}

// Before control's state is read, edge answers are SERVFAIL (a resolver
// asks another server) and /readyz says not ready.
func TestNotReadyWithoutControl(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	cfg := testConfig(t)
	cfg.Edges = nil
	cfg.Control = &ControlConfig{NATS: "nats://" + dead}
	g := start(t, cfg, Deps{})
	if g.Ready() {
		t.Fatal("ready with no control state")
	}
	if r := ask(t, g.addr, "udp", query("www.cdn.test.", dns.TypeA, "")); r.Rcode != dns.RcodeServerFailure {
		t.Fatalf("edge answer before control: %s, want SERVFAIL", dns.RcodeToString[r.Rcode])
	}
	if r := ask(t, g.addr, "udp", query("static.cdn.test.", dns.TypeA, "")); r.Rcode != dns.RcodeSuccess {
		t.Fatalf("static record before control: %s, want NOERROR", dns.RcodeToString[r.Rcode])
	}
}
