package state

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// Storing many small blobs at once. The object store's Put costs a blob
// a lookup of its info, a reply subscription of its own and a wait for
// its acks: one blob at a time, a 10,000-file push spent 13.9 s
// uploading (issue 25). PutBlobs writes what Put writes (the chunks under
// a new NUID, then the meta record with a subject rollup, so readers and
// garbage collection see the same layout) for a whole batch, publishing
// asynchronously on one shared JetStream context and waiting for the acks
// twice per batch: once for every chunk, then for every meta record.

// chunkSize is the object store's default chunk size, which Put uses.
const chunkSize = 128 << 10

// putAckTimeout bounds the wait for one asynchronous publish's ack.
const putAckTimeout = 30 * time.Second

// stall lets a publish wait for room among the publishes in flight (4,000
// by default: a few batches' chunks) as long as for an ack, where the
// default failed it after 200 ms.
var stall = jetstream.WithStallWait(putAckTimeout)

// NewBlob is a blob to store: bytes and the name they hash to.
type NewBlob struct {
	Hash string
	Data []byte
}

// publisher returns the JetStream context batched puts publish on,
// made once: its reply subscription is shared by every batch.
func (s *Store) publisher() (jetstream.JetStream, error) {
	s.pubOnce.Do(func() {
		s.pub, s.pubErr = jetstream.New(s.js.Conn(), jetstream.WithPublishAsyncTimeout(putAckTimeout))
	})
	return s.pub, s.pubErr
}

// PutBlobs stores blobs whose bytes were checked against their names by
// the caller, skipping those stored already. It returns, in the order of
// blobs, whether each was stored by this call. On an error some blobs may
// be stored and others not; no blob is ever visible before all its bytes
// are stored. A server without batched direct gets (before 2.11) stores
// them one by one through PutBlob.
func (s *Store) PutBlobs(ctx context.Context, blobs []NewBlob) ([]bool, error) {
	created := make([]bool, len(blobs))
	x := s.blobIndex()
	// Which are stored: the index answers for most; the rest are asked of
	// the store, which also names the chunks an old record under the same
	// name leaves behind.
	bySubject := map[string]string{} // record subject -> hash
	unindexed := map[string]bool{}
	for _, b := range blobs {
		if _, ok := x.get(b.Hash); !ok {
			bySubject[blobMetaSubject(b.Hash)] = b.Hash
			unindexed[b.Hash] = true
		}
	}
	if len(bySubject) == 0 {
		return created, nil
	}
	existing, err := s.storedRecords(ctx, bySubject)
	if errors.Is(err, ErrBatchUnsupported) {
		return s.putBlobsOneByOne(ctx, blobs)
	}
	if err != nil {
		return nil, fmt.Errorf("look up blobs to store: %w", err)
	}
	var todo []int
	for i, b := range blobs {
		if !unindexed[b.Hash] {
			continue // in the index, or taken already (named twice in the batch)
		}
		delete(unindexed, b.Hash)
		if e := existing[b.Hash]; e != nil && !e.Deleted && e.Digest == digestOf(b.Hash) {
			x.put(BlobInfo{Hash: b.Hash, Size: int64(e.Size), Modified: e.ModTime})
			continue
		}
		todo = append(todo, i)
	}
	if len(todo) == 0 {
		return created, nil
	}
	pub, err := s.publisher()
	if err != nil {
		return nil, fmt.Errorf("store blobs: %w", err)
	}
	// The chunks first, all of them acked before any meta record names
	// them: a failure or a crash in between leaves chunks no record
	// names, never a record whose bytes are missing.
	infos := make(map[int]*jetstream.ObjectInfo, len(todo))
	var chunkSubjects []string
	var acks []jetstream.PubAckFuture
	for _, i := range todo {
		b := blobs[i]
		info := &jetstream.ObjectInfo{
			ObjectMeta: jetstream.ObjectMeta{Name: b.Hash, Opts: &jetstream.ObjectMetaOptions{ChunkSize: chunkSize}},
			Bucket:     BlobsBucket, NUID: nuid.Next(), Size: uint64(len(b.Data)), Digest: digestOf(b.Hash),
		}
		infos[i] = info
		subj := blobChunkSubject(info.NUID)
		chunkSubjects = append(chunkSubjects, subj)
		for off := 0; off < len(b.Data); off += chunkSize {
			f, err := pub.PublishMsgAsync(&nats.Msg{Subject: subj, Data: b.Data[off:min(off+chunkSize, len(b.Data))]}, stall)
			if err != nil {
				s.purgeChunks(chunkSubjects, acks)
				return nil, fmt.Errorf("store blob %s: %w", b.Hash, err)
			}
			acks = append(acks, f)
			info.Chunks++
		}
	}
	if err := waitAcks(ctx, acks); err != nil {
		s.purgeChunks(chunkSubjects, acks)
		return nil, fmt.Errorf("store blob chunks: %w", err)
	}
	acks = acks[:0] // from here, acks[k] is the record of blobs[todo[k]]
	var sendErr error
	for _, i := range todo {
		m := nats.NewMsg(blobMetaSubject(blobs[i].Hash))
		m.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
		if m.Data, err = json.Marshal(infos[i]); err != nil {
			return nil, err
		}
		f, err := pub.PublishMsgAsync(m, stall)
		if err != nil {
			sendErr = fmt.Errorf("store blob %s: %w", blobs[i].Hash, err)
			break
		}
		acks = append(acks, f)
	}
	results := ackResults(ctx, acks)
	failed, first := len(todo)-len(acks), sendErr
	for _, err := range results {
		if err != nil {
			failed++
			first = cmp.Or(first, err)
		}
	}
	if failed > 0 {
		// The chunks of a record never sent, or refused by the server,
		// are named by nothing: drop them. A record whose ack is missing
		// (a timeout, a cut) may be stored yet, and keeps its chunks.
		var unnamed []string
		for k, i := range todo {
			var refused *jetstream.APIError
			if k >= len(acks) || errors.As(results[k], &refused) {
				unnamed = append(unnamed, blobChunkSubject(infos[i].NUID))
			}
		}
		s.purgeChunks(unnamed, nil)
		return nil, fmt.Errorf("store blob records: %d of %d failed, the first: %w", failed, len(todo), first)
	}
	now := time.Now().UTC()
	for _, i := range todo {
		created[i] = true
		x.put(BlobInfo{Hash: blobs[i].Hash, Size: int64(len(blobs[i].Data)), Modified: now})
		// An old record's chunks (a blob stored again after a bad copy)
		// are named by nothing now.
		if e := existing[blobs[i].Hash]; e != nil && !e.Deleted && e.NUID != "" {
			if err := s.blobStream.Purge(ctx, jetstream.WithPurgeSubject(blobChunkSubject(e.NUID))); err != nil {
				return created, fmt.Errorf("drop old chunks of blob %s: %w", blobs[i].Hash, err)
			}
		}
	}
	return created, nil
}

