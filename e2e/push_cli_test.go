package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// cliRun is one run of a cdn command to its end.
type cliRun struct {
	code           int
	stdout, stderr string
}

// cli runs cdn with args and the environment env added to the test's.
func cli(t *testing.T, env []string, args ...string) cliRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, cdnBin, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := cliRun{stdout: stdout.String(), stderr: stderr.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run cdn %v: %v", args, err)
	}
	return r
}

func (r cliRun) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%sstderr:\n%s", r.code, r.stdout, r.stderr)
}

// pushedLine matches cdn push's summary line on stdout.
var pushedLine = regexp.MustCompile(`^release (\d+) of docs: (\d+) files, (\d+) blobs uploaded \([^)]*\), (\d+) already there; (.*)\n$`)

// pushSummary is cdn push's summary line, parsed.
type pushSummary struct {
	release, files, uploaded, skipped int
	served                            string
}

func parsePushed(t *testing.T, r cliRun) pushSummary {
	t.Helper()
	m := pushedLine.FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("no summary line from cdn push:\n%s", r)
	}
	n := func(s string) int { v, _ := strconv.Atoi(s); return v }
	return pushSummary{release: n(m[1]), files: n(m[2]), uploaded: n(m[3]), skipped: n(m[4]), served: m[5]}
}

// uploadGate is a proxy in front of control that lets the first allow
// blob uploads through and holds every later one until its client goes
// away: a push stopped at a known point. It answers blob batches 404, as
// a control older than them does, so the push sends a blob per request
// (and that fallback runs against the real CLI).
type uploadGate struct {
	proxy *httputil.ReverseProxy
	allow int

	mu        sync.Mutex // protects forwarded and completed
	forwarded int
	completed int
	passed    chan struct{} // closed when allow uploads completed
	held      chan struct{} // closed when the first upload is held
	heldOnce  sync.Once
	stop      chan struct{} // closed when the test ends, to free held uploads
}

// newUploadGate starts a gate in front of control and returns it with its
// URL.
func newUploadGate(t *testing.T, control string, allow int) (*uploadGate, string) {
	t.Helper()
	u, err := url.Parse(control)
	if err != nil {
		t.Fatal(err)
	}
	g := &uploadGate{proxy: httputil.NewSingleHostReverseProxy(u), allow: allow, passed: make(chan struct{}), held: make(chan struct{}), stop: make(chan struct{})}
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(g.stop) }) // runs first
	return g, srv.URL
}

func (g *uploadGate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/blobs") {
		http.Error(w, `{"error":{"code":"not_found","message":"no such endpoint"}}`, http.StatusNotFound)
		return
	}
	if r.Method != http.MethodPut || !strings.Contains(r.URL.Path, "/blobs/") {
		g.proxy.ServeHTTP(w, r)
		return
	}
	g.mu.Lock()
	if g.forwarded == g.allow {
		g.mu.Unlock()
		// Read the body, so the server sees the client go away.
		io.Copy(io.Discard, r.Body)
		g.heldOnce.Do(func() { close(g.held) })
		select {
		case <-r.Context().Done():
		case <-g.stop:
		}
		return
	}
	g.forwarded++
	g.mu.Unlock()
	g.proxy.ServeHTTP(w, r)
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.completed++; g.completed == g.allow {
		close(g.passed)
	}
}

// mountTmpfs is a wrapper command that gives the process a tmpfs of size
// at dir, in a mount namespace of its own: a disk that really fills up.
func mountTmpfs(t *testing.T, dir, size string) []string {
	t.Helper()
	if err := exec.Command("unshare", "-m", "true").Run(); err != nil {
		t.Skipf("no mount namespace for a small disk (needs root and util-linux unshare): %v", err)
	}
	return []string{"unshare", "-m", "--propagation", "private", "sh", "-c",
		fmt.Sprintf(`mkdir -p "$0" && mount -t tmpfs -o size=%s tmpfs "$0" && exec "$@"`, size), dir}
}

