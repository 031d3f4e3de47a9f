package cache

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/selfcdn/cdn/internal/sketch"
)

// DiskConfig sizes the disk tier.
type DiskConfig struct {
	// Dir holds the objects, the index journal and temporary files.
	Dir string
	// MaxBytes bounds the bytes the objects take on disk (counted in 4 KiB
	// filesystem blocks).
	MaxBytes int64
	// MaxObjects bounds the object count; 0 means no bound.
	MaxObjects int
	// MaxObjectBytes is the largest body kept; 0 means MaxBytes/8.
	MaxObjectBytes int64
	// Log receives corruption and write-failure reports; nil discards them.
	Log *slog.Logger
}

// Disk is the disk tier: one file per object under Dir/objects, named by
// the hash of its key, with an append-only journal as the index. An object
// becomes visible only once its file is complete: it is written under
// Dir/tmp, then renamed into place. Reads check every checksum; a bad file
// is dropped and reported as a miss, so the edge fetches it again.
//
// Safe for concurrent use. File I/O runs outside the lock; the lock covers
// the index, the journal and the renames (so the start-up sweep never takes
// a freshly renamed file for an orphan).
type Disk struct {
	objDir, tmpDir string
	maxBytes       int64
	maxObjects     int
	maxObj         int64
	log            *slog.Logger
	now            func() time.Time

	mu  sync.Mutex // protects idx and jr
	idx *sieve
	jr  *journal

	// asked counts lookups per key for admission: once the tier is full,
	// a new object takes space only from a less popular one.
	asked *sketch.Sketch

	open *openFiles // object files of recent large hits

	failing atomic.Bool   // the last write failed; logged once until one succeeds
	deletes atomic.Uint64 // explicit Deletes so far (not evictions)
	metrics diskMetrics

	stopSweep context.CancelFunc
	sweepDone chan struct{}
}

type diskMetrics struct {
	corrupt, evictions, writeErrors, writes, refused prometheus.Counter
}

const (
	// openFilesMax bounds the object files kept open between hits.
	openFilesMax = 256
	// recheckAfter is how long a block that passed its checksum is
	// trusted, in an unchanged file, before a read checks it again.
	recheckAfter = 10 * time.Second
)

var blockPool = sync.Pool{New: func() any { b := make([]byte, blockSize); return &b }}

// OpenDisk opens (or creates) the disk tier in cfg.Dir, replaying its
// journal, and starts a background sweep of files the journal does not
// know (left by a crash between a rename and its journal record).
func OpenDisk(cfg DiskConfig, reg prometheus.Registerer) (*Disk, error) {
	if cfg.MaxBytes <= 0 {
		return nil, fmt.Errorf("disk tier: size must be > 0, got %d", cfg.MaxBytes)
	}
	d := &Disk{
		objDir: filepath.Join(cfg.Dir, "objects"), tmpDir: filepath.Join(cfg.Dir, "tmp"),
		maxBytes: cfg.MaxBytes, maxObjects: cfg.MaxObjects, maxObj: cfg.MaxObjectBytes,
		log: cfg.Log, now: time.Now, idx: newSieve(),
		asked: sketch.New(sketchWidth(cfg.MaxBytes, cfg.MaxObjects)),
	}
	if d.maxObj <= 0 {
		d.maxObj = cfg.MaxBytes / 8
	}
	d.open = newOpenFiles(openFilesMax, recheckAfter, func() time.Time { return d.now() })
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	// Temporary files are fills a crash interrupted: never complete.
	if err := os.RemoveAll(d.tmpDir); err != nil {
		return nil, fmt.Errorf("disk tier: clear %s: %w", d.tmpDir, err)
	}
	for _, dir := range []string{d.objDir, d.tmpDir} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("disk tier: %w", err)
		}
	}
	for i := range 256 {
		if err := os.MkdirAll(filepath.Join(d.objDir, fmt.Sprintf("%02x", i)), 0o755); err != nil {
			return nil, fmt.Errorf("disk tier: %w", err)
		}
	}
	jr, err := openJournal(filepath.Join(cfg.Dir, "index.log"), d.idx)
	if err != nil {
		return nil, fmt.Errorf("disk tier: %w", err)
	}
	d.jr = jr
	d.registerMetrics(reg)
	d.mu.Lock()
	// The cache may have shrunk since the last run.
	d.evictLocked(0)
	if d.jr.records > 2*d.idx.len()+1024 {
		if err := d.jr.compact(d.idx); err != nil {
			d.log.Warn("disk tier: compact index", slog.Any("err", err))
		}
	}
	d.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	d.stopSweep, d.sweepDone = cancel, make(chan struct{})
	go func() {
		defer close(d.sweepDone)
		d.sweep(ctx)
	}()
	return d, nil
}

