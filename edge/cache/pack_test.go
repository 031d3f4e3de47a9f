package cache

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// pinPacked pins blobs of the given sizes with PutBytes in one batch and
// returns them by hash.
func pinPackedBlobs(t *testing.T, p *Pinned, sizes ...int) map[string][]byte {
	t.Helper()
	blobs := map[string][]byte{}
	batch := p.Batch(0, nil)
	defer batch.Abort()
	for _, n := range sizes {
		h, b := blobOf(n)
		blobs[h] = b
		if err := batch.PutBytes(h, b); err != nil {
			t.Fatal(err)
		}
	}
	if err := batch.Commit(); err != nil {
		t.Fatal(err)
	}
	return blobs
}

func dirLen(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	filepath.WalkDir(dir, func(_ string, de os.DirEntry, err error) error {
		if err == nil && !de.IsDir() {
			n++
		}
		return nil
	})
	return n
}

func packBytes(t *testing.T, p *Pinned) int64 {
	t.Helper()
	var n int64
	des, _ := os.ReadDir(p.packDir)
	for _, de := range des {
		info, err := de.Info()
		if err != nil {
			t.Fatal(err)
		}
		n += info.Size()
	}
	return n
}

// readPinned reads blob h whole, through the inline path when inline is
// set, else from disk as a DiskBody.
func readPinned(p *Pinned, h string, inline bool) ([]byte, error) {
	max := int64(0)
	if inline {
		max = 1 << 30
	}
	e, err := p.Open(h, max)
	if err != nil {
		return nil, err
	}
	defer e.Release()
	if e.Disk == nil {
		return e.Body, nil
	}
	var buf bytes.Buffer
	_, err = e.Disk.WriteTo(&buf)
	return buf.Bytes(), err
}

// TestPackedBlobs: blobs put from memory land in one pack, no file each,
// and read back whole, inline or from disk, before and after a restart.
func TestPackedBlobs(t *testing.T) {
	dir := t.TempDir()
	p := openPinned(t, dir, 0)
	blobs := pinPackedBlobs(t, p, 0, 1, 1000, blockSize, blockSize+1, 3*blockSize+7)
	if n := dirLen(t, p.dir); n != 0 {
		t.Errorf("%d files in blobs/, want none", n)
	}
	if n := dirLen(t, p.packDir); n != 1 {
		t.Errorf("%d packs, want 1", n)
	}
	if got, want := p.Bytes(), packBytes(t, p); got != want {
		t.Errorf("Bytes = %d, packs hold %d", got, want)
	}
	check := func(p *Pinned) {
		t.Helper()
		if p.Len() != len(blobs) {
			t.Errorf("%d pinned, want %d", p.Len(), len(blobs))
		}
		for h, b := range blobs {
			for _, inline := range []bool{true, false} {
				got, err := readPinned(p, h, inline)
				if err != nil || !bytes.Equal(got, b) {
					t.Errorf("blob of %d bytes (inline %v): %d bytes, %v", len(b), inline, len(got), err)
				}
			}
		}
	}
	check(p)
	again := openPinned(t, dir, 0)
	check(again)
	if again.Bytes() != p.Bytes() {
		t.Errorf("after a restart Bytes = %d, was %d", again.Bytes(), p.Bytes())
	}
}

// TestPackSyncOrder: a pack is named in packs/ only after the first sync,
// and its blobs are pinned only after the second.
func TestPackSyncOrder(t *testing.T) {
	p := openPinned(t, t.TempDir(), 0)
	var hashes []string
	type seen struct{ packs, pinned int }
	var at []seen
	p.syncFS = func(dir string) error {
		s := seen{packs: dirLen(t, p.packDir)}
		for _, h := range hashes {
			if p.Has(h) {
				s.pinned++
			}
		}
		at = append(at, s)
		return syncFileSystem(dir)
	}
	batch := p.Batch(0, nil)
	for range 20 {
		h, b := blobOf(3000)
		hashes = append(hashes, h)
		if err := batch.PutBytes(h, b); err != nil {
			t.Fatal(err)
		}
	}
	if err := batch.Commit(); err != nil {
		t.Fatal(err)
	}
	if len(at) != 2 || at[0] != (seen{0, 0}) || at[1] != (seen{1, 20}) {
		t.Errorf("packs and pinned blobs at each sync: %v, want [{0 0} {1 20}]", at)
	}
}

