package static

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"sync"
)

// hashLimit is the largest file whose ETag is a content hash.
const hashLimit = 8 << 20

// etagCache remembers each file's strong ETag so a file is hashed once per
// version rather than once per request. It holds at most one entry per file
// name, so it is bounded by the number of files in the site.
type etagCache struct {
	mu      sync.Mutex           // protects entries
	entries map[string]etagEntry // by root-relative file name
}

// etagEntry is the ETag of one version of a file, identified by size and
// modification time.
type etagEntry struct {
	size  int64
	mtime int64 // UnixNano
	etag  string
}

// get returns the ETag of f, whose name and stat are given, hashing it when
// the cached entry is missing or for another version. Two concurrent misses
// on one file both hash it; that costs CPU once per deploy, not correctness.
// A file rewritten in place while it is hashed may get an ETag that matches
// neither version; deploys should replace files by rename.
func (c *etagCache) get(name string, f io.ReaderAt, fi fs.FileInfo) (string, error) {
	size, mtime := fi.Size(), fi.ModTime().UnixNano()
	c.mu.Lock()
	e, ok := c.entries[name]
	c.mu.Unlock()
	if ok && e.size == size && e.mtime == mtime {
		return e.etag, nil
	}
	if size > hashLimit {
		// Hashing a large file would hold its first byte back for seconds
		// (0.8 s for 1 GiB from the page cache); version it by mtime and
		// size instead, as nginx does.
		return fmt.Sprintf(`"%x-%x"`, mtime, size), nil
	}

	// Hash through ReaderAt so the file offset stays at 0 for ServeContent.
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, size)); err != nil {
		return "", fmt.Errorf("hash %s: %w", name, err)
	}
	etag := `"` + hex.EncodeToString(h.Sum(nil)[:16]) + `"`

	c.mu.Lock()
	if c.entries == nil {
		c.entries = make(map[string]etagEntry)
	}
	c.entries[name] = etagEntry{size: size, mtime: mtime, etag: etag}
	c.mu.Unlock()
	return etag, nil
}