// Close stops the sweep and closes the journal.
func (d *Disk) Close() error {
	d.stopSweep()
	<-d.sweepDone
	d.open.close()
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.jr.close()
}

// MaxObjectBytes is the largest body the tier keeps.
func (d *Disk) MaxObjectBytes() int64 { return d.maxObj }

// sketchWidth sizes the admission sketch to about the objects the tier
// holds (at a typical 32 KiB each), from 64 Ki to 1 Mi counters per row
// (256 KiB to 4 MiB).
func sketchWidth(maxBytes int64, maxObjects int) int {
	n := maxBytes / (32 << 10)
	if maxObjects > 0 {
		n = min(n, int64(maxObjects))
	}
	return int(min(max(n, 1<<16), 1<<20))
}

func keyHash(key string) uint64 { return xxhash.Sum64String(key) }

func (d *Disk) path(hash uint64) string {
	h := strconv.FormatUint(hash, 16)
	for len(h) < 16 {
		h = "0" + h
	}
	return filepath.Join(d.objDir, h[:2], h)
}

// onDisk rounds a file size up to the 4 KiB blocks it occupies.
func onDisk(n int64) int64 { return (n + 4095) &^ 4095 }

// Get returns the entry stored under key. A body up to inlineMax bytes is
// read and verified whole into Entry.Body; a larger one is left on disk as
// Entry.Disk, open for reading, which the caller must Close. A missing,
// expired or corrupt object is a miss (corrupt ones are dropped).
func (d *Disk) Get(key string, inlineMax int64) (*Entry, bool) {
	hash := keyHash(key)
	d.asked.Add(hash)
	d.mu.Lock()
	held := d.idx.touch(hash)
	d.mu.Unlock()
	if !held {
		return nil, false
	}
	e, err := d.read(hash, key, inlineMax)
	switch {
	case err == nil:
		if exp := e.expiry(); exp > 0 && d.now().Sub(e.Meta.ResponseTime) > exp {
			e.Release()
			d.remove(hash)
			return nil, false
		}
		return e, true
	case errors.Is(err, errOtherKey):
		return nil, false
	case errors.Is(err, os.ErrNotExist):
		// Evicted or deleted since the lookup, or lost: a miss, not damage.
		d.forget(hash)
		return nil, false
	default:
		d.dropCorrupt(hash, key, err)
		return nil, false
	}
}

var errOtherKey = errors.New("object file holds another key")

// maxSmallOverhead is what an object file typically adds to its body
// (header, meta, sums): files up to inlineMax plus this are read at once.
const maxSmallOverhead = 8 << 10

func (d *Disk) read(hash uint64, key string, inlineMax int64) (*Entry, error) {
	path := d.path(hash)
	if o := d.open.get(path); o != nil {
		switch {
		case o.key != key:
			o.release()
			return nil, errOtherKey
		case o.size > inlineMax:
			return o.newEntry(), nil
		}
		o.release() // the caller wants this body whole: read it below
	}
	e, o, err := openObjectFile(path, key, inlineMax, func() {
		d.dropCorrupt(hash, key, errors.New("body block checksum mismatch"))
	})
	if o != nil {
		d.open.keep(path, o)
		e = o.newEntry()
	}
	return e, err
}

// readObjectFile reads the object file at path, which must hold key: a
// body up to inlineMax whole (verified), a larger one left on disk,
// verified as it streams; a block that fails calls onCorrupt.
func readObjectFile(path, key string, inlineMax int64, onCorrupt func()) (*Entry, error) {
	e, o, err := openObjectFile(path, key, inlineMax, onCorrupt)
	if o != nil {
		e = o.newEntry()
	}
	return e, err
}

// openObjectFile checks the object file at path, which must hold key, and
// returns an entry with its body when that is at most inlineMax bytes
// (read whole and verified), or else the open file, for the caller to
// make entries of.
func openObjectFile(path, key string, inlineMax int64, onCorrupt func()) (*Entry, *objectFile, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, err
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return openObjectAt(f, &st, 0, st.Size, key, inlineMax, onCorrupt)
}

