package cache

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"os"
)

// Object is what Scan tells of one stored object: enough to judge it
// against purge rules, without its body.
type Object struct {
	Key   string
	Stamp uint64
	Tags  []string
	// VaryIndex marks an entry that only names Vary (no body of its own).
	VaryIndex bool
}

// Scan calls f with every object on disk, reading each file's header and
// metadata only (checked against their sums), until f returns false or
// ctx ends. It takes the lock only to copy the index, so requests go on
// meanwhile; objects stored during the scan may be missed and removed
// ones skipped. It is for answers about the whole cache (how many objects
// a purge would match), not for the request path.
func (d *Disk) Scan(ctx context.Context, f func(Object) bool) error {
	d.mu.Lock()
	hashes := make([]uint64, 0, d.idx.len())
	d.idx.each(func(hash uint64, _ int64) { hashes = append(hashes, hash) })
	d.mu.Unlock()
	for _, h := range hashes {
		if err := ctx.Err(); err != nil {
			return err
		}
		o, err := readObjectMeta(d.path(h))
		if err != nil {
			continue // removed since, or corrupt: a request will drop it
		}
		if !f(o) {
			return nil
		}
	}
	return nil
}

// readObjectMeta reads the key, stamp and tags of the object file at path.
func readObjectMeta(path string) (Object, error) {
	f, err := os.Open(path)
	if err != nil {
		return Object{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Object{}, err
	}
	var head [objHeaderSize]byte
	if _, err := io.ReadFull(f, head[:]); err != nil {
		return Object{}, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	l, err := parseHeader(head[:], st.Size())
	if err != nil {
		return Object{}, err
	}
	b := make([]byte, l.metaLen)
	if _, err := io.ReadFull(f, b); err != nil {
		return Object{}, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if crc32.Checksum(b, castagnoli) != l.metaCRC {
		return Object{}, fmt.Errorf("%w: meta checksum mismatch", ErrCorrupt)
	}
	var m objMeta
	if err := json.Unmarshal(b, &m); err != nil {
		return Object{}, fmt.Errorf("%w: meta: %v", ErrCorrupt, err)
	}
	return Object{Key: m.Key, Stamp: m.Stamp, Tags: m.Tags, VaryIndex: m.VaryIndex}, nil
}
