package state

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Reading many blobs at once. One direct get for a blob's info and one
// per chunk made an edge syncing 10,000 small blobs send 20,000 requests,
// and the edges spent 41 of a 59 s push fetching (issue 25). A batch asks
// for the last message of many subjects in one direct get (ADR-31
// "multi_last", nats-server 2.11+): the infos of up to blobBatch blobs,
// then the one chunk of each small blob, two requests for the lot. Blobs of
// more than one chunk are read chunk by chunk as OpenBlob does.

// maxBatchBlobs is the most blobs one FetchBlobs call asks for at once,
// well under the server's 1,024 subjects per multi_last request.
const maxBatchBlobs = 256

// ErrBatchUnsupported is returned, wrapped, by FetchBlobs when the NATS
// server does not answer batched direct gets (before 2.11): read the
// blobs one by one instead.
var ErrBatchUnsupported = errors.New("batched direct get not supported by the server")

// BlobFunc receives one blob of a FetchBlobs call: r holds its size bytes.
// The bytes are not checked against the name here: the callee checks
// them (the edge's pinned store hashes every blob it keeps). A blob read
// in one piece comes as a *bytes.Buffer, whose Bytes the callee may keep
// instead of copying them.
type BlobFunc func(hash string, r io.Reader, size int64) error

// blobMetaSubject is the subject of the object store's record of blob h.
func blobMetaSubject(h string) string {
	return "$O." + BlobsBucket + ".M." + base64.URLEncoding.EncodeToString([]byte(h))
}

// blobChunkSubject is the subject of the chunks the object store wrote
// under nuid.
func blobChunkSubject(nuid string) string { return "$O." + BlobsBucket + ".C." + nuid }

// storedRecords asks the store for the object records of the blobs
// bySubject names (record subject -> hash), infoBatch subjects a request,
// and returns those it holds, by hash. ErrBatchUnsupported (wrapped)
// says the server answers no batched gets.
func (s *Store) storedRecords(ctx context.Context, bySubject map[string]string) (map[string]*jetstream.ObjectInfo, error) {
	subjects := make([]string, 0, len(bySubject))
	for subj := range bySubject {
		subjects = append(subjects, subj)
	}
	out := make(map[string]*jetstream.ObjectInfo, len(subjects))
	for len(subjects) > 0 {
		n := min(len(subjects), infoBatch)
		err := s.multiLast(ctx, subjects[:n], func(subj string, data []byte) error {
			h, info, err := decodeBlobMeta(bySubject, subj, data)
			if err == nil {
				out[h] = info
			}
			return err
		})
		if err != nil {
			return nil, err
		}
		subjects = subjects[n:]
	}
	return out, nil
}

// decodeBlobMeta reads a record a batched get answered for subj, and
// names its blob by the subjects asked for (subject -> hash).
func decodeBlobMeta(asked map[string]string, subj string, data []byte) (string, *jetstream.ObjectInfo, error) {
	h, ok := asked[subj]
	if !ok {
		return "", nil, fmt.Errorf("answer for %s, not asked for", subj)
	}
	var info jetstream.ObjectInfo
	if err := json.Unmarshal(data, &info); err != nil {
		return h, nil, fmt.Errorf("blob %s: %w", h, jetstream.ErrBadObjectMeta)
	}
	return h, &info, nil
}

