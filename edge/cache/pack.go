package cache

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// Pack files hold many pinned blobs back to back. A push pins thousands
// of small blobs, and a file of its own for each cost an edge about a
// third of its CPU in creating and renaming files (most of it ext4
// searching for a free inode among those freed recently; issue 25,
// docs/performance.md). So the blobs a batch pins from memory
// (PinBatch.PutBytes) are appended to one pack per commit instead. Each
// record in a pack is laid out exactly as an object file (objfile.go), so
// a blob in a pack is read and verified as one in a file of its own, from
// its offset.
//
// Crash rules: a pack is written under tmp/, synced with the rest of its
// batch, and renamed into packs/ before any blob in it is pinned, so
// packs/ holds only whole, synced packs. Removing a blob only forgets it:
// its bytes stay in the pack until every blob in it is removed (the pack
// is deleted) or, when Compact runs after a collection, most are (its
// live blobs are copied into a new pack, which is synced and renamed
// before the old one is deleted). After a
// restart the packs are read again: a blob removed but still in a pack is
// pinned again, and the next collection removes it again (release sync
// removes whatever no release names). A blob found in two packs (a crash
// between a compaction's rename and its delete) is kept once.

// packLoc is where a pinned blob's record lies.
type packLoc struct {
	pack      string // the pack's file name in packs/
	off, size int64
}

// packUse is what of a pack is still pinned.
type packUse struct {
	size       int64 // the pack file's length
	live       int   // blobs pinned from it
	liveBytes  int64 // their records' bytes
	compacting bool
}

// dead is what the pack holds that nothing pinned uses.
func (u *packUse) dead() int64 { return u.size - u.liveBytes }

// packWriter appends records to a new pack under tmp/. Not safe for
// concurrent use.
type packWriter struct {
	f    *os.File
	size int64
	err  error // the first failed write: the pack is not used after one
}

func newPackWriter(tmpDir string) (*packWriter, error) {
	f, err := os.CreateTemp(tmpDir, "pack-*")
	if err != nil {
		return nil, err
	}
	return &packWriter{f: f}, nil
}

// append writes one record of meta and body at the end of the pack and
// returns where it starts and its length.
func (w *packWriter) append(meta, body []byte) (off, n int64, err error) {
	if w.err != nil {
		return 0, 0, w.err
	}
	ow, err := newObjWriter(w.f, meta)
	if err == nil {
		ow.base = w.size
		_, err = ow.Write(body)
	}
	if err == nil {
		err = ow.finish()
	}
	ow.release()
	if err != nil {
		w.err = fmt.Errorf("append to pack %s: %w", w.f.Name(), err)
		return 0, 0, w.err
	}
	off, n = w.size, objSize(int64(len(meta)), int64(len(body)))
	w.size += n
	return off, n, nil
}

// discard closes and removes a pack that will not be committed.
func (w *packWriter) discard() {
	w.f.Close()
	os.Remove(w.f.Name())
}

// install renames the finished pack (its bytes synced already) into dir
// under a new random name, never over an existing pack, and returns that
// name. On an error the caller discards the pack.
func (w *packWriter) install(dir string) (string, error) {
	if err := w.f.Close(); err != nil {
		return "", fmt.Errorf("close pack: %w", err)
	}
	for {
		name := newPackName()
		err := unix.Renameat2(unix.AT_FDCWD, w.f.Name(), unix.AT_FDCWD, filepath.Join(dir, name), unix.RENAME_NOREPLACE)
		if errors.Is(err, unix.EEXIST) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("install pack: %w", err)
		}
		return name, nil
	}
}

func newPackName() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:]) + ".pack"
}

// packRecord is one blob's record found in a pack.
type packRecord struct {
	hash string
	loc  packLoc
}

// scanPack lists the records of a pack, front to back, each checked as
// far as reading its header, meta and sums can: a record torn or not
// well formed ends the list, and what follows it is not read.
func scanPack(f io.ReaderAt, name string, fileSize int64) []packRecord {
	var recs []packRecord
	var h [objHeaderSize]byte
	for off := int64(0); fileSize-off >= objHeaderSize; {
		if _, err := f.ReadAt(h[:], off); err != nil {
			break
		}
		l, err := parseHeaderFields(h[:])
		if err != nil {
			break
		}
		n := objSize(l.metaLen, l.bodyLen)
		if n > fileSize-off {
			break
		}
		key, ok := readPackRecordKey(f, off, l, n)
		if !ok {
			break
		}
		recs = append(recs, packRecord{hash: key, loc: packLoc{pack: name, off: off, size: n}})
		off += n
	}
	return recs
}

