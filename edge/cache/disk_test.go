package cache

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/selfcdn/cdn/edge/freshness"
)

func openTestDisk(t *testing.T, dir string, maxBytes int64) *Disk {
	t.Helper()
	d, err := OpenDisk(DiskConfig{Dir: dir, MaxBytes: maxBytes}, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func testEntry(body []byte) *Entry {
	meta := freshness.Meta{Lifetime: time.Hour, ResponseTime: time.Now().Truncate(time.Second)}
	return NewEntry(200, http.Header{"Etag": {`"v1"`}, "Content-Type": {"text/plain"}}, body, meta, nil)
}

func randomBody(n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(uint64(n), 1))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// readAll reads an entry's body whichever way it is held.
func readAll(t *testing.T, e *Entry) ([]byte, error) {
	t.Helper()
	if e.Disk == nil {
		return e.Body, nil
	}
	var buf bytes.Buffer
	_, err := e.Disk.WriteTo(&buf)
	return buf.Bytes(), err
}

func TestDiskPutGet(t *testing.T) {
	d := openTestDisk(t, t.TempDir(), 64<<20)
	tests := []struct {
		name      string
		size      int
		inlineMax int64
		wantDisk  bool
	}{
		{name: "empty body", size: 0, inlineMax: 1 << 20},
		{name: "small, inline", size: 1000, inlineMax: 1 << 20},
		{name: "above the first read, inline", size: 200 << 10, inlineMax: 1 << 20},
		{name: "large, left on disk", size: 3*blockSize + 17, inlineMax: 100_000, wantDisk: true},
		{name: "exact blocks, left on disk", size: 4 * blockSize, inlineMax: 1000, wantDisk: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := randomBody(tt.size)
			key := "https://example.com/" + tt.name
			if err := d.Put(key, testEntry(body), nil); err != nil {
				t.Fatal(err)
			}
			e, ok := d.Get(key, tt.inlineMax)
			if !ok {
				t.Fatal("Get after Put missed")
			}
			defer e.Release()
			if (e.Disk != nil) != tt.wantDisk {
				t.Errorf("Disk body = %v, want %v", e.Disk != nil, tt.wantDisk)
			}
			if e.Status != 200 || e.Header.Get("Etag") != `"v1"` || e.Meta.Lifetime != time.Hour {
				t.Errorf("entry = status %d etag %q lifetime %v; want what was stored", e.Status, e.Header.Get("Etag"), e.Meta.Lifetime)
			}
			got, err := readAll(t, e)
			if err != nil || !bytes.Equal(got, body) {
				t.Errorf("body: %d bytes, err %v; want the %d stored bytes", len(got), err, len(body))
			}
			if e.Size() != int64(tt.size) {
				t.Errorf("Size() = %d, want %d", e.Size(), tt.size)
			}
		})
	}
	if _, ok := d.Get("https://example.com/never", 1<<20); ok {
		t.Error("Get of a key never stored hit")
	}
}

func TestDiskBodyReadAt(t *testing.T) {
	d := openTestDisk(t, t.TempDir(), 64<<20)
	body := randomBody(3*blockSize + 100)
	d.Put("k", testEntry(body), nil)
	e, ok := d.Get("k", 0)
	if !ok || e.Disk == nil {
		t.Fatal("large object not found as a disk body")
	}
	defer e.Release()
	for _, rg := range [][2]int64{{0, 10}, {blockSize - 5, 10}, {blockSize, blockSize}, {2*blockSize + 3, blockSize + 97}, {int64(len(body)) - 1, 1}} {
		p := make([]byte, rg[1])
		n, err := e.Disk.ReadAt(p, rg[0])
		if err != nil || !bytes.Equal(p[:n], body[rg[0]:rg[0]+rg[1]]) {
			t.Errorf("ReadAt(off %d, len %d) = %d, %v; want the stored bytes", rg[0], rg[1], n, err)
		}
	}
	p := make([]byte, 10)
	if n, err := e.Disk.ReadAt(p, int64(len(body))-4); n != 4 || err != io.EOF {
		t.Errorf("ReadAt across the end = %d, %v; want 4, EOF", n, err)
	}
}

func TestDiskSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	d := openTestDisk(t, dir, 64<<20)
	bodies := map[string][]byte{}
	for i := range 50 {
		key := "https://example.com/" + string(rune('a'+i%26)) + "/" + time.Duration(i).String()
		bodies[key] = randomBody(100 + i*1000)
		if err := d.Put(key, testEntry(bodies[key]), nil); err != nil {
			t.Fatal(err)
		}
	}
	d.Delete("https://example.com/a/0s")
	delete(bodies, "https://example.com/a/0s")
	d.Close()

	d2 := openTestDisk(t, dir, 64<<20)
	if d2.Len() != len(bodies) {
		t.Errorf("objects after restart = %d, want %d", d2.Len(), len(bodies))
	}
	for key, body := range bodies {
		e, ok := d2.Get(key, 1<<20)
		if !ok || !bytes.Equal(e.Body, body) {
			t.Errorf("after restart, %s: found %v, want the stored body", key, ok)
		}
	}
	if _, ok := d2.Get("https://example.com/a/0s", 1<<20); ok {
		t.Error("a deleted object came back after restart")
	}
}

