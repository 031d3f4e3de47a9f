package release

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/selfcdn/cdn/edge/cache"
	"github.com/selfcdn/cdn/internal/natstest"
	"github.com/selfcdn/cdn/internal/state"
	"github.com/selfcdn/cdn/internal/testwait"
	"github.com/selfcdn/cdn/push"
)

// The crash test runs an edge's syncer in a child process (this test
// binary again, running TestCrashMidPinChild) and kills it with SIGKILL
// while it pins a release's blobs.
const (
	crashEnvURL = "RELEASE_CRASH_NATS_URL"
	crashEnvDir = "RELEASE_CRASH_DIR"
)

// TestCrashMidPin: an edge killed while it pins release 2 restarts
// serving release 1 at once, with none of release 2's blobs taken for
// pinned (they were never synced as a whole), and then syncs release 2.
func TestCrashMidPin(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	srv := natstest.Start(t, "", "")
	store, err := state.Open(t.Context(), natstest.Connect(t, srv.URL), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	one := map[string][]byte{"/a.txt": []byte("release one")}
	publish(t, store, "s", one)
	func() { // release 1 pinned and saved by a clean run
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		s := newTestSyncer(t, dir)
		done := make(chan struct{})
		go func() { s.Run(ctx, store); close(done) }()
		testwait.Until(t, "release 1", func() bool { return s.serving("s") == 1 })
		cancel()
		<-done
	}()
	two := map[string][]byte{"/a.txt": []byte("release two")}
	for i := range 40 {
		two[fmt.Sprintf("/f%02d.bin", i)] = randomBytes(20 << 10)
	}
	publish(t, store, "s", two)

	child := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestCrashMidPinChild$", "-test.v")
	child.Env = append(os.Environ(), crashEnvURL+"="+srv.URL, crashEnvDir+"="+dir)
	var out bytes.Buffer
	child.Stdout, child.Stderr = &out, &out
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(dir, "mid-pin")
	testwait.Until(t, "the child pinning release 2", func() bool { _, err := os.Stat(marker); return err == nil })
	child.Process.Kill() // SIGKILL: no deferred cleanup runs
	child.Wait()
	tmps, _ := os.ReadDir(filepath.Join(dir, "pinned", "tmp"))
	t.Logf("killed mid-pin with %d temp files (blobs, packs) written and not synced", len(tmps))

	s := newTestSyncer(t, dir)
	for p, b := range two {
		if p != "/a.txt" && s.pinned.Has(push.HashOf(b)) {
			t.Errorf("%s of release 2 is pinned after a crash before its batch was synced", p)
		}
	}
	if left, _ := os.ReadDir(filepath.Join(dir, "pinned", "tmp")); len(left) != 0 {
		t.Errorf("%d unfinished writes left after the restart", len(left))
	}
	if s.serving("s") != 1 {
		t.Fatalf("restart serves release %d, want the saved release 1 at once\nchild:\n%s", s.serving("s"), out.String())
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { s.Run(ctx, store); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	testwait.Until(t, "release 2", func() bool { return s.serving("s") == 2 })
	for p, b := range two {
		e, err := s.index("s").files[p].Variants[0].Entry(s.pinned)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		got := e.Body
		if e.Disk != nil {
			var buf bytes.Buffer
			_, err = e.Disk.WriteTo(&buf)
			got = buf.Bytes()
		}
		e.Release()
		if err != nil || !bytes.Equal(got, b) {
			t.Errorf("%s after the restart: %d bytes, %v; want its %d bytes", p, len(got), err, len(b))
		}
	}
}

// TestCrashMidPinChild is the edge TestCrashMidPin kills: it syncs until
// it has fetched part of release 2, says so, and waits to be killed.
func TestCrashMidPinChild(t *testing.T) {
	url, dir := os.Getenv(crashEnvURL), os.Getenv(crashEnvDir)
	if url == "" {
		t.Skip("run by TestCrashMidPin")
	}
	store, err := state.Open(t.Context(), natstest.Connect(t, url), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := newTestSyncer(t, dir)
	if s.serving("s") != 1 {
		t.Fatalf("child: saved release 1 not served at start")
	}
	src := &stallingSource{Store: store, after: 20, marker: filepath.Join(dir, "mid-pin")}
	s.Run(t.Context(), src) // until killed
}

// stallingSource serves blobs until after of them were opened, then
// marks the moment and blocks every further read until the process dies.
type stallingSource struct {
	*state.Store
	after  int64
	marker string
	opened atomic.Int64
}

func (s *stallingSource) OpenBlob(ctx context.Context, hash string) (io.ReadCloser, int64, error) {
	if err := s.stall(ctx); err != nil {
		return nil, 0, err
	}
	return s.Store.OpenBlob(ctx, hash)
}

// FetchBlobs stalls in the middle of a batch, as OpenBlob does.
func (s *stallingSource) FetchBlobs(ctx context.Context, hashes []string, f state.BlobFunc) error {
	return s.Store.FetchBlobs(ctx, hashes, func(hash string, r io.Reader, size int64) error {
		if err := s.stall(ctx); err != nil {
			return err
		}
		return f(hash, r, size)
	})
}

func (s *stallingSource) stall(ctx context.Context) error {
	if s.opened.Add(1) > s.after {
		os.WriteFile(s.marker, nil, 0o644)
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

// newTestSyncer opens the syncer of an edge whose data is in dir, with
// its saved releases loaded, not yet running.
func newTestSyncer(t *testing.T, dir string) *syncer {
	t.Helper()
	pinned, err := cache.OpenPinned(filepath.Join(dir, "pinned"), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := &syncer{pinned: pinned, applied: map[string]*Index{}}
	s.Syncer = NewSyncer(Config{Edge: "e1", Dir: filepath.Join(dir, "releases"), Log: slog.New(slog.NewTextHandler(t.Output(), nil)),
		Apply: func(site string, x *Index) { s.mu.Lock(); s.applied[site] = x; s.mu.Unlock() }}, pinned, nil)
	s.Load()
	return s
}