// readPackRecordKey reads and checks the meta and sums of the record of
// n bytes at off, and returns the blob name its meta holds.
func readPackRecordKey(f io.ReaderAt, off int64, l objLayout, n int64) (string, bool) {
	meta := make([]byte, l.metaLen)
	if _, err := f.ReadAt(meta, off+objHeaderSize); err != nil || crc32.Checksum(meta, castagnoli) != l.metaCRC {
		return "", false
	}
	var m objMeta
	if json.Unmarshal(meta, &m) != nil || !validName(m.Key) {
		return "", false
	}
	sums := make([]byte, n-l.sumsOff())
	if _, err := f.ReadAt(sums, off+l.sumsOff()); err != nil {
		return "", false
	}
	if _, err := parseSums(sums, l.bodyLen); err != nil {
		return "", false
	}
	return m.Key, true
}

// loadPacks indexes the packs in p.packDir; called by OpenPinned only.
func (p *Pinned) loadPacks() error {
	des, err := os.ReadDir(p.packDir)
	if err != nil {
		return err
	}
	for _, de := range des {
		if de.IsDir() {
			continue
		}
		name := de.Name()
		f, err := os.Open(filepath.Join(p.packDir, name))
		if err != nil {
			return err
		}
		var st syscall.Stat_t
		err = syscall.Fstat(int(f.Fd()), &st)
		var recs []packRecord
		if err == nil {
			recs = scanPack(f, name, st.Size)
		}
		f.Close()
		if err != nil {
			return err
		}
		p.total += st.Size
		p.addPackLocked(name, st.Size, recs)
		p.finishPackLocked(name)
	}
	return nil
}

// addPackLocked indexes pack name, size bytes long, and pins the blobs
// of recs, its records, except those pinned already (in a file of their
// own, an earlier pack, or by another batch meanwhile): those records are
// dead bytes. The caller accounts size in total (a batch reserved it
// record by record), and calls finishPackLocked once the pack is filled.
func (p *Pinned) addPackLocked(name string, size int64, recs []packRecord) *packUse {
	u := &packUse{size: size}
	p.packs[name] = u
	for _, r := range recs {
		if _, dup := p.sizes[r.hash]; dup {
			continue
		}
		p.sizes[r.hash] = r.loc.size
		p.packed[r.hash] = r.loc
		u.live++
		u.liveBytes += r.loc.size
	}
	return u
}

// finishPackLocked deletes a pack none of whose records got pinned.
func (p *Pinned) finishPackLocked(name string) {
	if u := p.packs[name]; u != nil && u.live == 0 {
		p.dropPackLocked(name)
	}
}

// dropPackLocked forgets a pack and deletes its file; none of its blobs
// is pinned any more.
func (p *Pinned) dropPackLocked(name string) {
	u := p.packs[name]
	delete(p.packs, name)
	p.total -= u.size
	os.Remove(filepath.Join(p.packDir, name)) // a reader holding it open still reads it
}

// unpinPackedLocked forgets packed blob hash; its record's bytes stay as
// the pack's dead bytes until Compact, or the pack's deletion once none
// of its blobs is left.
func (p *Pinned) unpinPackedLocked(hash string, loc packLoc) {
	delete(p.sizes, hash)
	delete(p.packed, hash)
	u := p.packs[loc.pack]
	u.live--
	u.liveBytes -= loc.size
	if u.live == 0 {
		p.dropPackLocked(loc.pack)
	}
}

// Compact rewrites every pack more than half of which is dead (its
// blobs removed) without the dead records. It is for after a batch of
// removals (release sync's collection): a removal itself only forgets,
// so a pack whose blobs all go is deleted without being copied first.
// A pack that fails stays as it was, for the next Compact.
func (p *Pinned) Compact() {
	p.mu.Lock()
	var names []string
	for name, u := range p.packs {
		if u.live > 0 && u.dead() > u.liveBytes && !u.compacting {
			u.compacting = true
			names = append(names, name)
		}
	}
	p.mu.Unlock()
	for _, name := range names {
		result := "ok"
		if err := p.compact(name); err != nil {
			result = "error"
		}
		p.compactions.WithLabelValues(result).Inc()
	}
}

