package fill

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/selfcdn/cdn/edge/cache"
	"github.com/selfcdn/cdn/edge/tier"
	"github.com/selfcdn/cdn/internal/testwait"
	"github.com/selfcdn/cdn/origin"
	"github.com/selfcdn/cdn/purge"
)

// testBase is the cache key every rig fills; the origin is asked for
// testURI.
const (
	testBase = "http://example.com/obj"
	testURI  = "/obj"
)

// countingOrigin is an httptest origin that counts the requests it got
// and the statuses it answered.
type countingOrigin struct {
	*httptest.Server
	hits atomic.Int64

	mu       sync.Mutex // protects statuses
	statuses []int
}

func newCountingOrigin(t *testing.T, h http.HandlerFunc) *countingOrigin {
	t.Helper()
	o := &countingOrigin{}
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.hits.Add(1)
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		h(sw, r)
		o.mu.Lock()
		o.statuses = append(o.statuses, sw.status)
		o.mu.Unlock()
	}))
	t.Cleanup(o.Close)
	return o
}

// answered returns the statuses the origin answered with so far.
func (o *countingOrigin) answered() []int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]int(nil), o.statuses...)
}

// statusWriter remembers the status a handler wrote.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets handlers flush through http.ResponseController.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// gate holds origin handlers until the test opens it; it opens itself
// when the test ends, so a failed test leaves no handler blocked.
type gate struct {
	ch   chan struct{}
	once sync.Once
}

func newGate(t *testing.T) *gate {
	g := &gate{ch: make(chan struct{})}
	t.Cleanup(g.open)
	return g
}

func (g *gate) open() { g.once.Do(func() { close(g.ch) }) }
func (g *gate) wait() { <-g.ch }

// rigOptions shape a rig; the zero value is a memory tier only, with
// 1 MiB bodies in memory and hit-for-miss off.
type rigOptions struct {
	// memLimit is the largest body a flight keeps in memory and the memory
	// tier stores (the edge's max_object). Default 1 MiB.
	memLimit int64
	// disk adds a disk tier keeping objects up to 16 MiB.
	disk bool
	// hitForMiss is Config.HitForMissTTL.
	hitForMiss time.Duration
	// from is the hop the origin's answers are said to come from, as a
	// peer edge's would (tier.StageNone: the origin), and hot is
	// Config.Hot.
	from tier.Stage
	hot  func(key string) bool
}

// rig is a Filler wired as the edge wires one: a real memory tier (and
// disk tier, if asked), a Group, and the site's origin group from an
// origin.Pool, pointing at a counting httptest origin. It starts fills
// the way the edge does, and keeps the purge clock and invalidation
// count the edge keeps.
type rig struct {
	f      *Filler
	group  *Group
	mem    *cache.Memory
	disk   *cache.Disk // nil without rigOptions.disk
	origin *countingOrigin
	site   Site
	purges *purge.Table
	inval  atomic.Uint64
	fills  sync.WaitGroup // running Run calls

	mu      sync.Mutex // protects fetched
	fetched []int      // statuses Config.Fetched was told of
}

