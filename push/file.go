package push

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
)

// copyBuffers hold the buffers files are read through, one per running
// worker rather than one per file.
var copyBuffers = sync.Pool{New: func() any { return new([128 << 10]byte) }}

// scanned is what scanning one file found, with what the scan cache
// records of it.
type scanned struct {
	file File
	// id is the file's identity before it was read (idOK: known).
	id   fileID
	idOK bool
	// compressed says variants were tried; sniffed is the type the bytes
	// gave, if they were asked.
	compressed bool
	sniffed    string
}

// scanFile reads j's file once, feeding the hash of its bytes and, for a
// compressible file, a gzip and a zstd encoder that hash their output: the
// compressed bytes are named without being kept.
func scanFile(ctx context.Context, j job, minCompress int64) (scanned, error) {
	var out scanned
	f, err := os.Open(j.src)
	if err != nil {
		return out, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return out, err
	}
	if !fi.Mode().IsRegular() { // replaced since the walk
		return out, fmt.Errorf("not a regular file but %s", kind(fi.Mode()))
	}
	// Taken before reading: a change while it is read moves its times past
	// these, so the next scan reads it again.
	out.id, out.idOK = statID(fi)
	var src io.Reader = ctxReader{ctx: ctx, r: f}
	typ := j.typ
	if typ == "" {
		typ = typeByExtension(j.urlPath)
	}
	if typ == "" {
		head := make([]byte, sniffLen)
		n, err := io.ReadFull(src, head)
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
			return out, fmt.Errorf("read: %w", err)
		}
		typ = sniffType(head[:n])
		out.sniffed = typ
		src = io.MultiReader(bytes.NewReader(head[:n]), src)
	}

	raw := newBlobWriter()
	dst := []io.Writer{raw}
	var encs []variant
	if fi.Size() >= minCompress && compressible(typ) {
		out.compressed = true
		for _, c := range Codings {
			v := variant{coding: c, out: newBlobWriter()}
			v.enc = getEncoder(c, v.out)
			encs = append(encs, v)
			dst = append(dst, v.enc)
		}
	}
	buf := copyBuffers.Get().(*[128 << 10]byte)
	_, err = io.CopyBuffer(io.MultiWriter(dst...), src, buf[:])
	copyBuffers.Put(buf)
	if err != nil {
		err = fmt.Errorf("read: %w", err)
	}
	for _, v := range encs {
		if err == nil {
			if cerr := v.enc.Close(); cerr != nil {
				err = fmt.Errorf("compress with %s: %w", v.coding, cerr)
			}
		}
		putEncoder(v.coding, v.enc, err != nil)
	}
	if err != nil {
		return out, err
	}

	file := File{Blob: raw.Blob(), Type: typ, Header: j.header}
	for _, v := range encs {
		// Keep a variant only if it saves 10%: a smaller saving is not
		// worth a second blob to store and serve.
		if b := v.out.Blob(); b.Size*10 < file.Size*9 {
			if file.Encoded == nil {
				file.Encoded = make(map[string]Blob, len(encs))
			}
			file.Encoded[v.coding] = b
		}
	}
	out.file = file
	return out, nil
}

// variant is one content coding being made of a file.
type variant struct {
	coding string
	enc    encoder
	out    *blobWriter
}

// ctxReader reads from r until ctx ends, so that a big file does not hold
// a cancelled scan.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