// openPacked opens the record of blob hash at loc.
func (p *Pinned) openPacked(hash string, loc packLoc, inlineMax int64) (*Entry, error) {
	f, err := os.Open(filepath.Join(p.packDir, loc.pack))
	if err != nil {
		return nil, err
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	e, o, err := openObjectAt(f, &st, loc.off, loc.size, hash, inlineMax, func() { p.dropCorrupt(hash) })
	if o != nil {
		e = o.newEntry()
	}
	return e, err
}

// openPackedRetry opens packed blob hash, found at loc; a compaction
// may have moved it meanwhile (and deleted the pack it was in).
func (p *Pinned) openPackedRetry(hash string, loc packLoc, inlineMax int64) (*Entry, error) {
	for {
		e, err := p.openPacked(hash, loc, inlineMax)
		if err == nil {
			return e, nil
		}
		p.mu.Lock()
		now, still := p.packed[hash]
		p.mu.Unlock()
		switch {
		case !still:
			return nil, os.ErrNotExist // removed meanwhile
		case now != loc:
			loc = now // moved: read it where it is now
		default:
			if !errors.Is(err, os.ErrNotExist) {
				p.dropCorrupt(hash)
				return nil, err
			}
			p.Remove(hash) // its pack is gone from under us
			return nil, err
		}
	}
}

// compact copies the blobs still pinned from pack name into a new pack,
// synced and installed before they are read from it, then deletes the
// old one. On an error the old pack stays as it was.
func (p *Pinned) compact(name string) error {
	p.mu.Lock()
	var recs []packRecord
	for h, loc := range p.packed {
		if loc.pack == name {
			recs = append(recs, packRecord{hash: h, loc: loc})
		}
	}
	p.mu.Unlock()
	err := p.copyToNewPack(name, recs)
	if err != nil {
		p.mu.Lock()
		if u := p.packs[name]; u != nil {
			u.compacting = false
		}
		p.mu.Unlock()
	}
	return err
}

func (p *Pinned) copyToNewPack(name string, recs []packRecord) error {
	src, err := os.Open(filepath.Join(p.packDir, name))
	if err != nil {
		return fmt.Errorf("compact pack %s: %w", name, err)
	}
	defer src.Close()
	w, err := newPackWriter(p.tmpDir)
	if err != nil {
		return fmt.Errorf("compact pack %s: %w", name, err)
	}
	moved := make([]packRecord, len(recs))
	for i, r := range recs {
		if _, err := w.f.ReadFrom(io.NewSectionReader(src, r.loc.off, r.loc.size)); err != nil {
			w.discard()
			return fmt.Errorf("compact pack %s: %w", name, err)
		}
		moved[i] = packRecord{hash: r.hash, loc: packLoc{off: w.size, size: r.loc.size}}
		w.size += r.loc.size
	}
	if err := w.f.Sync(); err != nil {
		w.discard()
		return fmt.Errorf("compact pack %s: sync: %w", name, err)
	}
	newName, err := w.install(p.packDir)
	if err != nil {
		w.discard()
		return fmt.Errorf("compact pack %s: %w", name, err)
	}
	if err := p.syncFS(p.packDir); err != nil {
		// The new pack's name may not be durable: keep reading the old.
		os.Remove(filepath.Join(p.packDir, newName))
		return fmt.Errorf("compact pack %s: sync: %w", name, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.total += w.size
	old, u := p.packs[name], p.addPackLocked(newName, w.size, nil)
	for _, r := range moved {
		loc, ok := p.packed[r.hash]
		if !ok || loc.pack != name || old == nil {
			continue // removed meanwhile: dead in the new pack
		}
		r.loc.pack = newName
		p.packed[r.hash] = r.loc
		old.live--
		old.liveBytes -= r.loc.size
		u.live++
		u.liveBytes += r.loc.size
	}
	p.finishPackLocked(newName)
	if old != nil && old.live == 0 {
		p.dropPackLocked(name)
	}
	return nil
}

// packCount is how many pack files hold pinned blobs (metrics, tests).
func (p *Pinned) packCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.packs)
}
