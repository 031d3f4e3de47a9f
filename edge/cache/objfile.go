package cache

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"os"
	"runtime/debug"
	"sync"
	"time"

	"github.com/selfcdn/cdn/edge/freshness"
)

// An object file holds one entry:
//
//	header  32 bytes (layout below)
//	meta    JSON (objMeta): the key, status, header fields, freshness
//	body    the body, contiguous
//	sums    CRC-32C of each blockSize block of the body
//	trailer CRC-32C of sums, then "CDNe"
//
// Header, little endian: [0:4] "CDNo", [4] version, [8:12] meta length,
// [12:16] CRC-32C of meta, [16:24] body length, [24:28] block size,
// [28:32] CRC-32C of [0:28].
//
// Every byte is covered by a checksum, and the file's size must match what
// the header promises: a truncated, torn or bit-flipped object is detected
// before any of it is served. Block sums let a large body be verified as it
// streams, a block at a time, instead of reading it twice.
const (
	objHeaderSize  = 32
	objTrailerSize = 8
	objVersion     = 1
	blockSize      = 256 << 10
	maxMetaSize    = 1 << 20
)

var (
	objMagic     = []byte("CDNo")
	trailerMagic = []byte("CDNe")
)

// ErrCorrupt reports an object file that failed its checks.
var ErrCorrupt = errors.New("cache object corrupt")

// objMeta is the part of an Entry that goes to disk besides the body.
type objMeta struct {
	Key       string      `json:"key"`
	Status    int         `json:"status,omitempty"`
	Header    http.Header `json:"header,omitempty"`
	Vary      []string    `json:"vary,omitempty"`
	VaryIndex bool        `json:"vary_index,omitempty"`
	Gen       uint64      `json:"gen,omitempty"`
	// Freshness, durations in nanoseconds and the time in Unix nanoseconds.
	Lifetime     int64 `json:"lifetime"`
	InitialAge   int64 `json:"initial_age"`
	ResponseTime int64 `json:"response_time"`
	SWR          int64 `json:"swr,omitempty"`
	SIE          int64 `json:"sie,omitempty"`
	NoCache      bool  `json:"no_cache,omitempty"`
	NoStale      bool  `json:"no_stale,omitempty"`
	// Purge stamp and tags; files written before they existed read 0 and
	// none, older than any purge.
	Stamp uint64   `json:"stamp,omitempty"`
	Tags  []string `json:"tags,omitempty"`
}

func metaOf(key string, e *Entry) objMeta {
	return objMeta{
		Key: key, Status: e.Status, Header: e.Header, Vary: e.Vary, VaryIndex: e.VaryIndex, Gen: e.Gen,
		Lifetime: int64(e.Meta.Lifetime), InitialAge: int64(e.Meta.InitialAge), ResponseTime: e.Meta.ResponseTime.UnixNano(),
		SWR: int64(e.Meta.StaleWhileRevalidate), SIE: int64(e.Meta.StaleIfError), NoCache: e.Meta.NoCache, NoStale: e.Meta.NoStale,
		Stamp: e.Stamp, Tags: e.Tags,
	}
}

// entry rebuilds the Entry; the body is set by the caller.
func (m *objMeta) entry() *Entry {
	e := &Entry{Status: m.Status, Header: m.Header, Vary: m.Vary, VaryIndex: m.VaryIndex, Gen: m.Gen, Stamp: m.Stamp, Tags: m.Tags,
		Meta: freshness.Meta{
			Lifetime: time.Duration(m.Lifetime), InitialAge: time.Duration(m.InitialAge), ResponseTime: time.Unix(0, m.ResponseTime),
			StaleWhileRevalidate: time.Duration(m.SWR), StaleIfError: time.Duration(m.SIE), NoCache: m.NoCache, NoStale: m.NoStale,
		}}
	if e.Header == nil {
		e.Header = http.Header{}
	}
	if e.VaryIndex {
		e.Variants = new(Counter)
	}
	if lm, err := http.ParseTime(e.Header.Get("Last-Modified")); err == nil {
		e.LastModified = lm
	}
	return e
}

func numBlocks(bodyLen int64) int64 { return (bodyLen + blockSize - 1) / blockSize }

// objSize is the length of the object file for the given part lengths.
func objSize(metaLen, bodyLen int64) int64 {
	return objHeaderSize + metaLen + bodyLen + 4*numBlocks(bodyLen) + objTrailerSize
}

// writeTempObject writes a whole object file under dir (a temp name from
// pattern): meta, then the body copy writes into the object, checksums and
// all; synced to disk when durable is set. It returns the file's name and
// body length, ready to be renamed into place; on an error nothing is left.
func writeTempObject(dir, pattern string, meta []byte, durable bool, copy func(io.Writer) error) (string, int64, error) {
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return "", 0, err
	}
	ow, err := newObjWriter(f, meta)
	if err == nil {
		err = copy(ow)
	}
	if err == nil {
		err = ow.finish()
	}
	ow.release()
	if err == nil && durable {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", 0, err
	}
	return f.Name(), ow.bodyLen, nil
}

