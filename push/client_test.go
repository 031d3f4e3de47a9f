package push

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/selfcdn/cdn/internal/apiclient"
)

// TestActivateWait: an activation waited for is ErrNotServed unless
// control says complete, and with no edge counted the error says so
// rather than naming no pending edge.
func TestActivateWait(t *testing.T) {
	tests := []struct {
		name    string
		answer  string
		wantErr string // a substring; "" for none
	}{
		{name: "complete", answer: `{"release":{"number":3},"live":true,"expected":2,"pending":[],"complete":true}`},
		{name: "pending", answer: `{"release":{"number":3},"live":true,"expected":2,"pending":["e2"],"complete":false,
			"edges":[{"edge":"e2","health":"unknown","serving":2,"error":"disk_full: no space"}]}`,
			wantErr: "release 3: not served by every edge (pending: e2 (disk_full: no space))"},
		{name: "no edge", answer: `{"release":{"number":3},"live":true,"expected":0,"pending":[],"complete":false,
			"message":"no edge to wait for: none is registered, or every one is down or draining"}`,
			wantErr: "release 3: not served by every edge: no edge to wait for: none is registered, or every one is down or draining"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var query string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				query = r.URL.RawQuery
				w.Header().Set("Content-Type", "application/json")
				w.Write([]byte(tt.answer))
			}))
			defer srv.Close()
			c := &Client{BaseURL: srv.URL, Token: "tok"}
			st, err := c.Activate(t.Context(), "docs", 3, 30*time.Second)
			if query != "wait=30s" {
				t.Errorf("query %q, want wait=30s", query)
			}
			if tt.wantErr == "" {
				if err != nil || !st.Complete {
					t.Errorf("Activate() = %+v, %v; want complete", st, err)
				}
				return
			}
			if !errors.Is(err, ErrNotServed) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Activate() error = %v, want ErrNotServed with %q", err, tt.wantErr)
			}
		})
	}
}

// fakeControl plays the push endpoints: every blob is missing, a PUT is
// checked against its name, and the answers to PUTs and commits follow
// a script (the last entry repeated). It counts the calls by kind.
type fakeControl struct {
	puts, commits []int      // scripted statuses
	retryAfter    string     // sent with a 429 or 503
	mu            sync.Mutex // protects the fields below
	putCalls      int
	commitCalls   int
	bad           []string // PUT bodies that did not hash to their name
	// batches makes it take blob batches (else it answers 404 as a
	// control without them); noBatch, if set, is its status instead.
	batches      bool
	noBatch      int
	batchCalls   int // batches answered, refused ones included
	batchedBlobs int // blobs in batches taken
}

func (f *fakeControl) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	answer := func(script []int, n int, ok string) {
		code := script[min(n, len(script))-1]
		if code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", f.retryAfter)
		}
		w.WriteHeader(code)
		if code < 300 {
			w.Write([]byte(ok))
		} else {
			fmt.Fprintf(w, `{"error":{"code":"c%d","message":"scripted"}}`, code)
		}
	}
	switch {
	case strings.HasSuffix(r.URL.Path, "/blobs/missing"):
		body, _ := io.ReadAll(r.Body)
		w.Write(body) // every blob asked about is missing
	case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/blobs") && (f.batches || f.noBatch != 0):
		f.batchCalls++
		if f.noBatch != 0 {
			w.WriteHeader(f.noBatch)
			return
		}
		blobs, err := ReadBlobBatch(r.Body, MaxBatchBytes, BatchBlobMax)
		if err != nil || r.Header.Get("Content-Type") != BlobBatchType {
			f.bad = append(f.bad, fmt.Sprint("batch: ", err))
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		f.batchedBlobs += len(blobs)
		stored := BatchStored{Created: len(blobs)}
		for _, b := range blobs {
			stored.Blobs = append(stored.Blobs, Blob{Hash: b.Hash, Size: int64(len(b.Data))})
		}
		json.NewEncoder(w).Encode(stored)
	case r.Method == http.MethodPut:
		body, _ := io.ReadAll(r.Body)
		if name := path.Base(r.URL.Path); HashOf(body) != name {
			f.bad = append(f.bad, name)
		}
		f.putCalls++
		answer(f.puts, f.putCalls, `{}`)
	case strings.HasSuffix(r.URL.Path, "/releases"):
		f.commitCalls++
		answer(f.commits, f.commitCalls, `{"release":{"number":1,"files":2},"live":true}`)
	default:
		http.NotFound(w, r)
	}
}

