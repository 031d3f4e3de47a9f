package e2e

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/selfcdn/cdn/push"

	"github.com/selfcdn/cdn/internal/testwait"
)

// pushNet is control and edges as separate cdn processes, with a
// push-only site "docs" (host docs.test).
type pushNet struct {
	dir, control, token, nats string
	edges                     []*pushEdge
}

type pushEdge struct {
	name, http, admin, config, cacheDir string
	wrap                                []string // command the edge runs under, if any
	proc                                *proc
}

func freeAddr(t testing.TB, ip string) string {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func writeFile(t testing.TB, path, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func startPushNet(t testing.TB, edges int) *pushNet {
	t.Helper()
	n, _ := startPushControl(t)
	n.api(t, "POST", "/v1/sites", `{"name":"docs","hosts":["docs.test"],"push_only":true}`, http.StatusCreated)
	for range edges {
		n.addEdge(t)
	}
	n.waitEdgesUp(t)
	return n
}

// startPushControl starts control with its embedded NATS, no site and no
// edge yet, and returns the network and control's process.
func startPushControl(t testing.TB) (*pushNet, *proc) {
	t.Helper()
	n := &pushNet{dir: t.TempDir()}
	api, natsAddr := freeAddr(t, "127.0.0.1"), freeAddr(t, "127.0.0.1")
	n.control, n.nats = "http://"+api, "nats://"+natsAddr
	cfg := filepath.Join(n.dir, "control.yaml")
	writeFile(t, cfg, fmt.Sprintf(`listen: %s
data_dir: %s
nats: {listen: %s}
health: {interval: 300ms, timeout: 1s, heartbeat_timeout: 3s, fail_after: 2, recover_after: 1}
releases: {gc_interval: 1s, gc_grace: 5s, retain: 1}
`, api, filepath.Join(n.dir, "control"), natsAddr))
	control := start(t, "control", "--config", cfg, "--log-level", "warn")
	waitOK(t, n.control+"/readyz")
	tok, err := os.ReadFile(filepath.Join(n.dir, "control", "admin-token"))
	if err != nil {
		t.Fatal(err)
	}
	n.token = strings.TrimSpace(string(tok))
	return n, control
}

// waitEdgesUp waits until control counts every edge up, so waits on a
// release count them all.
func (n *pushNet) waitEdgesUp(t testing.TB) {
	t.Helper()
	testwait.Until(t, "edges up", func() bool {
		var out struct{ Edges []struct{ Health string } }
		n.getJSON(t, "/v1/edges", &out)
		up := 0
		for _, e := range out.Edges {
			if e.Health == "up" {
				up++
			}
		}
		return up == len(n.edges)
	})
}

// addEdge starts the next edge, on its own loopback address and region,
// under the command wrap if one is given (wrap ends with the binary's
// place: the edge's arguments follow it).
func (n *pushNet) addEdge(t testing.TB, wrap ...string) *pushEdge {
	t.Helper()
	i := len(n.edges)
	ip := fmt.Sprintf("127.0.0.%d", 2+i)
	e := &pushEdge{name: fmt.Sprintf("edge-%d", i+1), config: filepath.Join(n.dir, fmt.Sprintf("edge-%d.yaml", i+1)), wrap: wrap}
	e.cacheDir = filepath.Join(n.dir, e.name)
	httpAddr, adminAddr := freeAddr(t, ip), freeAddr(t, ip)
	e.http, e.admin = "http://"+httpAddr, "http://"+adminAddr
	// The edge's NATS user, minted as an operator provisions a host.
	creds := filepath.Join(n.dir, e.name+".creds")
	if out, err := exec.Command(cdnBin, "control", "creds", "--data", filepath.Join(n.dir, "control"),
		"--role", "edge", "--name", e.name, "--out", creds).CombinedOutput(); err != nil {
		t.Fatalf("cdn control creds: %v: %s", err, out)
	}
	writeFile(t, e.config, fmt.Sprintf(`name: %s
region: r%d
listen: %s
admin_listen: %s
access_log: false
cache: {memory: 64MiB, dir: %s, disk: 256MiB}
control: {nats: %s, creds: %s, heartbeat: 300ms, purge_catch_up: 1s}
`, e.name, i, httpAddr, adminAddr, e.cacheDir, n.nats, creds))
	e.start(t)
	n.edges = append(n.edges, e)
	return e
}

func (e *pushEdge) start(t testing.TB) {
	t.Helper()
	e.proc = startWrapped(t, e.wrap, "edge", "--config", e.config, "--log-level", "warn")
	waitOK(t, e.admin+"/readyz")
}

func (n *pushNet) api(t testing.TB, method, path, body string, want int) {
	t.Helper()
	req, _ := http.NewRequest(method, n.control+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+n.token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != want {
		t.Fatalf("%s %s: %d %s, want %d", method, path, res.StatusCode, b, want)
	}
}

func (n *pushNet) getJSON(t testing.TB, path string, v any) {
	t.Helper()
	req, _ := http.NewRequest("GET", n.control+path, nil)
	req.Header.Set("Authorization", "Bearer "+n.token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if err := json.NewDecoder(res.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

func (n *pushNet) client() *push.Client { return &push.Client{BaseURL: n.control, Token: n.token} }

func (n *pushNet) push(t testing.TB, dir string, wait time.Duration) push.Result {
	t.Helper()
	scan, err := push.ScanDir(t.Context(), dir, push.ScanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := n.client().Push(t.Context(), "docs", scan, push.Options{Wait: wait})
	if err != nil {
		t.Fatalf("push %s: %v", dir, err)
	}
	return res
}

// get fetches path from an edge as docs.test.
func get(t testing.TB, base, path string, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", base+path, nil)
	req.Host = "docs.test"
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatalf("GET %s%s: %v", base, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("GET %s%s: body: %v", base, path, err)
	}
	return res, b
}

// makeSite writes files text and binary files under dir and returns
// their contents by URL path.
func makeSite(t testing.TB, dir string, files int) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	rng := mrand.New(mrand.NewPCG(1, 2))
	add := func(p string, b []byte) {
		out[p] = b
		full := filepath.Join(dir, filepath.FromSlash(p[1:]))
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	add("/index.html", []byte("<h1>home</h1>"))
	add("/404.html", []byte("<h1>not here</h1>"))
	add("/about/index.html", []byte("<h1>about</h1>"))
	for i := range files - 3 {
		p := fmt.Sprintf("/s%d/page-%d", i%17, i)
		switch i % 3 {
		case 0: // text, compressible
			add(p+".html", bytes.Repeat(fmt.Appendf(nil, "<p>page %d of the site</p>\n", i), 20+rng.IntN(200)))
		case 1:
			add(p+".css", fmt.Appendf(nil, "body{margin:%dpx}", i))
		default: // binary
			b := make([]byte, 100+rng.IntN(20000))
			rand.Read(b)
			add(p+".bin", b)
		}
	}
	return out
}

func TestPushReleases(t *testing.T) {
	n := startPushNet(t, 3)
	site := filepath.Join(n.dir, "site")
	files := makeSite(t, site, 1000)

	// Release 1: the whole site, served byte-exact by every edge.
	res := n.push(t, site, time.Minute)
	st := res.Status
	if st.Release.Number != 1 || !st.Complete || st.Release.Files != 1000 || res.Skipped != 0 || res.Uploaded != st.Release.Blobs {
		t.Fatalf("first push: %+v, uploaded %d, skipped %d", st, res.Uploaded, res.Skipped)
	}
	for _, e := range n.edges {
		for p, want := range files {
			r, body := get(t, e.http, p)
			if r.StatusCode != 200 || !bytes.Equal(body, want) {
				t.Fatalf("%s %s: %d, %d bytes, want 200 and %d bytes", e.name, p, r.StatusCode, len(body), len(want))
			}
		}
	}
	e0 := n.edges[0].http
	t.Run("serving", func(t *testing.T) {
		for _, c := range []struct{ path, want string }{{"/about", "<h1>about</h1>"}, {"/about/", "<h1>about</h1>"}, {"/", "<h1>home</h1>"}} {
			if r, body := get(t, e0, c.path); r.StatusCode != 200 || string(body) != c.want {
				t.Errorf("pretty URL %s: %d %q", c.path, r.StatusCode, body)
			}
		}
		if r, body := get(t, e0, "/nope"); r.StatusCode != 404 || string(body) != "<h1>not here</h1>" {
			t.Errorf("missing path on a push-only site: %d %q, want the release's 404 page", r.StatusCode, body)
		}
		r, body := get(t, e0, "/s0/page-0.html", "Accept-Encoding", "gzip")
		if r.Header.Get("Content-Encoding") != "gzip" || r.Header.Get("Vary") != "Accept-Encoding" {
			t.Fatalf("precompressed variant: header %v", r.Header)
		}
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		plain, _ := io.ReadAll(zr)
		if !bytes.Equal(plain, files["/s0/page-0.html"]) {
			t.Errorf("gzip variant does not decode to the file")
		}
		etag := r.Header.Get("Etag")
		if r, _ := get(t, e0, "/s0/page-0.html", "Accept-Encoding", "gzip", "If-None-Match", etag); r.StatusCode != 304 {
			t.Errorf("If-None-Match with the variant's ETag: %d, want 304", r.StatusCode)
		}
		if r, body := get(t, e0, "/s0/page-0.html", "Range", "bytes=0-9"); r.StatusCode != 206 || !bytes.Equal(body, files["/s0/page-0.html"][:10]) {
			t.Errorf("range: %d %q", r.StatusCode, body)
		}
	})
	// HTTP/1.1 answers plain GETs of pushed files on its fast path; h2c
	// takes the net/http handler. Both must send the same response.
	t.Run("h1 and h2c agree", func(t *testing.T) {
		var protos http.Protocols
		protos.SetUnencryptedHTTP2(true)
		h2c := &http.Transport{Protocols: &protos}
		defer h2c.CloseIdleConnections()
		for _, path := range []string{"/s0/page-0.html", "/s1/page-1.css", "/s2/page-2.bin", "/about", "/"} {
			for _, method := range []string{"GET", "HEAD"} {
				for _, ae := range []string{"", "gzip", "zstd, gzip;q=0.5", "br"} {
					var answers [2]string
					for i, rt := range []http.RoundTripper{http.DefaultTransport, h2c} {
						req, _ := http.NewRequest(method, e0+path, nil)
						req.Host = "docs.test"
						req.Header.Set("Accept-Encoding", ae)
						res, err := rt.RoundTrip(req)
						if err != nil {
							t.Fatal(err)
						}
						body, _ := io.ReadAll(res.Body)
						res.Body.Close()
						if i == 1 && res.ProtoMajor != 2 {
							t.Fatalf("h2c answered over HTTP/%d", res.ProtoMajor)
						}
						var b strings.Builder
						fmt.Fprintf(&b, "%d sha256:%x\n", res.StatusCode, sha256.Sum256(body))
						for _, k := range []string{"Content-Type", "Content-Length", "Content-Encoding", "Etag", "Vary", "Cache-Control", "Cache-Status", "Age"} {
							fmt.Fprintf(&b, "%s: %q\n", k, res.Header.Values(k))
						}
						answers[i] = b.String()
					}
					if answers[0] != answers[1] {
						t.Errorf("%s %s, Accept-Encoding %q:\nh1:\n%sh2c:\n%s", method, path, ae, answers[0], answers[1])
					}
				}
			}
		}
	})

	// Release 2 changes three small files: three blobs go up, and readers
	// hammering every edge during the switch see each file go from the
	// old body to the new one, never back and never anything else.
	changed := []string{"/s1/page-1.css", "/s4/page-4.css", "/s7/page-7.css"}
	old := map[string][]byte{}
	for _, p := range changed {
		old[p] = files[p]
		files[p] = []byte("body{color:red} /* release 2 " + p + " */")
		writeFile(t, filepath.Join(site, p[1:]), string(files[p]))
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	var bad atomic.Value
	var reads atomic.Int64
	for _, e := range n.edges {
		for _, p := range changed {
			wg.Go(func() {
				seenNew := false
				for !stop.Load() {
					req, _ := http.NewRequest("GET", e.http+p, nil)
					req.Host = "docs.test"
					res, err := http.DefaultTransport.RoundTrip(req)
					if err != nil {
						bad.Store(err.Error())
						return
					}
					body, _ := io.ReadAll(res.Body)
					res.Body.Close()
					reads.Add(1)
					switch {
					case bytes.Equal(body, files[p]):
						seenNew = true
					case bytes.Equal(body, old[p]) && !seenNew:
					default:
						bad.Store(fmt.Sprintf("%s %s: %d %q after new=%v", e.name, p, res.StatusCode, body, seenNew))
						return
					}
				}
			})
		}
	}
	// Readers running before the push and reading on after every edge
	// serves release 2.
	testwait.Until(t, "readers under way", func() bool { return reads.Load() >= 100 })
	res = n.push(t, site, time.Minute)
	after := reads.Load()
	testwait.Until(t, "reads after the switch", func() bool { return reads.Load() >= after+100 || bad.Load() != nil })
	stop.Store(true)
	wg.Wait()
	if v := bad.Load(); v != nil {
		t.Fatalf("reader during the switch: %v", v)
	}
	if res.Status.Release.Number != 2 || res.Uploaded != 3 || !res.Status.Complete {
		t.Fatalf("second push: release %d, uploaded %d blobs (want 3), complete %v", res.Status.Release.Number, res.Uploaded, res.Status.Complete)
	}
	t.Logf("second push: %d blobs uploaded, %d skipped; %d reads during the switch", res.Uploaded, res.Skipped, reads.Load())
	for _, e := range n.edges {
		for _, p := range changed {
			if _, body := get(t, e.http, p); !bytes.Equal(body, files[p]) {
				t.Fatalf("%s %s after release 2: %q", e.name, p, body)
			}
		}
	}

	t.Run("rollback", func(t *testing.T) {
		st, err := n.client().Activate(t.Context(), "docs", 1, time.Minute)
		if err != nil || !st.Complete {
			t.Fatalf("rollback to 1: %v %+v", err, st)
		}
		for _, e := range n.edges {
			for _, p := range changed {
				if _, body := get(t, e.http, p); !bytes.Equal(body, old[p]) {
					t.Fatalf("%s %s after rollback: %q", e.name, p, body)
				}
			}
		}
		if st, err := n.client().Activate(t.Context(), "docs", 2, time.Minute); err != nil || !st.Complete {
			t.Fatalf("forward to 2: %v %+v", err, st)
		}
	})

	t.Run("edge killed mid-sync", func(t *testing.T) {
		big := filepath.Join(n.dir, "big")
		for i := range 60 {
			b := make([]byte, 512<<10)
			rand.Read(b)
			writeFile(t, filepath.Join(big, fmt.Sprintf("blob-%02d.bin", i)), string(b))
		}
		victim := n.edges[2]
		before := metric(t, victim.admin+"/metrics", "cdn_edge_release_blobs_fetched_total")
		go func() {
			scan, err := push.ScanDir(t.Context(), big, push.ScanOptions{})
			if err == nil {
				_, err = n.client().Push(t.Context(), "docs", scan, push.Options{})
			}
			if err != nil {
				t.Errorf("push 3: %v", err)
			}
		}()
		testwait.Until(t, "the victim fetching", func() bool {
			return metric(t, victim.admin+"/metrics", "cdn_edge_release_blobs_fetched_total") > before
		})
		victim.proc.cmd.Process.Kill()
		<-victim.proc.done
		victim.start(t) // ready only once it serves what control says
		var fetched float64
		testwait.Until(t, "release 3 on the restarted edge", func() bool {
			r, _ := get(t, victim.http, "/blob-00.bin")
			fetched = metric(t, victim.admin+"/metrics", "cdn_edge_release_blobs_fetched_total")
			return r.StatusCode == 200
		})
		for i := range 60 {
			p := fmt.Sprintf("/blob-%02d.bin", i)
			want, _ := os.ReadFile(filepath.Join(big, p[1:]))
			if r, body := get(t, victim.http, p); r.StatusCode != 200 || !bytes.Equal(body, want) {
				t.Fatalf("%s after restart: %d, %d bytes", p, r.StatusCode, len(body))
			}
		}
		if fetched >= 60 {
			t.Errorf("restarted edge fetched %v blobs; those pinned before the kill should not be fetched again", fetched)
		}
		t.Logf("restarted edge fetched %v of 60 blobs", fetched)
	})

	// A pinned blob damaged behind a running edge's back, before anyone
	// asked for it: the read that finds it fails (no wrong byte goes
	// out), the blob is dropped and fetched again, and the file is then
	// served whole.
	t.Run("corrupt pinned blob", func(t *testing.T) {
		e := n.edges[0]
		want, _ := os.ReadFile(filepath.Join(n.dir, "big", "blob-59.bin"))
		hash := push.HashOf(want)
		path := filepath.Join(e.cacheDir, "pinned", "blobs", hash[:2], hash)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/2] ^= 1
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if r, body := get(t, e.http, "/blob-59.bin"); r.StatusCode == 200 && !bytes.Equal(body, want) {
			t.Fatalf("a flipped byte was served: %d bytes", len(body))
		} else if r.StatusCode != 503 {
			t.Fatalf("first read of a corrupt blob: %d, want 503 (push-only: no origin to fall back to)", r.StatusCode)
		}
		if m := metric(t, e.admin+"/metrics", "cdn_edge_pinned_corrupt_total"); m < 1 {
			t.Fatalf("cdn_edge_pinned_corrupt_total %v, want at least 1", m)
		}
		testwait.Until(t, "the blob fetched again", func() bool {
			r, _ := get(t, e.http, "/blob-59.bin")
			return r.StatusCode == 200
		})
		for range 3 {
			if r, body := get(t, e.http, "/blob-59.bin"); r.StatusCode != 200 || !bytes.Equal(body, want) {
				t.Fatalf("after the refetch: %d, %d bytes", r.StatusCode, len(body))
			}
		}
	})

	t.Run("garbage collection", func(t *testing.T) {
		// Retain 1: release 3 is live, 2 is kept, 1 goes, and with it the
		// three css blobs only release 1 named. What is live stays.
		testwait.Until(t, "release 1 collected", func() bool {
			var out struct{ Releases []struct{ Number uint64 } }
			n.getJSON(t, "/v1/sites/docs/releases", &out)
			return len(out.Releases) == 2 && out.Releases[1].Number == 2
		})
		var oldHashes []string
		for _, p := range changed {
			oldHashes = append(oldHashes, push.HashOf(old[p]))
		}
		live, _ := push.ScanDir(t.Context(), filepath.Join(n.dir, "big"), push.ScanOptions{})
		r2, _ := push.ScanDir(t.Context(), site, push.ScanOptions{})
		var keep []string
		for _, b := range append(live.Manifest.Blobs(), r2.Manifest.Blobs()...) {
			keep = append(keep, b.Hash)
		}
		// Asking which blobs exist counts as a push starting, which holds
		// collection off: wait on control's metric, then ask once.
		testwait.Until(t, "blobs collected", func() bool {
			return metric(t, n.control+"/metrics", `cdn_control_release_gc_total{kind="blob"}`) > 0
		})
		if m := n.missing(t, oldHashes); len(m) != len(oldHashes) {
			t.Fatalf("blobs only release 1 named: %d of %d collected", len(m), len(oldHashes))
		}
		if m := n.missing(t, keep); len(m) != 0 {
			t.Fatalf("garbage collection deleted %d blobs of kept releases", len(m))
		}
		if st, err := n.client().Activate(t.Context(), "docs", 1, 0); err == nil {
			t.Fatalf("activating a collected release: %+v, want an error", st)
		}
	})
}

// missing asks control which of hashes it lacks.
func (n *pushNet) missing(t testing.TB, hashes []string) []string {
	t.Helper()
	b, _ := json.Marshal(push.Missing{Blobs: hashes})
	req, _ := http.NewRequest("POST", n.control+"/v1/sites/docs/blobs/missing", bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+n.token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out push.Missing
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out.Blobs
}