// objWriter writes an object file front to back.
type objWriter struct {
	f       *os.File
	base    int64 // where the object starts in f: 0, or its offset in a pack
	w       *bufio.Writer
	metaLen int64
	metaCRC uint32
	bodyLen int64
	sums    []uint32
	cur     uint32 // CRC of the current, unfinished block
	inBlock int64  // bytes in the current block
}

func newObjWriter(f *os.File, meta []byte) (*objWriter, error) {
	if len(meta) > maxMetaSize {
		return nil, fmt.Errorf("object meta is %d bytes, limit %d", len(meta), maxMetaSize)
	}
	w := objBufs.Get().(*bufio.Writer)
	w.Reset(f)
	ow := &objWriter{f: f, w: w, metaLen: int64(len(meta)), metaCRC: crc32.Checksum(meta, castagnoli)}
	var zero [objHeaderSize]byte // the header is written last, once the body length is known
	ow.w.Write(zero[:])
	_, err := ow.w.Write(meta)
	return ow, err
}

// objBufs holds the write buffers of object files: a 64 KiB buffer made
// for each of the 10,000 blobs a push pins was a fifth of an edge's CPU,
// in zeroing and page faults (issue 25).
var objBufs = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 64<<10) }}

// release gives the write buffer back; ow is not used after.
func (ow *objWriter) release() {
	if ow == nil || ow.w == nil {
		return
	}
	ow.w.Reset(nil)
	objBufs.Put(ow.w)
	ow.w = nil
}

func (ow *objWriter) Write(p []byte) (int, error) {
	n, err := ow.w.Write(p)
	q := p[:n]
	for len(q) > 0 {
		k := min(int64(len(q)), blockSize-ow.inBlock)
		ow.cur = crc32.Update(ow.cur, castagnoli, q[:k])
		ow.inBlock += k
		q = q[k:]
		if ow.inBlock == blockSize {
			ow.sums = append(ow.sums, ow.cur)
			ow.cur, ow.inBlock = 0, 0
		}
	}
	ow.bodyLen += int64(n)
	return n, err
}

// finish writes the sums, trailer and header.
func (ow *objWriter) finish() error {
	if ow.inBlock > 0 {
		ow.sums = append(ow.sums, ow.cur)
	}
	sums := make([]byte, 4*len(ow.sums), 4*len(ow.sums)+objTrailerSize)
	for i, s := range ow.sums {
		binary.LittleEndian.PutUint32(sums[4*i:], s)
	}
	trailer := binary.LittleEndian.AppendUint32(sums, crc32.Checksum(sums, castagnoli))
	trailer = append(trailer, trailerMagic...)
	if _, err := ow.w.Write(trailer); err != nil {
		return err
	}
	if err := ow.w.Flush(); err != nil {
		return err
	}
	var h [objHeaderSize]byte
	copy(h[0:4], objMagic)
	h[4] = objVersion
	binary.LittleEndian.PutUint32(h[8:12], uint32(ow.metaLen))
	binary.LittleEndian.PutUint32(h[12:16], ow.metaCRC)
	binary.LittleEndian.PutUint64(h[16:24], uint64(ow.bodyLen))
	binary.LittleEndian.PutUint32(h[24:28], blockSize)
	binary.LittleEndian.PutUint32(h[28:32], crc32.Checksum(h[:28], castagnoli))
	_, err := ow.f.WriteAt(h[:], ow.base)
	return err
}

// objLayout is what an object file's header says, checked against the file.
type objLayout struct {
	metaLen, bodyLen int64
	metaCRC          uint32
}

func (l objLayout) bodyOff() int64 { return objHeaderSize + l.metaLen }
func (l objLayout) sumsOff() int64 { return l.bodyOff() + l.bodyLen }

func parseHeader(h []byte, fileSize int64) (objLayout, error) {
	l, err := parseHeaderFields(h)
	if err != nil {
		return l, err
	}
	if want := objSize(l.metaLen, l.bodyLen); fileSize != want {
		return objLayout{}, fmt.Errorf("%w: file is %d bytes, header says %d", ErrCorrupt, fileSize, want)
	}
	return l, nil
}

