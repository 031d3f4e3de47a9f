package cache

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// putAged stores body under key and waits until the file's ctime is old
// enough for checks of it to be remembered.
func putAged(t *testing.T, d *Disk, key string, body []byte) {
	t.Helper()
	if err := d.Put(key, testEntry(body), nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(ctimeGranularity + 20*time.Millisecond)
}

// getBody reads key's body from d as a disk body, returning the open file
// it came from.
func getBody(t *testing.T, d *Disk, key string) ([]byte, *objectFile, error) {
	t.Helper()
	e, ok := d.Get(key, 0)
	if !ok {
		return nil, nil, os.ErrNotExist
	}
	defer e.Release()
	if e.Disk == nil {
		t.Fatal("body not left on disk")
	}
	got, err := readAll(t, e)
	return got, e.Disk.obj, err
}

// keptEntry stores body under key, reads it once so that its file is kept
// open and mapped, and returns a new entry for it (released at cleanup).
func keptEntry(t *testing.T, d *Disk, key string, body []byte) *Entry {
	t.Helper()
	putAged(t, d, key, body)
	if _, o, err := getBody(t, d, key); err != nil || o.body == nil {
		t.Fatalf("first read: %v, mapped %v", err, err == nil && o.body != nil)
	}
	e, ok := d.Get(key, 0)
	if !ok {
		t.Fatal("miss")
	}
	t.Cleanup(e.Release)
	return e
}

func allTrusted(o *objectFile) bool {
	for blk := range o.sums {
		if !o.trusted(int64(blk)) {
			return false
		}
	}
	return true
}

func TestOpenFilesKeepAndTrust(t *testing.T) {
	d := openTestDisk(t, t.TempDir(), 64<<20)
	body := randomBody(3*blockSize + 99)
	putAged(t, d, "k", body)

	got, first, err := getBody(t, d, "k")
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("first read: %d bytes, %v", len(got), err)
	}
	if !allTrusted(first) {
		t.Error("blocks that passed their checksums are not remembered")
	}
	got, second, err := getBody(t, d, "k")
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("second read: %d bytes, %v", len(got), err)
	}
	if second != first {
		t.Error("second hit opened the file again")
	}
	if first.body == nil {
		t.Error("kept file not mapped")
	}
	e, _ := d.Get("k", 0)
	var copied bytes.Buffer
	if _, err := e.Disk.CopyTo(&copied); err != nil || !bytes.Equal(copied.Bytes(), body) {
		t.Errorf("CopyTo: %d bytes, %v", copied.Len(), err)
	}
	e.Release()
	if d.open.len() != 1 {
		t.Errorf("%d files kept open, want 1", d.open.len())
	}

	wallClock := d.now
	d.now = func() time.Time { return wallClock().Add(recheckAfter) }
	if allTrusted(first) {
		t.Error("blocks still trusted after recheckAfter")
	}
	d.now = wallClock
}

// TestOpenFilesFreshFileNotTrusted: a check right after the file was
// written is not remembered, since a change within the same timestamp
// tick would not show in ctime.
func TestOpenFilesFreshFileNotTrusted(t *testing.T) {
	d := openTestDisk(t, t.TempDir(), 64<<20)
	body := randomBody(2 * blockSize)
	d.Put("k", testEntry(body), nil)
	_, o, err := getBody(t, d, "k")
	if err != nil {
		t.Fatal(err)
	}
	if o.trusted(0) {
		t.Error("a check within ctimeGranularity of the write is remembered")
	}
	if err := flipAt(objHeaderSize + 1000)(d.path(keyHash("k"))); err != nil { // at once: ctime may not move
		t.Fatal(err)
	}
	if got, _, err := getBody(t, d, "k"); err == nil || bytes.Equal(got, body) {
		t.Errorf("flipped right after the write: read %d bytes, err %v", len(got), err)
	}
}

