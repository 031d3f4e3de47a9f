package state

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/nats-io/nats.go/jetstream"
)

// Reading a blob. The object store's own Get sets up an ordered consumer
// per object, which costs the server more than sending a small blob does:
// an edge syncing 10,000 blobs spent most of its time there. A blob is
// read here with batched direct gets instead, up to chunkBatch chunks
// (128 KiB each) a request (one per chunk from a server without batches),
// checked against the digest the store recorded.

// chunkBatch is how many chunks one request asks for: 8 MiB.
const chunkBatch = 64

// blobStreamName is the stream under the blob object store.
const blobStreamName = "OBJ_" + BlobsBucket

// chunkReader streams an object's chunks in order.
type chunkReader struct {
	ctx     context.Context
	store   *Store // for batched reads; nil: one chunk a request
	stream  jetstream.Stream
	subject string // the object's chunk subject
	info    *jetstream.ObjectInfo
	next    uint64 // stream sequence to look from
	chunks  uint32 // chunks read so far
	read    uint64 // bytes read so far
	buf     []byte // the rest of the current chunk
	sum     hash.Hash
	err     error
	// ahead holds chunks read by a batch and not yet returned; single is
	// set once the server refused a batch.
	ahead  []chunk
	single bool
}

// chunk is one chunk message of an object.
type chunk struct {
	seq  uint64
	data []byte
}

func (r *chunkReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 && r.err == nil {
		r.err = r.fetch()
	}
	if len(r.buf) == 0 {
		return 0, r.err
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

// fetch reads the next chunk, or checks the whole at the end (io.EOF).
func (r *chunkReader) fetch() error {
	if r.chunks == r.info.Chunks {
		if r.read != r.info.Size {
			return fmt.Errorf("blob %s: read %d bytes, stored with %d", r.info.Name, r.read, r.info.Size)
		}
		if got := "SHA-256=" + base64.URLEncoding.EncodeToString(r.sum.Sum(nil)); got != r.info.Digest {
			return fmt.Errorf("blob %s: %w", r.info.Name, jetstream.ErrDigestMismatch)
		}
		return io.EOF
	}
	if len(r.ahead) == 0 {
		if err := r.readAhead(); err != nil {
			return fmt.Errorf("blob %s: chunk %d: %w", r.info.Name, r.chunks+1, err)
		}
	}
	c := r.ahead[0]
	r.ahead = r.ahead[1:]
	r.next, r.chunks, r.read = c.seq+1, r.chunks+1, r.read+uint64(len(c.data))
	if r.read > r.info.Size {
		return fmt.Errorf("blob %s: chunks hold more than its %d bytes", r.info.Name, r.info.Size)
	}
	r.sum.Write(c.data)
	r.buf = c.data
	return nil
}

// readAhead reads the next chunks: up to chunkBatch in one batched
// direct get, or the next one alone from a server without batches.
func (r *chunkReader) readAhead() error {
	if r.store != nil && !r.single && r.info.Chunks-r.chunks > 1 {
		want := int(min(r.info.Chunks-r.chunks, chunkBatch))
		req := directBatchRequest{Seq: r.next, NextFor: r.subject, Batch: want, MaxBytes: maxBatchBytes}
		err := r.store.directBatch(r.ctx, req, func(_ string, seq uint64, data []byte) error {
			r.ahead = append(r.ahead, chunk{seq: seq, data: data})
			return nil
		})
		switch {
		case errors.Is(err, ErrBatchUnsupported):
			r.single = true
		case err != nil:
			return err
		case len(r.ahead) == 0:
			return jetstream.ErrMsgNotFound
		default:
			return nil
		}
	}
	m, err := r.stream.GetMsg(r.ctx, r.next, jetstream.WithGetMsgSubject(r.subject))
	if err != nil {
		return err
	}
	r.ahead = append(r.ahead, chunk{seq: m.Sequence, data: m.Data})
	return nil
}

func (r *chunkReader) Close() error { return nil }

// openChunks returns a reader of the object info describes.
func (s *Store) openChunks(ctx context.Context, info *jetstream.ObjectInfo) (io.ReadCloser, error) {
	if info.NUID == "" {
		return nil, errors.New("blob " + info.Name + ": no chunk subject")
	}
	return &chunkReader{ctx: ctx, store: s, stream: s.blobStream, subject: blobChunkSubject(info.NUID),
		info: info, sum: sha256.New()}, nil
}
