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

	"github.com/prometheus/client_golang/prometheus"
)

// Pinned holds pushed content: blobs named by the SHA-256 of their bytes,
// each an object record (so every read is checked block by block, as the
// disk tier's are), in a file of its own under blobs/ or among others in
// a pack file under packs/ (pack.go). A blob appears only once it is
// whole, synced and its hash verified, and nothing here is evicted:
// release sync removes what no release it keeps names.
type Pinned struct {
	dir, tmpDir, packDir string
	maxBytes             int64

	mu     sync.Mutex // protects sizes, total, packed and packs
	sizes  map[string]int64
	total  int64 // bytes on disk: pinned blobs, and the dead records in packs
	packed map[string]packLoc
	packs  map[string]*packUse // by file name

	corrupt     prometheus.Counter
	compactions *prometheus.CounterVec // by result
	// syncFS flushes the file system holding a directory (syncfs(2));
	// tests replace it to watch the order of syncs and renames.
	syncFS func(dir string) error
}

// Errors of Pinned.Put.
var (
	// ErrPinnedFull is a blob that would take pinned content over its bound.
	ErrPinnedFull = errors.New("pinned content would exceed its bound")
	// ErrHashMismatch is a blob whose bytes do not hash to its name.
	ErrHashMismatch = errors.New("blob bytes do not match their hash")
)

// OpenPinned opens (or creates) the pinned store in dir, bounded by
// maxBytes on disk (0: only by the disk). Unfinished writes of an earlier
// run are removed.
func OpenPinned(dir string, maxBytes int64, reg prometheus.Registerer) (*Pinned, error) {
	p := &Pinned{dir: filepath.Join(dir, "blobs"), tmpDir: filepath.Join(dir, "tmp"), packDir: filepath.Join(dir, "packs"),
		maxBytes: maxBytes, sizes: map[string]int64{}, packed: map[string]packLoc{}, packs: map[string]*packUse{},
		syncFS: syncFileSystem}
	if err := os.RemoveAll(p.tmpDir); err != nil {
		return nil, fmt.Errorf("pinned: clear unfinished writes: %w", err)
	}
	for _, d := range []string{p.dir, p.tmpDir, p.packDir} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return nil, fmt.Errorf("pinned: %w", err)
		}
	}
	err := filepath.WalkDir(p.dir, func(path string, de os.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		info, err := de.Info()
		if err != nil {
			return err
		}
		p.sizes[de.Name()] = onDisk(info.Size())
		p.total += onDisk(info.Size())
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("pinned: index %s: %w", p.dir, err)
	}
	if err := p.loadPacks(); err != nil {
		return nil, fmt.Errorf("pinned: index %s: %w", p.packDir, err)
	}
	p.registerMetrics(reg)
	return p, nil
}

func (p *Pinned) registerMetrics(reg prometheus.Registerer) {
	p.corrupt = prometheus.NewCounter(prometheus.CounterOpts{Name: "cdn_edge_pinned_corrupt_total", Help: "Pinned blobs found corrupt and dropped."})
	p.compactions = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cdn_edge_pinned_compactions_total",
		Help: "Pack files of pinned blobs rewritten without their removed blobs, by result (ok, error: the pack stays as it was)."}, []string{"result"})
	if reg != nil {
		reg.MustRegister(p.corrupt, p.compactions,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "cdn_edge_pinned_bytes", Help: "Bytes of pushed content pinned on disk."},
				func() float64 { return float64(p.Bytes()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "cdn_edge_pinned_blobs", Help: "Pushed blobs pinned on disk."},
				func() float64 { return float64(p.Len()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "cdn_edge_pinned_packs", Help: "Pack files holding pinned blobs."},
				func() float64 { return float64(p.packCount()) }))
	}
}

func (p *Pinned) path(hash string) string { return filepath.Join(p.dir, hash[:2], hash) }

// validName guards the file system against a name that is not a hash.
func validName(hash string) bool {
	_, err := hex.DecodeString(hash)
	return err == nil && len(hash) == 2*sha256.Size
}

// Has reports whether blob hash is pinned.
func (p *Pinned) Has(hash string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.sizes[hash]
	return ok
}