// TestPackAbort: an aborted or failed batch leaves no pack and no
// reserved bytes.
func TestPackAbort(t *testing.T) {
	p := openPinned(t, t.TempDir(), 0)
	batch := p.Batch(0, nil)
	h, b := blobOf(5000)
	if err := batch.PutBytes(h, b); err != nil {
		t.Fatal(err)
	}
	batch.Abort()
	if err := batch.PutBytes(blobOf(10)); err != nil {
		t.Fatal(err)
	}
	if p.Has(h) || p.Bytes() != 0 || dirLen(t, p.tmpDir) != 0 || dirLen(t, p.packDir) != 0 {
		t.Errorf("after Abort: pinned %v, %d bytes, %d temp files, %d packs", p.Has(h), p.Bytes(), dirLen(t, p.tmpDir), dirLen(t, p.packDir))
	}
	failing := p.Batch(0, nil)
	if err := failing.PutBytes(h, b); err != nil {
		t.Fatal(err)
	}
	p.syncFS = func(string) error { return errors.New("disk gone") }
	if err := failing.Commit(); err == nil {
		t.Fatal("Commit with a failing sync succeeded")
	}
	if p.Has(h) || p.Bytes() != 0 || dirLen(t, p.tmpDir) != 0 || dirLen(t, p.packDir) != 0 {
		t.Errorf("after a failed Commit: pinned %v, %d bytes, %d temp files, %d packs", p.Has(h), p.Bytes(), dirLen(t, p.tmpDir), dirLen(t, p.packDir))
	}
}

// TestPackRemoveCompacts: removing blobs leaves their bytes in the pack;
// Compact moves the live ones of a mostly dead pack to a new pack and
// the old one goes, and leaves a pack that is mostly live alone.
// Removing the last blob of a pack deletes it.
func TestPackRemoveCompacts(t *testing.T) {
	dir := t.TempDir()
	p := openPinned(t, dir, 0)
	sizes := make([]int, 10)
	for i := range sizes {
		sizes[i] = 10_000
	}
	blobs := pinPackedBlobs(t, p, sizes...)
	var hashes []string
	for h := range blobs {
		hashes = append(hashes, h)
	}
	full := packBytes(t, p)
	for _, h := range hashes[:4] {
		p.Remove(h)
	}
	p.Compact()
	if got := packBytes(t, p); got != full || p.Bytes() != full {
		t.Errorf("4 of 10 removed and Compact: packs hold %d, Bytes %d; want the whole pack, %d", got, p.Bytes(), full)
	}
	for _, h := range hashes[4:6] {
		p.Remove(h)
	}
	if got := packBytes(t, p); got != full {
		t.Errorf("6 of 10 removed, before Compact: packs hold %d, want the whole pack, %d", got, full)
	}
	p.Compact()
	if got := packBytes(t, p); got >= full/2 || p.Bytes() != got || dirLen(t, p.packDir) != 1 {
		t.Errorf("6 of 10 removed: %d packs holding %d bytes, Bytes %d; want one pack of 4 blobs", dirLen(t, p.packDir), got, p.Bytes())
	}
	if n := testutil.ToFloat64(p.compactions.WithLabelValues("ok")); n != 1 {
		t.Errorf("cdn_edge_pinned_compactions_total{result=ok} = %v, want 1", n)
	}
	for _, h := range hashes[:6] {
		if p.Has(h) {
			t.Errorf("removed blob %s still pinned", h[:8])
		}
	}
	for _, h := range hashes[6:] {
		if got, err := readPinned(p, h, true); err != nil || !bytes.Equal(got, blobs[h]) {
			t.Errorf("blob kept through compaction: %d bytes, %v", len(got), err)
		}
	}
	again := openPinned(t, dir, 0)
	if again.Len() != 4 || again.Bytes() != p.Bytes() {
		t.Errorf("after a restart: %d blobs, %d bytes; want 4, %d", again.Len(), again.Bytes(), p.Bytes())
	}
	for _, h := range hashes[6:] {
		p.Remove(h)
	}
	if p.Bytes() != 0 || dirLen(t, p.packDir) != 0 {
		t.Errorf("all removed: %d bytes, %d packs", p.Bytes(), dirLen(t, p.packDir))
	}
}

