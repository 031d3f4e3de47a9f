package push

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// The levels are fixed: a variant's blob name is the hash of its bytes, and
// Scan.Open compresses again when the blob is uploaded, so the same input
// must always give the same output. Both encoders qualify: gzip runs on one
// goroutine, and zstd does with WithEncoderConcurrency(1); neither output
// depends on how the input is cut into writes (TestEncodeDeterministic).
const (
	// gzipLevel is the best klauspost's gzip does: a file is compressed at
	// each push and served many times.
	gzipLevel = gzip.BestCompression
	// zstdLevel is a step below zstd's best, whose encoder state is about
	// 40 MiB (measured with v1.20): with one encoder per worker, and
	// GOMAXPROCS workers on a big CI machine, that adds up.
	zstdLevel = zstd.SpeedBetterCompression
	// zstdWindow is well under the 8 MiB a zstd content coding may need
	// at most (RFC 9659 §3). The window sizes the encoder (about 9 MiB at
	// 2 MiB, 21 MiB at 8 MiB), and matches further back than 2 MiB are
	// rare in web assets.
	zstdWindow = 2 << 20
)

// encoder compresses a stream into one content coding. Reset starts a new
// stream into w; Close ends it and flushes.
type encoder interface {
	io.WriteCloser
	Reset(w io.Writer)
}

// encoders hold reset encoders by coding: a zstd encoder allocates its
// window and tables (megabytes) when built, too much to do per file.
var encoders = map[string]*sync.Pool{
	"gzip": {New: func() any {
		w, err := gzip.NewWriterLevel(nil, gzipLevel)
		if err != nil {
			panic(fmt.Sprintf("push: gzip level %d: %v", gzipLevel, err)) // a constant: a programmer error
		}
		return w
	}},
	"zstd": {New: func() any {
		w, err := zstd.NewWriter(nil,
			zstd.WithEncoderLevel(zstdLevel),
			zstd.WithEncoderConcurrency(1),
			zstd.WithWindowSize(zstdWindow),
			// An empty stream still becomes a valid frame, not zero bytes.
			zstd.WithZeroFrames(true),
		)
		if err != nil {
			panic(fmt.Sprintf("push: zstd encoder: %v", err)) // constant options: a programmer error
		}
		return w
	}},
}

// getEncoder returns a pooled encoder for coding writing to w.
func getEncoder(coding string, w io.Writer) encoder {
	e := encoders[coding].Get().(encoder)
	e.Reset(w)
	return e
}

// putEncoder returns e to its pool once its stream is closed. An encoder
// whose stream failed is dropped instead: its state is not worth trusting.
func putEncoder(coding string, e encoder, failed bool) {
	if failed {
		return
	}
	e.Reset(nil) // drop the destination before the encoder waits in the pool
	encoders[coding].Put(e)
}

// blobWriter names the bytes written to it: their SHA-256 and count. It
// lets a scan name a compressed variant without keeping its bytes.
type blobWriter struct {
	h hash.Hash
	n int64
}

func newBlobWriter() *blobWriter { return &blobWriter{h: sha256.New()} }

func (w *blobWriter) Write(p []byte) (int, error) {
	w.h.Write(p) // a hash.Hash never fails a write
	w.n += int64(len(p))
	return len(p), nil
}

// Blob returns the name and size of what was written.
func (w *blobWriter) Blob() Blob {
	return Blob{Hash: hex.EncodeToString(w.h.Sum(nil)), Size: w.n}
}

// compressStream copies src into coding's encoder writing to dst and
// closes the stream.
func compressStream(dst io.Writer, src io.Reader, coding string) (err error) {
	e := getEncoder(coding, dst)
	defer func() { putEncoder(coding, e, err != nil) }()
	if _, err := io.Copy(e, src); err != nil {
		return fmt.Errorf("compress with %s: %w", coding, err)
	}
	if err := e.Close(); err != nil {
		return fmt.Errorf("compress with %s: %w", coding, err)
	}
	return nil
}
