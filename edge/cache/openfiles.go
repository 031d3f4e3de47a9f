package cache

import (
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// objectFile is an object file whose body is served from disk: open, with
// its meta and block sums parsed once. DiskBodies share it; the last
// holder (a body, or openFiles while it keeps the file) closes it.
type objectFile struct {
	f         *os.File
	fd        int
	refs      atomic.Int32
	key       string
	entry     Entry // the meta, as an entry without a body
	off, size int64 // where the body lies in the file
	sums      []uint32
	onCorrupt func()
	stamp     fileStamp

	// cache is the openFiles keeping this file open, nil for a one-off
	// open; checked[i] is when block i last passed its checksum (Unix
	// nanoseconds, 0 never), kept only for a file in a cache.
	cache   *openFiles
	checked []atomic.Int64
	// mapped is a kept file mapped into memory, and body the body in it;
	// nil when the body is read with pread. Reading them faults if the
	// file was truncated behind our back: every reader of body turns
	// that fault into an error (see DiskBody.endFaultGuard).
	mapped, body []byte
}

// fileStamp is what changes when anyone writes, truncates or replaces a
// file's contents.
type fileStamp struct {
	ino          uint64
	size         int64
	mtime, ctime int64
}

func stampOf(st *syscall.Stat_t) fileStamp {
	return fileStamp{ino: st.Ino, size: st.Size, mtime: st.Mtim.Nano(), ctime: st.Ctim.Nano()}
}

// newEntry returns an entry for one reader of the file; it takes over a
// reference the caller holds.
func (o *objectFile) newEntry() *Entry {
	e := new(Entry)
	*e = o.entry
	e.Disk = &DiskBody{obj: o, bufBlock: -1}
	return e
}

func (o *objectFile) acquire() { o.refs.Add(1) }

func (o *objectFile) release() {
	if o.refs.Add(-1) == 0 {
		if o.mapped != nil {
			syscall.Munmap(o.mapped)
		}
		o.f.Close()
	}
}

// mapBody maps the file so hits read the body straight from the page
// cache instead of copying it out with pread; best effort.
func (o *objectFile) mapBody() {
	if o.size == 0 {
		return
	}
	m, err := syscall.Mmap(o.fd, 0, int(o.off+o.size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return
	}
	o.mapped, o.body = m, m[o.off:o.off+o.size:o.off+o.size]
}

// inMapping reports whether addr lies in the file's mapping.
func (o *objectFile) inMapping(addr uintptr) bool {
	if len(o.mapped) == 0 {
		return false
	}
	start := uintptr(unsafe.Pointer(unsafe.SliceData(o.mapped)))
	return addr >= start && addr-start < uintptr(len(o.mapped))
}

// trusted reports whether block blk passed its checksum recently enough
// that reading it again need not check it.
func (o *objectFile) trusted(blk int64) bool {
	if o.checked == nil {
		return false
	}
	t := o.checked[blk].Load()
	return t != 0 && o.cache.now().UnixNano()-t < int64(o.cache.recheck)
}

// passed records that block blk matched its checksum. A write within the
// file system's timestamp granularity of the file's last change would not
// show in its ctime, so a check that close to it is not remembered.
func (o *objectFile) passed(blk int64) {
	if o.checked == nil {
		return
	}
	now := o.cache.now().UnixNano()
	if now-o.stamp.ctime < int64(ctimeGranularity) {
		return
	}
	o.checked[blk].Store(now)
}

// ctimeGranularity bounds how coarse the kernel's file timestamps are
// (one clock tick; 10 ms at HZ=100), with a wide margin.
const ctimeGranularity = 100 * time.Millisecond

// openFiles keeps the object files of recent disk hits open with their
// parsed meta and sums, and remembers which blocks passed their checksum:
// a hit on a large object then costs one fstat instead of an open, a meta
// decode and a checksum over every byte (nginx's open_file_cache, plus
// verification). What is remembered holds only while the file is the one
// that was checked (same inode, size, mtime and ctime, still linked), and
// a block is checked again once recheck has passed, so damage done behind
// the edge's back, or by the disk under it, is still caught.
type openFiles struct {
	mu      sync.Mutex
	files   map[string]*objectFile
	max     int
	recheck time.Duration
	now     func() time.Time
}

func newOpenFiles(max int, recheck time.Duration, now func() time.Time) *openFiles {
	return &openFiles{files: make(map[string]*objectFile), max: max, recheck: recheck, now: now}
}

// get returns the file kept open for path, with a reference for the
// caller, if it is still the file that was opened; nil otherwise.
func (c *openFiles) get(path string) *objectFile {
	c.mu.Lock()
	o := c.files[path]
	if o != nil {
		o.acquire()
	}
	c.mu.Unlock()
	if o == nil {
		return nil
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(o.fd, &st); err != nil || st.Nlink == 0 || stampOf(&st) != o.stamp {
		c.forget(path, o)
		o.release()
		return nil
	}
	return o
}

// keep starts keeping o, freshly opened from path and not yet shared.
func (c *openFiles) keep(path string, o *objectFile) {
	if c.max <= 0 {
		return
	}
	o.cache = c
	o.checked = make([]atomic.Int64, len(o.sums))
	o.mapBody()
	o.acquire()
	var out []*objectFile
	c.mu.Lock()
	if old := c.files[path]; old != nil {
		out = append(out, old)
	} else if len(c.files) >= c.max {
		for p, victim := range c.files { // map order: a random victim
			delete(c.files, p)
			out = append(out, victim)
			break
		}
	}
	c.files[path] = o
	c.mu.Unlock()
	for _, o := range out {
		o.release()
	}
}

// drop stops keeping whatever is open for path: the object was removed
// or replaced.
func (c *openFiles) drop(path string) { c.forget(path, nil) }

// forget stops keeping path's file if it is o (any file when o is nil).
func (c *openFiles) forget(path string, o *objectFile) {
	c.mu.Lock()
	held := c.files[path]
	if held == nil || o != nil && held != o {
		c.mu.Unlock()
		return
	}
	delete(c.files, path)
	c.mu.Unlock()
	held.release()
}

// close stops keeping every file; bodies still being read keep theirs.
func (c *openFiles) close() {
	c.mu.Lock()
	files := c.files
	c.files = make(map[string]*objectFile)
	c.mu.Unlock()
	for _, o := range files {
		o.release()
	}
}

// len is the number of files kept open.
func (c *openFiles) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.files)
}
