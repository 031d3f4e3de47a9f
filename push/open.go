package push

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// ErrChanged is returned, wrapped, by a reader from Scan.Open whose bytes
// do not hash to the blob's name: the file changed since the scan.
var ErrChanged = errors.New("file changed since the scan")

// Open returns the bytes of blob hash and their size, compressing again for
// an encoded variant. The reader checks what it reads: if the bytes do not
// hash to the name (the file changed since the scan), the last Read
// returns an error wrapping ErrChanged instead of io.EOF, so a changed file
// is never uploaded under the old name. A hash the scan does not name gives
// an error wrapping fs.ErrNotExist. The caller must Close the reader; Open
// is safe for concurrent use.
func (s *Scan) Open(hash string) (io.ReadCloser, int64, error) {
	src, ok := s.Sources[hash]
	size, known := s.blobSize(hash)
	if !ok || !known {
		return nil, 0, fmt.Errorf("open blob %s: %w", hash, fs.ErrNotExist)
	}
	f, err := os.Open(src.Path)
	if err != nil {
		return nil, 0, fmt.Errorf("open blob %s: %w", hash, err)
	}
	if src.Coding == "" {
		// A size that differs is known now; a hash that differs only at the end.
		if fi, err := f.Stat(); err != nil || fi.Size() != size {
			f.Close()
			if err == nil {
				err = fmt.Errorf("%s is %d bytes, was %d: %w", src.Path, fi.Size(), size, ErrChanged)
			}
			return nil, 0, fmt.Errorf("open blob %s: %w", hash, err)
		}
		return &checkedReader{r: f, close: f.Close, src: src, want: Blob{Hash: hash, Size: size}, got: newBlobWriter()}, size, nil
	}
	if _, ok := encoders[src.Coding]; !ok {
		f.Close()
		return nil, 0, fmt.Errorf("open blob %s: unknown coding %q", hash, src.Coding)
	}
	// The variant is compressed again as it is read, through a pipe: a
	// variant of a big file is never held whole in memory.
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer f.Close()
		// A reader closed early fails the encoder's next write, which
		// ends this goroutine.
		pw.CloseWithError(compressStream(pw, f, src.Coding))
	}()
	closeFn := func() error {
		pr.Close()
		<-done // the goroutine is owned by the reader: Close waits for it
		return nil
	}
	return &checkedReader{r: pr, close: closeFn, src: src, want: Blob{Hash: hash, Size: size}, got: newBlobWriter()}, size, nil
}

// blobSize returns the size of blob hash as the manifest records it.
func (s *Scan) blobSize(hash string) (int64, bool) {
	if s.sizes != nil {
		size, ok := s.sizes[hash]
		return size, ok
	}
	// A Scan built by hand: search the manifest.
	if s.Manifest == nil {
		return 0, false
	}
	for _, f := range s.Manifest.Files {
		if f.Hash == hash {
			return f.Size, true
		}
		for _, b := range f.Encoded {
			if b.Hash == hash {
				return b.Size, true
			}
		}
	}
	return 0, false
}

// checkedReader reads a blob and fails instead of ending if what it read
// is not the blob that was named.
type checkedReader struct {
	r     io.Reader
	close func() error
	src   Source
	want  Blob
	got   *blobWriter
}

func (c *checkedReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.got.Write(p[:n])
	switch {
	case c.got.n > c.want.Size:
		return n, c.changed()
	case errors.Is(err, io.EOF):
		if c.got.Blob() != c.want {
			return n, c.changed()
		}
	case err != nil:
		return n, fmt.Errorf("read blob %s from %s: %w", c.want.Hash, c.src.Path, err)
	}
	return n, err
}

func (c *checkedReader) changed() error {
	what := "read"
	if c.src.Coding != "" {
		what = "compressed with " + c.src.Coding
	}
	return fmt.Errorf("read blob %s from %s: %s %d bytes that do not hash to the name: %w",
		c.want.Hash, c.src.Path, what, c.got.n, ErrChanged)
}

func (c *checkedReader) Close() error { return c.close() }