// Put pins the bytes of r as blob hash, size bytes long. It fails, keeping
// nothing, with ErrHashMismatch when the bytes are not what the name says
// and ErrPinnedFull when the bound would be crossed; a full disk fails the
// same way the operating system says.
func (p *Pinned) Put(hash string, r io.Reader, size int64) error {
	if !validName(hash) {
		return fmt.Errorf("pin %q: not a SHA-256 name", hash)
	}
	if p.Has(hash) {
		return nil
	}
	meta, err := json.Marshal(objMeta{Key: hash, Status: 200})
	if err != nil {
		return err
	}
	need := onDisk(objSize(int64(len(meta)), size))
	if !p.reserve(need) {
		return fmt.Errorf("pin %s (%d bytes): %w", hash, size, ErrPinnedFull)
	}
	committed := false
	defer func() { p.settle(hash, need, committed) }()
	// Synced before it is renamed into place: a crash must not leave a
	// name whose bytes never reached the disk.
	tmp, _, err := writeTempObject(p.tmpDir, "blob-*", meta, true, func(ow io.Writer) error {
		return copyVerified(ow, r, hash, size)
	})
	if err != nil {
		return fmt.Errorf("pin %s: %w", hash, err)
	}
	err = os.MkdirAll(filepath.Dir(p.path(hash)), 0o750)
	if err == nil {
		err = os.Rename(tmp, p.path(hash))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("pin %s: %w", hash, err)
	}
	committed = true
	return nil
}

// reserve accounts need bytes for a blob being written, unless the
// bound forbids it.
func (p *Pinned) reserve(need int64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.maxBytes > 0 && p.total+need > p.maxBytes {
		return false
	}
	p.total += need
	return true
}

// settle ends a reservation: the blob is indexed, or its bytes returned.
func (p *Pinned) settle(hash string, need int64, committed bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, dup := p.sizes[hash]; committed && !dup {
		p.sizes[hash] = need
		return
	}
	p.total -= need
}

func (p *Pinned) release(hash string, need int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.sizes[hash]; ok {
		delete(p.sizes, hash)
		p.total -= need
	}
}

// Open returns blob hash as an entry with only a body: whole (verified)
// when it is at most inlineMax bytes, else open on disk and verified as
// it is read; the caller must Release it. A blob found corrupt is
// dropped, and ErrCorrupt or os.ErrNotExist returned.
func (p *Pinned) Open(hash string, inlineMax int64) (*Entry, error) {
	if !validName(hash) {
		return nil, os.ErrNotExist
	}
	p.mu.Lock()
	loc, packed := p.packed[hash]
	p.mu.Unlock()
	if packed {
		return p.openPackedRetry(hash, loc, inlineMax)
	}
	e, err := readObjectFile(p.path(hash), hash, inlineMax, func() { p.dropCorrupt(hash) })
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		p.dropCorrupt(hash)
	}
	if errors.Is(err, os.ErrNotExist) {
		p.release(hash, p.size(hash))
	}
	return e, err
}

func (p *Pinned) size(hash string) int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sizes[hash]
}

func (p *Pinned) dropCorrupt(hash string) {
	p.corrupt.Inc()
	p.Remove(hash)
}

// Remove unpins a blob. A packed one's bytes stay in its pack until
// Compact (or until the pack's last blob goes).
func (p *Pinned) Remove(hash string) {
	if !validName(hash) {
		return
	}
	p.mu.Lock()
	loc, packed := p.packed[hash]
	if packed {
		p.unpinPackedLocked(hash, loc)
	}
	p.mu.Unlock()
	if packed {
		return
	}
	p.release(hash, p.size(hash))
	os.Remove(p.path(hash))
}

// Hashes lists the pinned blobs.
func (p *Pinned) Hashes() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, 0, len(p.sizes))
	for h := range p.sizes {
		out = append(out, h)
	}
	return out
}

// Len is the number of pinned blobs.
func (p *Pinned) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.sizes)
}

// Bytes is the disk space pinned content takes.
func (p *Pinned) Bytes() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.total
}
