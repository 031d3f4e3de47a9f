package e2e

import (
	"bytes"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/selfcdn/cdn/internal/testwait"
)

// objectBody is the origin's body for path: its size is in the path
// ("/o/<n>/<size>"), its bytes derived from the path, so any mix-up of
// objects or offsets shows.
func objectBody(path string) []byte {
	parts := strings.Split(path, "/")
	size, _ := strconv.Atoi(parts[len(parts)-1])
	h := fnv.New64a()
	h.Write([]byte(path))
	r := rand.New(rand.NewPCG(h.Sum64(), 1))
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// crashOrigin serves objectBody for every path, cacheable, in small
// flushed pieces with pauses (so fills are in flight when the edge dies),
// or at full speed once fast is set.
type crashOrigin struct {
	*httptest.Server
	mu   sync.Mutex // protects fast
	fast bool
}

func newCrashOrigin(t *testing.T, addr string) *crashOrigin {
	t.Helper()
	o := &crashOrigin{}
	o.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := objectBody(r.URL.Path)
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		o.mu.Lock()
		fast := o.fast
		o.mu.Unlock()
		if fast {
			w.Write(body)
			return
		}
		for len(body) > 0 {
			n := min(len(body), 64<<10)
			if _, err := w.Write(body[:n]); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			body = body[n:]
			time.Sleep(4 * time.Millisecond)
		}
	}))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("origin listen: %v", err)
	}
	o.Listener = ln
	o.Start()
	t.Cleanup(o.Close)
	return o
}

// TestKillDuringFills kills the edge with SIGKILL while it writes objects
// to its disk tier, restarts it on the same directory, and checks that
// every answer is the origin's exact body: complete objects come back as
// hits, interrupted ones are fetched again, and no temporary or orphan
// file is left behind.
func TestKillDuringFills(t *testing.T) {
	const addr, admin = "127.0.0.78:18712", "127.0.0.78:18713"
	o := newCrashOrigin(t, "127.0.0.78:0")
	dir := t.TempDir()
	args := []string{"edge", "--origin", o.URL, "--listen", addr, "--admin", admin,
		"--cache-dir", dir, "--memory", "4MiB", "--access-log=false"}
	var paths []string
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 3 {
		var fresh []string // new objects each round, so fills are in flight
		for i := range 24 {
			size := []int{3_000, 150_000, 2_500_000}[i%3]
			fresh = append(fresh, fmt.Sprintf("/o/%d-%d/%d", round, i, size))
		}
		paths = append(paths, fresh...)
		edge := start(t, args...)
		waitOK(t, "http://"+admin+"/readyz")
		// Fill every object at once; die somewhere in the middle.
		var wg sync.WaitGroup
		for _, p := range fresh {
			wg.Go(func() {
				res, err := http.Get("http://" + addr + p)
				if err == nil {
					io.Copy(io.Discard, res.Body)
					res.Body.Close()
				}
			})
		}
		time.Sleep(time.Duration(30+rng.IntN(200)) * time.Millisecond)
		edge.cmd.Process.Kill()
		<-edge.done
		wg.Wait()
		t.Logf("round %d: killed the edge mid-fill", round)
	}

	// What the kills left: fills cut off mid-write, which the next start
	// must clear (a crash never leaves a complete-looking object).
	left, _ := os.ReadDir(filepath.Join(dir, "disk", "tmp"))
	t.Logf("temporary files left by the kills: %d", len(left))

	// The last start: the origin answers at full speed now.
	o.mu.Lock()
	o.fast = true
	o.mu.Unlock()
	edge := start(t, args...)
	waitOK(t, "http://"+admin+"/readyz")
	hits := 0
	for pass := range 2 {
		for _, p := range paths {
			res, err := http.Get("http://" + addr + p)
			if err != nil {
				t.Fatalf("pass %d, GET %s: %v", pass, p, err)
			}
			got, err := io.ReadAll(res.Body)
			res.Body.Close()
			if err != nil || !bytes.Equal(got, objectBody(p)) {
				t.Fatalf("pass %d, GET %s: %d bytes (err %v, Cache-Status %q); want the origin's exact %d bytes",
					pass, p, len(got), err, res.Header.Get("Cache-Status"), len(objectBody(p)))
			}
			if pass == 0 && strings.HasSuffix(res.Header.Get("Cache-Status"), "; hit") {
				hits++
			}
			if pass == 1 && !strings.HasSuffix(res.Header.Get("Cache-Status"), "; hit") {
				t.Errorf("pass 2, GET %s: Cache-Status %q, want a hit", p, res.Header.Get("Cache-Status"))
			}
		}
	}
	t.Logf("after %d kills: %d of %d objects were hits from disk at restart", 3, hits, len(paths))
	if hits == 0 {
		t.Errorf("no object survived the kills as a hit; the disk tier kept nothing")
	}
	tmp, _ := os.ReadDir(filepath.Join(dir, "disk", "tmp"))
	if len(tmp) != 0 {
		t.Errorf("temporary files left after restart: %d", len(tmp))
	}
	// Once the start-up sweep ran, every object file is one the index knows.
	testwait.Until(t, "object files to match the index", func() bool {
		return countFiles(filepath.Join(dir, "disk", "objects")) == int(metric(t, "http://"+admin+"/metrics", `cdn_edge_cache_objects{tier="disk"}`))
	})
	edge.stop(t)
}

func countFiles(dir string) int {
	n := 0
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return nil
	})
	return n
}

// metric reads one sample from a Prometheus text page.
func metric(t testing.TB, url, series string) float64 {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return -1
}