// openObjectAt is openObjectFile of the object that takes size bytes of
// f from base on (a whole object file, or a record of a pack file). It
// takes f over: f is closed unless the returned objectFile holds it.
func openObjectAt(f *os.File, st *syscall.Stat_t, base, size int64, key string, inlineMax int64, onCorrupt func()) (*Entry, *objectFile, error) {
	keep := false
	defer func() {
		if !keep {
			f.Close()
		}
	}()
	if base < 0 || size < 0 || base+size > st.Size {
		return nil, nil, fmt.Errorf("%w: object at %d+%d past the file's %d bytes", ErrCorrupt, base, size, st.Size)
	}
	// One read covers an object whose body will be read whole; for a body
	// left on disk, only the start (header and, mostly, the meta).
	firstLen := min(size, 4<<10)
	if size <= inlineMax+maxSmallOverhead {
		firstLen = size
	}
	first := make([]byte, firstLen)
	if _, err := f.ReadAt(first, base); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	l, err := parseHeader(first, size)
	if err != nil {
		return nil, nil, err
	}
	part := func(off, n int64) ([]byte, error) {
		if off+n <= int64(len(first)) {
			return first[off : off+n], nil
		}
		b := make([]byte, n)
		if _, err := f.ReadAt(b, base+off); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
		}
		return b, nil
	}
	metaBytes, err := part(objHeaderSize, l.metaLen)
	if err != nil {
		return nil, nil, err
	}
	if crc32.Checksum(metaBytes, castagnoli) != l.metaCRC {
		return nil, nil, fmt.Errorf("%w: meta checksum mismatch", ErrCorrupt)
	}
	var m objMeta
	if err := json.Unmarshal(metaBytes, &m); err != nil {
		return nil, nil, fmt.Errorf("%w: meta: %w", ErrCorrupt, err)
	}
	if m.Key != key {
		return nil, nil, errOtherKey
	}
	sumBytes, err := part(l.sumsOff(), size-l.sumsOff())
	if err != nil {
		return nil, nil, err
	}
	sums, err := parseSums(sumBytes, l.bodyLen)
	if err != nil {
		return nil, nil, err
	}
	e := m.entry()
	if l.bodyLen <= inlineMax {
		body, err := part(l.bodyOff(), l.bodyLen)
		if err != nil {
			return nil, nil, err
		}
		if err := verifyBlocks(body, 0, sums); err != nil {
			return nil, nil, err
		}
		e.Body = body[:len(body):len(body)]
		return e, nil, nil
	}
	keep = true
	o := &objectFile{f: f, fd: int(f.Fd()), key: key, entry: *e, off: base + l.bodyOff(), size: l.bodyLen, sums: sums,
		onCorrupt: onCorrupt, stamp: stampOf(st)}
	o.refs.Store(1)
	return nil, o, nil
}

// forget drops an index entry whose file is gone, unless a new file
// took its place meanwhile.
func (d *Disk) forget(hash uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := os.Stat(d.path(hash)); errors.Is(err, os.ErrNotExist) && d.idx.remove(hash) {
		d.jr.append(record{op: opRemove, hash: hash})
	}
}

func (d *Disk) dropCorrupt(hash uint64, key string, err error) {
	d.metrics.corrupt.Inc()
	d.log.Warn("disk tier: dropped a corrupt object", slog.String("key", key), slog.Any("err", err))
	d.remove(hash)
}

// Put stores e under key with the body read from body (e.Body when body is
// nil). The object is visible to Get only once it is whole. A body over
// the tier's object limit is not stored (ErrTooLarge).
func (d *Disk) Put(key string, e *Entry, body io.Reader) error {
	size := int64(-1) // unknown until streamed
	if body == nil {
		body, size = bytes.NewReader(e.Body), int64(len(e.Body))
	}
	err := d.put(key, e, body, size)
	if err != nil && !errors.Is(err, ErrTooLarge) && !errors.Is(err, ErrNotAdmitted) {
		d.metrics.writeErrors.Inc()
		if !d.failing.Swap(true) {
			// Once per failing spell: a full disk would log every fill.
			d.log.Error("disk tier: storing objects fails; serving from memory and origin", slog.Any("err", err))
		}
		return err
	}
	if err == nil && d.failing.Swap(false) {
		d.log.Info("disk tier: storing objects works again")
	}
	return err
}

