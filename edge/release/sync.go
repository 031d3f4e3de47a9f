package release

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/selfcdn/cdn/edge/cache"
	"github.com/selfcdn/cdn/internal/state"
	"github.com/selfcdn/cdn/push"
)

// Source is where releases come from: the shared state.
type Source interface {
	WatchLive(ctx context.Context, f func(map[string]state.Live)) error
	OpenBlob(ctx context.Context, hash string) (io.ReadCloser, int64, error)
	ReportReleases(ctx context.Context, r state.EdgeReleases) error
}

// Config shapes a Syncer; zero values mean the defaults noted.
type Config struct {
	// Edge names the edge in its reports.
	Edge string
	// Dir keeps the release each site serves, so a restart serves it at
	// once.
	Dir string
	// Fetchers bounds blobs fetched at once (default 8).
	Fetchers int
	// InlineMax is the largest blob held in memory while its release is
	// live (default 64 KiB); InlineBudget bounds them all (default 256 MiB).
	InlineMax, InlineBudget int64
	// Apply is called when a site switches release (nil: the site serves
	// none). Calls are serialized.
	Apply func(site string, x *Index)
	Log   *slog.Logger
}

// Syncer keeps the edge's pushed releases in step with control.
type Syncer struct {
	cfg    Config
	pinned *cache.Pinned

	mu       sync.Mutex // protects want, current, previous, status
	want     map[string]state.Live
	current  map[string]*Index
	previous map[string]*Index // kept pinned, for a quick rollback
	status   map[string]state.SiteRelease

	wake    chan struct{} // the wanted set changed
	settled atomic.Bool   // every site serves what control last said
	first   atomic.Bool   // a live set from control has arrived

	fetched, fetchedBytes prometheus.Counter
	switches              prometheus.Counter
	syncSeconds           prometheus.Histogram
	stageSeconds          *prometheus.CounterVec
	failures              *prometheus.CounterVec
}

// NewSyncer returns a Syncer over pinned, registering its metrics on reg.
func NewSyncer(cfg Config, pinned *cache.Pinned, reg prometheus.Registerer) *Syncer {
	cfg.Fetchers = cmp.Or(cfg.Fetchers, 8)
	cfg.InlineMax = cmp.Or(cfg.InlineMax, 64<<10)
	cfg.InlineBudget = cmp.Or(cfg.InlineBudget, 256<<20)
	s := &Syncer{cfg: cfg, pinned: pinned, want: map[string]state.Live{}, current: map[string]*Index{},
		previous: map[string]*Index{}, status: map[string]state.SiteRelease{}, wake: make(chan struct{}, 1),
		fetched:      prometheus.NewCounter(prometheus.CounterOpts{Name: "cdn_edge_release_blobs_fetched_total", Help: "Pushed blobs fetched from control and pinned (synced to disk)."}),
		fetchedBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "cdn_edge_release_fetched_bytes_total", Help: "Bytes of pushed blobs fetched and pinned."}),
		switches:     prometheus.NewCounter(prometheus.CounterOpts{Name: "cdn_edge_release_switches_total", Help: "Sites switched to another release."}),
		syncSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "cdn_edge_release_sync_seconds",
			Help: "Time from starting on a site's new release to serving it: manifest, blobs, save, index.", Buckets: prometheus.ExponentialBuckets(0.01, 2, 14)}),
		stageSeconds: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cdn_edge_release_sync_stage_seconds_total",
			Help: "Time release syncs spent by stage: manifest, fetch (blobs fetched and verified), pin (their disk sync), save, index."}, []string{"stage"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cdn_edge_release_sync_failures_total",
			Help: "Release syncs that failed, by reason (disk_full, corrupt, fetch)."}, []string{"reason"}),
	}
	if reg != nil {
		reg.MustRegister(s.fetched, s.fetchedBytes, s.switches, s.syncSeconds, s.stageSeconds, s.failures)
	}
	return s
}

// saved is a site's release as kept in Dir.
type saved struct {
	Live     state.Live     `json:"live"`
	Manifest *push.Manifest `json:"manifest"`
}