// TestPushCLI drives cdn push, releases and rollback as a pipeline would:
// exit codes, output, an interrupted push run again, and an edge whose
// disk fills up.
func TestPushCLI(t *testing.T) {
	n := startPushNet(t, 1)
	// The second edge's cache, pinned blobs included, is a 4 MiB tmpfs.
	small := filepath.Join(n.dir, "edge-2")
	full := n.addEdge(t, mountTmpfs(t, small, "4m")...)
	n.waitEdgesUp(t)
	env := []string{"CDN_CONTROL_URL=" + n.control, "CDN_TOKEN=" + n.token, "CDN_SITE=docs"}
	site := filepath.Join(n.dir, "site")
	files := makeSite(t, site, 40)

	t.Run("refused", func(t *testing.T) {
		outside := filepath.Join(n.dir, "secret")
		writeFile(t, outside, "not for the web")
		escaping := filepath.Join(n.dir, "escaping")
		writeFile(t, filepath.Join(escaping, "index.html"), "hi")
		if err := os.Symlink(outside, filepath.Join(escaping, "leak.txt")); err != nil {
			t.Fatal(err)
		}
		closed := "http://" + freeAddr(t, "127.0.0.1")
		for _, c := range []struct {
			name string
			env  []string
			args []string
			code int
			says string
		}{
			{"no directory", env, []string{"push", "--site", "docs"}, 2, "exactly one directory"},
			{"missing directory", env, []string{"push", filepath.Join(n.dir, "nope")}, 2, "no such file"},
			{"symlink out of the root", env, []string{"push", escaping}, 2, "leak.txt"},
			{"no token", []string{"CDN_CONTROL_URL=" + n.control, "CDN_SITE=docs"}, []string{"push", site}, 2, "token"},
			{"wrong token", []string{"CDN_CONTROL_URL=" + n.control, "CDN_TOKEN=nope", "CDN_SITE=docs"}, []string{"push", site}, 3, "401"},
			{"control down", []string{"CDN_CONTROL_URL=" + closed, "CDN_TOKEN=" + n.token, "CDN_SITE=docs"}, []string{"push", site}, 4, "run the push again"},
			{"bad wait", env, []string{"push", site, "--wait", "-1s"}, 2, "--wait"},
			{"rollback without --to", env, []string{"rollback"}, 2, "--to"},
			{"rollback to nothing", env, []string{"rollback", "--to", "9"}, 2, "404"},
		} {
			r := cli(t, c.env, c.args...)
			if r.code != c.code || !strings.Contains(r.stderr, c.says) {
				t.Errorf("%s: cdn %v:\n%s\nwant exit %d and stderr naming %q", c.name, c.args, r, c.code, c.says)
			}
		}
		var out struct{ Releases []struct{ Number uint64 } }
		n.getJSON(t, "/v1/sites/docs/releases", &out)
		if len(out.Releases) != 0 {
			t.Fatalf("refused pushes left releases: %+v", out.Releases)
		}
	})

	// A push stopped by SIGKILL after 5 blobs made no release, and run
	// again it sends only what control lacks.
	t.Run("interrupted and run again", func(t *testing.T) {
		const before = 5
		g, gateURL := newUploadGate(t, n.control, before)
		cmd := exec.CommandContext(t.Context(), cdnBin, "push", site)
		cmd.Env = append(os.Environ(), "CDN_CONTROL_URL="+gateURL, "CDN_TOKEN="+n.token, "CDN_SITE=docs")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		for _, ch := range []chan struct{}{g.passed, g.held} {
			select {
			case <-ch:
			case <-time.After(30 * time.Second):
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("push never reached the gate:\n%s", out.String())
			}
		}
		cmd.Process.Kill()
		cmd.Wait()
		var rels struct{ Releases []struct{ Number uint64 } }
		n.getJSON(t, "/v1/sites/docs/releases", &rels)
		if len(rels.Releases) != 0 {
			t.Fatalf("killed push left releases: %+v", rels.Releases)
		}

		r := cli(t, env, "push", site, "--wait", "30s", "--message", "again")
		if r.code != 0 {
			t.Fatalf("second push:\n%s", r)
		}
		sum := parsePushed(t, r)
		if sum.release != 1 || sum.files != len(files) || sum.skipped != before || !strings.HasPrefix(sum.served, "served by every edge (2)") {
			t.Fatalf("second push: %+v, want release 1 of %d files, %d blobs already there, served by 2 edges\n%s", sum, len(files), before, r)
		}
		// In CI (not a terminal) progress is a line per 10%, ending at all.
		var progress []string
		for line := range strings.SplitSeq(r.stderr, "\n") {
			if strings.HasPrefix(line, "uploaded ") {
				progress = append(progress, line)
			}
		}
		last := fmt.Sprintf("uploaded %d/%d blobs", sum.uploaded, sum.uploaded)
		if len(progress) == 0 || len(progress) > 11 || !strings.HasPrefix(progress[len(progress)-1], last) || strings.Contains(r.stderr, "\r") {
			t.Fatalf("progress lines %q, want at most 11 ending with %q and no bar", progress, last)
		}
		for _, e := range n.edges {
			for p, want := range files {
				if res, body := get(t, e.http, p); res.StatusCode != 200 || !bytes.Equal(body, want) {
					t.Fatalf("%s %s: %d, %d bytes", e.name, p, res.StatusCode, len(body))
				}
			}
		}
	})

	// Release 2 adds a file bigger than edge-2's disk: edge-2 keeps
	// serving release 1 and says why; --wait ends with exit 1.
	t.Run("disk full on an edge", func(t *testing.T) {
		big := make([]byte, 6<<20)
		rand.Read(big)
		writeFile(t, filepath.Join(site, "big.bin"), string(big))
		r := cli(t, env, "push", site, "--wait", "20s")
		if r.code != 1 || !strings.Contains(r.stdout, "pending: edge-2") || !strings.Contains(r.stderr, "edge-2 (disk_full") || !strings.Contains(r.stderr, "no space left on device") {
			t.Fatalf("push past a full disk:\n%s\nwant exit 1 naming edge-2 and its full disk", r)
		}
		t.Logf("push past a full disk:\n%s", r)
		if sum := parsePushed(t, r); sum.release != 2 || sum.uploaded != 1 {
			t.Fatalf("push 2: %+v, want release 2 with one blob uploaded", sum)
		}
		if res, body := get(t, n.edges[0].http, "/big.bin"); res.StatusCode != 200 || !bytes.Equal(body, big) {
			t.Fatalf("edge-1 /big.bin: %d, %d bytes", res.StatusCode, len(body))
		}
		if res, _ := get(t, full.http, "/big.bin"); res.StatusCode != 404 {
			t.Fatalf("edge-2 /big.bin: %d, want 404: it still serves release 1", res.StatusCode)
		}
		for p, want := range files {
			if res, body := get(t, full.http, p); res.StatusCode != 200 || !bytes.Equal(body, want) {
				t.Fatalf("edge-2 %s after its disk filled: %d, %d bytes", p, res.StatusCode, len(body))
			}
		}
		if m := metric(t, full.admin+"/metrics", `cdn_edge_release_sync_failures_total{reason="disk_full"}`); m < 1 {
			t.Fatalf("edge-2 disk_full failures %v, want at least 1", m)
		}
		if res, err := http.Get(full.admin + "/readyz"); err != nil || res.StatusCode != 200 {
			t.Fatalf("edge-2 readyz: %v %v; an edge serving its last release stays ready", res, err)
		}

		// Back to release 1 everywhere, from the CLI, and the listing.
		r = cli(t, env, "rollback", "--to", "1", "--wait", "20s")
		if r.code != 0 || !strings.Contains(r.stdout, "docs now serves release 1; served by every edge (2)") {
			t.Fatalf("rollback:\n%s", r)
		}
		if res, _ := get(t, n.edges[0].http, "/big.bin"); res.StatusCode != 404 {
			t.Fatalf("edge-1 /big.bin after rollback: %d, want 404", res.StatusCode)
		}
		// A new edge joining reports ready only once it serves the live
		// release: every file answers at the moment readyz does.
		joined := n.addEdge(t)
		for p, want := range files {
			if res, body := get(t, joined.http, p); res.StatusCode != 200 || !bytes.Equal(body, want) {
				t.Fatalf("new edge %s right after ready: %d, %d bytes", p, res.StatusCode, len(body))
			}
		}

		r = cli(t, env, "releases")
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		if r.code != 0 || len(lines) != 3 || !strings.HasPrefix(lines[1], "2 ") || !regexp.MustCompile(`^1\s+\*\s.*\sagain$`).MatchString(lines[2]) {
			t.Fatalf("cdn releases:\n%s\nwant a header, release 2, then release 1 live with its message", r)
		}
	})
}
