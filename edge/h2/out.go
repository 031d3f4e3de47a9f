package h2

import (
	"encoding/binary"
	"io"
	"net"
	"sync"
)

// BuffersWriter is a connection that writes several buffers in one
// system call (writev). The edge's listener wraps each *net.TCPConn in a
// type of its own; it offers this so the HTTP/2 server can still gather.
type BuffersWriter interface {
	WriteBuffers(b *net.Buffers) (int64, error)
}

// out gathers frames for the connection until a flush: control frames and
// small payloads are copied, large DATA payloads are only referenced, so a
// response's HEADERS and DATA go out in one writev without copying its
// body in user space. A referenced payload belongs to the handler's
// Write call, which flushes before it returns. The copy buffer is taken
// from a pool when the first frame comes and given back at each flush,
// so an idle connection holds none. Guarded by conn.mu.
type out struct {
	dst    io.Writer
	gather func(*net.Buffers) (int64, error) // nil: dst cannot writev
	buf    []byte                            // copied bytes; nil while empty
	bufp   *[]byte                           // buf's pool entry
	segs   []segment
	iov    net.Buffers
	size   int
	refs   int // referenced payloads among segs
}

// segment is buf[from:to], or ref when it is set.
type segment struct {
	ref      []byte
	from, to int
}

const (
	// refMin is the smallest DATA payload referenced instead of copied.
	refMin = 4 << 10
	// flushAt bounds the bytes held before they are written.
	flushAt = 64 << 10
)

// bufPool holds copy buffers of bufCap.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, bufCap); return &b }}

const bufCap = 16 << 10

func newOut(dst io.Writer) *out {
	o := &out{dst: dst}
	switch w := dst.(type) {
	case *net.TCPConn:
		o.gather = func(b *net.Buffers) (int64, error) { return b.WriteTo(w) }
	case BuffersWriter:
		o.gather = w.WriteBuffers
	}
	return o
}

// Write copies p (the Framer's frames).
func (o *out) Write(p []byte) (int, error) {
	o.copyIn(p)
	if len(o.buf) >= flushAt {
		return len(p), o.flush()
	}
	return len(p), nil
}

// copyIn appends a copy of p.
func (o *out) copyIn(p []byte) {
	if o.buf == nil {
		o.bufp = bufPool.Get().(*[]byte)
		o.buf = (*o.bufp)[:0]
	}
	from := len(o.buf)
	o.buf = append(o.buf, p...)
	if n := len(o.segs); n > 0 && o.segs[n-1].ref == nil && o.segs[n-1].to == from {
		o.segs[n-1].to = len(o.buf)
	} else {
		o.segs = append(o.segs, segment{from: from, to: len(o.buf)})
	}
	o.size += len(p)
}

// dataFrame adds a DATA frame, referencing a large payload when the
// connection can gather (TLS cannot: it gets one contiguous write).
func (o *out) dataFrame(id uint32, end bool, p []byte) error {
	var h [9]byte
	h[0], h[1], h[2] = byte(len(p)>>16), byte(len(p)>>8), byte(len(p))
	h[3] = 0 // DATA
	if end {
		h[4] = 1 // END_STREAM
	}
	binary.BigEndian.PutUint32(h[5:], id&(1<<31-1))
	if o.gather == nil || len(p) < refMin {
		// Header and payload are copied in with no flush between them,
		// and taken back if copying the payload panics: a body mapped
		// from a file that was truncated faults mid-copy (the edge's disk
		// tier recovers that fault up the stack), and a header left
		// without its payload would misframe the rest of the connection.
		defer o.undoOnPanic(o.mark())
		o.copyIn(h[:])
		o.copyIn(p)
		if len(o.buf) >= flushAt {
			return o.flush()
		}
		return nil
	}
	if _, err := o.Write(h[:]); err != nil {
		return err
	}
	o.segs = append(o.segs, segment{ref: p})
	o.size += len(p)
	o.refs++
	if o.size >= flushAt {
		// A large body goes out in writes of this size, as it would
		// through a buffer, with the socket's low-water mark pacing them.
		return o.flush()
	}
	return nil
}

// flush writes everything gathered, in one system call where it can.
func (o *out) flush() error {
	if o.size == 0 {
		return nil
	}
	var err error
	if o.gather != nil && len(o.segs) > 1 {
		o.iov = o.iov[:0]
		for _, s := range o.segs {
			if s.ref != nil {
				o.iov = append(o.iov, s.ref)
			} else {
				o.iov = append(o.iov, o.buf[s.from:s.to])
			}
		}
		iov := o.iov
		_, err = o.gather(&iov)
		clear(o.iov) // hold no payload past the flush
	} else {
		_, err = o.dst.Write(o.buf)
	}
	o.reset()
	return err
}

// mark is what out holds at one moment, for undo.
type mark struct {
	buf, segs, size int
	lastTo          int // segs[segs-1].to, which copyIn may extend
}

func (o *out) mark() mark {
	m := mark{buf: len(o.buf), segs: len(o.segs), size: o.size}
	if m.segs > 0 {
		m.lastTo = o.segs[m.segs-1].to
	}
	return m
}

// undoOnPanic drops what was added since m if the caller is panicking,
// and goes on panicking. Deferred.
func (o *out) undoOnPanic(m mark) {
	r := recover()
	if r == nil {
		return
	}
	o.buf, o.segs, o.size = o.buf[:m.buf], o.segs[:m.segs], m.size
	if m.segs > 0 {
		o.segs[m.segs-1].to = m.lastTo
	}
	panic(r)
}

// reset drops what is gathered and gives the copy buffer back.
func (o *out) reset() {
	if o.bufp != nil && cap(o.buf) <= 4*flushAt { // one huge header block does not stay
		*o.bufp = o.buf[:0]
		bufPool.Put(o.bufp)
	}
	o.buf, o.bufp, o.segs, o.size, o.refs = nil, nil, o.segs[:0], 0, 0
}
