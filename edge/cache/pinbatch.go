package cache

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

// PinBatch pins the blobs of one release with two disk syncs for all of
// them instead of one per blob: one fsync per pinned blob was about 12 s of
// a 10,000-file push to three edges (docs/performance.md, issue 25).
//
// Put writes and verifies a blob into the temp directory, unsynced and
// not yet pinned (Has does not see it). Commit syncs the file system, then
// renames every blob into place and syncs again, and only then are they
// pinned. So a blob's name never appears before its bytes are on disk, and
// a caller that records a release only after Commit returns never has a
// record naming a blob a crash could lose. A crash before Commit leaves
// only temp files, which OpenPinned removes.
//
// A batch also commits by itself whenever the blobs put and not committed
// reach its flush size, so a sync killed halfway through a big release
// keeps what it had fetched up to the last flush.
//
// Blobs put from memory (PutBytes) go into one pack file per commit
// (pack.go), blobs read from a reader (Put) into a file each.
//
// Put and Commit may be called from several goroutines; Abort once the
// last Put has returned. The zero value is not usable: see Pinned.Batch.
type PinBatch struct {
	p          *Pinned
	flushBytes int64
	onCommit   func(blobs int, bytes int64)

	packMu sync.Mutex  // serializes appends to pack; taken before mu
	pack   *packWriter // where PutBytes appends, nil until the first

	mu           sync.Mutex // protects pending, pendingBytes and done
	pending      map[string]pendingBlob
	pendingBytes int64
	done         bool
}

// pendingBlob is a blob written to the temp directory, its space
// reserved: a file of its own (tmp), or a record of the batch's pack.
type pendingBlob struct {
	tmp        string
	packed     bool
	off        int64 // the record's offset in the pack
	need, size int64
}

// Batch starts a batch of blobs to pin that commits by itself whenever
// flushBytes of blobs are waiting (0: only when Commit is called).
// onCommit, if not nil, is told of every commit: how many blobs it pinned,
// and their bytes.
func (p *Pinned) Batch(flushBytes int64, onCommit func(blobs int, bytes int64)) *PinBatch {
	return &PinBatch{p: p, flushBytes: flushBytes, onCommit: onCommit, pending: map[string]pendingBlob{}}
}

// Put writes the bytes of r as blob hash, size bytes long, to be pinned by
// Commit. It fails, keeping nothing of this blob, as Pinned.Put does. A
// blob pinned already, or put in this batch already, is not read.
func (b *PinBatch) Put(hash string, r io.Reader, size int64) error {
	return b.put(hash, size, func(w io.Writer) error { return copyVerified(w, r, hash, size) })
}

// PutBytes is Put of a blob held in memory. body is checked against hash
// even when the blob is pinned already, so a caller that keeps body (to
// serve it from memory) keeps only verified bytes.
func (b *PinBatch) PutBytes(hash string, body []byte) error {
	if !validName(hash) {
		return fmt.Errorf("pin %q: not a SHA-256 name", hash)
	}
	if sum := sha256.Sum256(body); hex.EncodeToString(sum[:]) != hash {
		return fmt.Errorf("pin %s: %w", hash, ErrHashMismatch)
	}
	if b.p.Has(hash) || b.has(hash) {
		return nil
	}
	meta, err := json.Marshal(objMeta{Key: hash, Status: 200})
	if err != nil {
		return err
	}
	need := objSize(int64(len(meta)), int64(len(body))) // a record in a pack: no block rounding
	if !b.p.reserve(need) {
		return fmt.Errorf("pin %s (%d bytes): %w", hash, len(body), ErrPinnedFull)
	}
	b.packMu.Lock()
	// Checked again under packMu, which orders appends and commits: a
	// record is appended once, and only to a pack a commit will take.
	b.mu.Lock()
	_, dup := b.pending[hash]
	skip := dup || b.done
	b.mu.Unlock()
	var off int64
	if !skip && b.pack == nil {
		b.pack, err = newPackWriter(b.p.tmpDir)
	}
	if !skip && err == nil {
		off, _, err = b.pack.append(meta, body)
	}
	if skip || err != nil {
		b.packMu.Unlock()
		b.p.settle(hash, need, false)
		if err != nil {
			return fmt.Errorf("pin %s: %w", hash, err)
		}
		return nil
	}
	b.mu.Lock()
	b.pending[hash] = pendingBlob{packed: true, off: off, need: need, size: int64(len(body))}
	b.pendingBytes += int64(len(body))
	flush := b.flushBytes > 0 && b.pendingBytes >= b.flushBytes
	b.mu.Unlock()
	b.packMu.Unlock()
	if flush {
		return b.Commit()
	}
	return nil
}

// put writes blob hash, of size bytes, by write.
func (b *PinBatch) put(hash string, size int64, write func(io.Writer) error) error {
	if !validName(hash) {
		return fmt.Errorf("pin %q: not a SHA-256 name", hash)
	}
	if b.p.Has(hash) || b.has(hash) {
		return nil
	}
	meta, err := json.Marshal(objMeta{Key: hash, Status: 200})
	if err != nil {
		return err
	}
	need := onDisk(objSize(int64(len(meta)), size))
	if !b.p.reserve(need) {
		return fmt.Errorf("pin %s (%d bytes): %w", hash, size, ErrPinnedFull)
	}
	tmp, _, err := writeTempObject(b.p.tmpDir, "blob-*", meta, false, write)
	if err != nil {
		b.p.settle(hash, need, false)
		return fmt.Errorf("pin %s: %w", hash, err)
	}
	b.mu.Lock()
	if _, dup := b.pending[hash]; dup || b.done {
		// Put twice at once, or after the end: keep one copy, reserved once.
		b.mu.Unlock()
		os.Remove(tmp)
		b.p.settle(hash, need, false)
		return nil
	}
	b.pending[hash] = pendingBlob{tmp: tmp, need: need, size: size}
	b.pendingBytes += size
	flush := b.flushBytes > 0 && b.pendingBytes >= b.flushBytes
	b.mu.Unlock()
	if flush {
		return b.Commit()
	}
	return nil
}

