package control

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/selfcdn/cdn/internal/state"
	"github.com/selfcdn/cdn/push"
)

// Garbage collection of pushed releases: a site keeps its live release,
// every release newer than it (committed but not activated) and the
// newest Retain others; the rest are forgotten. A blob is deleted once no
// kept release names it, it is older than the grace period, and no push
// has started within that period (a push asks which blobs exist before
// it uploads; what it was told exists must still exist at its commit).

// collectReleases runs the collection every GCInterval until ctx ends.
func (s *Server) collectReleases(ctx context.Context, store *state.Store) {
	collected := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cdn_control_release_gc_total", Help: "Releases and blobs removed by garbage collection.",
	}, []string{"kind"})
	s.reg.MustRegister(collected)
	t := time.NewTicker(s.cfg.Releases.GCInterval)
	defer t.Stop()
	manifests := manifestCache{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st, err := collect(ctx, store, s.cfg.Releases, s.now(), manifests)
		if err != nil && ctx.Err() == nil {
			s.log.Warn("release garbage collection failed; retrying next round", slog.Any("err", err))
			continue
		}
		collected.WithLabelValues("release").Add(float64(st.Releases))
		collected.WithLabelValues("blob").Add(float64(st.Blobs))
		if st.Releases+st.Blobs > 0 {
			s.log.Info("release garbage collected", slog.Int("releases", st.Releases), slog.Int("blobs", st.Blobs), slog.Int64("bytes", st.Bytes))
		}
	}
}

// GCStats is what one collection removed.
type GCStats struct {
	Releases, Blobs int
	Bytes           int64
}

// GCStore is the shared state garbage collection works on.
type GCStore interface {
	AllReleases(ctx context.Context) ([]state.Release, error)
	Lives(ctx context.Context) ([]state.Live, error)
	DeleteRelease(ctx context.Context, site string, n uint64) error
	OpenBlob(ctx context.Context, hash string) (io.ReadCloser, int64, error)
	Blobs(ctx context.Context) ([]state.BlobInfo, error)
	DeleteBlob(ctx context.Context, hash string) error
	LastPush(ctx context.Context) (time.Time, error)
}

// manifestCache holds the blobs each manifest names, by the manifest's
// hash, from one collection to the next: a manifest never changes, and
// reading a big site's (2 MB for 10,000 files) every round cost control
// CPU the edges needed while they synced (issue 25).
type manifestCache map[string][]string

// CollectReleases runs one collection.
func CollectReleases(ctx context.Context, store GCStore, cfg ReleasesConfig, now time.Time) (GCStats, error) {
	return collect(ctx, store, cfg, now, manifestCache{})
}

// collect runs one collection, reading the manifests manifests lacks and
// keeping there those of the releases kept.
func collect(ctx context.Context, store GCStore, cfg ReleasesConfig, now time.Time, manifests manifestCache) (GCStats, error) {
	var st GCStats
	// Blobs are listed before releases: a blob stored after this list is
	// not a candidate, whatever releases commit meanwhile.
	blobs, err := store.Blobs(ctx)
	if err != nil {
		return st, err
	}
	lastPush, err := store.LastPush(ctx)
	if err != nil {
		return st, err
	}
	rels, err := store.AllReleases(ctx)
	if err != nil {
		return st, err
	}
	lives, err := store.Lives(ctx)
	if err != nil {
		return st, err
	}
	live := make(map[string]uint64, len(lives))
	for _, l := range lives {
		live[l.Site] = l.Release
	}
	bySite := map[string][]state.Release{}
	for _, r := range rels {
		bySite[r.Site] = append(bySite[r.Site], r)
	}
	var kept []state.Release
	for site, rs := range bySite {
		// Newest first; keep the live one, those newer, and Retain more.
		slices.SortFunc(rs, func(a, b state.Release) int { return cmp.Compare(b.Number, a.Number) })
		others := 0
		for _, r := range rs {
			switch {
			case r.Number >= live[site]:
			case others < cfg.Retain:
				others++
			default:
				if err := store.DeleteRelease(ctx, site, r.Number); err != nil && !errors.Is(err, state.ErrNotFound) {
					return st, err
				}
				st.Releases++
				continue
			}
			kept = append(kept, r)
		}
	}
	if now.Sub(lastPush) < cfg.GCGrace {
		return st, nil // a push may be relying on blobs no release names yet
	}
	used := map[string]bool{}
	keptManifests := map[string]bool{}
	for _, r := range kept {
		hashes, ok := manifests[r.Manifest]
		if !ok {
			m, err := readManifest(ctx, store, r.Manifest)
			if err != nil {
				return st, fmt.Errorf("release %d of %s: %w", r.Number, r.Site, err)
			}
			for _, b := range m.Blobs() {
				hashes = append(hashes, b.Hash)
			}
			manifests[r.Manifest] = hashes
		}
		keptManifests[r.Manifest] = true
		used[r.Manifest] = true
		for _, h := range hashes {
			used[h] = true
		}
	}
	for h := range manifests {
		if !keptManifests[h] {
			delete(manifests, h)
		}
	}
	for _, b := range blobs {
		if used[b.Hash] || now.Sub(b.Modified) < cfg.GCGrace {
			continue
		}
		if err := store.DeleteBlob(ctx, b.Hash); err != nil {
			return st, err
		}
		st.Blobs++
		st.Bytes += b.Size
	}
	return st, nil
}

// readManifest reads a manifest blob.
func readManifest(ctx context.Context, store GCStore, hash string) (*push.Manifest, error) {
	r, _, err := store.OpenBlob(ctx, hash)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return push.ReadManifest(r, hash)
}
