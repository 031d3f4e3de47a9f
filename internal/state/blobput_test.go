package state

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"testing"

	"github.com/selfcdn/cdn/internal/natstest"
	"github.com/selfcdn/cdn/internal/testwait"
)

// TestPutBlobs: blobs stored in a batch are laid out as the object
// store's own Put lays them out (its Get reads them and checks their
// digest), are found by every reader here, and a batch skips blobs held
// already and stores again one deleted since.
func TestPutBlobs(t *testing.T) {
	s := openStore(t)
	const chunk = 128 << 10
	var blobs []NewBlob
	for _, n := range []int{0, 1, 1000, chunk, chunk + 1, 3*chunk + 7} {
		b := make([]byte, n)
		rand.Read(b)
		blobs = append(blobs, NewBlob{Hash: hashOf(b), Data: b})
	}
	// One stored before, by Put.
	if _, _, err := s.PutBlob(t.Context(), blobs[2].Hash, bytes.NewReader(blobs[2].Data)); err != nil {
		t.Fatal(err)
	}
	created, err := s.PutBlobs(t.Context(), append(blobs, blobs[1])) // and one twice
	if err != nil {
		t.Fatal(err)
	}
	want := []bool{true, true, false, true, true, true, false}
	for i := range want {
		if created[i] != want[i] {
			t.Errorf("created = %v, want %v", created, want)
			break
		}
	}
	for _, b := range blobs {
		got, err := s.blobs.GetBytes(t.Context(), b.Hash)
		if err != nil || !bytes.Equal(got, b.Data) {
			t.Fatalf("object store Get of a %d-byte blob: %d bytes, %v", len(b.Data), len(got), err)
		}
		info, err := s.Blob(t.Context(), b.Hash)
		if err != nil || info.Size != int64(len(b.Data)) {
			t.Fatalf("Blob of a %d-byte blob: %+v, %v", len(b.Data), info, err)
		}
	}
	// Every blob stored again is skipped; one deleted is stored again.
	if err := s.DeleteBlob(t.Context(), blobs[4].Hash); err != nil {
		t.Fatal(err)
	}
	created, err = s.PutBlobs(t.Context(), blobs)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range created {
		if c != (i == 4) {
			t.Fatalf("after deleting blob 4, created = %v", created)
		}
	}
	if got, err := s.blobs.GetBytes(t.Context(), blobs[4].Hash); err != nil || !bytes.Equal(got, blobs[4].Data) {
		t.Fatalf("the blob stored again: %d bytes, %v", len(got), err)
	}
	// A listing from the store (as a process without the index lists)
	// names each blob once, and no chunks are left over.
	list, err := s.Blobs(t.Context())
	if err != nil || len(list) != len(blobs) {
		t.Fatalf("Blobs = %d, %v; want %d", len(list), err, len(blobs))
	}
	info, err := s.blobStream.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	chunks := 0
	for _, b := range blobs {
		chunks += (len(b.Data) + chunk - 1) / chunk
	}
	if msgs := info.State.Msgs; msgs != uint64(chunks+len(blobs)) {
		t.Errorf("the blob stream holds %d messages, want %d chunks and %d records", msgs, chunks, len(blobs))
	}
}

