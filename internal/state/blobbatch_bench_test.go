package state

import (
	"bytes"
	"crypto/rand"
	"io"
	"testing"

	"github.com/selfcdn/cdn/internal/natstest"
)

// BenchmarkReadBlobs reads 2,000 blobs of 30 KB (a pushed site's typical
// blob) one by one and in batches, as an edge syncing a release does.
func BenchmarkReadBlobs(b *testing.B) {
	srv := natstest.Start(b, "", "")
	s, err := Open(b.Context(), natstest.Connect(b, srv.URL), Options{})
	if err != nil {
		b.Fatal(err)
	}
	var hashes []string
	for range 2000 {
		body := make([]byte, 30_000)
		rand.Read(body)
		h := hashOf(body)
		if _, _, err := s.PutBlob(b.Context(), h, bytes.NewReader(body)); err != nil {
			b.Fatal(err)
		}
		hashes = append(hashes, h)
	}
	b.Run("one-by-one", func(b *testing.B) {
		b.SetBytes(int64(len(hashes)) * 30_000)
		for b.Loop() {
			for _, h := range hashes {
				r, _, err := s.OpenBlob(b.Context(), h)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, r)
				r.Close()
			}
		}
	})
	b.Run("batch-64", func(b *testing.B) {
		b.SetBytes(int64(len(hashes)) * 30_000)
		for b.Loop() {
			for i := 0; i < len(hashes); i += 64 {
				err := s.FetchBlobs(b.Context(), hashes[i:min(i+64, len(hashes))], func(_ string, r io.Reader, _ int64) error {
					_, err := io.Copy(io.Discard, r)
					return err
				})
				if err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
