package state

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
)

// blobIndex is the blob store's directory held in memory, kept current by
// a watch, so that checking the thousands of blobs a push names costs a
// map lookup each instead of a JetStream request each. It only ever
// answers "stored": a name it lacks is asked of the store, so a watch
// running behind never makes a stored blob look missing.
type blobIndex struct {
	mu    sync.RWMutex // protects blobs
	blobs map[string]BlobInfo
}

// blobIndex returns the blob index, nil when none is kept.
func (s *Store) blobIndex() *blobIndex { return s.index.Load() }

func (x *blobIndex) get(hash string) (BlobInfo, bool) {
	if x == nil {
		return BlobInfo{}, false
	}
	x.mu.RLock()
	defer x.mu.RUnlock()
	b, ok := x.blobs[hash]
	return b, ok
}

// all lists the blobs in the index.
func (x *blobIndex) all() []BlobInfo {
	x.mu.RLock()
	defer x.mu.RUnlock()
	out := make([]BlobInfo, 0, len(x.blobs))
	for _, b := range x.blobs {
		out = append(out, b)
	}
	return out
}

func (x *blobIndex) put(b BlobInfo) {
	if x == nil {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	x.blobs[b.Hash] = b
}

func (x *blobIndex) remove(hash string) {
	if x == nil {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	delete(x.blobs, hash)
}

// apply takes one update of the watch: an object put or deleted.
func (x *blobIndex) apply(info *jetstream.ObjectInfo) {
	if info.Deleted || info.Digest != digestOf(info.Name) {
		x.remove(info.Name)
		return
	}
	x.put(BlobInfo{Hash: info.Name, Size: int64(info.Size), Modified: info.ModTime})
}

// IndexBlobs keeps an in-memory directory of the blob store for Blob (and
// so for the checks of a push) until ctx ends. Blob asks the store until
// the directory is loaded, and again once IndexBlobs returns. The watch
// resumes by itself after a NATS reconnect. For a process that checks
// many blobs: control.
func (s *Store) IndexBlobs(ctx context.Context) error {
	w, err := s.blobs.Watch(ctx)
	if err != nil {
		return fmt.Errorf("watch blob store: %w", err)
	}
	defer s.stopWatch(w)
	x := &blobIndex{blobs: map[string]BlobInfo{}}
	defer s.index.CompareAndSwap(x, nil)
	for info := range w.Updates() {
		if info == nil { // the listing is in; updates follow
			s.index.Store(x)
			continue
		}
		x.apply(info)
	}
	if ctx.Err() == nil {
		return errors.New("watch blob store: the watch ended")
	}
	return nil
}