// parseHeaderFields checks a header by itself, not against a length.
func parseHeaderFields(h []byte) (objLayout, error) {
	if len(h) < objHeaderSize || string(h[0:4]) != string(objMagic) || h[4] != objVersion ||
		binary.LittleEndian.Uint32(h[28:32]) != crc32.Checksum(h[:28], castagnoli) {
		return objLayout{}, fmt.Errorf("%w: bad header", ErrCorrupt)
	}
	l := objLayout{
		metaLen: int64(binary.LittleEndian.Uint32(h[8:12])),
		metaCRC: binary.LittleEndian.Uint32(h[12:16]),
		bodyLen: int64(binary.LittleEndian.Uint64(h[16:24])),
	}
	if binary.LittleEndian.Uint32(h[24:28]) != blockSize || l.metaLen > maxMetaSize || l.bodyLen < 0 || l.bodyLen > 1<<50 {
		return objLayout{}, fmt.Errorf("%w: bad header fields", ErrCorrupt)
	}
	return l, nil
}

// parseSums checks the trailer and returns the block sums.
func parseSums(b []byte, bodyLen int64) ([]uint32, error) {
	n := int(numBlocks(bodyLen))
	if len(b) != 4*n+objTrailerSize || string(b[len(b)-4:]) != string(trailerMagic) ||
		binary.LittleEndian.Uint32(b[4*n:]) != crc32.Checksum(b[:4*n], castagnoli) {
		return nil, fmt.Errorf("%w: bad trailer", ErrCorrupt)
	}
	sums := make([]uint32, n)
	for i := range sums {
		sums[i] = binary.LittleEndian.Uint32(b[4*i:])
	}
	return sums, nil
}

// verifyBlocks checks body (which starts at block first) against sums.
func verifyBlocks(body []byte, first int64, sums []uint32) error {
	for i := first; len(body) > 0; i++ {
		k := min(int64(len(body)), blockSize)
		if crc32.Checksum(body[:k], castagnoli) != sums[i] {
			return fmt.Errorf("%w: body block %d checksum mismatch", ErrCorrupt, i)
		}
		body = body[k:]
	}
	return nil
}

// DiskBody is a body served from its object file without loading it into
// memory. Every block is verified as it is read (or was, recently, by
// another reader of the same unchanged file: see openFiles); a mismatch
// drops the object and fails the read, so the client is cut off rather
// than served wrong bytes. A DiskBody is for one reader at a time; Close
// it when done.
type DiskBody struct {
	obj        *objectFile
	buf        []byte // one verified block, for reads that are not whole blocks
	bufBlock   int64
	reportOnce bool
	closed     bool
}

// Size is the body length.
func (b *DiskBody) Size() int64 { return b.obj.size }

// Close lets go of the object file.
func (b *DiskBody) Close() error {
	if !b.closed {
		b.closed = true
		b.obj.release()
	}
	return nil
}

// ReadAt reads verified body bytes.
func (b *DiskBody) ReadAt(p []byte, off int64) (n int, err error) {
	if off < 0 {
		return 0, errors.New("cache: negative offset")
	}
	if b.obj.body != nil {
		defer b.endFaultGuard(debug.SetPanicOnFault(true), &err)
		return b.readMapped(p, off)
	}
	size := b.obj.size
	for len(p) > 0 && off < size {
		blk := off / blockSize
		start := blk * blockSize
		blen := min(blockSize, size-start)
		if off == start && int64(len(p)) >= blen {
			// A whole block straight into p: no copy.
			if err := b.readBlocks(p[:blen], blk); err != nil {
				return n, err
			}
			n, off, p = n+int(blen), off+blen, p[blen:]
			continue
		}
		if b.bufBlock != blk || b.buf == nil {
			if b.buf == nil {
				b.buf = make([]byte, blockSize)
			}
			b.bufBlock = -1
			if err := b.readBlocks(b.buf[:blen], blk); err != nil {
				return n, err
			}
			b.bufBlock = blk
		}
		k := copy(p, b.buf[off-start:blen])
		n, off, p = n+k, off+int64(k), p[k:]
	}
	if len(p) > 0 {
		return n, io.EOF
	}
	return n, nil
}

// readBlocks reads p, whole blocks from block first on (the last may be
// the body's short tail), in one read, and verifies them.
func (b *DiskBody) readBlocks(p []byte, first int64) error {
	o := b.obj
	if o.body != nil {
		copy(p, o.body[first*blockSize:]) // the caller guards against faults
	} else if _, err := o.f.ReadAt(p, o.off+first*blockSize); err != nil {
		return b.corrupt(fmt.Errorf("read cached body: %w", err))
	}
	return b.check(p, first)
}

func (b *DiskBody) corrupt(err error) error {
	if !b.reportOnce && b.obj.onCorrupt != nil {
		b.reportOnce = true
		b.obj.onCorrupt()
	}
	return err
}

// WriteTo writes the whole body to w, verifying each block before it goes
// out.
func (b *DiskBody) WriteTo(w io.Writer) (n int64, err error) {
	if b.obj.body != nil {
		defer b.endFaultGuard(debug.SetPanicOnFault(true), &err)
		return b.writeMapped(w)
	}
	return b.CopyTo(w)
}