func (b *PinBatch) has(hash string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, ok := b.pending[hash]
	return ok
}

// Len is how many blobs the batch holds, not yet pinned.
func (b *PinBatch) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.pending)
}

// Commit pins every blob put so far: their bytes are synced before any
// is named, and the names are synced before Commit returns. On an error
// these blobs are not pinned and their temp files are removed; blobs
// renamed before the error are whole and stay pinned. The batch takes
// more blobs after a Commit.
func (b *PinBatch) Commit() error {
	b.packMu.Lock()
	b.mu.Lock()
	pending, bytes, pack := b.pending, b.pendingBytes, b.pack
	b.pending, b.pendingBytes, b.pack = map[string]pendingBlob{}, 0, nil
	b.mu.Unlock()
	b.packMu.Unlock()
	if len(pending) == 0 {
		if pack != nil {
			pack.discard()
		}
		return nil
	}
	blobs := len(pending)
	abort := func(err error) error {
		if pack != nil {
			pack.discard()
		}
		for hash, pb := range pending {
			if !pb.packed {
				os.Remove(pb.tmp)
			}
			b.p.settle(hash, pb.need, false)
		}
		return err
	}
	// The bytes first: nothing may be renamed into blobs/ or packs/
	// before it is on disk (fsync after rename would leave a window where
	// a crash keeps a name whose bytes never arrived).
	if err := b.p.syncFS(b.p.tmpDir); err != nil {
		return abort(fmt.Errorf("pin %d blobs: sync: %w", len(pending), err))
	}
	if pack != nil {
		if err := b.commitPack(pack, pending); err != nil {
			return abort(err)
		}
		pack = nil // installed: its temp name may be another pack's by now
	}
	for hash, pb := range pending {
		dst := b.p.path(hash)
		err := os.Rename(pb.tmp, dst)
		if errors.Is(err, os.ErrNotExist) { // the fan-out directory is new
			if err = os.MkdirAll(filepath.Dir(dst), 0o750); err == nil {
				err = os.Rename(pb.tmp, dst)
			}
		}
		if err != nil {
			return abort(fmt.Errorf("pin %s: %w", hash, err))
		}
		delete(pending, hash)
		b.p.settle(hash, pb.need, true)
	}
	// Then the names, so a release recorded after Commit finds them all.
	if err := b.p.syncFS(b.p.dir); err != nil {
		return fmt.Errorf("pin blobs: sync names: %w", err)
	}
	if b.onCommit != nil {
		b.onCommit(blobs, bytes)
	}
	return nil
}

// commitPack installs the batch's pack, its bytes synced, and pins the
// blobs in it, taking them out of pending. Their bytes were reserved as
// they were put.
func (b *PinBatch) commitPack(pack *packWriter, pending map[string]pendingBlob) error {
	size := pack.size
	name, err := pack.install(b.p.packDir)
	if err != nil {
		return fmt.Errorf("pin blobs: %w", err)
	}
	var recs []packRecord
	for hash, pb := range pending {
		if pb.packed {
			recs = append(recs, packRecord{hash: hash, loc: packLoc{pack: name, off: pb.off, size: pb.need}})
			delete(pending, hash)
		}
	}
	b.p.mu.Lock()
	defer b.p.mu.Unlock()
	b.p.addPackLocked(name, size, recs)
	b.p.finishPackLocked(name)
	return nil
}

// Abort drops every blob put and not committed, and ends the batch: a
// later Put keeps nothing. Safe after Commit, and more than once.
func (b *PinBatch) Abort() {
	b.packMu.Lock()
	b.mu.Lock()
	pending, pack := b.pending, b.pack
	b.pending, b.pendingBytes, b.done, b.pack = nil, 0, true, nil
	b.mu.Unlock()
	b.packMu.Unlock()
	if pack != nil {
		pack.discard()
	}
	for hash, pb := range pending {
		if !pb.packed {
			os.Remove(pb.tmp)
		}
		b.p.settle(hash, pb.need, false)
	}
}

// copyBufs are copyVerified's buffers, one per blob otherwise.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// copyVerified copies size bytes of r to w, failing with ErrHashMismatch
// unless they are exactly size bytes that hash to hash.
func copyVerified(w io.Writer, r io.Reader, hash string, size int64) error {
	sum := sha256.New()
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)
	n, err := io.CopyBuffer(io.MultiWriter(w, sum), io.LimitReader(r, size+1), *buf)
	if err == nil && (n != size || hex.EncodeToString(sum.Sum(nil)) != hash) {
		err = ErrHashMismatch
	}
	return err
}

// syncFileSystem flushes every written file and directory entry of the
// file system that holds dir to disk: one syncfs(2) for a whole batch.
func syncFileSystem(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return &os.PathError{Op: "syncfs", Path: dir, Err: err}
	}
	return nil
}
