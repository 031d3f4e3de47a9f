package cache

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// openPinned opens the pinned store in dir, bounded by maxBytes.
func openPinned(t testing.TB, dir string, maxBytes int64) *Pinned {
	t.Helper()
	p, err := OpenPinned(dir, maxBytes, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func blobOf(n int) (string, []byte) {
	b := make([]byte, n)
	rand.Read(b)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), b
}

// TestPinBatchSyncOrder: no blob of a batch is named in blobs/ before the
// first sync, every one is by the second, and only then pinned.
func TestPinBatchSyncOrder(t *testing.T) {
	p := openPinned(t, t.TempDir(), 0)
	blobs := map[string][]byte{}
	for range 20 {
		h, b := blobOf(3000)
		blobs[h] = b
	}
	visible := func() (n int) {
		for h := range blobs {
			if _, err := os.Stat(p.path(h)); err == nil {
				n++
			}
		}
		return n
	}
	var seen []int
	p.syncFS = func(dir string) error {
		seen = append(seen, visible())
		return syncFileSystem(dir)
	}
	batch := p.Batch(0, nil)
	for h, b := range blobs {
		if err := batch.Put(h, bytes.NewReader(b), int64(len(b))); err != nil {
			t.Fatal(err)
		}
		if p.Has(h) {
			t.Fatalf("blob %s pinned before Commit", h[:8])
		}
	}
	if err := batch.Commit(); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 2 || seen[0] != 0 || seen[1] != len(blobs) {
		t.Errorf("blobs named at each sync: %v, want [0 %d]", seen, len(blobs))
	}
	for h, b := range blobs {
		e, err := p.Open(h, 1<<20)
		if err != nil || !bytes.Equal(e.Body, b) {
			t.Fatalf("open %s after Commit: %v", h[:8], err)
		}
		e.Release()
	}
}

// TestPinBatchNotCommitted: a batch abandoned (a crash) or aborted pins
// nothing, leaves nothing after a reopen, and gives its space back.
func TestPinBatchNotCommitted(t *testing.T) {
	for _, abort := range []bool{false, true} {
		dir := t.TempDir()
		p := openPinned(t, dir, 1<<20)
		kept, kb := blobOf(1000)
		if err := p.Put(kept, bytes.NewReader(kb), 1000); err != nil {
			t.Fatal(err)
		}
		before := p.Bytes()
		batch := p.Batch(0, nil)
		var put []string
		for range 5 {
			h, b := blobOf(10_000)
			if err := batch.Put(h, bytes.NewReader(b), int64(len(b))); err != nil {
				t.Fatal(err)
			}
			put = append(put, h)
		}
		if abort {
			batch.Abort()
			if p.Bytes() != before {
				t.Errorf("after Abort: %d bytes reserved, want %d", p.Bytes(), before)
			}
		}
		// Reopened as after a crash (or a restart after the abort).
		q := openPinned(t, dir, 1<<20)
		for _, h := range put {
			if q.Has(h) {
				t.Errorf("abort=%v: blob %s pinned after a reopen without Commit", abort, h[:8])
			}
		}
		if !q.Has(kept) || q.Len() != 1 {
			t.Errorf("abort=%v: reopened store has %d blobs, want only the one pinned before", abort, q.Len())
		}
		if left, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(left) != 0 {
			t.Errorf("abort=%v: %d temp files left", abort, len(left))
		}
	}
}

// TestPinBatchPut: Put fails on bad bytes and a full bound, keeping
// nothing of that blob, and takes a blob twice once.
func TestPinBatchPut(t *testing.T) {
	p := openPinned(t, t.TempDir(), 64<<10)
	batch := p.Batch(0, nil)
	defer batch.Abort()
	h, b := blobOf(1000)
	other, _ := blobOf(1000)
	big, bb := blobOf(100 << 10)
	// A name that is not h's: two of its digits changed (to "11" when they
	// were "00", or the short body would be Put under h, pinned already).
	notH := h[:10] + "00" + h[12:]
	if notH == h {
		notH = h[:10] + "11" + h[12:]
	}
	tests := []struct {
		name    string
		hash    string
		body    []byte
		size    int64
		wantErr error
	}{
		{name: "good", hash: h, body: b, size: 1000},
		{name: "again", hash: h, body: b, size: 1000},
		{name: "bytes of another", hash: other, body: b, size: 1000, wantErr: ErrHashMismatch},
		{name: "short", hash: notH, body: b[:999], size: 1000, wantErr: ErrHashMismatch},
		{name: "over the bound", hash: big, body: bb, size: int64(len(bb)), wantErr: ErrPinnedFull},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := batch.Put(tt.hash, bytes.NewReader(tt.body), tt.size); !errors.Is(err, tt.wantErr) {
				t.Errorf("Put = %v, want %v", err, tt.wantErr)
			}
		})
	}
	if batch.Len() != 1 {
		t.Errorf("batch holds %d blobs, want 1", batch.Len())
	}
	if err := batch.Commit(); err != nil {
		t.Fatal(err)
	}
	if !p.Has(h) || p.Len() != 1 {
		t.Errorf("after Commit: %d pinned, want the good one", p.Len())
	}
	if left, _ := os.ReadDir(p.tmpDir); len(left) != 0 {
		t.Errorf("%d temp files left", len(left))
	}
}