// TestOpenFilesDamageAfterTrust damages a file after its blocks were
// checked and remembered: the next hit sees the change and checks again.
func TestOpenFilesDamageAfterTrust(t *testing.T) {
	body := randomBody(4 * blockSize)
	tests := []struct {
		name   string
		damage func(path string) error
	}{
		{name: "body bit flipped", damage: flipAt(objHeaderSize + 300 + 2*blockSize)},
		{name: "truncated", damage: func(p string) error { return os.Truncate(p, 3*blockSize) }},
		{name: "replaced by another file", damage: func(p string) error {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			b[len(b)/2] ^= 0x80
			tmp := p + ".new"
			if err := os.WriteFile(tmp, b, 0o644); err != nil {
				return err
			}
			return os.Rename(tmp, p)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := openTestDisk(t, t.TempDir(), 64<<20)
			putAged(t, d, "k", body)
			if _, o, err := getBody(t, d, "k"); err != nil || !allTrusted(o) {
				t.Fatalf("first read: %v, trusted %v", err, err == nil && allTrusted(o))
			}
			if err := tt.damage(d.path(keyHash("k"))); err != nil {
				t.Fatal(err)
			}
			got, _, err := getBody(t, d, "k")
			if err == nil {
				t.Fatalf("damaged object served whole (%d bytes, equal %v)", len(got), bytes.Equal(got, body))
			}
			if !bytes.Equal(got, body[:len(got)]) {
				t.Error("wrong bytes served before the damage was found")
			}
			if testutil.ToFloat64(d.metrics.corrupt) != 1 || d.Len() != 0 {
				t.Errorf("corrupt counter %v, %d objects indexed; want 1, 0", testutil.ToFloat64(d.metrics.corrupt), d.Len())
			}
		})
	}
}

// TestOpenFilesReplacedWhileRead: a reader of the old object reads it to
// the end while a new one replaces it; later hits get the new one.
func TestOpenFilesReplacedWhileRead(t *testing.T) {
	d := openTestDisk(t, t.TempDir(), 64<<20)
	oldBody, newBody := randomBody(2*blockSize+5), randomBody(3*blockSize+7)
	putAged(t, d, "k", oldBody)
	e, ok := d.Get("k", 0)
	if !ok {
		t.Fatal("miss")
	}
	if err := d.Put("k", testEntry(newBody), nil); err != nil {
		t.Fatal(err)
	}
	got, err := readAll(t, e)
	e.Release()
	if err != nil || !bytes.Equal(got, oldBody) {
		t.Errorf("reader of the replaced object: %d bytes, %v", len(got), err)
	}
	if got, _, err := getBody(t, d, "k"); err != nil || !bytes.Equal(got, newBody) {
		t.Errorf("after the replacement: %d bytes, %v; want the new body", len(got), err)
	}
}

// TestOpenFilesBounded keeps at most max files open, and closes every
// file it kept once the tier closes and the readers are done.
func TestOpenFilesBounded(t *testing.T) {
	fds := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Skip("no /proc/self/fd")
		}
		return len(ents)
	}
	before := fds()
	d, err := OpenDisk(DiskConfig{Dir: t.TempDir(), MaxBytes: 64 << 20}, nil)
	if err != nil {
		t.Fatal(err)
	}
	d.open.max = 3
	body := randomBody(blockSize + 1)
	keys := []string{"a", "b", "c", "d", "e"}
	for _, k := range keys {
		d.Put(k, testEntry(body), nil)
	}
	held, ok := d.Get("a", 0) // outlives the tier's Close
	if !ok {
		t.Fatal("miss")
	}
	for range 3 {
		for _, k := range keys {
			if got, _, err := getBody(t, d, k); err != nil || !bytes.Equal(got, body) {
				t.Fatalf("%s: %d bytes, %v", k, len(got), err)
			}
		}
	}
	if n := d.open.len(); n != 3 {
		t.Errorf("%d files kept open, want 3", n)
	}
	d.Close()
	if got, err := readAll(t, held); err != nil || !bytes.Equal(got, body) {
		t.Errorf("body held across Close: %d bytes, %v", len(got), err)
	}
	held.Release()
	held.Release() // a second release must not close someone else's file
	if after := fds(); after != before {
		t.Errorf("%d descriptors open before, %d after", before, after)
	}
}