// CopyTo is WriteTo through a buffer of the body's own, never handing w
// the mapped file: for a writer that copies what it is given on another
// goroutine (quic-go's streams), where a fault from a file truncated
// behind our back could not be caught.
func (b *DiskBody) CopyTo(w io.Writer) (n int64, err error) {
	if b.obj.body != nil {
		defer b.endFaultGuard(debug.SetPanicOnFault(true), &err)
	}
	bp := writePool.Get().(*[]byte)
	defer writePool.Put(bp)
	buf := *bp
	size := b.obj.size
	for blk := int64(0); blk*blockSize < size; blk += writeBlocks {
		k := min(writeBlocks*blockSize, size-blk*blockSize)
		if err := b.readBlocks(buf[:k], blk); err != nil {
			return n, err
		}
		m, err := w.Write(buf[:k])
		n += int64(m)
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// writeMapped writes the mapped body to w straight from the page cache,
// verifying each block that is not trusted before it goes out.
func (b *DiskBody) writeMapped(w io.Writer) (int64, error) {
	o := b.obj
	var n int64
	for start := int64(0); start < o.size; start += writeBlocks * blockSize {
		end := min(start+writeBlocks*blockSize, o.size)
		if err := b.checkMapped(start, end); err != nil {
			return n, err
		}
		m, err := w.Write(o.body[start:end])
		n += int64(m)
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// readMapped copies body bytes from off into p, verifying the blocks
// they come from.
func (b *DiskBody) readMapped(p []byte, off int64) (int, error) {
	o := b.obj
	if off >= o.size {
		return 0, io.EOF
	}
	end := min(off+int64(len(p)), o.size)
	if err := b.checkMapped(off, end); err != nil {
		return 0, err
	}
	n := copy(p, o.body[off:end])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// checkMapped verifies the mapped blocks that body bytes [off, end) lie
// in, skipping trusted ones.
func (b *DiskBody) checkMapped(off, end int64) error {
	first := off / blockSize
	last := (end + blockSize - 1) / blockSize
	return b.check(b.obj.body[first*blockSize:min(last*blockSize, b.obj.size)], first)
}

// check verifies whole blocks from block first on (the last may be the
// body's short tail), read or mapped, skipping trusted ones.
func (b *DiskBody) check(p []byte, first int64) error {
	o := b.obj
	for blk := first; len(p) > 0; blk++ {
		k := min(int64(len(p)), blockSize)
		if !o.trusted(blk) {
			if err := verifyBlocks(p[:k], blk, o.sums); err != nil {
				return b.corrupt(err)
			}
			o.passed(blk)
		}
		p = p[k:]
	}
	return nil
}

// endFaultGuard ends a read of the mapped body: a memory fault inside the
// mapping (the file was truncated behind our back) becomes ErrCorrupt
// instead of a crash. Any other panic, a fault elsewhere included (a bug
// in a writer the body was handed to), goes on as it was. Deferred, with
// the fault setting it restores.
func (b *DiskBody) endFaultGuard(old bool, err *error) {
	debug.SetPanicOnFault(old)
	r := recover()
	if r == nil {
		return
	}
	fault, ok := r.(interface{ Addr() uintptr })
	if !ok || !b.obj.inMapping(fault.Addr()) {
		panic(r)
	}
	*err = b.corrupt(fmt.Errorf("%w: mapped file changed under the read: %v", ErrCorrupt, r))
}

// writeBlocks is how many blocks WriteTo reads and writes at once: fewer,
// larger system calls (nginx's output_buffers 2 256k).
const writeBlocks = 2

var writePool = sync.Pool{New: func() any { b := make([]byte, writeBlocks*blockSize); return &b }}

// Clone returns a second handle on the same object file, with its own read
// state, for a task that outlives the request holding b (a background
// revalidation). The file stays readable even if the object is replaced.
func (b *DiskBody) Clone() *DiskBody {
	b.obj.acquire()
	return &DiskBody{obj: b.obj, bufBlock: -1}
}

// Reader returns a sequential reader over the body; closing it closes b.
func (b *DiskBody) Reader() io.ReadCloser { return &diskReader{b: b} }

type diskReader struct {
	b   *DiskBody
	off int64
}

func (r *diskReader) Read(p []byte) (int, error) {
	n, err := r.b.ReadAt(p, r.off)
	r.off += int64(n)
	return n, err
}

func (r *diskReader) WriteTo(w io.Writer) (int64, error) {
	if r.off != 0 {
		return io.Copy(w, struct{ io.Reader }{r})
	}
	n, err := r.b.WriteTo(w)
	r.off += n
	return n, err
}

func (r *diskReader) Close() error { return r.b.Close() }
