package state

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/selfcdn/cdn/internal/natstest"

	"github.com/selfcdn/cdn/internal/testwait"
)

func hashOf(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// TestBlobIndex: control's in-memory blob directory agrees with the store
// while another process puts and deletes blobs, never calls a blob with
// bytes that do not match its name stored, and is dropped when it stops.
func TestBlobIndex(t *testing.T) {
	srv := natstest.Start(t, "", "")
	open := func() *Store {
		s, err := Open(t.Context(), natstest.Connect(t, srv.URL), Options{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	indexed, other := open(), open()
	a, b := []byte("blob a"), []byte("blob b")
	if _, _, err := other.PutBlob(t.Context(), hashOf(a), bytes.NewReader(a)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- indexed.IndexBlobs(ctx) }()
	testwait.Until(t, "the listing loaded", func() bool { return indexed.blobIndex() != nil })
	if _, ok := indexed.blobIndex().get(hashOf(a)); !ok {
		t.Fatal("a blob stored before the index started is not in it")
	}

	// Another process puts b and deletes a; bytes stored under the wrong
	// name are dropped by the store and never indexed.
	if _, _, err := other.PutBlob(t.Context(), hashOf(b), bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	if err := other.DeleteBlob(t.Context(), hashOf(a)); err != nil {
		t.Fatal(err)
	}
	wrong := hashOf([]byte("something else"))
	if _, _, err := other.PutBlob(t.Context(), wrong, bytes.NewReader(b)); !errors.Is(err, ErrBlobMismatch) {
		t.Fatalf("mismatched put: %v", err)
	}
	testwait.Until(t, "the index following the other process", func() bool {
		_, hasA := indexed.blobIndex().get(hashOf(a))
		info, hasB := indexed.blobIndex().get(hashOf(b))
		return !hasA && hasB && info.Size == int64(len(b))
	})
	if _, ok := indexed.blobIndex().get(wrong); ok {
		t.Fatal("a blob whose bytes do not match its name is indexed")
	}
	for _, c := range []struct {
		hash string
		want error
	}{{hashOf(a), ErrNotFound}, {hashOf(b), nil}, {wrong, ErrNotFound}} {
		if _, err := indexed.Blob(t.Context(), c.hash); !errors.Is(err, c.want) {
			t.Errorf("Blob(%s…) = %v, want %v", c.hash[:8], err, c.want)
		}
	}

	// Its own deletes leave the index at once, before the watch says so.
	if err := indexed.DeleteBlob(t.Context(), hashOf(b)); err != nil {
		t.Fatal(err)
	}
	if _, err := indexed.Blob(t.Context(), hashOf(b)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Blob after its own delete: %v", err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("IndexBlobs after cancel: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("IndexBlobs still running 5s after its context ended")
	}
	if indexed.blobIndex() != nil {
		t.Fatal("the index outlived IndexBlobs")
	}
}
