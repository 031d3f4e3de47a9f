package fill

import (
	"bytes"
	"crypto/rand"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/selfcdn/cdn/edge/cache"
	"github.com/selfcdn/cdn/edge/freshness"
	"github.com/selfcdn/cdn/edge/tier"
	"github.com/selfcdn/cdn/internal/testwait"
	"github.com/selfcdn/cdn/purge"
)

// flying reports how many flights the group holds.
func (g *Group) flying() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.flights)
}

// randomBody returns n random bytes.
func randomBody(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// diskBody reads what the disk tier holds under key, nil if nothing.
func diskBody(t *testing.T, d *cache.Disk, key string) []byte {
	t.Helper()
	e, ok := d.Get(key, 0)
	if !ok {
		return nil
	}
	defer e.Release()
	if e.Disk == nil {
		return e.Body
	}
	b, err := io.ReadAll(e.Disk.Reader())
	if err != nil {
		t.Fatalf("read %s from disk: %v", key, err)
	}
	return b
}

func TestRunCoalesces(t *testing.T) {
	const waiters = 50
	tests := []struct {
		name       string
		size       int
		disk       bool
		wantMemory bool // stored in the memory tier
		wantDisk   bool // stored in the disk tier
	}{
		{name: "body in memory", size: 100 << 10, wantMemory: true},
		{name: "body past the memory limit streams through", size: 1 << 20},
		{name: "body past the memory limit kept on disk", size: 1 << 20, disk: true, wantDisk: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := randomBody(tt.size)
			g := newGate(t)
			r := newRig(t, rigOptions{memLimit: 256 << 10, disk: tt.disk}, func(w http.ResponseWriter, _ *http.Request) {
				g.wait()
				w.Header().Set("Cache-Control", "max-age=60")
				w.Header().Set("Content-Length", strconv.Itoa(len(want)))
				w.Write(want)
			})
			// Every waiter joins before the origin answers, so they can
			// only share one flight.
			var joined, done sync.WaitGroup
			var leaders atomic.Int64
			bodies := make([][]byte, waiters)
			joined.Add(waiters)
			for i := range waiters {
				done.Go(func() {
					fl, leader := r.join(false, nil, nil)
					if leader {
						leaders.Add(1)
					}
					joined.Done()
					head, body, err := read(t, fl)
					if err != nil || head.Status != http.StatusOK || !head.Shareable {
						t.Errorf("waiter %d: status %d, shareable %v, err %v; want 200, true, nil", i, head.Status, head.Shareable, err)
					}
					bodies[i] = body
				})
			}
			joined.Wait()
			g.open()
			done.Wait()
			r.fills.Wait()

			if got := r.origin.hits.Load(); got != 1 {
				t.Errorf("origin fetches = %d, want 1", got)
			}
			if got := leaders.Load(); got != 1 {
				t.Errorf("leaders = %d, want 1", got)
			}
			for i, b := range bodies {
				if !bytes.Equal(b, want) {
					t.Errorf("waiter %d got %d bytes, want the %d the origin sent", i, len(b), len(want))
				}
			}
			if got := r.fetchedStatuses(); !slices.Equal(got, []int{200}) {
				t.Errorf("Fetched told of %v, want [200]", got)
			}
			e, ok := r.mem.Get(testBase)
			if ok != tt.wantMemory || ok && !bytes.Equal(e.Body, want) {
				t.Errorf("memory tier holds the body: %v, want %v", ok, tt.wantMemory)
			}
			if r.disk != nil {
				if got := diskBody(t, r.disk, testBase); !bytes.Equal(got, want) {
					t.Errorf("disk tier holds %d bytes, want the %d the origin sent", len(got), len(want))
				}
			}
			if n := r.group.flying(); n != 0 {
				t.Errorf("%d flights left in the group, want 0", n)
			}
		})
	}
}

// notifyWriter collects bytes and closes reached once it holds n.
type notifyWriter struct {
	bytes.Buffer
	n       int
	once    sync.Once
	reached chan struct{}
}

func (w *notifyWriter) Write(p []byte) (int, error) {
	n, err := w.Buffer.Write(p)
	if w.Len() >= w.n {
		w.once.Do(func() { close(w.reached) })
	}
	return n, err
}