// TestPutBlobsRefusedRecords: when the server refuses a batch's
// records (here: a stream that allows no rollup, which each record
// asks for), the call fails and leaves none of the batch's chunks
// behind; once the records are accepted again, the same batch stores.
func TestPutBlobsRefusedRecords(t *testing.T) {
	s := openStore(t)
	ctx := t.Context()
	var blobs []NewBlob
	for _, n := range []int{10, 300 << 10} {
		b := make([]byte, n)
		rand.Read(b)
		blobs = append(blobs, NewBlob{Hash: hashOf(b), Data: b})
	}
	msgs := func() uint64 {
		t.Helper()
		info, err := s.blobStream.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Msgs
	}
	allowRollup := func(allow bool) {
		t.Helper()
		info, err := s.blobStream.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		cfg := info.Config
		cfg.AllowRollup = allow
		if _, err := s.js.UpdateStream(ctx, cfg); err != nil {
			t.Fatal(err)
		}
	}
	before := msgs()
	allowRollup(false)
	if _, err := s.PutBlobs(ctx, blobs); err == nil {
		t.Fatal("PutBlobs succeeded with its records refused")
	}
	if after := msgs(); after != before {
		t.Errorf("the blob stream went from %d to %d messages: the refused records' chunks are left", before, after)
	}
	allowRollup(true)
	created, err := s.PutBlobs(ctx, blobs)
	if err != nil || !created[0] || !created[1] {
		t.Fatalf("PutBlobs after = %v, %v", created, err)
	}
	for _, b := range blobs {
		if got, err := s.blobs.GetBytes(ctx, b.Hash); err != nil || !bytes.Equal(got, b.Data) {
			t.Fatalf("Get of a %d-byte blob: %d bytes, %v", len(b.Data), len(got), err)
		}
	}
}

// TestPutBlobsIndexed: a process keeping the directory in memory (as
// control does) learns of blobs another process stored in a batch from
// its watch, as it learns of Put's.
func TestPutBlobsIndexed(t *testing.T) {
	srv := natstest.Start(t, "", "")
	s, err := Open(t.Context(), natstest.Connect(t, srv.URL), Options{})
	if err != nil {
		t.Fatal(err)
	}
	other, err := Open(t.Context(), natstest.Connect(t, srv.URL), Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.IndexBlobs(ctx) }()
	defer func() { cancel(); <-done }()
	testwait.Until(t, "the index loaded", func() bool { return s.blobIndex() != nil })
	b := []byte("indexed")
	if _, err := other.PutBlobs(t.Context(), []NewBlob{{Hash: hashOf(b), Data: b}}); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, "the index lists the batched blob", func() bool {
		info, ok := s.blobIndex().get(hashOf(b))
		return ok && info.Size == int64(len(b))
	})
}

// TestBlobInfos: a lookup of many names, over several requests, finds
// exactly the blobs stored, as Blob would one by one.
func TestBlobInfos(t *testing.T) {
	s := openStore(t)
	var stored []NewBlob
	var names []string
	for i := range 2*infoBatch + 10 {
		b := fmt.Appendf(nil, "blob %d", i)
		names = append(names, hashOf(b))
		if i%3 == 0 {
			stored = append(stored, NewBlob{Hash: hashOf(b), Data: b})
		}
	}
	for i := 0; i < len(stored); i += 500 {
		if _, err := s.PutBlobs(t.Context(), stored[i:min(i+500, len(stored))]); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteBlob(t.Context(), stored[0].Hash); err != nil {
		t.Fatal(err)
	}
	names = append(names, names[1]) // asked twice
	// Without the index (as at control's start), the store answers all.
	got, err := s.BlobInfos(t.Context(), names)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(stored)-1 {
		t.Errorf("BlobInfos found %d blobs, want %d", len(got), len(stored)-1)
	}
	for _, b := range stored[1:] {
		if info, ok := got[b.Hash]; !ok || info.Size != int64(len(b.Data)) {
			t.Fatalf("blob %s: %+v, %v; want its %d bytes", b.Hash[:8], info, ok, len(b.Data))
		}
	}
	if _, ok := got[stored[0].Hash]; ok {
		t.Errorf("a deleted blob was found")
	}
}

// TestPutBlobsManyInFlight: a batch of more chunks than may be in flight
// at once (4,000) is stored whole. (Acks come fast here, so the default
// 200 ms stall would pass too; the longer stall is for a loaded server.)
func TestPutBlobsManyInFlight(t *testing.T) {
	s := openStore(t)
	var blobs []NewBlob
	for i := range 5000 {
		b := fmt.Appendf(nil, "small blob %d", i)
		blobs = append(blobs, NewBlob{Hash: hashOf(b), Data: b})
	}
	created, err := s.PutBlobs(t.Context(), blobs)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range created {
		if !c {
			t.Fatalf("blob %d not stored", i)
		}
	}
}