func newRig(t *testing.T, o rigOptions, h http.HandlerFunc) *rig {
	t.Helper()
	if o.memLimit == 0 {
		o.memLimit = 1 << 20
	}
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	mem, err := cache.NewMemory(cache.Config{MemoryBytes: 64 << 20, MaxObjectBytes: o.memLimit}, nil)
	if err != nil {
		t.Fatalf("NewMemory: %v", err)
	}
	t.Cleanup(mem.Close)
	r := &rig{mem: mem, purges: purge.NewTable(100, nil, nil)}
	if o.disk {
		r.disk, err = cache.OpenDisk(cache.DiskConfig{Dir: t.TempDir(), MaxBytes: 64 << 20, MaxObjectBytes: 16 << 20, Log: log}, nil)
		if err != nil {
			t.Fatalf("OpenDisk: %v", err)
		}
		t.Cleanup(func() { r.disk.Close() })
	}
	spool := t.TempDir()
	r.group = NewGroup(func() *Body { return NewBody(o.memLimit, spool) })
	r.origin = newCountingOrigin(t, h)
	pool := origin.NewPool(origin.Config{}, nil, log)
	t.Cleanup(pool.Close)
	og, err := pool.Group(origin.GroupConfig{Site: "test", Targets: []origin.Target{{URL: r.origin.URL}}})
	if err != nil {
		t.Fatalf("origin group: %v", err)
	}
	r.site = Site{Name: "test", Origins: og, Purges: r.purges.Site("test")}
	cfg := Config{
		Memory: mem, Disk: r.disk, Group: r.group, MaxVariants: 8, HitForMissTTL: o.hitForMiss, Hot: o.hot, Log: log,
		Fetched: func(_ string, status int, _ time.Duration) {
			r.mu.Lock()
			r.fetched = append(r.fetched, status)
			r.mu.Unlock()
		},
	}
	if o.from != tier.StageNone {
		cfg.Upstream = func(j *Job) (*http.Response, tier.Stage, error) {
			res, err := r.f.FetchOrigin(j)
			return res, o.from, err
		}
	}
	r.f = New(cfg)
	// Registered last, so it runs first: fills end before what they use
	// is closed.
	t.Cleanup(r.fills.Wait)
	return r
}

// join joins the flight for testBase, or takes a solo one, and starts the
// fill when it leads, as the edge's fetch does. The caller reads the
// flight (read), which releases its reference.
func (r *rig) join(solo bool, stored *cache.Entry, hdr http.Header) (fl *Flight, leader bool) {
	leader = true
	if solo {
		fl = r.group.Solo()
	} else {
		fl, leader = r.group.Join(testBase)
	}
	if leader {
		r.start(fl, solo, stored, hdr)
	}
	return fl, leader
}

// start runs a fill of testBase for fl in the background, stamped with
// the purge clock and invalidation count of now.
func (r *rig) start(fl *Flight, solo bool, stored *cache.Entry, hdr http.Header) {
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://origin"+testURI, nil)
	if err != nil {
		panic(err) // a constant URL
	}
	if hdr != nil {
		req.Header = hdr.Clone()
	}
	j := &Job{
		Site: r.site, Base: testBase, Key: testBase, Flight: fl, FlightKey: testBase, Solo: solo,
		Request: req, Cancel: cancel, URI: testURI, Stored: stored, ClientHeader: req.Header.Clone(),
		Stamp: r.purges.Clock(), Invalidations: r.inval.Load(),
	}
	r.fills.Go(func() { r.f.Run(j) })
}

// invalidate does what the edge does for a successful unsafe request
// (RFC 9111 §4.4): a tombstone numbered past every running fill's count,
// and no joining the flights that began before.
func (r *rig) invalidate(base string) {
	r.mem.PutMarker(base, &cache.Entry{Tombstone: true, Invalidated: r.inval.Add(1)}, time.Minute)
	if r.disk != nil {
		r.disk.Delete(base)
	}
	r.group.Forget(base, base+"\x00")
}

// fetchedStatuses returns what Config.Fetched was told.
func (r *rig) fetchedStatuses() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int(nil), r.fetched...)
}

// read waits for the flight's head and reads its whole body, as a waiter
// does, then releases the waiter's reference.
func read(t *testing.T, fl *Flight) (Head, []byte, error) {
	t.Helper()
	defer fl.Body.Release()
	ctx, cancel := context.WithTimeout(t.Context(), testwait.Timeout)
	defer cancel()
	head, err := fl.Wait(ctx)
	if err != nil {
		return head, nil, err
	}
	var buf bytes.Buffer
	// Only its Write: Buffer.ReadFrom would zero a fresh slice for every
	// read of a spooled body.
	_, err = fl.Body.WriteTo(ctx, struct{ io.Writer }{&buf}, nil)
	return head, buf.Bytes(), err
}