func TestRunStreamsPastMemoryLimit(t *testing.T) {
	const first = 512 << 10 // sent before the origin waits
	want := randomBody(first + 2<<20)
	g := newGate(t)
	r := newRig(t, rigOptions{memLimit: 1 << 20}, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Write(want[:first])
		http.NewResponseController(w).Flush()
		g.wait()
		w.Write(want[first:])
	})
	fl, _ := r.join(false, nil, nil)
	defer fl.Body.Release()
	head, err := fl.Wait(t.Context())
	if err != nil || !head.Shareable {
		t.Fatalf("Wait = shareable %v, %v; want true, nil", head.Shareable, err)
	}
	w := &notifyWriter{n: first, reached: make(chan struct{})}
	copied := make(chan error, 1)
	go func() {
		_, err := fl.Body.WriteTo(t.Context(), w, nil)
		copied <- err
	}()
	// The waiter has the first bytes while the origin still holds the rest.
	testwait.Recv(t, "the first bytes before the origin sent the rest", w.reached)
	g.open()
	if err := testwait.Recv(t, "the whole body", copied); err != nil {
		t.Fatalf("WriteTo = %v", err)
	}
	if !bytes.Equal(w.Bytes(), want) {
		t.Errorf("waiter got %d bytes, want the %d the origin sent", w.Len(), len(want))
	}
	if !fl.Body.Spilled() {
		t.Errorf("body of %d bytes stayed in memory, want it spooled past the 1 MiB limit", len(want))
	}
	r.fills.Wait()
	if _, ok := r.mem.Get(testBase); ok {
		t.Errorf("memory tier stored a body past its limit")
	}
}

// storedEntry is a 200 for testBase that went stale an hour ago, with
// the validator ETag "v1" and the given Cache-Control, stamped now.
func storedEntry(r *rig, cc string, body []byte) *cache.Entry {
	past := time.Now().Add(-time.Hour)
	hdr := http.Header{"Etag": {`"v1"`}, "Cache-Control": {cc}, "X-Version": {"1"}, "Content-Type": {"text/plain"}}
	d := freshness.Evaluate(http.Header{}, http.StatusOK, hdr, past, past, freshness.Policy{})
	e := cache.NewEntry(http.StatusOK, hdr, body, d.Meta, nil)
	e.Stamp = r.purges.Clock()
	return e
}

func TestRunRevalidates(t *testing.T) {
	tests := []struct {
		name   string
		onDisk bool // the entry is a disk body, not in memory
	}{
		{name: "stored in memory"},
		{name: "stored on disk", onDisk: true},
	}
	body := []byte("the stored body, never fetched again")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, rigOptions{disk: tt.onDisk}, func(w http.ResponseWriter, req *http.Request) {
				if req.Header.Get("If-None-Match") != `"v1"` {
					w.Write([]byte("a body nobody should have asked for"))
					return
				}
				w.Header().Set("Cache-Control", "max-age=60")
				w.Header().Set("X-Version", "2")
				w.WriteHeader(http.StatusNotModified)
			})
			stored := storedEntry(r, "max-age=1", body)
			if tt.onDisk {
				if err := r.disk.Put(testBase, stored, nil); err != nil {
					t.Fatalf("disk Put: %v", err)
				}
				var ok bool
				if stored, ok = r.disk.Get(testBase, 0); !ok || stored.Disk == nil {
					t.Fatalf("disk Get = %v, body open %v; want the entry with its body on disk", ok, ok && stored.Disk != nil)
				}
			} else {
				r.mem.Put(testBase, stored)
			}
			// The request is conditional, as the edge makes it.
			fl, _ := r.join(false, stored, http.Header{"If-None-Match": {`"v1"`}})
			head, got, err := read(t, fl)
			r.fills.Wait()
			if err != nil || !head.Revalidated || !head.FromCache {
				t.Fatalf("head = revalidated %v, from cache %v, err %v; want true, true, nil", head.Revalidated, head.FromCache, err)
			}
			if !bytes.Equal(got, body) || head.Header.Get("X-Version") != "2" {
				t.Errorf("answer = %q with X-Version %q, want the stored body with the 304's X-Version 2", got, head.Header.Get("X-Version"))
			}
			if got := r.origin.answered(); !slices.Equal(got, []int{http.StatusNotModified}) {
				t.Errorf("origin answered %v, want [304] only", got)
			}
			var e *cache.Entry
			var ok bool
			if tt.onDisk {
				e, ok = r.disk.Get(testBase, 1<<20)
			} else {
				e, ok = r.mem.Get(testBase)
			}
			if !ok {
				t.Fatalf("entry gone after the 304")
			}
			defer e.Release()
			if !bytes.Equal(e.Body, body) || e.Header.Get("X-Version") != "2" || e.Meta.TTL(time.Now()) <= 0 {
				t.Errorf("stored = %q, X-Version %q, TTL %s; want the same body, X-Version 2, fresh", e.Body, e.Header.Get("X-Version"), e.Meta.TTL(time.Now()))
			}
		})
	}
}