// TestPinBatchPutBytes: a body in memory is pinned as Put pins a reader,
// and is checked against its name even when the blob is pinned already
// (its caller keeps it to serve).
func TestPinBatchPutBytes(t *testing.T) {
	p := openPinned(t, t.TempDir(), 64<<10)
	batch := p.Batch(0, nil)
	defer batch.Abort()
	h, b := blobOf(1000)
	other, _ := blobOf(1000)
	big, bb := blobOf(100 << 10)
	tests := []struct {
		name    string
		hash    string
		body    []byte
		wantErr error
	}{
		{name: "good", hash: h, body: b},
		{name: "again", hash: h, body: b},
		{name: "bytes of another", hash: other, body: b, wantErr: ErrHashMismatch},
		{name: "wrong bytes for a blob held", hash: h, body: b[:999], wantErr: ErrHashMismatch},
		{name: "over the bound", hash: big, body: bb, wantErr: ErrPinnedFull},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := batch.PutBytes(tt.hash, tt.body); !errors.Is(err, tt.wantErr) {
				t.Errorf("PutBytes = %v, want %v", err, tt.wantErr)
			}
		})
	}
	if err := batch.Commit(); err != nil {
		t.Fatal(err)
	}
	e, err := p.Open(h, 1<<20)
	if err != nil || !bytes.Equal(e.Body, b) {
		t.Fatalf("Open of the pinned blob: %d bytes, %v", len(e.Body), err)
	}
	e.Release()
	if err := p.Batch(0, nil).PutBytes(h, b[1:]); !errors.Is(err, ErrHashMismatch) {
		t.Errorf("PutBytes of wrong bytes for a pinned blob = %v, want ErrHashMismatch", err)
	}
}

// TestPinBatchFlush: a batch commits by itself once its flush size is
// waiting, and tells of each commit.
func TestPinBatchFlush(t *testing.T) {
	p := openPinned(t, t.TempDir(), 0)
	var commits []int
	batch := p.Batch(25_000, func(blobs int, _ int64) { commits = append(commits, blobs) })
	defer batch.Abort()
	var hashes []string
	for range 5 {
		h, b := blobOf(10_000)
		if err := batch.Put(h, bytes.NewReader(b), int64(len(b))); err != nil {
			t.Fatal(err)
		}
		hashes = append(hashes, h)
	}
	// 30,000 bytes after the third blob: those three are pinned.
	for i, h := range hashes {
		if got, want := p.Has(h), i < 3; got != want {
			t.Errorf("blob %d pinned = %v before Commit, want %v", i, got, want)
		}
	}
	if err := batch.Commit(); err != nil {
		t.Fatal(err)
	}
	if len(commits) != 2 || commits[0] != 3 || commits[1] != 2 {
		t.Errorf("commits of %v blobs, want [3 2]", commits)
	}
}