// BenchmarkDiskHit serves a 1 MiB object from the disk tier: kept open
// (mapped) with its checked blocks remembered (the hit path), or opened,
// read, decoded and checked in full on every hit (as before openFiles,
// and as a hit right after a change is). The body goes to io.Discard, so
// a kept hit measures only the tier's own work: on a real connection the
// kernel copies the mapped pages into the socket, once.
//
//	go test ./edge/cache/ -run '^$' -bench DiskHit
func BenchmarkDiskHit(b *testing.B) {
	for _, keep := range []bool{true, false} {
		name := "kept-open"
		if !keep {
			name = "opened-each-hit"
		}
		b.Run(name, func(b *testing.B) {
			d, err := OpenDisk(DiskConfig{Dir: b.TempDir(), MaxBytes: 64 << 20}, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			if !keep {
				d.open.max = 0
			}
			body := randomBody(1 << 20)
			d.Put("k", testEntry(body), nil)
			time.Sleep(ctimeGranularity + 20*time.Millisecond) // checks of a fresh file are not remembered
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				e, ok := d.Get("k", 0)
				if !ok {
					b.Fatal("miss")
				}
				if _, err := e.Disk.WriteTo(io.Discard); err != nil {
					b.Fatal(err)
				}
				e.Release()
			}
		})
	}
}

// TestMappedFileTruncatedUnderRead truncates a kept (mapped) object file
// while a reader holds it: the read fails with ErrCorrupt, where touching
// the vanished pages would otherwise kill the process (SIGBUS).
func TestMappedFileTruncatedUnderRead(t *testing.T) {
	for _, via := range []string{"WriteTo", "CopyTo", "ReadAt"} {
		t.Run(via, func(t *testing.T) {
			d := openTestDisk(t, t.TempDir(), 64<<20)
			e := keptEntry(t, d, "k", randomBody(4*blockSize))
			if err := os.Truncate(d.path(keyHash("k")), 4096); err != nil {
				t.Fatal(err)
			}
			// What reached the writer before the fault is not checked: a
			// bytes.Buffer grows before it copies, so a copy the fault
			// stopped leaves zeros in it; a socket takes only the bytes
			// that were copied, and the error cuts the short body off.
			var err error
			switch via {
			case "WriteTo":
				_, err = e.Disk.WriteTo(sha256.New()) // a writer that reads what it is given
			case "CopyTo":
				_, err = e.Disk.CopyTo(io.Discard) // the copy out of the mapping faults
			default:
				_, err = e.Disk.ReadAt(make([]byte, 100), 3*blockSize)
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("read of a truncated mapped file: %v, want ErrCorrupt", err)
			}
			if d.Len() != 0 {
				t.Error("object still indexed after the fault")
			}
		})
	}
}

// faultyWriter is a writer with a bug: it reads memory that is no longer
// mapped (a fault at a real address, unlike a nil dereference).
type faultyWriter struct{ gone unsafe.Pointer }

func newFaultyWriter(t *testing.T) faultyWriter {
	m, err := syscall.Mmap(-1, 0, 4096, syscall.PROT_READ, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	w := faultyWriter{gone: unsafe.Pointer(unsafe.SliceData(m))}
	if err := syscall.Munmap(m); err != nil {
		t.Fatal(err)
	}
	return w
}

func (w faultyWriter) Write(p []byte) (int, error) { return int(*(*byte)(w.gone)) + len(p), nil }

// TestFaultOutsideMappingIsNotCorruption: a memory fault that is not in
// the mapped file (here a bug in the writer the body is handed to) is a
// crash to fix, not a damaged object: it goes on panicking and the object
// stays.
func TestFaultOutsideMappingIsNotCorruption(t *testing.T) {
	d := openTestDisk(t, t.TempDir(), 64<<20)
	e := keptEntry(t, d, "k", randomBody(2*blockSize))
	w := newFaultyWriter(t)
	var err error
	panicked := func() (r any) {
		defer func() { r = recover() }()
		_, err = e.Disk.WriteTo(w)
		return nil
	}()
	if panicked == nil {
		t.Fatalf("WriteTo into a faulting writer returned %v, want the panic to go on", err)
	}
	if d.Len() != 1 {
		t.Error("object dropped for a fault outside its file")
	}
}
