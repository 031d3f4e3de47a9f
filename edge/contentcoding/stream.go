package contentcoding

import (
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// streamWindow is the zstd window of streamed bodies: 1 MiB, well under
// the 8 MiB RFC 9659 allows, so an encoder held by each miss in flight
// stays small. Text compresses almost as well with it.
const streamWindow = 1 << 20

// zstdStreams holds reset streaming zstd encoders, each with one block
// encoder of its own (no goroutines) and the smaller window.
var zstdStreams = sync.Pool{
	New: func() any {
		enc, err := zstd.NewWriter(nil,
			zstd.WithEncoderLevel(zstd.SpeedDefault),
			zstd.WithEncoderConcurrency(1),
			zstd.WithWindowSize(streamWindow),
			zstd.WithLowerEncoderMem(true),
			zstd.WithZeroFrames(true),
		)
		if err != nil {
			// The options are constants: an error is a programmer error.
			panic(fmt.Sprintf("contentcoding: zstd stream encoder: %v", err))
		}
		return enc
	},
}

// Writer compresses a body as it is written, for a response whose bytes
// arrive over time (a cache miss streamed from the origin). Flush sends
// what was written so far, so the client sees a slow body as it comes;
// Close ends the stream. Encoders come from pools: a Writer must be
// closed, or abandoned with Abandon, exactly once. Not safe for
// concurrent use.
type Writer struct {
	gz *gzip.Writer
	zs *zstd.Encoder
}

// NewWriter returns a Writer that writes w's body encoded with c: gzip at
// level 6, or zstd at SpeedDefault with a 1 MiB window. Identity, or any
// other value, is an error.
func NewWriter(c Coding, w io.Writer) (*Writer, error) {
	switch c {
	case Gzip:
		gz := gzipWriters.Get().(*gzip.Writer)
		gz.Reset(w)
		return &Writer{gz: gz}, nil
	case Zstd:
		zs := zstdStreams.Get().(*zstd.Encoder)
		zs.Reset(w)
		return &Writer{zs: zs}, nil
	}
	return nil, fmt.Errorf("stream coding %s: not a compression", c)
}

// Write compresses p; the output may stay buffered until Flush or Close.
func (w *Writer) Write(p []byte) (int, error) {
	if w.gz != nil {
		return w.gz.Write(p)
	}
	return w.zs.Write(p)
}

// Flush writes out everything compressed so far, ending the block, so the
// reader can decode every byte written before it.
func (w *Writer) Flush() error {
	if w.gz != nil {
		return w.gz.Flush()
	}
	return w.zs.Flush()
}

// Close ends the stream (the gzip trailer, the zstd frame's end) and
// returns the encoder to its pool.
func (w *Writer) Close() error {
	var err error
	if w.gz != nil {
		err = w.gz.Close()
	} else {
		err = w.zs.Close()
	}
	w.release()
	return err
}

// Abandon returns the encoder to its pool without ending the stream: a
// body that broke must not look complete to the client.
func (w *Writer) Abandon() { w.release() }

func (w *Writer) release() {
	if w.gz != nil {
		w.gz.Reset(io.Discard) // drop the response writer before pooling
		gzipWriters.Put(w.gz)
		w.gz = nil
	}
	if w.zs != nil {
		w.zs.Reset(io.Discard)
		zstdStreams.Put(w.zs)
		w.zs = nil
	}
}