// ErrTooLarge is returned by Put for a body above the object limit.
var ErrTooLarge = errors.New("object larger than the disk tier keeps")

// ErrNotAdmitted is returned by Put for a new object the full tier keeps
// out: it was asked for less often than the object it would evict.
var ErrNotAdmitted = errors.New("object less popular than what it would evict")

func (d *Disk) put(key string, e *Entry, body io.Reader, size int64) error {
	if size > d.maxObj {
		return ErrTooLarge
	}
	hash := keyHash(key)
	if !d.admit(hash, size) {
		d.metrics.refused.Inc()
		return ErrNotAdmitted
	}
	meta, err := json.Marshal(metaOf(key, e))
	if err != nil {
		return fmt.Errorf("encode object meta: %w", err)
	}
	tmp, bodyLen, err := writeTempObject(d.tmpDir, "obj-*", meta, false, func(ow io.Writer) error {
		buf := blockPool.Get().(*[]byte)
		defer blockPool.Put(buf)
		_, err := io.CopyBuffer(&limitWriter{w: ow, n: d.maxObj}, body, *buf)
		return err
	})
	if err != nil {
		return fmt.Errorf("write object file: %w", err)
	}
	return d.commit(hash, tmp, onDisk(objSize(int64(len(meta)), bodyLen)))
}

// admit decides, before anything is written, whether a new object may
// take space (TinyLFU admission): always while the tier has room and for a
// key already held (a new version); once full, only when its key was
// looked up more often than the key SIEVE would evict for it. Without it,
// every miss wrote through and pushed out an object asked for again, and
// the two tiers lost to one LRU of their bytes; one-time requests (scans,
// crawlers) now cost no disk writes either. A streamed body's size is not
// known yet (-1): it counts as one block.
func (d *Disk) admit(hash uint64, size int64) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return admits(d.idx, d.asked, hash, onDisk(max(size, 1)), d.maxBytes, d.maxObjects)
}

// admits is the admission rule over an index bounded by maxBytes and
// maxObjects (0: unbounded), for need more bytes under hash.
func admits(idx *sieve, asked *sketch.Sketch, hash uint64, need, maxBytes int64, maxObjects int) bool {
	if idx.size(hash) >= 0 {
		return true
	}
	if idx.bytes+need <= maxBytes && (maxObjects == 0 || idx.len() < maxObjects) {
		return true
	}
	victim, ok := idx.victim()
	return !ok || asked.Estimate(hash) > asked.Estimate(victim)
}

// commit renames a finished object file into place and indexes it, evicting
// what it must to stay in bounds.
func (d *Disk) commit(hash uint64, tmp string, size int64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.evictLocked(size - max(d.idx.size(hash), 0))
	path := d.path(hash)
	d.open.drop(path) // hits from now on open the new file
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("commit object file: %w", err)
	}
	d.idx.insert(hash, size)
	d.metrics.writes.Inc()
	if err := d.jr.append(record{op: opAdd, hash: hash, size: size}); err != nil {
		// Without its record the object would not survive a restart; the
		// start-up sweep will remove the file then. It serves until then.
		return err
	}
	d.maybeCompactLocked()
	return nil
}

// evictLocked makes room for need more bytes (and one more object when
// need > 0).
func (d *Disk) evictLocked(need int64) {
	for d.idx.bytes+need > d.maxBytes || (d.maxObjects > 0 && d.idx.len()+min(int(need), 1) > d.maxObjects) {
		hash, ok := d.idx.victim()
		if !ok {
			return
		}
		d.removeLocked(hash)
		d.metrics.evictions.Inc()
	}
}

// Delete removes the object under key, if any: an invalidation, which
// must survive a power cut, so the journal is synced.
func (d *Disk) Delete(key string) {
	d.deletes.Add(1)
	hash := keyHash(key)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.idx.size(hash) < 0 {
		return
	}
	d.removeLocked(hash)
	if err := d.jr.f.Sync(); err != nil {
		d.log.Warn("disk tier: sync the index after a delete", slog.Any("err", err))
	}
}