// TestPackDamage: a flipped byte in a packed blob fails its read and
// drops that blob alone; a pack torn at a restart keeps the records
// before the tear; a record found in two packs is pinned once.
func TestPackDamage(t *testing.T) {
	dir := t.TempDir()
	p := openPinned(t, dir, 0)
	blobs := pinPackedBlobs(t, p, 5000, 5000, 5000, 5000)
	des, _ := os.ReadDir(p.packDir)
	packPath := filepath.Join(p.packDir, des[0].Name())
	raw, err := os.ReadFile(packPath)
	if err != nil {
		t.Fatal(err)
	}
	var victim string
	for h, b := range blobs {
		victim = h
		raw[bytes.Index(raw, b)+100] ^= 1
		break
	}
	if err := os.WriteFile(packPath, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readPinned(p, victim, true); !errors.Is(err, ErrCorrupt) {
		t.Errorf("read of a damaged packed blob: %v, want ErrCorrupt", err)
	}
	if p.Has(victim) || p.Len() != 3 {
		t.Errorf("after the damaged read: victim pinned %v, %d pinned; want 3", p.Has(victim), p.Len())
	}

	// Torn: the pack cut in the middle of its third record.
	recs := scanPack(bytes.NewReader(raw), "", int64(len(raw)))
	if len(recs) != 4 {
		t.Fatalf("%d records in the pack, want 4", len(recs))
	}
	third := recs[2].loc
	if err := os.Truncate(packPath, third.off+third.size/2); err != nil {
		t.Fatal(err)
	}
	torn := openPinned(t, dir, 0)
	for i, r := range recs {
		if torn.Has(r.hash) != (i < 2) {
			t.Errorf("record %d of a pack torn in its third: pinned %v", i, torn.Has(r.hash))
		}
		if i < 2 && r.hash != victim {
			if got, err := readPinned(torn, r.hash, true); err != nil || !bytes.Equal(got, blobs[r.hash]) {
				t.Errorf("record %d, before the tear: %d bytes, %v", i, len(got), err)
			}
		}
	}

	// Two copies of one pack (a compaction cut off before its delete).
	if err := os.WriteFile(filepath.Join(p.packDir, "copy.pack"), raw[:third.off], 0o644); err != nil {
		t.Fatal(err)
	}
	twice := openPinned(t, dir, 0)
	if twice.Len() != 2 || twice.Bytes() != packBytes(t, twice) {
		t.Errorf("with a pack copied: %d blobs, Bytes %d; want 2, %d", twice.Len(), twice.Bytes(), packBytes(t, twice))
	}
	for _, h := range twice.Hashes() {
		twice.Remove(h)
	}
	if dirLen(t, twice.packDir) != 0 || twice.Bytes() != 0 {
		t.Errorf("all removed: %d packs, %d bytes left", dirLen(t, twice.packDir), twice.Bytes())
	}
}

// TestPackConcurrentPuts: PutBytes from many goroutines with commits on
// the way (a small flush size) pins every blob once, each readable.
func TestPackConcurrentPuts(t *testing.T) {
	p := openPinned(t, t.TempDir(), 0)
	batch := p.Batch(50_000, nil)
	defer batch.Abort()
	blobs := map[string][]byte{}
	for range 64 {
		h, b := blobOf(4000)
		blobs[h] = b
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8*len(blobs))
	for range 8 {
		wg.Go(func() {
			for h, b := range blobs {
				errs <- batch.PutBytes(h, b)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := batch.Commit(); err != nil {
		t.Fatal(err)
	}
	if p.Len() != len(blobs) || p.Bytes() != packBytes(t, p) {
		t.Errorf("%d pinned, Bytes %d, packs %d; want %d pinned and Bytes = packs", p.Len(), p.Bytes(), packBytes(t, p), len(blobs))
	}
	for h, b := range blobs {
		if got, err := readPinned(p, h, true); err != nil || !bytes.Equal(got, b) {
			t.Fatalf("blob %s: %d bytes, %v", h[:8], len(got), err)
		}
	}
}

// FuzzScanPack: any bytes as a pack give records that lie inside it,
// one after another, each naming a blob.
func FuzzScanPack(f *testing.F) {
	p := openPinned(f, f.TempDir(), 0)
	w, err := newPackWriter(p.tmpDir)
	if err != nil {
		f.Fatal(err)
	}
	for _, n := range []int{0, 10, 3000} {
		h, b := blobOf(n)
		if _, _, err := w.append([]byte(`{"key":"`+h+`","status":200}`), b); err != nil {
			f.Fatal(err)
		}
	}
	w.f.Close()
	seed, _ := os.ReadFile(w.f.Name())
	f.Add(seed)
	f.Add(seed[:len(seed)-1])
	f.Add([]byte("CDNo"))
	f.Fuzz(func(t *testing.T, data []byte) {
		recs := scanPack(bytes.NewReader(data), "x.pack", int64(len(data)))
		next := int64(0)
		for _, r := range recs {
			if r.loc.off != next || r.loc.size <= 0 || r.loc.off+r.loc.size > int64(len(data)) || !validName(r.hash) {
				t.Fatalf("record %+v after offset %d of %d bytes", r, next, len(data))
			}
			next += r.loc.size
		}
	})
}