// TestDiskCorruption damages object files behind the tier's back: every
// damage must be detected, never served, and the object dropped.
func TestDiskCorruption(t *testing.T) {
	small := randomBody(5000)
	large := randomBody(3*blockSize + 10)
	tests := []struct {
		name       string
		body       []byte
		damage     func(path string) error
		notCorrupt bool
	}{
		{name: "truncated", body: small, damage: func(p string) error { return os.Truncate(p, 100) }},
		{name: "truncated by one byte", body: small, damage: func(p string) error { st, _ := os.Stat(p); return os.Truncate(p, st.Size()-1) }},
		{name: "empty", body: small, damage: func(p string) error { return os.Truncate(p, 0) }},
		{name: "removed (a miss, not damage)", body: small, damage: os.Remove, notCorrupt: true},
		{name: "body bit flipped", body: small, damage: flipAt(-objTrailerSize - 4 - 100)},
		{name: "header bit flipped", body: small, damage: flipAt(17)},
		{name: "meta bit flipped", body: small, damage: flipAt(objHeaderSize + 3)},
		{name: "trailer bit flipped", body: small, damage: flipAt(-2)},
		{name: "grown", body: small, damage: func(p string) error {
			f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.Write([]byte("x"))
			return err
		}},
		{name: "large, first block flipped", body: large, damage: flipAt(objHeaderSize + 400)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := openTestDisk(t, t.TempDir(), 64<<20)
			d.Put("k", testEntry(tt.body), nil)
			if err := tt.damage(d.path(keyHash("k"))); err != nil {
				t.Fatal(err)
			}
			e, ok := d.Get("k", 1<<20)
			if ok {
				got, err := readAll(t, e)
				e.Release()
				if err == nil || bytes.Equal(got, tt.body) && err == nil {
					t.Fatalf("damaged object served whole: %d bytes, err %v", len(got), err)
				}
			}
			if d.Len() != 0 {
				t.Errorf("damaged object still indexed")
			}
			want := 1.0
			if tt.notCorrupt {
				want = 0
			}
			if n := testutil.ToFloat64(d.metrics.corrupt); n != want {
				t.Errorf("corrupt counter = %v, want %v", n, want)
			}
		})
	}
}

// TestDiskLargeBodyFlippedMidStream flips a bit in a later block of a disk
// body: the read fails at that block, before a wrong byte is returned.
func TestDiskLargeBodyFlippedMidStream(t *testing.T) {
	d := openTestDisk(t, t.TempDir(), 64<<20)
	body := randomBody(4 * blockSize)
	d.Put("k", testEntry(body), nil)
	e, ok := d.Get("k", 0)
	if !ok {
		t.Fatal("object not found")
	}
	defer e.Release()
	f, _ := os.OpenFile(d.path(keyHash("k")), os.O_RDWR, 0)
	off := e.Disk.obj.off + 2*blockSize + 1000
	b := []byte{0}
	f.ReadAt(b, off)
	b[0] ^= 0x10
	f.WriteAt(b, off)
	f.Close()
	var buf bytes.Buffer
	n, err := e.Disk.WriteTo(&buf)
	if !errors.Is(err, ErrCorrupt) || n != 2*blockSize || !bytes.Equal(buf.Bytes(), body[:n]) {
		t.Errorf("WriteTo = %d bytes, %v; want the 2 good blocks, then ErrCorrupt", n, err)
	}
	if d.Len() != 0 {
		t.Error("corrupt object still indexed")
	}
}

