package push

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// batchOf is the wire form of blobs, each named by its own hash.
func batchOf(bodies ...string) []byte {
	var blobs []BatchedBlob
	for _, b := range bodies {
		blobs = append(blobs, BatchedBlob{Hash: HashOf([]byte(b)), Data: []byte(b)})
	}
	var buf bytes.Buffer
	WriteBlobBatch(&buf, blobs)
	return buf.Bytes()
}

// TestReadBlobBatch: a good batch reads back as written; every fault
// refuses the whole batch with a *BatchError that says which kind.
func TestReadBlobBatch(t *testing.T) {
	good := batchOf("one", "", "three")
	if n := BlobBatchSize([]BatchedBlob{{Hash: HashOf([]byte("one")), Data: []byte("one")}, {Hash: HashOf(nil)}, {Hash: HashOf([]byte("three")), Data: []byte("three")}}); n != int64(len(good)) {
		t.Errorf("BlobBatchSize = %d, the batch is %d bytes", n, len(good))
	}
	h1 := HashOf([]byte("one"))
	tests := []struct {
		name               string
		body               string
		maxBytes, maxBlob  int64
		wantBlobs          int
		mismatch, tooLarge bool
		msg                string // in the error; "" for none
		oneByte            bool   // read through a reader of one byte a call
	}{
		{name: "good", body: string(good), wantBlobs: 3},
		{name: "good, read a byte at a time", body: string(good), wantBlobs: 3, oneByte: true},
		{name: "truncated, read a byte at a time", body: string(good[:len(good)-1]), msg: "ends inside blob", oneByte: true},
		{name: "empty body", body: "", msg: "not a blob batch"},
		{name: "no blob", body: blobBatchMagic, msg: "holds no blob"},
		{name: "other format", body: "cdn-blobs 2\n", msg: "not a blob batch"},
		{name: "bytes do not match the name", body: blobBatchMagic + h1 + " 3\nONE", mismatch: true, msg: "do not hash"},
		{name: "truncated inside a blob", body: string(good[:len(good)-2]), msg: "ends inside blob"},
		{name: "truncated inside a line", body: blobBatchMagic + h1[:10], msg: "ends inside a blob line"},
		{name: "bad hash", body: blobBatchMagic + strings.ToUpper(h1) + " 3\none", msg: "bad blob line"},
		{name: "no size", body: blobBatchMagic + h1 + "\none", msg: "bad blob line"},
		{name: "negative size", body: blobBatchMagic + h1 + " -3\none", msg: "bad size"},
		{name: "plus sign", body: blobBatchMagic + h1 + " +3\none", msg: "bad size"},
		{name: "leading zero", body: blobBatchMagic + h1 + " 03\none", msg: "bad size"},
		{name: "long line", body: blobBatchMagic + h1 + " " + strings.Repeat("1", 100) + "\n", msg: "too long"},
		{name: "twice", body: string(batchOf("one", "one")), msg: "twice"},
		{name: "blob over the limit", body: string(batchOf("one", "four")), maxBlob: 3, tooLarge: true, msg: "over the 3-byte limit"},
		{name: "batch over the limit", body: string(good), maxBytes: int64(len(good) - 1), tooLarge: true, msg: "over"},
		{name: "batch at the limit", body: string(good), maxBytes: int64(len(good)), wantBlobs: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			maxBytes, maxBlob := tt.maxBytes, tt.maxBlob
			if maxBytes == 0 {
				maxBytes = MaxBatchBytes
			}
			if maxBlob == 0 {
				maxBlob = BatchBlobMax
			}
			var r io.Reader = strings.NewReader(tt.body)
			if tt.oneByte {
				r = iotest.OneByteReader(r)
			}
			blobs, err := ReadBlobBatch(r, maxBytes, maxBlob)
			if tt.msg == "" {
				if err != nil || len(blobs) != tt.wantBlobs {
					t.Fatalf("ReadBlobBatch = %d blobs, %v; want %d", len(blobs), err, tt.wantBlobs)
				}
				var back bytes.Buffer
				WriteBlobBatch(&back, blobs)
				if back.String() != tt.body {
					t.Errorf("written again: %q, want %q", back.String(), tt.body)
				}
				return
			}
			be, ok := errors.AsType[*BatchError](err)
			if !ok || blobs != nil || be.Mismatch != tt.mismatch || be.TooLarge != tt.tooLarge || !strings.Contains(be.Msg, tt.msg) {
				t.Fatalf("ReadBlobBatch = %d blobs, %v (%+v); want a *BatchError with %q (mismatch %v, too large %v)",
					len(blobs), err, be, tt.msg, tt.mismatch, tt.tooLarge)
			}
		})
	}
}

// TestReadBlobBatchCount: a batch of more than MaxBatchBlobs is refused.
func TestReadBlobBatchCount(t *testing.T) {
	bodies := make([]string, MaxBatchBlobs+1)
	for i := range bodies {
		bodies[i] = fmt.Sprint(i)
	}
	_, err := ReadBlobBatch(bytes.NewReader(batchOf(bodies...)), MaxBatchBytes, BatchBlobMax)
	if be, ok := errors.AsType[*BatchError](err); !ok || !be.TooLarge {
		t.Fatalf("a batch of %d blobs: %v, want a too-large *BatchError", len(bodies), err)
	}
	if _, err := ReadBlobBatch(bytes.NewReader(batchOf(bodies[:MaxBatchBlobs]...)), MaxBatchBytes, BatchBlobMax); err != nil {
		t.Fatalf("a batch of %d blobs: %v", MaxBatchBlobs, err)
	}
}

// FuzzReadBlobBatch checks what ReadBlobBatch promises a server storing
// outside input: it never panics, refuses with a *BatchError or the
// reader's error, and a batch it accepts holds only blobs whose bytes
// hash to their names, each once, within the limits, and is written back
// byte for byte by WriteBlobBatch (one way to read each body).
func FuzzReadBlobBatch(f *testing.F) {
	f.Add(batchOf("one", "", "three"))
	f.Add(batchOf("x"))
	f.Add([]byte(blobBatchMagic))
	f.Add([]byte(blobBatchMagic + HashOf([]byte("one")) + " 3\nONE"))
	f.Add([]byte(blobBatchMagic + HashOf([]byte("one")) + " 03\none"))
	f.Add(batchOf("one")[:20])
	const maxBytes, maxBlob = 4096, 512
	f.Fuzz(func(t *testing.T, body []byte) {
		blobs, err := ReadBlobBatch(bytes.NewReader(body), maxBytes, maxBlob)
		if err != nil {
			if _, ok := errors.AsType[*BatchError](err); !ok {
				t.Fatalf("error %v (%T) is not a *BatchError", err, err)
			}
			if blobs != nil {
				t.Fatalf("blobs returned with error %v", err)
			}
			return
		}
		if len(body) > maxBytes || len(blobs) == 0 || len(blobs) > MaxBatchBlobs {
			t.Fatalf("accepted %d blobs in %d bytes", len(blobs), len(body))
		}
		seen := map[string]bool{}
		for _, b := range blobs {
			if HashOf(b.Data) != b.Hash || len(b.Data) > maxBlob || seen[b.Hash] {
				t.Fatalf("accepted blob %s of %d bytes (hash %s, seen before %v)", b.Hash, len(b.Data), HashOf(b.Data), seen[b.Hash])
			}
			seen[b.Hash] = true
		}
		var back bytes.Buffer
		WriteBlobBatch(&back, blobs)
		if !bytes.Equal(back.Bytes(), body) {
			t.Fatalf("accepted %q, written back as %q", body, back.Bytes())
		}
	})
}