// waitAcks waits for every publish of acks to be acknowledged and
// returns the first failure.
func waitAcks(ctx context.Context, acks []jetstream.PubAckFuture) error {
	for _, err := range ackResults(ctx, acks) {
		if err != nil {
			return err
		}
	}
	return nil
}

// ackResults waits for the answer to every publish of acks, until ctx
// is done, and returns each one's failure (nil: acknowledged; ctx's
// error: no answer by then).
func ackResults(ctx context.Context, acks []jetstream.PubAckFuture) []error {
	results := make([]error, len(acks))
	for k, f := range acks {
		if ctx.Err() != nil {
			results[k] = ctx.Err()
			continue
		}
		select {
		case <-f.Ok():
		case results[k] = <-f.Err():
		case <-ctx.Done():
			results[k] = ctx.Err()
		}
	}
	return results
}

// purgeChunks drops the chunks of a batch that failed, once the publishes
// sent have been answered, so a publish still in flight is not left behind.
func (s *Store) purgeChunks(subjects []string, acks []jetstream.PubAckFuture) {
	ctx, cancel := context.WithTimeout(context.Background(), putAckTimeout)
	defer cancel()
	waitAcks(ctx, acks)
	for _, subj := range subjects {
		s.blobStream.Purge(ctx, jetstream.WithPurgeSubject(subj))
	}
}

// putBlobsOneByOne is PutBlobs through the object store's Put.
func (s *Store) putBlobsOneByOne(ctx context.Context, blobs []NewBlob) ([]bool, error) {
	created := make([]bool, len(blobs))
	for i, b := range blobs {
		_, c, err := s.PutBlob(ctx, b.Hash, bytes.NewReader(b.Data))
		if err != nil {
			return nil, err
		}
		created[i] = c
	}
	return created, nil
}

// infoBatch is how many blob records one lookup asks for, under the
// server's 1,024 subjects per multi_last request.
const infoBatch = 1000

// BlobInfos describes the stored blobs among hashes (those whose bytes
// match their names), as Blob does one by one: the index answers for
// most, and the rest are asked of the store a thousand in one request.
// A push asking about 16,668 blobs the index lacked sent as many requests
// (issue 25). A server without batched direct gets is asked one by one.
func (s *Store) BlobInfos(ctx context.Context, hashes []string) (map[string]BlobInfo, error) {
	out := make(map[string]BlobInfo, len(hashes))
	x := s.blobIndex()
	bySubject := map[string]string{} // record subject -> hash
	for _, h := range hashes {
		if b, ok := x.get(h); ok {
			out[h] = b
			continue
		}
		bySubject[blobMetaSubject(h)] = h
	}
	stored, err := s.storedRecords(ctx, bySubject)
	if errors.Is(err, ErrBatchUnsupported) {
		return s.blobInfosOneByOne(ctx, bySubject, out)
	}
	if err != nil {
		return nil, fmt.Errorf("look up blobs: %w", err)
	}
	for h, info := range stored {
		if !info.Deleted && info.Digest == digestOf(h) {
			b := BlobInfo{Hash: h, Size: int64(info.Size), Modified: info.ModTime}
			out[h] = b
			x.put(b)
		}
	}
	return out, nil
}

// blobInfosOneByOne adds to out the stored blobs among those bySubject
// names, asking the store once each.
func (s *Store) blobInfosOneByOne(ctx context.Context, bySubject map[string]string, out map[string]BlobInfo) (map[string]BlobInfo, error) {
	for _, h := range bySubject {
		b, err := s.Blob(ctx, h)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out[b.Hash] = b
	}
	return out, nil
}