// Load serves the releases saved by the last run whose blobs are all
// pinned; the others wait for sync.
func (s *Syncer) Load() {
	entries, err := os.ReadDir(s.cfg.Dir)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			s.cfg.Log.Warn("read saved releases", slog.Any("err", err))
		}
		return
	}
	for _, de := range entries {
		if !strings.HasSuffix(de.Name(), ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(s.cfg.Dir, de.Name()))
		var sv saved
		if err == nil {
			err = json.Unmarshal(b, &sv)
		}
		if err == nil && sv.Manifest != nil {
			err = sv.Manifest.Validate()
		}
		if err != nil || sv.Manifest == nil {
			s.cfg.Log.Warn("saved release unreadable; syncing it again", slog.String("file", de.Name()), slog.Any("err", err))
			continue
		}
		if missing := s.missing(sv.Manifest.Blobs()); len(missing) > 0 {
			s.cfg.Log.Warn("saved release lacks blobs; syncing it again", slog.String("site", sv.Live.Site),
				slog.Uint64("release", sv.Live.Release), slog.Int("missing", len(missing)))
			continue
		}
		s.switchTo(sv.Live, sv.Manifest, nil)
	}
}

// missing returns the blobs not pinned.
func (s *Syncer) missing(blobs []push.Blob) []push.Blob {
	var out []push.Blob
	for _, b := range blobs {
		if !s.pinned.Has(b.Hash) {
			out = append(out, b)
		}
	}
	return out
}

// Settled reports whether every push site serves the release control
// last named (or control has not been reached; then what was saved).
func (s *Syncer) Settled() bool { return s.settled.Load() }

// Unreachable tells the syncer control cannot be reached: until it can,
// the saved releases are what the edge has, and it is settled.
func (s *Syncer) Unreachable() {
	if !s.first.Load() {
		s.settled.Store(true)
	}
}

// Run follows control until ctx ends: the live set, watched again after a
// failure, and the sync loop.
func (s *Syncer) Run(ctx context.Context, src Source) {
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Go(func() { s.syncLoop(ctx, src) })
	wait := 250 * time.Millisecond
	for ctx.Err() == nil {
		err := src.WatchLive(ctx, func(m map[string]state.Live) {
			s.mu.Lock()
			s.want = maps.Clone(m)
			s.mu.Unlock()
			s.first.Store(true)
			select {
			case s.wake <- struct{}{}:
			default:
			}
		})
		if ctx.Err() != nil {
			return
		}
		s.cfg.Log.Warn("watching releases failed; retrying", slog.Any("err", err))
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// retryEvery is how often a failed sync is tried again.
const retryEvery = 5 * time.Second

// syncLoop brings every site to its wanted release, one site at a time,
// whenever the wanted set changes, and retries failures.
func (s *Syncer) syncLoop(ctx context.Context, src Source) {
	retry := time.NewTimer(retryEvery)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		case <-retry.C:
		}
		if !s.first.Load() {
			continue
		}
		s.mu.Lock()
		want := maps.Clone(s.want)
		s.mu.Unlock()
		ok := true
		for site, live := range want {
			if err := s.syncSite(ctx, src, live); err != nil {
				ok = false
				if ctx.Err() != nil {
					return
				}
				s.fail(site, live, err)
			}
		}
		s.dropUnwanted(want)
		if ok {
			s.settled.Store(true)
			s.collect()
		}
		s.report(ctx, src)
		retry.Reset(retryEvery)
	}
}

