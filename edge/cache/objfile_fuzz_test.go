package cache

import (
	"bytes"
	"os"
	"testing"
)

// FuzzReadObject feeds arbitrary bytes to the disk tier as an object file:
// reading it must never panic, and whatever it accepts must read back
// whole, as many bytes as it says.
func FuzzReadObject(f *testing.F) {
	d, err := OpenDisk(DiskConfig{Dir: f.TempDir(), MaxBytes: 1 << 30}, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { d.Close() })
	const key = "https://example.com/k"
	hash := keyHash(key)
	for _, n := range []int{0, 10, 3000, blockSize + 5} {
		if err := d.Put(key, testEntry(randomBody(n)), nil); err != nil {
			f.Fatal(err)
		}
		good, err := os.ReadFile(d.path(hash))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(good)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(d.path(hash), data, 0o644); err != nil {
			t.Fatal(err)
		}
		for _, inline := range []int64{1 << 20, 0} {
			d.mu.Lock()
			d.idx.insert(hash, int64(len(data)))
			d.mu.Unlock()
			e, ok := d.Get(key, inline)
			if !ok {
				continue
			}
			var buf bytes.Buffer
			if e.Disk != nil {
				if _, err := e.Disk.WriteTo(&buf); err != nil {
					e.Release()
					continue // caught while streaming: fine, never served whole
				}
				e.Release()
			} else {
				buf.Write(e.Body)
			}
			if int64(buf.Len()) != e.Size() {
				t.Fatalf("accepted object reads %d bytes, says %d", buf.Len(), e.Size())
			}
		}
	})
}
