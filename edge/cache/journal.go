package cache

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
)

// The journal is the disk tier's index on disk: an append-only log of
// fixed-size records, "object stored" and "object removed", replayed at start
// so a restarted edge knows its objects without opening a million files.
//
// A record is appended only after its object file was renamed into place,
// and each record carries its own checksum: a crash can at worst leave a torn
// last record (dropped at replay) or an object file the journal never heard
// of (an orphan, removed by the start-up sweep). A record for a file that a
// power cut left incomplete is caught by the file's own checksums at read.
//
// Record layout, little endian:
//
//	[0]     op (1 add, 2 remove)
//	[1:4]   zero
//	[4:8]   CRC-32C of bytes [0:4] and [8:24]
//	[8:16]  key hash
//	[16:24] bytes the object takes on disk
const recordSize = 24

const (
	opAdd    = 1
	opRemove = 2
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type record struct {
	op   byte
	hash uint64
	size int64
}

func (r record) encode(b []byte) {
	b[0], b[1], b[2], b[3] = r.op, 0, 0, 0
	binary.LittleEndian.PutUint64(b[8:16], r.hash)
	binary.LittleEndian.PutUint64(b[16:24], uint64(r.size))
	binary.LittleEndian.PutUint32(b[4:8], recordCRC(b))
}

func recordCRC(b []byte) uint32 {
	return crc32.Update(crc32.Checksum(b[0:4], castagnoli), castagnoli, b[8:24])
}

// decodeRecord returns the record in b, or false if b is torn or corrupt.
func decodeRecord(b []byte) (record, bool) {
	if binary.LittleEndian.Uint32(b[4:8]) != recordCRC(b) || (b[0] != opAdd && b[0] != opRemove) {
		return record{}, false
	}
	return record{op: b[0], hash: binary.LittleEndian.Uint64(b[8:16]), size: int64(binary.LittleEndian.Uint64(b[16:24]))}, true
}

// journal appends records to the index file.
type journal struct {
	path    string
	f       *os.File
	records int // records in the file, live or not, to know when to compact
	buf     [recordSize]byte
}

// openJournal replays the journal at path into s and opens it for
// appending. A torn or corrupt tail is cut off: records past it cannot be
// trusted to be in order.
func openJournal(path string, s *sieve) (*journal, error) {
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read cache index: %w", err)
	}
	good := 0
	for ; good+recordSize <= len(data); good += recordSize {
		r, ok := decodeRecord(data[good : good+recordSize])
		if !ok {
			break
		}
		if r.op == opAdd {
			s.insert(r.hash, r.size)
		} else {
			s.remove(r.hash)
		}
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open cache index: %w", err)
	}
	if good != len(data) {
		if err := f.Truncate(int64(good)); err != nil {
			f.Close()
			return nil, fmt.Errorf("cut torn cache index tail: %w", err)
		}
	}
	if _, err := f.Seek(int64(good), io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("open cache index: %w", err)
	}
	return &journal{path: path, f: f, records: good / recordSize}, nil
}

// append writes one record. One write(2) per record: a crash loses at most
// the record being written, never one already appended.
func (j *journal) append(r record) error {
	r.encode(j.buf[:])
	if _, err := j.f.Write(j.buf[:]); err != nil {
		return fmt.Errorf("append to cache index: %w", err)
	}
	j.records++
	return nil
}

// compact rewrites the journal as one add record per object in s, oldest
// first, so replay restores the eviction order too. The new file replaces
// the old one by rename: a crash leaves one or the other, whole.
func (j *journal) compact(s *sieve) error {
	tmp := j.path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("compact cache index: %w", err)
	}
	buf := make([]byte, 0, 64<<10)
	var werr error
	s.each(func(hash uint64, size int64) {
		if werr != nil {
			return
		}
		var b [recordSize]byte
		record{op: opAdd, hash: hash, size: size}.encode(b[:])
		buf = append(buf, b[:]...)
		if len(buf) == cap(buf) {
			_, werr = f.Write(buf)
			buf = buf[:0]
		}
	})
	if werr == nil {
		_, werr = f.Write(buf)
	}
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp, j.path)
	}
	if werr != nil {
		os.Remove(tmp)
		return fmt.Errorf("compact cache index: %w", werr)
	}
	syncDir(filepath.Dir(j.path))
	nf, err := os.OpenFile(j.path, os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("reopen cache index: %w", err)
	}
	j.f.Close()
	j.f, j.records = nf, s.len()
	return nil
}

func (j *journal) close() error { return j.f.Close() }

// syncDir makes a rename in dir durable; best effort.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