func flipAt(off int64) func(string) error {
	return func(p string) error {
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		if off < 0 {
			st, _ := f.Stat()
			off += st.Size()
		}
		b := []byte{0}
		if _, err := f.ReadAt(b, off); err != nil {
			return err
		}
		b[0] ^= 0x01
		_, err = f.WriteAt(b, off)
		return err
	}
}

// TestDiskEvictionBound fills the tier past its size with objects each
// asked for more often than the last: the index and the files on disk stay
// under the bound, and the newest objects are kept.
func TestDiskEvictionBound(t *testing.T) {
	dir := t.TempDir()
	const limit = 1 << 20
	d := openTestDisk(t, dir, limit)
	for i := range 200 {
		key := "k" + time.Duration(i).String()
		for range 1 + i/20 {
			d.Get(key, 0) // a miss, counted for admission
		}
		if err := d.Put(key, testEntry(randomBody(10_000)), nil); err != nil && (i < 100 || !errors.Is(err, ErrNotAdmitted)) {
			t.Fatalf("put %d: %v", i, err)
		}
	}
	if d.Bytes() > limit {
		t.Errorf("indexed bytes = %d, over the %d limit", d.Bytes(), limit)
	}
	if du := diskUsage(t, filepath.Join(dir, "objects")); du > limit {
		t.Errorf("object files take %d bytes, over the %d limit", du, limit)
	}
	if _, ok := d.Get("k199ns", 1<<20); !ok {
		t.Error("the newest object was evicted")
	}
	if n := testutil.ToFloat64(d.metrics.evictions); n == 0 {
		t.Error("no evictions counted")
	}
	if err := d.Put("huge", testEntry(randomBody(limit/4)), nil); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Put above the object limit = %v, want ErrTooLarge", err)
	}
	// A smaller budget at the next start evicts down to it.
	d.Close()
	d2 := openTestDisk(t, dir, limit/4)
	if d2.Bytes() > limit/4 {
		t.Errorf("after restart with a smaller budget: %d bytes, over %d", d2.Bytes(), limit/4)
	}
}

// TestDiskAdmission: once the tier is full, a new object takes space only
// from a less popular one; nothing is written for one refused, and a new
// version of a held object always goes in.
func TestDiskAdmission(t *testing.T) {
	dir := t.TempDir()
	const limit = 256 << 10
	d := openTestDisk(t, dir, limit)
	var held []string
	for i := 0; d.Bytes()+16<<10 <= limit; i++ {
		key := fmt.Sprintf("held-%d", i)
		d.Get(key, 0)
		d.Get(key, 0)
		if err := d.Put(key, testEntry(randomBody(10_000)), nil); err != nil {
			t.Fatalf("put %s while there is room: %v", key, err)
		}
		held = append(held, key)
	}
	writes := testutil.ToFloat64(d.metrics.writes)

	d.Get("once", 0)
	if err := d.Put("once", testEntry(randomBody(10_000)), nil); !errors.Is(err, ErrNotAdmitted) {
		t.Fatalf("a key asked once, tier full of keys asked twice: Put = %v, want ErrNotAdmitted", err)
	}
	if d.Has("once") || testutil.ToFloat64(d.metrics.writes) != writes {
		t.Error("a refused object was written")
	}
	if n := testutil.ToFloat64(d.metrics.refused); n != 1 {
		t.Errorf("refused = %v, want 1", n)
	}
	if n := testutil.ToFloat64(d.metrics.writeErrors); n != 0 {
		t.Errorf("a refusal counted as %v write errors", n)
	}
	if names, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(names) != 0 {
		t.Errorf("tmp holds %d files after a refusal", len(names))
	}

	for range 5 {
		d.Get("popular", 0)
	}
	if err := d.Put("popular", testEntry(randomBody(10_000)), nil); err != nil {
		t.Fatalf("a key asked 5 times: Put = %v, want it admitted", err)
	}
	if _, ok := d.Get("popular", 1<<20); !ok {
		t.Error("the admitted object is not served")
	}
	if d.Bytes() > limit {
		t.Errorf("indexed bytes = %d, over the %d limit", d.Bytes(), limit)
	}

	// A new version of a held object replaces it however rarely asked.
	body := randomBody(9_000)
	for _, key := range held {
		if d.Has(key) {
			if err := d.Put(key, testEntry(body), nil); err != nil {
				t.Fatalf("new version of %s: %v", key, err)
			}
			if e, ok := d.Get(key, 1<<20); !ok || !bytes.Equal(e.Body, body) {
				t.Fatalf("new version of %s not served", key)
			}
			return
		}
	}
	t.Fatal("no held object left")
}

