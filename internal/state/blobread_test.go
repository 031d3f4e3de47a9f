package state

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"sync"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// TestOpenBlob reads blobs of every chunk layout back byte for byte, from
// several readers at once, and fails a read whose bytes do not match the
// digest the store recorded.
func TestOpenBlob(t *testing.T) {
	s := openStore(t)
	const chunk = 128 << 10 // the object store's chunk size
	var blobs [][]byte
	for _, n := range []int{0, 1, chunk - 1, chunk, chunk + 1, 8*chunk + 7} {
		b := make([]byte, n)
		rand.Read(b)
		if _, _, err := s.PutBlob(t.Context(), hashOf(b), bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
		blobs = append(blobs, b)
	}
	var wg sync.WaitGroup
	for range 4 {
		for _, want := range blobs {
			wg.Go(func() {
				r, size, err := s.OpenBlob(t.Context(), hashOf(want))
				if err != nil {
					t.Errorf("open %d-byte blob: %v", len(want), err)
					return
				}
				defer r.Close()
				got, err := io.ReadAll(r)
				if err != nil || size != int64(len(want)) || !bytes.Equal(got, want) {
					t.Errorf("%d-byte blob: read %d bytes (size %d), %v", len(want), len(got), size, err)
				}
			})
		}
	}
	wg.Wait()

	if _, _, err := s.OpenBlob(t.Context(), hashOf([]byte("never stored"))); !errors.Is(err, ErrNotFound) {
		t.Fatalf("open of a blob never stored: %v, want ErrNotFound", err)
	}

	// The recorded digest is what the bytes are checked against.
	big := blobs[len(blobs)-1]
	info, err := s.blobs.GetInfo(t.Context(), hashOf(big))
	if err != nil {
		t.Fatal(err)
	}
	info.Digest = digestOf(hashOf([]byte("other bytes")))
	r, err := s.openChunks(t.Context(), info)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(r); !errors.Is(err, jetstream.ErrDigestMismatch) {
		t.Fatalf("read against another digest: %v, want ErrDigestMismatch", err)
	}
	// And the size: a record claiming fewer bytes stops the read.
	info, _ = s.blobs.GetInfo(t.Context(), hashOf(big))
	info.Size--
	r, _ = s.openChunks(t.Context(), info)
	if _, err := io.ReadAll(r); err == nil {
		t.Fatal("read of more bytes than recorded succeeded")
	}
}