func TestRunStaleIfError(t *testing.T) {
	const allows = "max-age=1, stale-if-error=86400"
	tests := []struct {
		name       string
		originDown bool // the origin refuses connections
		status     int  // else what it answers
		storedCC   string
		purge      *purge.Request // applied once the entry is stored
		wantStale  bool
		wantStatus int // without a stale answer; 0: the flight fails
	}{
		{name: "5xx, stale-if-error allows", status: 500, storedCC: allows, wantStale: true},
		{name: "origin down, stale-if-error allows", originDown: true, storedCC: allows, wantStale: true},
		{name: "5xx, no stale-if-error", status: 500, storedCC: "max-age=1", wantStatus: 500},
		{name: "origin down, no stale-if-error", originDown: true, storedCC: "max-age=1"},
		{name: "404 is an answer, not an error", status: 404, storedCC: allows, wantStatus: 404},
		{name: "hard-purged entry never answers", status: 500, storedCC: allows,
			purge: &purge.Request{URLs: []string{testBase}}, wantStatus: 500},
		{name: "soft-purged entry always may", status: 500, storedCC: "max-age=1",
			purge: &purge.Request{URLs: []string{testBase}, Soft: true}, wantStale: true},
	}
	// Large, so that answering from it takes a while: long enough to see a
	// flight that leaves the group only after it has answered.
	body := randomBody(4 << 20)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, rigOptions{}, func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(tt.status)
				w.Write([]byte("origin error page"))
			})
			if tt.originDown {
				r.origin.Close()
			}
			stored := storedEntry(r, tt.storedCC, body)
			if tt.purge != nil {
				r.purges.Apply("test", *tt.purge)
			}
			fl, _ := r.join(false, stored, nil)
			if _, err := fl.Wait(t.Context()); err == nil && r.group.flying() != 0 {
				// A client that has read the whole stale answer (its
				// Content-Length) and asks again at once must not join
				// this flight: the flight leaves the group before it
				// answers.
				t.Error("the flight was still in the group when its answer was published")
			}
			head, got, err := read(t, fl)
			r.fills.Wait()
			switch {
			case tt.wantStale:
				if err != nil || !head.FromCache || head.Revalidated || !bytes.Equal(got, body) {
					t.Errorf("answer = %q, from cache %v, revalidated %v, err %v; want the stored body, true, false, nil",
						got, head.FromCache, head.Revalidated, err)
				}
			case tt.wantStatus == 0:
				if err == nil {
					t.Errorf("answer = %d %q, want the fetch's error", head.Status, got)
				}
			default:
				if err != nil || head.FromCache || head.Status != tt.wantStatus {
					t.Errorf("answer = %d, from cache %v, err %v; want %d from the origin", head.Status, head.FromCache, err, tt.wantStatus)
				}
			}
			wantFetched := []int{tt.status}
			if tt.originDown {
				wantFetched = []int{0}
			}
			if got := r.fetchedStatuses(); !slices.Equal(got, wantFetched) {
				t.Errorf("Fetched told of %v, want %v", got, wantFetched)
			}
		})
	}
}

func TestRunUnshareable(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		header     http.Header
		solo       bool
		wantMarker bool // the URL is marked hit-for-miss
	}{
		{name: "set-cookie", status: 200, header: http.Header{"Set-Cookie": {"session=1"}, "Cache-Control": {"max-age=60"}}, wantMarker: true},
		{name: "private", status: 200, header: http.Header{"Cache-Control": {"private, max-age=60"}}, wantMarker: true},
		{name: "no-store", status: 200, header: http.Header{"Cache-Control": {"no-store"}}, wantMarker: true},
		{name: "a 5xx says nothing of the URL", status: 500, header: http.Header{"Cache-Control": {"no-store"}}},
		{name: "a solo fill marks nothing", status: 200, header: http.Header{"Set-Cookie": {"session=1"}}, solo: true},
	}
	body := []byte("for one client only")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, rigOptions{hitForMiss: time.Minute}, func(w http.ResponseWriter, _ *http.Request) {
				maps.Copy(w.Header(), tt.header)
				w.WriteHeader(tt.status)
				w.Write(body)
			})
			fl, _ := r.join(tt.solo, nil, nil)
			head, got, err := read(t, fl)
			r.fills.Wait()
			if err != nil || head.Shareable || head.Status != tt.status || !bytes.Equal(got, body) {
				t.Fatalf("answer = %d %q, shareable %v, err %v; want %d %q, false, nil", head.Status, got, head.Shareable, err, tt.status, body)
			}
			e, ok := r.mem.Get(testBase)
			switch {
			case ok && !e.HitForMiss:
				t.Errorf("memory tier stored the response (status %d)", e.Status)
			case ok != tt.wantMarker:
				t.Errorf("hit-for-miss marker: %v, want %v", ok, tt.wantMarker)
			}
			if n := r.group.flying(); n != 0 {
				t.Errorf("%d flights left in the group, want 0", n)
			}
		})
	}
}