// Deletes counts the Delete calls so far. A reader that saw the same count
// before and after reading an object knows no invalidation ran meanwhile.
func (d *Disk) Deletes() uint64 { return d.deletes.Load() }

// Has reports whether an object is indexed under key (without reading it).
func (d *Disk) Has(key string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.idx.size(keyHash(key)) >= 0
}

func (d *Disk) remove(hash uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.removeLocked(hash)
}

func (d *Disk) removeLocked(hash uint64) {
	if !d.idx.remove(hash) {
		return
	}
	// Record first: a crash after it leaves an orphan file (swept), never
	// an index entry for a file that is gone... which reads would catch too.
	if err := d.jr.append(record{op: opRemove, hash: hash}); err != nil {
		d.log.Warn("disk tier: journal a removal", slog.Any("err", err))
	}
	path := d.path(hash)
	d.open.drop(path)
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		d.log.Warn("disk tier: remove an object file", slog.Any("err", err))
	}
	d.maybeCompactLocked()
}

func (d *Disk) maybeCompactLocked() {
	if d.jr.records > 4*d.idx.len()+4096 {
		if err := d.jr.compact(d.idx); err != nil {
			d.log.Warn("disk tier: compact index", slog.Any("err", err))
		}
	}
}

// Len and Bytes report the objects held and the bytes they take.
func (d *Disk) Len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.idx.len()
}

func (d *Disk) Bytes() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.idx.bytes
}

// sweep removes object files the index does not know: a crash between a
// file's rename and its journal record, or a record lost to a torn tail.
func (d *Disk) sweep(ctx context.Context) {
	for i := range 256 {
		dir := filepath.Join(d.objDir, fmt.Sprintf("%02x", i))
		names, err := readNames(dir)
		if err != nil {
			d.log.Warn("disk tier: sweep", slog.Any("err", err))
			continue
		}
		d.mu.Lock()
		for _, name := range names {
			hash, err := strconv.ParseUint(name, 16, 64)
			if err != nil || len(name) != 16 || d.idx.size(hash) < 0 {
				os.Remove(filepath.Join(dir, name))
			}
		}
		d.mu.Unlock()
		if ctx.Err() != nil {
			return
		}
	}
}

func readNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}

func (d *Disk) registerMetrics(reg prometheus.Registerer) {
	tier := prometheus.Labels{"tier": "disk"}
	d.metrics = diskMetrics{
		corrupt:     prometheus.NewCounter(prometheus.CounterOpts{Name: "cdn_edge_cache_corrupt_total", Help: "Objects that failed a checksum or size check and were dropped.", ConstLabels: tier}),
		evictions:   prometheus.NewCounter(prometheus.CounterOpts{Name: "cdn_edge_cache_evictions_total", Help: "Entries evicted to make room.", ConstLabels: tier}),
		writeErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "cdn_edge_cache_write_errors_total", Help: "Objects that could not be written (full disk, I/O errors).", ConstLabels: tier}),
		writes:      prometheus.NewCounter(prometheus.CounterOpts{Name: "cdn_edge_cache_writes_total", Help: "Objects written.", ConstLabels: tier}),
		refused:     prometheus.NewCounter(prometheus.CounterOpts{Name: "cdn_edge_cache_admissions_refused_total", Help: "New objects not written because the full tier holds more popular ones.", ConstLabels: tier}),
	}
	if reg == nil {
		return
	}
	reg.MustRegister(d.metrics.corrupt, d.metrics.evictions, d.metrics.writeErrors, d.metrics.writes, d.metrics.refused,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "cdn_edge_cache_bytes", Help: "Bytes held by the cache tier.", ConstLabels: tier},
			func() float64 { return float64(d.Bytes()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "cdn_edge_cache_max_bytes", Help: "Byte budget of the cache tier.", ConstLabels: tier},
			func() float64 { return float64(d.maxBytes) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "cdn_edge_cache_objects", Help: "Objects held by the cache tier.", ConstLabels: tier},
			func() float64 { return float64(d.Len()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "cdn_edge_disk_open_files", Help: "Object files of recent disk hits kept open between hits."},
			func() float64 { return float64(d.open.len()) }),
	)
}

// limitWriter fails once more than n bytes were written.
type limitWriter struct {
	w io.Writer
	n int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.n {
		return 0, ErrTooLarge
	}
	l.n -= int64(len(p))
	return l.w.Write(p)
}