// FetchBlobs reads the blobs named by hashes (at most maxBatchBlobs: more
// are an error) and calls f with each, one at a time, in no set order. A
// blob that is not stored fails the call with an error wrapping
// ErrNotFound; the first error of f ends it.
func (s *Store) FetchBlobs(ctx context.Context, hashes []string, f BlobFunc) error {
	if len(hashes) > maxBatchBlobs {
		return fmt.Errorf("fetch %d blobs: at most %d at once", len(hashes), maxBatchBlobs)
	}
	if len(hashes) == 0 {
		return nil
	}
	metaSubject := make(map[string]string, len(hashes)) // subject -> hash
	subjects := make([]string, 0, len(hashes))
	for _, h := range hashes {
		subj := blobMetaSubject(h)
		if _, dup := metaSubject[subj]; !dup {
			metaSubject[subj] = h
			subjects = append(subjects, subj)
		}
	}
	infos := make(map[string]*jetstream.ObjectInfo, len(subjects))
	err := s.multiLast(ctx, subjects, func(subj string, data []byte) error {
		h, info, err := decodeBlobMeta(metaSubject, subj, data)
		if err == nil && !info.Deleted {
			infos[h] = info
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("fetch blob infos: %w", err)
	}
	chunkOf := map[string]string{} // chunk subject -> hash, for one-chunk blobs
	var chunkSubjects []string
	for _, subj := range subjects {
		h := metaSubject[subj]
		info, ok := infos[h]
		switch {
		case !ok:
			return fmt.Errorf("blob %s: %w", h, ErrNotFound)
		case info.Chunks == 0 && info.Size == 0:
			if err := f(h, new(bytes.Buffer), 0); err != nil {
				return err
			}
		case info.Chunks == 1 && info.NUID != "":
			cs := blobChunkSubject(info.NUID)
			chunkOf[cs] = h
			chunkSubjects = append(chunkSubjects, cs)
		default: // big: chunk by chunk
			r, err := s.openChunks(ctx, info)
			if err == nil {
				err = f(h, r, int64(info.Size))
				r.Close()
			}
			if err != nil {
				return err
			}
		}
	}
	if len(chunkSubjects) == 0 {
		return nil
	}
	got := 0
	err = s.multiLast(ctx, chunkSubjects, func(subj string, data []byte) error {
		h, ok := chunkOf[subj]
		if !ok {
			return fmt.Errorf("fetch blobs: answer for %s, not asked for", subj)
		}
		delete(chunkOf, subj) // each once
		got++
		if size := infos[h].Size; uint64(len(data)) != size {
			return fmt.Errorf("blob %s: chunk holds %d bytes, stored with %d", h, len(data), size)
		}
		return f(h, bytes.NewBuffer(data), int64(len(data)))
	})
	if err != nil {
		return fmt.Errorf("fetch blob chunks: %w", err)
	}
	for _, h := range chunkOf {
		return fmt.Errorf("blob %s: chunk: %w", h, ErrNotFound)
	}
	return nil
}

// multiLast asks the blob stream for the last message of each subject in
// one direct get and calls f with each as it arrives. Subjects without a
// message are left out of the answer, not reported.
func (s *Store) multiLast(ctx context.Context, subjects []string, f func(subject string, data []byte) error) error {
	req := directBatchRequest{MultiLast: subjects, Batch: len(subjects), MaxBytes: maxBatchBytes}
	return s.directBatch(ctx, req, func(subj string, _ uint64, data []byte) error { return f(subj, data) })
}

// batchIdle bounds the wait for each message of a batched answer: a
// 64 MiB answer from a busy server comes in well under it.
var batchIdle = 30 * time.Second

// maxBatchBytes bounds one batched answer: maxBatchBlobs one-chunk blobs.
const maxBatchBytes = 64 << 20

// directBatchRequest is a batched direct get (ADR-31): the last message
// of each of MultiLast, or Batch messages on NextFor from Seq.
type directBatchRequest struct {
	Seq       uint64   `json:"seq,omitempty"`
	NextFor   string   `json:"next_by_subj,omitempty"`
	MultiLast []string `json:"multi_last,omitempty"`
	Batch     int      `json:"batch"`
	MaxBytes  int      `json:"max_bytes"`
}

// directBatch sends a batched direct get to the blob stream and calls f
// with each message of the answer, in stream order, until its end.
func (s *Store) directBatch(ctx context.Context, breq directBatchRequest, f func(subject string, seq uint64, data []byte) error) error {
	nc := s.js.Conn()
	inbox := nc.NewInbox()
	// A channel that holds the whole answer (at most Batch messages and
	// the end of batch), so none is dropped for a slow reader. A
	// SubscribeSync made a channel of 65,536 for each batch, 6 % of an
	// edge's CPU while it fetched a push's blobs (issue 25).
	msgs := make(chan *nats.Msg, breq.Batch+2)
	sub, err := nc.ChanSubscribe(inbox, msgs)
	if err != nil {
		return err
	}
	defer sub.Unsubscribe()
	req, err := json.Marshal(breq)
	if err != nil {
		return err
	}
	if err := nc.PublishRequest("$JS.API.DIRECT.GET."+blobStreamName, inbox, req); err != nil {
		return err
	}
	// An answer lost on the way (a reconnect, a server gone mid-answer)
	// would leave the reader waiting for good: each message must come
	// within batchIdle of the last.
	idle := time.NewTimer(batchIdle)
	defer idle.Stop()
	for {
		var m *nats.Msg
		select {
		case m = <-msgs:
			idle.Reset(batchIdle)
		case <-idle.C:
			return fmt.Errorf("direct get: no answer for %v", batchIdle)
		case <-ctx.Done():
			return ctx.Err()
		}
		if status := m.Header.Get("Status"); status != "" {
			desc := m.Header.Get("Description")
			switch {
			case status == "204": // end of batch
				return nil
			case status == "404" && desc == "No Results": // no subject has a message
				return nil
			case status == "408": // a server that does not know batches
				return fmt.Errorf("direct get: %s %s: %w", status, desc, ErrBatchUnsupported)
			default:
				return fmt.Errorf("direct get: status %s %s", status, desc)
			}
		}
		subj := m.Header.Get(jetstream.SubjectHeader)
		if subj == "" {
			return errors.New("direct get: answer without a subject")
		}
		seq, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
		if err != nil {
			return fmt.Errorf("direct get: answer without a sequence: %w", err)
		}
		if err := f(subj, seq, m.Data); err != nil {
			return err
		}
		// A batch's messages say how many are pending; a server that
		// answered one message as to a plain direct get (before 2.11)
		// sends no end of batch.
		if m.Header.Get("Nats-Num-Pending") == "" {
			return nil
		}
	}
}