func TestRunRacingInvalidation(t *testing.T) {
	tests := []struct {
		name  string
		act   func(r *rig) // while the origin holds its answer
		check func(t *testing.T, r *rig, want []byte)
	}{
		{
			name: "an unsafe request keeps the answer out of both tiers",
			act:  func(r *rig) { r.invalidate(testBase) },
			check: func(t *testing.T, r *rig, _ []byte) {
				if e, ok := r.mem.Get(testBase); !ok || !e.Tombstone {
					t.Errorf("memory tier holds %+v, want the invalidation's tombstone", e)
				}
				if r.disk.Has(testBase) {
					t.Errorf("disk tier stored the answer of a fill older than the invalidation")
				}
			},
		},
		{
			name: "a purge matches what the fill stores",
			act:  func(r *rig) { r.purges.Apply("test", purge.Request{URLs: []string{testBase}}) },
			check: func(t *testing.T, r *rig, want []byte) {
				e, ok := r.mem.Get(testBase)
				if !ok || !bytes.Equal(e.Body, want) {
					t.Fatalf("memory tier holds the answer: %v, want true", ok)
				}
				if v := r.site.Purges.Check(e.Stamp, testBase, e.Tags); v != purge.Gone {
					t.Errorf("purge verdict on the stored answer = %v, want Gone (%v)", v, purge.Gone)
				}
			},
		},
	}
	want := []byte("the answer to a request sent before the change")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newGate(t)
			r := newRig(t, rigOptions{disk: true}, func(w http.ResponseWriter, _ *http.Request) {
				g.wait()
				w.Header().Set("Cache-Control", "max-age=60")
				w.Write(want)
			})
			fl, _ := r.join(false, nil, nil)
			testwait.Until(t, "the origin to get the fill's request", func() bool { return r.origin.hits.Load() == 1 })
			tt.act(r)
			g.open()
			// The waiter still gets its answer; only storing it is wrong.
			if _, got, err := read(t, fl); err != nil || !bytes.Equal(got, want) {
				t.Fatalf("answer = %q, %v; want %q, nil", got, err, want)
			}
			r.fills.Wait()
			tt.check(t, r, want)
		})
	}
}

func TestRunPeerAnswers(t *testing.T) {
	tests := []struct {
		name       string
		from       tier.Stage
		hot        bool
		wantStored bool
	}{
		{name: "home, key not hot here", from: tier.StageHome},
		{name: "home, hot key", from: tier.StageHome, hot: true, wantStored: true},
		{name: "shield", from: tier.StageShield, wantStored: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var asked atomic.Int64
			hot := func(string) bool { asked.Add(1); return tt.hot }
			r := newRig(t, rigOptions{from: tt.from, hot: hot}, func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Cache-Control", "max-age=60")
				w.Header().Set("Cache-Status", "peer; hit")
				w.Header().Set("Vary", "Accept-Encoding")
				w.Write([]byte("from a peer"))
			})
			fl, _ := r.join(false, nil, nil)
			head, _, err := read(t, fl)
			r.fills.Wait()
			if err != nil || head.Upstream != "peer; hit" || len(head.Vary) != 0 || head.NotKept == tt.wantStored {
				t.Errorf("head = upstream %q, vary %v, not kept %v, err %v; want %q, none, %v, nil",
					head.Upstream, head.Vary, head.NotKept, err, "peer; hit", !tt.wantStored)
			}
			if _, ok := r.mem.Get(testBase); ok != tt.wantStored {
				t.Errorf("stored = %v, want %v", ok, tt.wantStored)
			}
			if wantAsked := int64(boolInt(tt.from == tier.StageHome)); asked.Load() != wantAsked {
				t.Errorf("Hot asked %d times, want %d", asked.Load(), wantAsked)
			}
		})
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestFromPeer(t *testing.T) {
	tests := []struct {
		name string
		in   http.Header
		want http.Header
	}{
		{name: "no vary", in: http.Header{"Etag": {"x"}}, want: http.Header{"Etag": {"x"}}},
		{name: "the peer's own compression", in: http.Header{"Vary": {"Accept-Encoding"}}, want: http.Header{}},
		{name: "other fields stay", in: http.Header{"Vary": {"accept-encoding, Accept-Language", "Origin"}},
			want: http.Header{"Vary": {"Accept-Language, Origin"}}},
		{name: "a coded body keeps it", in: http.Header{"Content-Encoding": {"br"}, "Vary": {"Accept-Encoding"}},
			want: http.Header{"Content-Encoding": {"br"}, "Vary": {"Accept-Encoding"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.in.Clone()
			fromPeer(got)
			if !maps.EqualFunc(got, tt.want, slices.Equal[[]string]) {
				t.Errorf("fromPeer(%v) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}
