package api

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/selfcdn/cdn/push"
)

// batchBody is the wire form of bodies as one blob batch, each blob named
// by its hash unless names says otherwise.
func batchBody(bodies []string, names ...string) string {
	blobs := make([]push.BatchedBlob, len(bodies))
	for i, b := range bodies {
		blobs[i] = push.BatchedBlob{Hash: push.HashOf([]byte(b)), Data: []byte(b)}
		if i < len(names) {
			blobs[i].Hash = names[i]
		}
	}
	var buf bytes.Buffer
	push.WriteBlobBatch(&buf, blobs)
	return buf.String()
}

// TestPutBlobBatch: a good batch stores every blob, readable as sent
// (one of several chunks too); a bad one, whatever is wrong with it, is
// refused with a clear 4xx and stores none of its blobs.
func TestPutBlobBatch(t *testing.T) {
	a := startAPI(t)
	admin := a.token(t, 0, ScopeAdmin)
	for _, site := range []string{siteA, `{"name":"b","hosts":["b.example.com"],"origin":"http://127.0.0.1:9000"}`} {
		if code, v := a.do(t, "POST", "/v1/sites", admin, site); code != 201 {
			t.Fatalf("create site: %d %v", code, v)
		}
	}
	pushA, pushB, purgeA := a.token(t, 0, "push:a"), a.token(t, 0, "push:b"), a.token(t, 0, "purge:a")
	ct := []string{"Content-Type", push.BlobBatchType}
	// stored reports which of bodies control holds.
	stored := func(t *testing.T, bodies ...string) []bool {
		t.Helper()
		out := make([]bool, len(bodies))
		for i, b := range bodies {
			_, err := a.store.Blob(t.Context(), push.HashOf([]byte(b)))
			out[i] = err == nil
		}
		return out
	}

	big := strings.Repeat("0123456789abcdef", 300<<10/16) // 300 KiB: three chunks
	good := []string{"first blob", "", big, "last blob"}
	code, v := a.doHeader(t, "POST", "/v1/sites/a/blobs", pushA, batchBody(good), ct...)
	if code != 200 || v["created"] != 4.0 || len(v["blobs"].([]any)) != 4 {
		t.Fatalf("good batch: %d %v, want 200 with 4 created", code, v)
	}
	for _, b := range good {
		r, size, err := a.store.OpenBlob(t.Context(), push.HashOf([]byte(b)))
		if err != nil {
			t.Fatalf("open stored blob of %d bytes: %v", len(b), err)
		}
		got, err := io.ReadAll(r)
		if err != nil || string(got) != b || size != int64(len(b)) {
			t.Fatalf("blob of %d bytes read back as %d bytes (size %d), %v", len(b), len(got), size, err)
		}
	}
	// Sent again, with one new: only the new one is stored.
	code, v = a.doHeader(t, "POST", "/v1/sites/a/blobs", pushA, batchBody(append(good, "new")), ct...)
	if code != 200 || v["created"] != 1.0 {
		t.Fatalf("batch again with one new blob: %d %v, want 200 with 1 created", code, v)
	}

	ok1, ok2 := "a good blob in a bad batch", "another good one"
	tests := []struct {
		name, token, body string
		header            []string
		want              int
		code, msg         string
	}{
		{"bytes do not match the name", pushA, batchBody([]string{ok1, "forged"}, push.HashOf([]byte(ok1)), push.HashOf([]byte(ok2))), ct, 422, "hash_mismatch", "nothing of the batch was stored"},
		{"truncated body", pushA, batchBody([]string{ok1, ok2})[:100], ct, 400, "bad_request", "ends inside blob"},
		{"not a batch", pushA, ok1, ct, 400, "bad_request", "not a blob batch"},
		{"empty", pushA, "", ct, 400, "bad_request", "not a blob batch"},
		{"blob over the limit", pushA, batchBody([]string{ok1, strings.Repeat("x", push.BatchBlobMax+1)}), ct, 413, "too_large", "limit of a batched blob"},
		{"batch over the limit", pushA, batchBody([]string{ok1, strings.Repeat("y", push.MaxBatchBytes)}), ct, 413, "too_large", "limit of one batch"},
		{"wrong media type", pushA, batchBody([]string{ok1, ok2}), []string{"Content-Type", "application/octet-stream"}, 415, "unsupported_media_type", push.BlobBatchType},
		{"no token", "", batchBody([]string{ok1, ok2}), ct, 401, "unauthorized", ""},
		{"purge token", purgeA, batchBody([]string{ok1, ok2}), ct, 403, "forbidden", ""},
		{"another site's push token", pushB, batchBody([]string{ok1, ok2}), ct, 403, "forbidden", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, v := a.doHeader(t, "POST", "/v1/sites/a/blobs", tt.token, tt.body, tt.header...)
			e, _ := v["error"].(map[string]any)
			if code != tt.want || e["code"] != tt.code || !strings.Contains(errMessage(v), tt.msg) {
				t.Errorf("%d %v, want %d %s with a message holding %q", code, v, tt.want, tt.code, tt.msg)
			}
			if got := stored(t, ok1, ok2); got[0] || got[1] {
				t.Errorf("a refused batch stored blobs: %v", got)
			}
		})
	}
	if code, v := a.doHeader(t, "POST", "/v1/sites/nope/blobs", admin, batchBody([]string{ok1, ok2}), ct...); code != http.StatusNotFound {
		t.Errorf("batch to an unknown site: %d %v, want 404", code, v)
	}
	// The blobs a batch stored commit like uploaded ones.
	b := push.Blob{Hash: push.HashOf([]byte(big)), Size: int64(len(big))}
	if code, v := a.do(t, "POST", "/v1/sites/a/releases", pushA, commitBody("/big.txt", b)); code != http.StatusCreated {
		t.Fatalf("commit of a batched blob: %d %v", code, v)
	}
	if code, v := a.do(t, "POST", "/v1/sites/a/blobs/missing", pushA, fmt.Sprintf(`{"blobs":[%q,%q]}`, b.Hash, push.HashOf([]byte(ok1)))); code != 200 || fmt.Sprint(v["blobs"]) != "["+push.HashOf([]byte(ok1))+"]" {
		t.Fatalf("missing after the batches: %d %v", code, v)
	}
}
