package edge

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/selfcdn/cdn/internal/testwait"
)

// waitJoined waits until n requests joined another request's fetch.
func waitJoined(t *testing.T, e *testEdge, n int) {
	t.Helper()
	testwait.Until(t, fmt.Sprintf("%d coalesced requests", n), func() bool {
		return metricValue(t, e, "cdn_edge_coalesced_requests_total") >= float64(n)
	})
}

// storm sends n concurrent GETs for path and returns their statuses and bodies.
func storm(t *testing.T, ctx context.Context, url string, n int) (statuses []int, bodies []string) {
	t.Helper()
	tr := &http.Transport{MaxIdleConnsPerHost: n}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	statuses, bodies = make([]int, n), make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
			res, err := client.Do(req)
			if err != nil {
				t.Errorf("request %d: %v", i, err)
				return
			}
			defer res.Body.Close()
			b, err := io.ReadAll(res.Body)
			if err != nil {
				t.Errorf("request %d body: %v", i, err)
			}
			statuses[i], bodies[i] = res.StatusCode, string(b)
		})
	}
	wg.Wait()
	return statuses, bodies
}

func TestCoalescing(t *testing.T) {
	tests := []struct {
		name     string
		clients  int
		header   string
		wantHits int64 // origin requests
	}{
		{name: "100 misses, one fetch", clients: 100, header: "max-age=60", wantHits: 1},
		{name: "miss storm of 1000", clients: 1000, header: "max-age=60", wantHits: 1},
		// Waiters on an unshareable answer fetch on their own.
		{name: "uncacheable releases waiters", clients: 5, header: "no-store", wantHits: 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			release := make(chan struct{})
			var o *countingOrigin
			o = newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
				if o.hits.Load() == 1 {
					<-release // hold the first fetch until everyone waits on it
				}
				w.Header().Set("Cache-Control", tt.header)
				io.WriteString(w, "payload")
			})
			e := startEdge(t, o.URL, nil, nil)
			done := make(chan struct{})
			var statuses []int
			var bodies []string
			go func() {
				defer close(done)
				statuses, bodies = storm(t, t.Context(), e.URL+"/storm", tt.clients)
			}()
			waitJoined(t, e, tt.clients-1)
			close(release)
			<-done
			for i := range statuses {
				if statuses[i] != 200 || bodies[i] != "payload" {
					t.Fatalf("client %d: %d %q, want 200 \"payload\"", i, statuses[i], bodies[i])
				}
			}
			if got := o.hits.Load(); got != tt.wantHits {
				t.Errorf("origin requests = %d, want %d", got, tt.wantHits)
			}
		})
	}
}

func TestClientAbortDoesNotFailWaiters(t *testing.T) {
	release := make(chan struct{})
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		<-release
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, "survived")
	})
	e := startEdge(t, o.URL, nil, nil)
	// The leader speaks h2c: resetting its stream cancels its request's
	// context on the edge (HTTP/1.1 via fasthttp cannot signal a hang-up).
	leaderCtx, cancelLeader := context.WithCancel(t.Context())
	leaderDone := make(chan struct{})
	h2c := h2cClient(t)
	go func() {
		defer close(leaderDone)
		req, _ := http.NewRequestWithContext(leaderCtx, "GET", e.URL+"/a", nil)
		if res, err := h2c.Do(req); err == nil {
			res.Body.Close()
		}
	}()
	testwait.Until(t, "leader's fetch", func() bool { return o.hits.Load() == 1 })
	waiter := make(chan string, 1)
	go func() { waiter <- getBody(e.URL + "/a") }()
	waitJoined(t, e, 1)
	cancelLeader()
	<-leaderDone
	close(release)
	if body := <-waiter; body != "survived" {
		t.Errorf("waiter got %q after the leader hung up, want \"survived\"", body)
	}
	if o.hits.Load() != 1 {
		t.Errorf("origin requests = %d, want 1", o.hits.Load())
	}
}

// TestStreamsLargeObject checks that a body larger than the memory limit
// reaches the client while the origin is still sending it, is not held in
// memory, and arrives byte-exact.
func TestStreamsLargeObject(t *testing.T) {
	const size = 128 << 20
	const chunk = 1 << 20
	firstSent := make(chan struct{})
	clientHasFirst := make(chan struct{})
	pattern := func(i int) []byte {
		b := make([]byte, chunk)
		for j := range b {
			b[j] = byte(i + j)
		}
		return b
	}
	var o *countingOrigin
	o = newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Content-Length", fmt.Sprint(size))
		for i := range size / chunk {
			w.Write(pattern(i))
			if i == 0 && o.hits.Load() == 1 {
				w.(http.Flusher).Flush()
				close(firstSent)
				select {
				case <-clientHasFirst: // the rest only once the client saw the start
				case <-time.After(10 * time.Second):
					return
				}
			}
		}
	})
	e := startEdge(t, o.URL, nil, func(c *Config) { c.Cache.MaxObject = 4 << 20 })

	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	res, err := http.Get(e.URL + "/big")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	first := make([]byte, chunk)
	if _, err := io.ReadFull(res.Body, first); err != nil {
		t.Fatalf("read first chunk: %v", err)
	}
	<-firstSent
	close(clientHasFirst)
	want := sha256.New()
	for i := range size / chunk {
		want.Write(pattern(i))
	}
	got := sha256.New()
	got.Write(first)
	n, err := io.Copy(got, res.Body)
	if err != nil || n+chunk != size {
		t.Fatalf("read body: %d bytes, %v; want %d", n+chunk, err, size)
	}
	if string(got.Sum(nil)) != string(want.Sum(nil)) {
		t.Errorf("streamed body differs from what the origin sent")
	}
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	// The test itself allocates ~2 MiB per chunk for the pattern; the edge
	// must not add anything near the object's size.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 2*size+64<<20 {
		t.Errorf("allocated %d MiB to stream a %d MiB object", alloc>>20, size>>20)
	}
	// Too big for memory: the next request goes to the origin again.
	res2, _ := get(t, "GET", e.URL+"/big", nil)
	if cacheResult(res2.Header.Get("Cache-Status")) != "miss-unstored" {
		t.Errorf("second request: %q, want a miss that says it is not stored (object larger than max_object)", res2.Header.Get("Cache-Status"))
	}
}