// syncSite switches site to live's release once all its blobs are pinned.
func (s *Syncer) syncSite(ctx context.Context, src Source, live state.Live) error {
	s.mu.Lock()
	cur := s.current[live.Site]
	s.mu.Unlock()
	if cur != nil && cur.Number == live.Release && cur.Manifest == live.Manifest {
		// Serving it already; fetch again what was dropped as corrupt.
		if missing := s.missing(cur.blobs); len(missing) > 0 {
			s.cfg.Log.Warn("release lost blobs; fetching them again", slog.String("site", live.Site), slog.Int("blobs", len(missing)))
			_, err := s.fetchBlobs(ctx, src, missing)
			return err
		}
		return nil
	}
	start := time.Now()
	s.setStatus(live.Site, func(st *state.SiteRelease) { st.Wanted, st.Error = live.Release, "" })
	m, err := s.fetchManifest(ctx, src, live.Manifest)
	if err != nil {
		return err
	}
	s.stage("manifest", start)
	fetched, err := s.fetchBlobs(ctx, src, s.missing(m.Blobs()))
	if err != nil {
		return err
	}
	// Saved only once every blob it names is pinned and synced: a crash
	// never leaves a saved release that lacks one.
	at := time.Now()
	if err := s.save(saved{Live: live, Manifest: m}); err != nil {
		return err
	}
	s.stage("save", at)
	at = time.Now()
	s.switchTo(live, m, fetched)
	s.stage("index", at)
	took := time.Since(start)
	s.syncSeconds.Observe(took.Seconds())
	s.cfg.Log.Info("release switched", slog.String("site", live.Site), slog.Uint64("release", live.Release), slog.Int("files", len(m.Files)), slog.Duration("took", took))
	return nil
}

func (s *Syncer) fetchManifest(ctx context.Context, src Source, hash string) (*push.Manifest, error) {
	r, _, err := src.OpenBlob(ctx, hash)
	if err != nil {
		return nil, fmt.Errorf("fetch manifest: %w", err)
	}
	defer r.Close()
	return push.ReadManifest(r, hash)
}

// BatchSource is a Source that reads many blobs in one request
// (state.Store does); the syncer uses it when it can.
type BatchSource interface {
	FetchBlobs(ctx context.Context, hashes []string, f state.BlobFunc) error
}

// A batched fetch asks for up to batchBlobs blobs of batchBytes in all:
// enough to make a request's cost small beside its blobs', few enough
// that Fetchers of them in flight stay a few tens of megabytes, and that
// big blobs spread over the fetchers.
const (
	batchBlobs = 64
	batchBytes = 4 << 20
)

// pinFlushBytes is how much a sync fetches between two disk syncs: what a
// sync killed halfway loses at most, and one sync per 64 MiB instead of
// one per blob.
const pinFlushBytes = 64 << 20

