package push

import (
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// scanCached scans dir with the cache at path as if the scan started at
// start, so a test decides whether its files are old enough to trust.
func scanCached(t *testing.T, dir, path string, start time.Time, opts ScanOptions) *Scan {
	t.Helper()
	s, err := scanDirCached(t.Context(), dir, opts.withDefaults(), loadScanCache(path, start))
	if err != nil {
		t.Fatalf("scan %s: %v", dir, err)
	}
	if s.CacheErr != nil {
		t.Fatalf("save scan cache: %v", s.CacheErr)
	}
	return s
}

// scanFresh scans dir without a cache: what a cached scan must equal.
func scanFresh(t *testing.T, dir string, opts ScanOptions) *Manifest {
	t.Helper()
	s, err := ScanDir(t.Context(), dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s.Manifest
}

// TestScanCache: an unchanged file is not read again; a file changed in
// any way that counts is, even when its size and mtime are as they were,
// and the manifest is always the one a scan without cache makes.
func TestScanCache(t *testing.T) {
	later := time.Now().Add(time.Hour) // every file is old enough to trust
	tests := []struct {
		name string
		// change alters the site in dir after the first scan.
		change        func(t *testing.T, dir string)
		opts          ScanOptions
		wantUnchanged int
	}{
		{name: "nothing changed", change: func(*testing.T, string) {}, wantUnchanged: 4},
		{name: "same size and mtime, new bytes", wantUnchanged: 3, change: func(t *testing.T, dir string) {
			rewrite(t, filepath.Join(dir, "a.html"), text(3000)[1:]+"!", true)
		}},
		{name: "same size and mtime, binary file", wantUnchanged: 3, change: func(t *testing.T, dir string) {
			rewrite(t, filepath.Join(dir, "img", "b.bin"), random(5000)[1:]+"!", true)
		}},
		{name: "replaced by rename, times kept", wantUnchanged: 3, change: func(t *testing.T, dir string) {
			p := filepath.Join(dir, "a.html")
			fi, _ := os.Stat(p)
			tmp := filepath.Join(dir, "new")
			if err := os.WriteFile(tmp, []byte(text(3000)[1:]+"?"), 0o644); err != nil {
				t.Fatal(err)
			}
			os.Chtimes(tmp, fi.ModTime(), fi.ModTime())
			if err := os.Rename(tmp, p); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "size changed", wantUnchanged: 3, change: func(t *testing.T, dir string) {
			rewrite(t, filepath.Join(dir, "small.txt"), "hello, world", false)
		}},
		{name: "_headers makes a text file binary", wantUnchanged: 3, change: func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "_headers"), []byte("/a.html\n  Content-Type: application/octet-stream\n"), 0o644)
		}},
		{name: "compression threshold raised", opts: ScanOptions{MinCompress: 4000}, wantUnchanged: 2, change: func(*testing.T, string) {}},
		{name: "file removed, one added", wantUnchanged: 3, change: func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "small.txt"))
			os.WriteFile(filepath.Join(dir, "new.css"), []byte(text(2000)), 0o644)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeSite(t, map[string]string{
				"a.html": text(3000), "img/b.bin": random(5000), "small.txt": "hello", "noext": text(1500),
			})
			cache := filepath.Join(t.TempDir(), "cache.json")
			if s := scanCached(t, dir, cache, later, ScanOptions{}); s.Unchanged != 0 {
				t.Fatalf("first scan: %d files unchanged, want 0", s.Unchanged)
			}
			tt.change(t, dir)
			s := scanCached(t, dir, cache, later, tt.opts)
			if s.Unchanged != tt.wantUnchanged {
				t.Errorf("second scan: %d files unchanged, want %d", s.Unchanged, tt.wantUnchanged)
			}
			if want := scanFresh(t, dir, tt.opts); !reflect.DeepEqual(s.Manifest, want) {
				t.Errorf("cached scan's manifest:\n%+v\nwant (no cache):\n%+v", s.Manifest, want)
			}
			// The blobs it names can be read as named: Open checks them.
			for hash := range s.Sources {
				if err := readBlob(s, hash); err != nil {
					t.Errorf("open %s: %v", hash, err)
				}
			}
		})
	}
}

