package release

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/selfcdn/cdn/edge/cache"
	"github.com/selfcdn/cdn/internal/state"
	"github.com/selfcdn/cdn/internal/statetest"
	"github.com/selfcdn/cdn/push"

	"github.com/selfcdn/cdn/internal/testwait"
)

// publish stores files as a release of site on real JetStream and makes
// it live, as control does.
func publish(t *testing.T, store *state.Store, site string, files map[string][]byte) uint64 {
	t.Helper()
	m := &push.Manifest{Files: map[string]push.File{}}
	for p, b := range files {
		h := push.HashOf(b)
		if _, _, err := store.PutBlob(t.Context(), h, bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
		m.Files[p] = push.File{Blob: push.Blob{Hash: h, Size: int64(len(b))}}
	}
	body, _ := m.Encode()
	mh := push.HashOf(body)
	if _, _, err := store.PutBlob(t.Context(), mh, bytes.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	rel, err := store.CreateRelease(t.Context(), state.Release{Site: site, Manifest: mh})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.SetLive(t.Context(), state.Live{Site: site, Release: rel.Number, Manifest: mh}); err != nil {
		t.Fatal(err)
	}
	return rel.Number
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// syncer runs a Syncer with pinned bounded by maxPinned, recording what
// it switches to.
type syncer struct {
	*Syncer
	pinned  *cache.Pinned
	mu      sync.Mutex
	applied map[string]*Index
}

func runSyncer(t *testing.T, store *state.Store, dir string, maxPinned int64) *syncer {
	t.Helper()
	pinned, err := cache.OpenPinned(filepath.Join(dir, "pinned"), maxPinned, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := &syncer{pinned: pinned, applied: map[string]*Index{}}
	s.Syncer = NewSyncer(Config{Edge: "e1", Dir: filepath.Join(dir, "releases"), Log: slog.New(slog.DiscardHandler),
		Apply: func(site string, x *Index) {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.applied[site] = x
		}}, pinned, nil)
	s.Load()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { s.Run(ctx, store); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return s
}

func (s *syncer) serving(site string) uint64 {
	if x := s.index(site); x != nil {
		return x.Number
	}
	return 0
}

// index is the release Apply last gave site.
func (s *syncer) index(site string) *Index {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.applied[site]
}

// TestDiskFull: a release that does not fit is not switched to; the edge
// keeps serving the one it has, reports why, and switches once there is
// room (here: after a restart with a larger bound).
func TestDiskFull(t *testing.T) {
	store := statetest.Open(t)
	dir := t.TempDir()
	small := map[string][]byte{"/a.txt": []byte("release one")}
	publish(t, store, "s", small)
	s := runSyncer(t, store, dir, 256<<10)
	testwait.Until(t, "release 1", func() bool { return s.serving("s") == 1 })
	testwait.Until(t, "settled", s.Settled)

	big := map[string][]byte{}
	for i := range 4 {
		big[fmt.Sprintf("/big-%d.bin", i)] = randomBytes(100 << 10)
	}
	publish(t, store, "s", big)
	var rep state.SiteRelease
	testwait.Until(t, "a report of the failure", func() bool {
		reps, err := store.EdgeReleases(t.Context())
		if err != nil || len(reps) == 0 {
			return false
		}
		rep = reps[0].Sites["s"]
		return rep.Error != ""
	})
	if rep.Serving != 1 || rep.Wanted != 2 || !strings.HasPrefix(rep.Error, "disk_full") {
		t.Fatalf("report %+v, want serving 1, wanted 2, a disk_full error", rep)
	}
	if s.serving("s") != 1 {
		t.Fatalf("switched to %d with release 2 not fitting", s.serving("s"))
	}
	if e, err := s.pinned.Open(push.HashOf(small["/a.txt"]), 1<<20); err != nil || string(e.Body) != "release one" {
		t.Fatalf("release 1's blob after the failed sync: %v", err)
	}
}

// TestRestartResumes: blobs pinned before a stop are not fetched again,
// the saved release is served at once on restart, and a pinned blob
// corrupted meanwhile is dropped and fetched again.
func TestRestartResumes(t *testing.T) {
	store := statetest.Open(t)
	dir := t.TempDir()
	files := map[string][]byte{"/a.bin": randomBytes(300 << 10), "/b.bin": randomBytes(1000)}
	publish(t, store, "s", files)
	ctx, cancel := context.WithCancel(t.Context())
	func() {
		pinned, _ := cache.OpenPinned(filepath.Join(dir, "pinned"), 0, nil)
		s := &syncer{pinned: pinned, applied: map[string]*Index{}}
		s.Syncer = NewSyncer(Config{Edge: "e1", Dir: filepath.Join(dir, "releases"), Log: slog.New(slog.DiscardHandler),
			Apply: func(site string, x *Index) { s.mu.Lock(); s.applied[site] = x; s.mu.Unlock() }}, pinned, nil)
		done := make(chan struct{})
		go func() { s.Run(ctx, store); close(done) }()
		testwait.Until(t, "release 1", func() bool { return s.serving("s") == 1 })
		cancel()
		<-done
	}()
	// Flip a byte of the large blob behind the edge's back.
	damagePinned(t, filepath.Join(dir, "pinned"), files["/a.bin"], len(files["/a.bin"])/2)

	s := runSyncer(t, store, dir, 0)
	if s.serving("s") != 1 {
		t.Fatalf("restart: saved release not served at once")
	}
	// The corrupt block is caught as it is read: the blob is dropped, and
	// the next sync round fetches it again.
	e, err := s.index("s").files["/a.bin"].Variants[0].Entry(s.pinned)
	if err == nil {
		_, err = e.Disk.WriteTo(&bytes.Buffer{})
		e.Release()
	}
	if err == nil {
		t.Fatal("a flipped byte in a pinned blob was served")
	}
	testwait.Until(t, "the corrupt blob fetched again", func() bool { return s.pinned.Has(push.HashOf(files["/a.bin"])) })
	testwait.Until(t, "a good copy", func() bool {
		e, err := s.index("s").files["/a.bin"].Variants[0].Entry(s.pinned)
		if err != nil {
			return false
		}
		defer e.Release()
		var buf bytes.Buffer
		_, err = e.Disk.WriteTo(&buf)
		return err == nil && bytes.Equal(buf.Bytes(), files["/a.bin"])
	})
}

// TestSwitchKeepsHeldBodies: a release that changes one file reads only
// that file; bodies the serving release holds are taken over as they are,
// even if their files were since damaged on disk.
func TestSwitchKeepsHeldBodies(t *testing.T) {
	store := statetest.Open(t)
	dir := t.TempDir()
	files := map[string][]byte{"/a.txt": []byte("unchanged a"), "/b.txt": []byte("unchanged b"), "/c.txt": []byte("version 1")}
	publish(t, store, "s", files)
	s := runSyncer(t, store, dir, 0)
	testwait.Until(t, "release 1", func() bool { return s.serving("s") == 1 })
	one := s.index("s")
	// Damage a's pinned bytes: a fresh read would fail its checksum.
	damagePinned(t, filepath.Join(dir, "pinned"), files["/a.txt"], len(files["/a.txt"])-1)

	files["/c.txt"] = []byte("version 2")
	publish(t, store, "s", files)
	testwait.Until(t, "release 2", func() bool { return s.serving("s") == 2 })
	two := s.index("s")
	for _, p := range []string{"/a.txt", "/b.txt"} {
		was, is := one.files[p].Variants[0].Body, two.files[p].Variants[0].Body
		if len(is) == 0 || &was[0] != &is[0] {
			t.Errorf("%s: release 2 read its body again instead of taking release 1's", p)
		}
	}
	if got := string(two.files["/c.txt"].Variants[0].Body); got != "version 2" {
		t.Errorf("/c.txt in release 2: %q", got)
	}
}

// TestPinChecksKeptBodies: a small body fetched for a blob the edge has
// pinned already is checked before it is kept to serve, though the batch
// does not read it again.
func TestPinChecksKeptBodies(t *testing.T) {
	pinned, err := cache.OpenPinned(filepath.Join(t.TempDir(), "pinned"), 1<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	good := []byte("the pushed bytes")
	b := push.Blob{Hash: push.HashOf(good), Size: int64(len(good))}
	if err := pinned.Put(b.Hash, bytes.NewReader(good), b.Size); err != nil {
		t.Fatal(err)
	}
	s := NewSyncer(Config{Edge: "e1", Dir: t.TempDir(), Log: slog.New(slog.DiscardHandler)}, pinned, nil)
	kept := &keptBodies{m: map[string][]byte{}, budget: 1 << 20}
	batch := pinned.Batch(0, nil)
	bad := []byte("the pushed bytez")
	if err := s.pin(batch, kept, b, bytes.NewReader(bad), b.Size); !errors.Is(err, cache.ErrHashMismatch) {
		t.Fatalf("pin of a body that does not match its name = %v, want ErrHashMismatch", err)
	}
	if len(kept.m) != 0 {
		t.Fatal("a body that does not match its name was kept to serve")
	}
	if err := s.pin(batch, kept, b, bytes.NewReader(good), b.Size); err != nil || !bytes.Equal(kept.m[b.Hash], good) {
		t.Fatalf("pin of the right body: %v, kept %q", err, kept.m[b.Hash])
	}
}

// damagePinned flips byte i of a pinned blob's body where it lies on
// disk, in a file of its own or in a pack: the first file under dir that
// holds body.
func damagePinned(t *testing.T, dir string, body []byte, i int) {
	t.Helper()
	found := false
	err := filepath.WalkDir(dir, func(path string, de os.DirEntry, err error) error {
		if err != nil || de.IsDir() || found {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		at := bytes.Index(b, body)
		if at < 0 {
			return nil
		}
		found = true
		b[at+i] ^= 1
		return os.WriteFile(path, b, 0o644)
	})
	if err != nil || !found {
		t.Fatalf("damage a pinned blob of %d bytes: found %v, %v", len(body), found, err)
	}
}

// TestCollectDropsWholePacks: once a newer release is served, the blobs
// no kept release names are unpinned, and a pack all of whose blobs went
// is deleted without being copied first.
func TestCollectDropsWholePacks(t *testing.T) {
	store := statetest.Open(t)
	dir := t.TempDir()
	reg := prometheus.NewRegistry()
	pinned, err := cache.OpenPinned(filepath.Join(dir, "pinned"), 0, reg)
	if err != nil {
		t.Fatal(err)
	}
	s := &syncer{pinned: pinned, applied: map[string]*Index{}}
	s.Syncer = NewSyncer(Config{Edge: "e1", Dir: filepath.Join(dir, "releases"), Log: slog.New(slog.DiscardHandler),
		Apply: func(site string, x *Index) { s.mu.Lock(); s.applied[site] = x; s.mu.Unlock() }}, pinned, nil)
	s.Load()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { s.Run(ctx, store); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	var releases []map[string][]byte
	for i := range 3 {
		files := map[string][]byte{}
		for j := range 20 {
			files[fmt.Sprintf("/f%02d.txt", j)] = randomBytes(2000)
		}
		releases = append(releases, files)
		n := publish(t, store, "s", files)
		testwait.Until(t, fmt.Sprintf("release %d", i+1), func() bool { return s.serving("s") == n })
	}
	testwait.Until(t, "release 1's blobs unpinned", func() bool {
		for _, b := range releases[0] {
			if pinned.Has(push.HashOf(b)) {
				return false
			}
		}
		return true
	})
	for _, files := range releases[1:] {
		for p, b := range files {
			if !pinned.Has(push.HashOf(b)) {
				t.Errorf("%s of a kept release unpinned", p)
			}
		}
	}
	if packs, _ := os.ReadDir(filepath.Join(dir, "pinned", "packs")); len(packs) != 2 {
		t.Errorf("%d packs after release 1 was collected, want 2 (releases 2 and 3)", len(packs))
	}
	if n := counterSum(t, reg, "cdn_edge_pinned_compactions_total"); n != 0 {
		t.Errorf("%v compactions: a pack emptied whole was copied", n)
	}
}

// counterSum sums a counter family's values in reg (0 when it has none).
func counterSum(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}