func diskUsage(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	filepath.WalkDir(dir, func(p string, de os.DirEntry, err error) error {
		if err == nil && !de.IsDir() {
			if info, err := de.Info(); err == nil {
				n += onDisk(info.Size())
			}
		}
		return nil
	})
	return n
}

// TestDiskCrashLeftovers plays what a crash leaves behind: a torn journal
// tail, a half-written temp file, an object file the journal never heard
// of. The tier opens, keeps the good objects and cleans up the rest.
func TestDiskCrashLeftovers(t *testing.T) {
	dir := t.TempDir()
	d := openTestDisk(t, dir, 64<<20)
	body := randomBody(3000)
	d.Put("kept", testEntry(body), nil)
	d.Close()

	f, _ := os.OpenFile(filepath.Join(dir, "index.log"), os.O_WRONLY|os.O_APPEND, 0)
	f.Write([]byte{opAdd, 0, 0, 0, 9, 9}) // torn record
	f.Close()
	os.WriteFile(filepath.Join(dir, "tmp", "obj-123"), []byte("half"), 0o644)
	orphan := filepath.Join(dir, "objects", "ab", "ab00000000000001")
	os.WriteFile(orphan, []byte("never journaled"), 0o644)

	d2 := openTestDisk(t, dir, 64<<20)
	<-d2.sweepDone
	if e, ok := d2.Get("kept", 1<<20); !ok || !bytes.Equal(e.Body, body) {
		t.Error("good object lost after a torn journal tail")
	}
	if _, err := os.Stat(orphan); !os.IsNotExist(err) {
		t.Errorf("orphan object file still there (stat err %v)", err)
	}
	if names, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(names) != 0 {
		t.Errorf("temp files left: %v", names)
	}
	if st, _ := os.Stat(filepath.Join(dir, "index.log")); st.Size()%recordSize != 0 {
		t.Errorf("journal size %d is not whole records after open", st.Size())
	}
	d2.Put("after", testEntry(body), nil)
	d2.Close()
	d3 := openTestDisk(t, dir, 64<<20)
	if d3.Len() != 2 {
		t.Errorf("objects after a second restart = %d, want 2", d3.Len())
	}
}

// TestDiskWriteFailure: a tier that cannot write keeps answering, counts
// the failures, and works again once writing does.
func TestDiskWriteFailure(t *testing.T) {
	var logs bytes.Buffer
	d, err := OpenDisk(DiskConfig{Dir: t.TempDir(), MaxBytes: 64 << 20, Log: slog.New(slog.NewTextHandler(&logs, nil))}, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	d.Put("old", testEntry([]byte("old")), nil)
	os.RemoveAll(d.tmpDir) // every new object file now fails to be created
	for range 3 {
		if err := d.Put("new", testEntry([]byte("new")), nil); err == nil {
			t.Fatal("Put without a temp dir succeeded")
		}
	}
	if n := testutil.ToFloat64(d.metrics.writeErrors); n != 3 {
		t.Errorf("write errors = %v, want 3", n)
	}
	if n := strings.Count(logs.String(), "storing objects fails"); n != 1 {
		t.Errorf("failure logged %d times for 3 failed writes, want once:\n%s", n, logs.String())
	}
	if _, ok := d.Get("old", 100); !ok {
		t.Error("stored object unreadable while writes fail")
	}
	os.MkdirAll(d.tmpDir, 0o755)
	if err := d.Put("new", testEntry([]byte("new")), nil); err != nil {
		t.Errorf("Put after the disk recovered: %v", err)
	}
	if d.failing.Load() {
		t.Error("still marked failing after a good write")
	}
}

func TestDiskExpiredWithoutValidators(t *testing.T) {
	d := openTestDisk(t, t.TempDir(), 64<<20)
	meta := freshness.Meta{Lifetime: time.Second, ResponseTime: time.Now().Add(-time.Hour)}
	d.Put("k", NewEntry(200, http.Header{}, []byte("x"), meta, nil), nil)
	if _, ok := d.Get("k", 100); ok {
		t.Error("an expired object without validators was served")
	}
	if d.Len() != 0 {
		t.Error("expired object kept")
	}
}