// fetchBlobs fetches and pins blobs, Fetchers requests at a time; the
// first failure stops the rest and pins none of them. The blobs are synced
// to disk together once all are verified (cache.PinBatch), before the
// caller saves a release that names them. It returns the bodies of the
// small blobs (up to InlineMax each, InlineBudget in all), verified, for
// the index to hold without reading them back from disk.
func (s *Syncer) fetchBlobs(ctx context.Context, src Source, blobs []push.Blob) (map[string][]byte, error) {
	if len(blobs) == 0 {
		return nil, nil
	}
	batch := s.pinned.Batch(pinFlushBytes, func(n int, bytes int64) {
		s.fetched.Add(float64(n))
		s.fetchedBytes.Add(float64(bytes))
	})
	defer batch.Abort() // drops what a failure left uncommitted
	kept := &keptBodies{m: map[string][]byte{}, budget: s.cfg.InlineBudget}
	start := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.cfg.Fetchers)
	bs, batched := src.(BatchSource)
	for i := 0; i < len(blobs) && gctx.Err() == nil; {
		n, size := 1, blobs[i].Size
		for batched && i+n < len(blobs) && n < batchBlobs && size+blobs[i+n].Size <= batchBytes {
			size += blobs[i+n].Size
			n++
		}
		group := blobs[i : i+n]
		i += n
		g.Go(func() error {
			if batched {
				err := s.fetchBatch(gctx, bs, batch, kept, group)
				if !errors.Is(err, state.ErrBatchUnsupported) {
					return err
				}
			}
			for _, b := range group {
				if err := s.fetchBlob(gctx, src, batch, kept, b); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err // the loop may have stopped early with no fetch failing
	}
	s.stage("fetch", start)
	start = time.Now()
	if err := batch.Commit(); err != nil {
		return nil, err
	}
	s.stage("pin", start)
	return kept.m, nil
}

// fetchBatch fetches group in one batched request.
func (s *Syncer) fetchBatch(ctx context.Context, bs BatchSource, batch *cache.PinBatch, kept *keptBodies, group []push.Blob) error {
	want := make(map[string]int64, len(group))
	hashes := make([]string, len(group))
	for i, b := range group {
		hashes[i], want[b.Hash] = b.Hash, b.Size
	}
	return bs.FetchBlobs(ctx, hashes, func(hash string, r io.Reader, size int64) error {
		return s.pin(batch, kept, push.Blob{Hash: hash, Size: want[hash]}, r, size)
	})
}

func (s *Syncer) fetchBlob(ctx context.Context, src Source, batch *cache.PinBatch, kept *keptBodies, b push.Blob) error {
	r, size, err := src.OpenBlob(ctx, b.Hash)
	if err != nil {
		return fmt.Errorf("fetch blob %s: %w", b.Hash, err)
	}
	defer r.Close()
	return s.pin(batch, kept, b, r, size)
}

// pin verifies and writes blob b, read from r (size bytes as stored), to
// batch, keeping its body if it is small.
func (s *Syncer) pin(batch *cache.PinBatch, kept *keptBodies, b push.Blob, r io.Reader, size int64) error {
	if size != b.Size {
		return fmt.Errorf("fetch blob %s: stored with %d bytes, the manifest says %d", b.Hash, size, b.Size)
	}
	var body []byte
	if whole, ok := r.(interface{ Bytes() []byte }); ok {
		body = whole.Bytes() // a batched fetch's chunk: no copy
	} else if size <= s.cfg.InlineMax {
		body = make([]byte, size+1) // one more, to see the end
		n, err := io.ReadFull(r, body)
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
			return fmt.Errorf("fetch blob %s: %w", b.Hash, err)
		}
		body = body[:n]
	}
	if body == nil && size > 0 {
		return batch.Put(b.Hash, r, size)
	}
	if int64(len(body)) != size {
		return fmt.Errorf("fetch blob %s: %w", b.Hash, cache.ErrHashMismatch)
	}
	// PutBytes checks the body even for a blob pinned already (Put does
	// not read those): a kept body is served from memory.
	if err := batch.PutBytes(b.Hash, body); err != nil {
		return err
	}
	if size <= s.cfg.InlineMax {
		kept.add(b.Hash, body)
	}
	return nil
}

// keptBodies are the small blobs a fetch read, verified, by hash.
type keptBodies struct {
	mu     sync.Mutex // protects m and budget
	m      map[string][]byte
	budget int64
}

func (k *keptBodies) add(hash string, body []byte) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if int64(len(body)) <= k.budget {
		k.m[hash] = body
		k.budget -= int64(len(body))
	}
}

// stage records the time since start as spent in one stage of a sync.
func (s *Syncer) stage(name string, start time.Time) {
	s.stageSeconds.WithLabelValues(name).Add(time.Since(start).Seconds())
}