// TestScanCacheRacy models a file system whose timestamps are coarser
// than the time between a scan and the next change: a file whose times are
// within the racy window of the scan is not trusted, so a change that
// keeps size, mtime and even ctime is still seen.
func TestScanCacheRacy(t *testing.T) {
	dir := writeSite(t, map[string]string{"a.html": text(3000), "b.txt": "old"})
	cache := filepath.Join(t.TempDir(), "cache.json")
	p := filepath.Join(dir, "b.txt")
	fi, _ := os.Stat(p)
	id, _ := statID(fi)
	// The scan starts just after the files were written: too recent.
	c := loadScanCache(cache, time.Now())
	c.window = time.Hour
	if _, err := scanDirCached(t.Context(), dir, ScanOptions{}.withDefaults(), c); err != nil {
		t.Fatal(err)
	}
	if err := c.save(); err != nil {
		t.Fatal(err)
	}
	if len(c.next) != 0 {
		t.Fatalf("recorded %d files changed within the racy window, want none", len(c.next))
	}
	// The same size, and (as on a coarse file system) the same times: the
	// cache cannot tell, so it must not have recorded the file.
	rewrite(t, p, "new", true)
	c2 := loadScanCache(cache, time.Now().Add(2*time.Hour))
	if e, ok := c2.old[p]; ok {
		t.Fatalf("cache holds %+v for a racy file (id then %+v)", e, id)
	}
	s, err := scanDirCached(t.Context(), dir, ScanOptions{}.withDefaults(), c2)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.Manifest.Files["/b.txt"].Hash, HashOf([]byte("new")); got != want {
		t.Errorf("b.txt hashed %s, want %s (the new bytes)", got, want)
	}
}

// TestScanCacheUnusable: a cache file that is torn, from another version
// or made by other compressors is ignored, and written again.
func TestScanCacheUnusable(t *testing.T) {
	later := time.Now().Add(time.Hour)
	tests := []struct {
		name, content string
	}{
		{name: "torn", content: `{"version":1,"encoders":"`},
		{name: "zeroes", content: "\x00\x00\x00\x00"},
		{name: "other version", content: `{"version":0,"encoders":"` + encodersID() + `","entries":{}}`},
		{name: "other compressors", content: `{"version":1,"encoders":"klauspost/compress v0.0.1","entries":{}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeSite(t, map[string]string{"a.html": text(3000)})
			cache := filepath.Join(t.TempDir(), "cache.json")
			os.WriteFile(cache, []byte(tt.content), 0o600)
			if s := scanCached(t, dir, cache, later, ScanOptions{}); s.Unchanged != 0 {
				t.Errorf("scan over a %s cache: %d unchanged, want 0", tt.name, s.Unchanged)
			}
			if s := scanCached(t, dir, cache, later, ScanOptions{}); s.Unchanged != 1 {
				t.Errorf("next scan: %d unchanged, want 1 (the cache written again)", s.Unchanged)
			}
		})
	}
}

// rewrite replaces the bytes of the file at p in place (same inode), and
// with keepTimes sets its mtime back to what it was.
func rewrite(t *testing.T, p, content string, keepTimes bool) {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(content); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if keepTimes {
		if err := os.Chtimes(p, fi.ModTime(), fi.ModTime()); err != nil {
			t.Fatal(err)
		}
	}
}

// readBlob reads blob hash of s through Open, which fails on bytes that
// do not match the name.
func readBlob(s *Scan, hash string) error {
	r, _, err := s.Open(hash)
	if err != nil {
		return err
	}
	defer r.Close()
	_, err = io.Copy(io.Discard, r)
	return err
}
