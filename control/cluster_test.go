package control

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/selfcdn/cdn/internal/natsembed"
)

// TestThreeNodeCluster runs control and an edge on a three-node NATS
// cluster with every bucket replicated three times, kills one node, and
// checks that no site config is lost and the edge still follows changes.
func TestThreeNodeCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node NATS cluster")
	}
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "from the origin")
	}))
	defer origin.Close()
	var clientURLs, routes []string
	var clusterAddrs, clientAddrs []string
	for range 3 {
		clientAddrs = append(clientAddrs, freeAddr(t))
		clusterAddrs = append(clusterAddrs, freeAddr(t))
	}
	for _, a := range clusterAddrs {
		routes = append(routes, "nats://"+a)
	}
	// Every node trusts control's authority, each with its own copy of
	// the full account resolver, which the nodes keep in step.
	ctlDir := t.TempDir()
	auth, err := OpenAuthority(ctlDir)
	if err != nil {
		t.Fatal(err)
	}
	nodes := make([]interface{ Shutdown() }, 3)
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i := range 3 {
		clientURLs = append(clientURLs, "nats://"+clientAddrs[i])
		// The nodes wait for each other to form the JetStream cluster, so
		// they start together.
		wg.Go(func() {
			ns, err := natsembed.Start(natsembed.Config{Listen: clientAddrs[i], Dir: t.TempDir(), Name: fmt.Sprintf("n%d", i),
				Cluster: clusterAddrs[i], Routes: routes, Auth: auth})
			if err != nil {
				t.Errorf("node %d: %v", i, err)
				return
			}
			mu.Lock()
			nodes[i] = ns
			mu.Unlock()
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	t.Cleanup(func() {
		for _, n := range nodes {
			n.Shutdown()
		}
	})

	cfg := DefaultConfig()
	cfg.DataDir = ctlDir
	cfg.NATS.URLs = clientURLs
	cfg.NATS.Creds = filepath.Join(ctlDir, AuthDir, ControlCredsFile)
	cfg.NATS.SystemCreds = filepath.Join(ctlDir, AuthDir, SystemCredsFile)
	cfg.NATS.Replicas = 3
	api := runControl(t, cfg).url
	waitFor(t, "control on the cluster", time.Now().Add(30*time.Second), func() bool { return status(api+"/readyz", "") == 200 })
	token := readToken(t, cfg.DataDir)

	e := startEdge(t, "e1", strings.Join(clientURLs, ","), ctlDir, t.TempDir(), "")
	if code, body := call(t, "POST", api+"/v1/sites", token, siteJSON("one", "one.test", origin.URL)); code != 201 {
		t.Fatalf("create site: %d %s", code, body)
	}
	waitFor(t, "site one served", time.Now().Add(5*time.Second), func() bool { c, _ := fetchVia(e.url, "one.test"); return c == 200 })

	nodes[0].Shutdown() // the one both clients most likely used first
	killed := time.Now()
	waitFor(t, "site two created after a node died", killed.Add(30*time.Second), func() bool {
		code, _ := call(t, "POST", api+"/v1/sites", token, siteJSON("two", "two.test", origin.URL))
		return code == 201 || code == 409
	})
	waitFor(t, "site two served", time.Now().Add(15*time.Second), func() bool { c, _ := fetchVia(e.url, "two.test"); return c == 200 })
	t.Logf("with one of three nodes down: a new site reached the edge %v after the kill", time.Since(killed).Round(time.Millisecond))
	if code, body := call(t, "GET", api+"/v1/sites/one", token, ""); code != 200 {
		t.Errorf("site one after losing a node: %d %s", code, body)
	}
}
