package cache

import (
	"errors"
	"fmt"
	"runtime/debug"
	"syscall"
)

// ErrNoSendFile reports a body that SendFile cannot send: its file is not
// kept open and mapped, so its blocks could not be checked without
// reading them into memory anyway. The caller copies instead.
var ErrNoSendFile = errors.New("cache: body not sendable with sendfile")

// SendFile writes n body bytes from off on to the socket behind rc with
// sendfile(2): the kernel sends them from the page cache, with no copy
// through user space. Each block is verified (through the mapping, or
// trusted from a recent check of the same unchanged file) before any of it
// is handed to the kernel, so what is sent is what was checked, as with
// WriteTo. beforeWrite runs before every write (it arms the deadline).
// Nothing is sent when it returns ErrNoSendFile.
func (b *DiskBody) SendFile(rc syscall.RawConn, off, n int64, beforeWrite func()) (sent int64, err error) {
	o := b.obj
	if o.body == nil {
		return 0, ErrNoSendFile
	}
	if off < 0 || n < 0 || off+n > o.size {
		return 0, fmt.Errorf("cache: sendfile of %d bytes at %d of a %d-byte body", n, off, o.size)
	}
	defer b.endFaultGuard(debug.SetPanicOnFault(true), &err)
	for end := off + n; off < end; {
		// Verify the blocks of the next chunk, then send it.
		chunkEnd := min((off/blockSize+writeBlocks)*blockSize, end)
		if err := b.checkMapped(off, chunkEnd); err != nil {
			return sent, err
		}
		for off < chunkEnd {
			beforeWrite()
			m, err := sendFile(rc, o.fd, o.off+off, int(chunkEnd-off))
			sent, off = sent+int64(m), off+int64(m)
			if err != nil {
				return sent, err
			}
			if m == 0 {
				// The file ended early: it was truncated after the check.
				return sent, b.corrupt(fmt.Errorf("%w: file shrank under sendfile", ErrCorrupt))
			}
		}
	}
	return sent, nil
}

// sendFile sends up to count bytes of file fd from pos, waiting (under the
// connection's deadline) while the socket is full; it returns after the
// first write that moved anything.
func sendFile(rc syscall.RawConn, fd int, pos int64, count int) (int, error) {
	var n int
	var serr error
	err := rc.Write(func(sock uintptr) bool {
		for {
			n, serr = syscall.Sendfile(int(sock), fd, &pos, count)
			if serr != syscall.EINTR {
				break
			}
		}
		return serr != syscall.EAGAIN
	})
	if n < 0 {
		n = 0
	}
	if err == nil {
		err = serr
	}
	if err != nil {
		return n, fmt.Errorf("sendfile: %w", err)
	}
	return n, nil
}

// Sender returns a sequential reader over the body that a connection can
// also drain with sendfile (SendReader.SendTo); closing it closes b.
func (b *DiskBody) Sender() *SendReader { return &SendReader{r: diskReader{b: b}} }

// SendReader is a body reader for a writer that can send from a file: its
// Read copies verified bytes, SendTo hands the rest to sendfile. It has no
// WriteTo on purpose, so a buffered writer fills its buffer from Read and
// then offers the rest to the connection's ReadFrom.
type SendReader struct {
	r diskReader // not embedded: its WriteTo would be promoted
}

func (s *SendReader) Read(p []byte) (int, error) { return s.r.Read(p) }

// SendTo sends up to max more bytes (the rest of the body at most) to the
// socket behind rc; ErrNoSendFile means nothing was sent and the caller
// should copy with Read.
func (s *SendReader) SendTo(rc syscall.RawConn, max int64, beforeWrite func()) (int64, error) {
	r := &s.r
	n := min(max, r.b.Size()-r.off)
	if n <= 0 {
		return 0, nil
	}
	sent, err := r.b.SendFile(rc, r.off, n, beforeWrite)
	r.off += sent
	return sent, err
}

func (s *SendReader) Close() error { return s.r.Close() }
