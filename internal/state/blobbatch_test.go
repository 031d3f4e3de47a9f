package state

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/selfcdn/cdn/internal/natstest"
)

// TestFetchBlobs reads blobs of every chunk layout in one batch, byte for
// byte and each once, and fails a batch that names a blob not stored.
func TestFetchBlobs(t *testing.T) {
	s := openStore(t)
	const chunk = 128 << 10 // the object store's chunk size
	stored := map[string][]byte{}
	for _, n := range []int{0, 1, 1000, chunk - 1, chunk, chunk + 1, 3*chunk + 7} {
		b := make([]byte, n)
		rand.Read(b)
		if _, _, err := s.PutBlob(t.Context(), hashOf(b), bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
		stored[hashOf(b)] = b
	}
	var all []string
	for h := range stored {
		all = append(all, h)
	}
	tests := []struct {
		name    string
		hashes  []string
		wantErr error
	}{
		{name: "every layout", hashes: all},
		{name: "one", hashes: all[:1]},
		{name: "twice the same", hashes: append([]string{all[0]}, all...)},
		{name: "one not stored", hashes: append([]string{hashOf([]byte("never stored"))}, all...), wantErr: ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := map[string]int{}
			err := s.FetchBlobs(t.Context(), tt.hashes, func(hash string, r io.Reader, size int64) error {
				b, err := io.ReadAll(r)
				if err != nil || size != int64(len(b)) || !bytes.Equal(b, stored[hash]) {
					return fmt.Errorf("blob %s: %d bytes (size %d), %v; want its %d bytes", hash[:8], len(b), size, err, len(stored[hash]))
				}
				got[hash]++
				return nil
			})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("FetchBlobs = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr != nil {
				return
			}
			for _, h := range tt.hashes {
				if got[h] != 1 {
					t.Errorf("blob %s delivered %d times, want once", h[:8], got[h])
				}
			}
		})
	}
	// The callee's error ends the batch.
	stop := errors.New("stop")
	if err := s.FetchBlobs(t.Context(), all, func(string, io.Reader, int64) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("FetchBlobs with a failing callee = %v, want it", err)
	}
}

// TestFetchBlobsAnswerLost: a batched answer that stops half way (the
// server gone, a reconnect) fails the fetch after batchIdle instead of
// leaving it waiting for good.
func TestFetchBlobsAnswerLost(t *testing.T) {
	srv := natstest.Start(t, "", "")
	nc := natstest.Connect(t, srv.URL)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	// A stand-in for the stream that answers with the first message of
	// two and then nothing more.
	h := hashOf([]byte("a blob"))
	sub, err := nc.Subscribe("$JS.API.DIRECT.GET."+blobStreamName, func(m *nats.Msg) {
		msg := nats.NewMsg(m.Reply)
		msg.Header.Set(jetstream.SubjectHeader, blobMetaSubject(h))
		msg.Header.Set(jetstream.SequenceHeader, "1")
		msg.Header.Set("Nats-Num-Pending", "1")
		msg.Data = []byte(`{"name":"` + h + `","size":6,"chunks":1,"nuid":"N"}`)
		m.RespondMsg(msg)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	was := batchIdle
	batchIdle = 200 * time.Millisecond
	defer func() { batchIdle = was }()
	s := &Store{js: js}
	start := time.Now()
	err = s.FetchBlobs(t.Context(), []string{h, hashOf([]byte("another"))}, func(string, io.Reader, int64) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "no answer") {
		t.Fatalf("FetchBlobs with its answer cut off = %v, want a no-answer error", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the cut-off answer failed after %v", took)
	}
}