// TestPushRetries: uploads are retried, each blob sent whole again; a
// commit once sent is not (a second could make a second release), but one
// refused unsent (429) is.
func TestPushRetries(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{"index.html": strings.Repeat("<p>hello</p>", 100), "a.txt": "a"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	scan, err := ScanDir(t.Context(), dir, ScanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	blobs := len(scan.Manifest.Blobs())
	tests := []struct {
		name          string
		puts, commits []int
		wantPuts      int
		wantCommits   int
		wantErrStatus int // of the *APIError; 0 for success
	}{
		{name: "upload 503 then 201", puts: []int{503, 201}, commits: []int{201}, wantPuts: blobs + 1, wantCommits: 1},
		{name: "commit 503 is not sent again", puts: []int{201}, commits: []int{503, 201}, wantPuts: blobs, wantCommits: 1, wantErrStatus: 503},
		{name: "commit 429 is", puts: []int{201}, commits: []int{429, 201}, wantPuts: blobs, wantCommits: 2},
		{name: "upload 400 is not retried", puts: []int{400}, commits: []int{201}, wantPuts: 1, wantErrStatus: 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeControl{puts: tt.puts, commits: tt.commits, retryAfter: "0"}
			srv := httptest.NewServer(f)
			defer srv.Close()
			c := &Client{BaseURL: srv.URL, Token: "tok", Uploaders: 1}
			res, err := c.Push(t.Context(), "docs", scan, Options{})
			if tt.wantErrStatus == 0 && (err != nil || res.Status.Release.Number != 1) {
				t.Errorf("Push() = %+v, %v; want release 1", res.Status, err)
			}
			if tt.wantErrStatus != 0 {
				ae, ok := errors.AsType[*APIError](err)
				inner, okInner := errors.AsType[*apiclient.Error](err)
				if !ok || ae.StatusCode != tt.wantErrStatus || !okInner || inner.StatusCode != tt.wantErrStatus {
					t.Errorf("Push() = %v, want an *APIError (unwrapping to an *apiclient.Error) with status %d", err, tt.wantErrStatus)
				}
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.putCalls != tt.wantPuts || f.commitCalls != tt.wantCommits || len(f.bad) != 0 {
				t.Errorf("control got %d PUTs (%d bad: %v) and %d commits, want %d and %d",
					f.putCalls, len(f.bad), f.bad, f.commitCalls, tt.wantPuts, tt.wantCommits)
			}
		})
	}
}

// TestPushBatches: small blobs go in batches, a big one alone by PUT; a
// control without batches (404 or 405 to them) gets every blob by PUT.
func TestPushBatches(t *testing.T) {
	dir := t.TempDir()
	big := make([]byte, BatchBlobMax+1)
	rand.Read(big)
	files := map[string][]byte{"big.bin": big, "index.html": []byte(strings.Repeat("<p>hello</p>", 100))}
	for i := range 20 {
		files[fmt.Sprintf("f%d.txt", i)] = fmt.Appendf(nil, "file %d", i)
	}
	scan := writeAndScan(t, dir, files)
	blobs := len(scan.Manifest.Blobs())
	tests := []struct {
		name                  string
		batches               bool
		noBatch               int
		wantBatches, wantPuts int
		wantBatched           int
	}{
		{name: "batches", batches: true, wantBatches: 1, wantBatched: blobs - 1, wantPuts: 1},
		{name: "older control: 404", noBatch: http.StatusNotFound, wantBatches: 1, wantPuts: blobs},
		{name: "older control: 405", noBatch: http.StatusMethodNotAllowed, wantBatches: 1, wantPuts: blobs},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeControl{batches: tt.batches, noBatch: tt.noBatch, puts: []int{201}, commits: []int{201}}
			srv := httptest.NewServer(f)
			defer srv.Close()
			c := &Client{BaseURL: srv.URL, Token: "tok", Uploaders: 1}
			var last Progress
			res, err := c.Push(t.Context(), "docs", scan, Options{Progress: func(p Progress) { last = p }})
			if err != nil || res.Uploaded != blobs || last.Blobs != blobs || last.Bytes != last.BytesTotal {
				t.Fatalf("Push() = %+v, %v (progress %+v); want %d blobs uploaded", res, err, last, blobs)
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.batchCalls != tt.wantBatches || f.batchedBlobs != tt.wantBatched || f.putCalls != tt.wantPuts || len(f.bad) != 0 {
				t.Errorf("control got %d batches (%d blobs), %d PUTs, bad %v; want %d batches (%d blobs), %d PUTs",
					f.batchCalls, f.batchedBlobs, f.putCalls, f.bad, tt.wantBatches, tt.wantBatched, tt.wantPuts)
			}
		})
	}
}

// TestGroupBlobs: batches stay within their bounds and keep every blob.
func TestGroupBlobs(t *testing.T) {
	sizes := map[string]int64{}
	var hashes []string
	for i := range 1000 {
		h := fmt.Sprintf("%064x", i)
		sizes[h] = int64(i%7) * 30_000 // 0 to 180 kB
		if i%100 == 0 {
			sizes[h] = BatchBlobMax + 1
		}
		hashes = append(hashes, h)
	}
	seen := 0
	for _, g := range groupBlobs(hashes, sizes) {
		var total int64
		for _, h := range g {
			total += sizes[h]
		}
		seen += len(g)
		switch {
		case len(g) == 0 || len(g) > batchBlobs:
			t.Errorf("a group of %d blobs", len(g))
		case len(g) > 1 && total > batchBytes:
			t.Errorf("a batch of %d bytes, over %d", total, batchBytes)
		case len(g) > 1 && slices.ContainsFunc(g, func(h string) bool { return sizes[h] > BatchBlobMax }):
			t.Errorf("a big blob in a batch")
		}
	}
	if seen != len(hashes) {
		t.Errorf("groups hold %d blobs, want %d", seen, len(hashes))
	}
}

// TestBatchBody: the body a batch is sent with is the one WriteBlobBatch
// writes, read into one buffer that never grows; a file changed since
// the scan fails the batch.
func TestBatchBody(t *testing.T) {
	dir := t.TempDir()
	scan := writeAndScan(t, dir, map[string][]byte{"a.txt": []byte("alpha"), "index.html": []byte(strings.Repeat("<p>hello</p>", 200)), "empty.txt": nil})
	var hashes []string
	var want []BatchedBlob
	for _, b := range scan.Manifest.Blobs() {
		r, _, err := scan.Open(b.Hash)
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			t.Fatal(err)
		}
		hashes = append(hashes, b.Hash)
		want = append(want, BatchedBlob{Hash: b.Hash, Data: data})
	}
	body, err := batchBody(scan, hashes)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	WriteBlobBatch(&buf, want)
	if !bytes.Equal(body, buf.Bytes()) {
		t.Errorf("batch body differs from WriteBlobBatch's (%d against %d bytes)", len(body), buf.Len())
	}
	if cap(body) != len(body)+1 {
		t.Errorf("body of %d bytes in a buffer of %d: grown past its computed size", len(body), cap(body))
	}
	if err := os.WriteFile(filepath.Join(dir, "a.txt"), []byte("alphA"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := batchBody(scan, hashes); !errors.Is(err, ErrChanged) {
		t.Errorf("batch with a file changed since the scan: %v, want ErrChanged", err)
	}
}

// writeAndScan writes files (name -> body) into dir and scans it.
func writeAndScan(t *testing.T, dir string, files map[string][]byte) *Scan {
	t.Helper()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), body, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	scan, err := ScanDir(t.Context(), dir, ScanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return scan
}
