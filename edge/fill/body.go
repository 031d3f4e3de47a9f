package fill

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
)

// ErrTooLarge is returned by Bytes for a body that outgrew memory.
var ErrTooLarge = errors.New("fill: body larger than the memory limit")

// Body is a response body written once, front to back, by a fetch and read
// from the start by any number of readers while it grows. Bodies up to the
// memory limit stay in memory; past it the bytes move to a temporary file,
// so a 1 GiB object never sits in RAM. The file is removed when the writer
// and every reader have called Release.
type Body struct {
	memLimit int64
	dir      string

	mu   sync.Mutex    // protects the fields below
	mem  []byte        // bytes [0, size) while file is nil; never modified once written
	file *os.File      // bytes [0, size) once spilled
	size int64         // bytes written so far
	done bool          // no more writes
	err  error         // why the body ended early, if it did
	wake chan struct{} // closed and replaced whenever size or done changes
	refs int           // writer plus readers still using the file
}

// NewBody returns an empty body that spills to a temporary file in dir past
// memLimit bytes. The caller holds one reference.
func NewBody(memLimit int64, dir string) *Body {
	return &Body{memLimit: memLimit, dir: dir, wake: make(chan struct{}), refs: 1}
}

// Grow hints the expected size (a Content-Length) so the memory buffer is
// allocated once.
func (b *Body) Grow(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.file == nil && n > 0 && n <= b.memLimit && int64(cap(b.mem)) < n {
		b.mem = append(make([]byte, 0, n), b.mem...)
	}
}

// Write appends p. It is called only by the fetch that owns the body.
func (b *Body) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return 0, errors.New("fill: write after finish")
	}
	if b.file == nil && b.size+int64(len(p)) > b.memLimit {
		if err := b.spill(); err != nil {
			return 0, err
		}
	}
	if b.file != nil {
		// Readers use ReadAt below size; appending past it is safe.
		n, err := b.file.WriteAt(p, b.size)
		b.size += int64(n)
		b.notify()
		if err != nil {
			return n, fmt.Errorf("spool body: %w", err)
		}
		return n, nil
	}
	// append may move mem; readers holding the old slice still see the
	// same bytes below their size, which are never rewritten.
	b.mem = append(b.mem, p...)
	b.size += int64(len(p))
	b.notify()
	return len(p), nil
}

func (b *Body) spill() error {
	f, err := os.CreateTemp(b.dir, "fill-*.tmp")
	if err != nil {
		return fmt.Errorf("spool body: %w", err)
	}
	// Unlinked at once: the open descriptors keep it readable, and a crash
	// leaves nothing behind to clean up.
	os.Remove(f.Name())
	if _, err := f.Write(b.mem); err != nil {
		f.Close()
		return fmt.Errorf("spool body: %w", err)
	}
	b.file, b.mem = f, nil
	return nil
}

func (b *Body) notify() {
	close(b.wake)
	b.wake = make(chan struct{})
}

// Finish marks the body complete (err nil) or broken (err set).
func (b *Body) Finish(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return
	}
	b.done, b.err = true, err
	b.notify()
}

// Bytes returns the in-memory body as written so far: the whole body once
// the writer's last Write returned, which the writer may use before it
// calls Finish.
func (b *Body) Bytes() ([]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.err != nil:
		return nil, b.err
	case b.file != nil:
		return nil, ErrTooLarge
	}
	return b.mem[:b.size:b.size], nil
}

// Acquire adds a reader's reference; pair it with Release.
func (b *Body) Acquire() {
	b.mu.Lock()
	b.refs++
	b.mu.Unlock()
}

// Release drops a reference; the last one closes the spool file.
func (b *Body) Release() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refs--
	if b.refs == 0 && b.file != nil {
		b.file.Close()
		b.file = nil
	}
}

// Spilled reports whether the body outgrew memory (and so will not be
// stored in the memory tier).
func (b *Body) Spilled() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.file != nil
}

// Readers reports whether anyone besides the writer still holds the body.
func (b *Body) Readers() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.refs - 1
}

// WaitStart blocks until the first byte arrived or the body ended, and
// returns the fetch's error if it ended broken before any byte: the caller
// can still answer with an error status instead of a cut-off body.
func (b *Body) WaitStart(ctx context.Context) error {
	for {
		b.mu.Lock()
		size, done, err, wake := b.size, b.done, b.err, b.wake
		b.mu.Unlock()
		switch {
		case size > 0:
			return nil
		case done:
			return err
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// WriteTo copies the whole body to w as it arrives, calling flush before
// each wait for more bytes so a slow origin still streams. It returns
// early with ctx's error, or with the fetch's error if the body broke.
// The caller must hold a reference.
func (b *Body) WriteTo(ctx context.Context, w io.Writer, flush func()) (int64, error) {
	var off int64
	var buf []byte // for spooled bytes, allocated once per reader
	for {
		b.mu.Lock()
		size, done, err, wake, mem, file := b.size, b.done, b.err, b.wake, b.mem, b.file
		b.mu.Unlock()
		if off < size {
			var n int64
			var werr error
			if file != nil {
				if buf == nil {
					buf = make([]byte, 64<<10)
				}
				n, werr = io.CopyBuffer(w, io.NewSectionReader(file, off, size-off), buf)
			} else {
				var m int
				m, werr = w.Write(mem[off:size])
				n = int64(m)
			}
			off += n
			if werr != nil {
				return off, werr
			}
			continue
		}
		if done {
			return off, err
		}
		if flush != nil {
			flush()
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return off, ctx.Err()
		}
	}
}

// Size is the number of bytes written so far.
func (b *Body) Size() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.size
}

// Reader returns a reader over the bytes written so far. The caller must
// hold a reference for as long as it reads.
func (b *Body) Reader() io.Reader {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.file != nil {
		return io.NewSectionReader(b.file, 0, b.size)
	}
	return bytes.NewReader(b.mem[:b.size])
}

// At returns a reader of the body at any offset, for range requests: a
// read waits until its bytes arrived, and fails with the fetch's error (or
// io.ErrUnexpectedEOF) if the body ends before them. The caller must hold a
// reference.
func (b *Body) At(ctx context.Context) io.ReaderAt { return bodyAt{b: b, ctx: ctx} }

type bodyAt struct {
	b   *Body
	ctx context.Context
}

func (r bodyAt) ReadAt(p []byte, off int64) (int, error) {
	b, want := r.b, off+int64(len(p))
	for {
		b.mu.Lock()
		size, done, err, wake, mem, file := b.size, b.done, b.err, b.wake, b.mem, b.file
		b.mu.Unlock()
		if size < want && !done {
			select {
			case <-wake:
				continue
			case <-r.ctx.Done():
				return 0, r.ctx.Err()
			}
		}
		end := min(want, size)
		n := 0
		if off < end {
			if file != nil {
				var rerr error
				if n, rerr = file.ReadAt(p[:end-off], off); rerr != nil {
					return n, fmt.Errorf("read spooled body: %w", rerr)
				}
			} else {
				n = copy(p, mem[off:end])
			}
		}
		switch {
		case end == want:
			return n, nil
		case err != nil:
			return n, err
		}
		return n, io.EOF // the body ended before off+len(p)
	}
}
