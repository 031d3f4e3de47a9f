package push

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"time"
)

// The scan cache lets a push of a big site hash only the files that
// changed: hashing the whole tree and compressing its text again took 1.49
// of the 2.3 s a one-file change cost (docs/performance.md, issue 25).
//
// It maps each file read (by its resolved path) to what its last scan
// found, under the file's identity: size, modification and change time in
// nanoseconds, inode and device. A file is read again when any of them
// differs. ctime matters most: unlike mtime it cannot be set back by a
// program, and it moves on every write.
//
// A file changed twice within the file system's timestamp granularity
// keeps the same times (git's "racy clean" problem). So a file is
// recorded only when its times are older than the scan's start by more
// than racyWindow: a later change must then give it a later time. Files
// written just before a push are read again by the next one.
//
// The cache is a hint, never trusted beyond that: a file that does not
// match what the cache said is caught when its blob is uploaded
// (Scan.Open checks every byte against the name), and a cache file that is
// unreadable, from another version or another compressor build is
// ignored and written again.

// scanCacheVersion changes whenever what an entry means changes.
const scanCacheVersion = 1

// racyWindow is how old a file's times must be for the cache to trust
// them: above the coarsest timestamp granularity of common file systems
// (FAT's 2 s) and the kernel's clock tick.
const racyWindow = 2 * time.Second

// fileID is what identifies a file's contents without reading them.
type fileID struct {
	Size  int64  `json:"size"`
	MTime int64  `json:"mtime"` // ns since the epoch
	CTime int64  `json:"ctime"` // ns since the epoch
	Ino   uint64 `json:"ino"`
	Dev   uint64 `json:"dev"`
}

// cacheEntry is what scanning one file found.
type cacheEntry struct {
	ID   fileID `json:"id"`
	Blob Blob   `json:"blob"`
	// Compressed says the variants were tried: Encoded holds those kept.
	Compressed bool            `json:"compressed,omitempty"`
	Encoded    map[string]Blob `json:"encoded,omitempty"`
	// Sniffed is the type the bytes gave, when it was needed ("": not
	// sniffed).
	Sniffed string `json:"sniffed,omitempty"`
}

// cacheFile is the cache on disk.
type cacheFile struct {
	Version int `json:"version"`
	// Encoders names the compressors and their settings: variant hashes
	// made by another build may not be what this one makes.
	Encoders string                `json:"encoders"`
	Entries  map[string]cacheEntry `json:"entries"`
}

// scanCache is a loaded cache and what this scan records, by file.
type scanCache struct {
	path  string
	start time.Time // when the scan started, for the racy window
	// window is racyWindow; tests widen it to model coarse timestamps.
	window time.Duration

	old map[string]cacheEntry // read only during the scan

	mu   sync.Mutex // protects next and hits
	next map[string]cacheEntry
	hits int
}

// encodersID names the compressors whose output variant hashes depend on.
func encodersID() string {
	version := "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/klauspost/compress" {
				version = d.Version
				if d.Replace != nil {
					version = d.Replace.Path + "@" + d.Replace.Version
				}
			}
		}
	}
	return fmt.Sprintf("klauspost/compress %s gzip %d zstd %d window %d", version, gzipLevel, zstdLevel, zstdWindow)
}

// loadScanCache reads the cache at path; a missing or unusable file
// gives an empty cache.
func loadScanCache(path string, start time.Time) *scanCache {
	c := &scanCache{path: path, start: start, window: racyWindow, next: map[string]cacheEntry{}}
	b, err := os.ReadFile(path)
	if err != nil {
		return c
	}
	var f cacheFile
	if json.Unmarshal(b, &f) == nil && f.Version == scanCacheVersion && f.Encoders == encodersID() {
		c.old = f.Entries
	}
	return c
}

// find returns what the last scan found of j's file when the file is
// unchanged since (false for a nil cache).
func (c *scanCache) find(j job, minCompress int64) (File, bool) {
	if c == nil || c.old == nil {
		return File{}, false
	}
	fi, err := os.Stat(j.src)
	if err != nil || !fi.Mode().IsRegular() {
		return File{}, false // scanFile reports it
	}
	id, ok := statID(fi)
	if !ok {
		return File{}, false
	}
	return c.lookup(j, id, minCompress)
}

// lookup returns what the last scan found of j's file, whose identity is
// now id, when it still holds for the current type and minCompress.
func (c *scanCache) lookup(j job, id fileID, minCompress int64) (File, bool) {
	e, ok := c.old[j.src]
	if !ok || e.ID != id {
		return File{}, false
	}
	typ := j.typ
	if typ == "" {
		typ = typeByExtension(j.urlPath)
	}
	if typ == "" {
		if typ = e.Sniffed; typ == "" {
			return File{}, false // the bytes must decide, and were not asked
		}
	}
	if e.Compressed != (id.Size >= minCompress && compressible(typ)) {
		return File{}, false
	}
	c.record(j.src, e, true)
	return File{Blob: e.Blob, Type: typ, Header: j.header, Encoded: e.Encoded}, true
}

// add records what scanning j's file found, unless its times are too
// recent to be trusted.
func (c *scanCache) add(j job, id fileID, f File, compressed bool, sniffed string) {
	limit := c.start.Add(-c.window).UnixNano()
	if id.MTime >= limit || id.CTime >= limit {
		return
	}
	c.record(j.src, cacheEntry{ID: id, Blob: f.Blob, Compressed: compressed, Encoded: f.Encoded, Sniffed: sniffed}, false)
}

func (c *scanCache) record(src string, e cacheEntry, hit bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.next[src] = e
	if hit {
		c.hits++
	}
}

// save replaces the cache file with what this scan recorded: files no
// longer in the site are dropped. The file is renamed into place but not
// synced: a cache lost to a crash costs one full scan, and a torn one does
// not parse.
func (c *scanCache) save() error {
	b, err := json.Marshal(cacheFile{Version: scanCacheVersion, Encoders: encodersID(), Entries: c.next})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(c.path), 0o700); err != nil {
		return fmt.Errorf("save scan cache: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(c.path), ".scan-*")
	if err != nil {
		return fmt.Errorf("save scan cache: %w", err)
	}
	_, err = tmp.Write(b)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), c.path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("save scan cache: %w", err)
	}
	return nil
}

// DefaultScanCache returns where cdn push keeps the scan cache of the
// site directory dir: a file per directory in the user's cache directory.
func DefaultScanCache(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(base, "cdn", "push-scan-"+HashOf([]byte(abs))[:16]+".json"), nil
}

// statID returns the identity of the file at fi; false when this system
// does not give one (then nothing is cached).
func statID(fi fs.FileInfo) (fileID, bool) {
	id, ok := sysID(fi)
	if !ok {
		return fileID{}, false
	}
	id.Size = fi.Size()
	id.MTime = fi.ModTime().UnixNano()
	return id, true
}