// save keeps a site's release for the next start, whole or not at all.
func (s *Syncer) save(sv saved) error {
	b, err := json.Marshal(sv)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(s.cfg.Dir, 0o750); err != nil {
		return fmt.Errorf("save release: %w", err)
	}
	f, err := os.CreateTemp(s.cfg.Dir, "."+sv.Live.Site+"-*")
	if err != nil {
		return fmt.Errorf("save release: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), filepath.Join(s.cfg.Dir, sv.Live.Site+".json"))
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("save release: %w", err)
	}
	return nil
}

// switchTo builds the index of m and swaps it in. fetched holds small
// bodies just fetched and verified (nil: none), used as they are.
func (s *Syncer) switchTo(live state.Live, m *push.Manifest, fetched map[string][]byte) {
	budget := s.cfg.InlineBudget
	// Bodies the serving release holds are taken over, not read again: a
	// small change to a big site reads only what changed.
	s.mu.Lock()
	held := s.current[live.Site].heldBodies()
	s.mu.Unlock()
	x := newIndex(live.Site, live.Release, live.Manifest, m, func(b push.Blob) []byte {
		if b.Size > s.cfg.InlineMax || b.Size > budget {
			return nil
		}
		if body, ok := held[b.Hash]; ok {
			budget -= b.Size
			return body
		}
		if body, ok := fetched[b.Hash]; ok {
			budget -= b.Size
			return body
		}
		e, err := s.pinned.Open(b.Hash, s.cfg.InlineMax)
		if err != nil || e.Disk != nil {
			e.Release()
			return nil // served from disk; a bad blob is refetched next round
		}
		budget -= b.Size
		return e.Body
	})
	s.mu.Lock()
	if old := s.current[live.Site]; old != nil && old.Manifest != x.Manifest {
		s.previous[live.Site] = old
	}
	s.current[live.Site] = x
	st := s.status[live.Site]
	st.Serving, st.Wanted, st.Error = live.Release, 0, ""
	s.status[live.Site] = st
	s.mu.Unlock()
	s.switches.Inc()
	if s.cfg.Apply != nil {
		s.cfg.Apply(live.Site, x)
	}
}

// dropUnwanted stops serving sites control no longer names.
func (s *Syncer) dropUnwanted(want map[string]state.Live) {
	s.mu.Lock()
	var gone []string
	for site := range s.current {
		if _, ok := want[site]; !ok {
			gone = append(gone, site)
			delete(s.current, site)
			delete(s.previous, site)
			delete(s.status, site)
		}
	}
	s.mu.Unlock()
	for _, site := range gone {
		os.Remove(filepath.Join(s.cfg.Dir, site+".json"))
		if s.cfg.Apply != nil {
			s.cfg.Apply(site, nil)
		}
		s.cfg.Log.Info("site no longer has a release", slog.String("site", site))
	}
}

// collect unpins blobs that neither the current nor the previous release
// of any site names.
func (s *Syncer) collect() {
	keep := map[string]bool{}
	s.mu.Lock()
	for _, m := range []map[string]*Index{s.current, s.previous} {
		for _, x := range m {
			for _, b := range x.blobs {
				keep[b.Hash] = true
			}
		}
	}
	s.mu.Unlock()
	for _, h := range s.pinned.Hashes() {
		if !keep[h] {
			s.pinned.Remove(h)
		}
	}
	s.pinned.Compact() // once all are gone: packs emptied whole are not copied first
}

// fail records why site cannot switch to live's release.
func (s *Syncer) fail(site string, live state.Live, err error) {
	reason := "fetch"
	switch {
	case errors.Is(err, cache.ErrPinnedFull), errors.Is(err, syscall.ENOSPC):
		reason = "disk_full"
	case errors.Is(err, cache.ErrHashMismatch):
		reason = "corrupt"
	}
	s.failures.WithLabelValues(reason).Inc()
	s.setStatus(site, func(st *state.SiteRelease) { st.Wanted, st.Error = live.Release, reason+": "+err.Error() })
	s.cfg.Log.Warn("release sync failed; serving the previous release, retrying", slog.String("site", site),
		slog.Uint64("release", live.Release), slog.String("reason", reason), slog.Any("err", err))
}

func (s *Syncer) setStatus(site string, f func(*state.SiteRelease)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.status[site]
	f(&st)
	s.status[site] = st
}

// Status returns what the edge serves, by site.
func (s *Syncer) Status() map[string]state.SiteRelease {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.status)
}

// report tells control what the edge serves.
func (s *Syncer) report(ctx context.Context, src Source) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := src.ReportReleases(ctx, state.EdgeReleases{Edge: s.cfg.Edge, Sites: s.Status(), Updated: time.Now().UTC()}); err != nil && ctx.Err() == nil {
		s.cfg.Log.Warn("report releases to control", slog.Any("err", err))
	}
}
