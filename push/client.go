package push

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/selfcdn/cdn/internal/apiclient"
	"github.com/selfcdn/cdn/purge"
)

// Client pushes releases through the control API. Set BaseURL and Token
// (scope push:<site>, or admin); a Client is safe for concurrent use.
//
// A push is resumable: blobs are named by their hash and control is asked
// which it lacks, so running an interrupted push again sends only what
// did not arrive. No release exists until the commit, which control
// refuses unless every blob it names is stored.
//
// Failures that may pass (a lost connection, 429, 502, 503, 504) are
// retried with backoff by the shared API client (internal/apiclient):
// questions, uploads (each blob sent again whole) and activations always,
// the commit only when control refused it unsent (429, or no connection),
// since a commit sent twice could make two releases.
type Client struct {
	BaseURL string
	Token   string
	// HTTP sends the requests. Nil: a client without an overall timeout
	// (uploads of large files take what they take); waits are bounded by
	// the API.
	HTTP *http.Client
	// Uploaders bounds uploads at once (a batch of small blobs, or one
	// big blob). Default 4.
	Uploaders int
}

// Options tune one Push.
type Options struct {
	Message string
	// Hold commits the release without switching the site to it.
	Hold bool
	// Wait, when > 0, returns once every edge serves the release: every
	// registered edge not down or draining, one not judged yet included.
	// After Wait, or with no such edge, the error is ErrNotServed. At most
	// purge.MaxWait per call.
	Wait time.Duration
	// Progress, if set, is called as blobs are uploaded (from several
	// goroutines, never at once).
	Progress func(Progress)
}

// Progress is how far an upload is.
type Progress struct {
	Blobs, BlobsTotal int
	Bytes, BytesTotal int64
}

// Result is what a Push did.
type Result struct {
	Status Status
	// Uploaded and UploadedBytes count the blobs sent; Skipped those
	// control had already.
	Uploaded      int
	UploadedBytes int64
	Skipped       int
	// Asking, Uploading and Committing are the time spent asking which
	// blobs control lacks, sending them, and committing (with the wait).
	Asking, Uploading, Committing time.Duration
}

// ErrNotServed reports a release committed and live that not every edge
// served within the wait, or that no edge is there to serve (Status.Expected
// is 0); Result.Status says which.
var ErrNotServed = errors.New("not served by every edge")

// APIError is an error answer of the control API. It unwraps to the
// *apiclient.Error it was read from.
type APIError struct {
	StatusCode    int
	Code, Message string
	// Missing lists blobs a commit named that control lacks.
	Missing []string

	api *apiclient.Error // nil when built by hand
}

func (e *APIError) Error() string {
	return fmt.Sprintf("control answered %d %s: %s", e.StatusCode, e.Code, e.Message)
}

// Unwrap returns the answer as the shared API client read it.
func (e *APIError) Unwrap() error {
	if e.api == nil {
		return nil
	}
	return e.api
}

// newAPIError adds to an error answer the blobs a commit lacks.
func newAPIError(e *apiclient.Error) error {
	ae := &APIError{StatusCode: e.StatusCode, Code: e.Code, Message: e.Message, api: e}
	var body struct {
		Missing []string `json:"missing"`
	}
	if e.Code != "" && json.Unmarshal(e.Body, &body) == nil {
		ae.Missing = body.Missing
	}
	return ae
}

// Push uploads what control lacks of scan and commits it as the site's
// next release.
func (c *Client) Push(ctx context.Context, site string, scan *Scan, opts Options) (Result, error) {
	var res Result
	blobs := scan.Manifest.Blobs()
	hashes := make([]string, len(blobs))
	sizes := make(map[string]int64, len(blobs))
	for i, b := range blobs {
		hashes[i], sizes[b.Hash] = b.Hash, b.Size
	}
	var missing Missing
	start := time.Now()
	// A question, safe to ask twice.
	ask := apiclient.Request{Method: http.MethodPost, Path: sitePath(site, "/blobs/missing"), JSON: Missing{Blobs: hashes}, Idempotent: true}
	if err := c.call(ctx, ask, &missing); err != nil {
		return res, fmt.Errorf("ask which blobs control lacks: %w", err)
	}
	res.Asking = time.Since(start)
	res.Skipped = len(hashes) - len(missing.Blobs)
	commit := Commit{Manifest: scan.Manifest, Message: opts.Message}
	if opts.Hold {
		commit.Activate = new(bool)
	}
	// A commit is not retried once sent: a second one could make a
	// second release. Refused unsent (429, no connection), it is.
	commitReq := apiclient.Request{Method: http.MethodPost, Path: sitePath(site, "/releases"), JSON: commit}
	if opts.Wait > 0 {
		commitReq.Path += "?wait=" + opts.Wait.String()
	}
	for round := 0; ; round++ {
		start = time.Now()
		n, b, err := c.upload(ctx, site, scan, missing.Blobs, sizes, opts.Progress)
		res.Uploaded += n
		res.UploadedBytes += b
		res.Uploading += time.Since(start)
		if err != nil {
			return res, err
		}
		start = time.Now()
		err = c.call(ctx, commitReq, &res.Status)
		res.Committing += time.Since(start)
		var ae *APIError
		if errors.As(err, &ae) && ae.Code == "missing_blobs" && round == 0 {
			// Collected between the question and the commit (an old,
			// unreferenced blob): send them and commit once more.
			missing.Blobs = ae.Missing
			continue
		}
		if err != nil {
			return res, fmt.Errorf("commit release: %w", err)
		}
		break
	}
	if opts.Wait > 0 && !opts.Hold && !res.Status.Complete {
		return res, notServed(res.Status.Release.Number, res.Status)
	}
	return res, nil
}

// upload sends blobs, Uploaders requests at a time: small blobs together
// in batches (one POST each), a big one alone (PUT). An older control
// without the batch endpoint gets every blob by PUT. The first failure
// stops the rest. It returns what was sent.
func (c *Client) upload(ctx context.Context, site string, scan *Scan, hashes []string, sizes map[string]int64, progress func(Progress)) (int, int64, error) {
	var (
		mu   sync.Mutex // protects done and serializes progress
		done = Progress{BlobsTotal: len(hashes)}
		// noBatch is set once control answers that it has no batches.
		noBatch atomic.Bool
	)
	for _, h := range hashes {
		done.BytesTotal += sizes[h]
	}
	sent := func(group []string) {
		mu.Lock()
		defer mu.Unlock()
		for _, h := range group {
			done.Blobs++
			done.Bytes += sizes[h]
		}
		if progress != nil {
			progress(done)
		}
	}
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(cmp.Or(c.Uploaders, 4))
	for _, group := range groupBlobs(hashes, sizes) {
		if ctx.Err() != nil {
			break
		}
		g.Go(func() error {
			if len(group) > 1 && !noBatch.Load() {
				err := c.uploadBatch(ctx, site, scan, group)
				if err == nil {
					sent(group)
					return nil
				}
				if !errors.Is(err, errNoBatches) {
					return err
				}
				noBatch.Store(true)
			}
			for _, h := range group {
				if err := c.uploadOne(ctx, site, scan, h); err != nil {
					return err
				}
				sent([]string{h})
			}
			return nil
		})
	}
	err := g.Wait()
	return done.Blobs, done.Bytes, err
}

// A batch holds blobs of up to BatchBlobMax bytes, up to batchBytes and
// batchBlobs in all: a few MiB, so Uploaders batches in flight keep
// control busy without holding much in memory.
const (
	batchBytes = 4 << 20
	batchBlobs = 256
)

// groupBlobs splits hashes into what one request sends: runs of small
// blobs, and each big one alone.
func groupBlobs(hashes []string, sizes map[string]int64) [][]string {
	var groups [][]string
	var cur []string
	var curBytes int64
	for _, h := range hashes {
		size := sizes[h]
		if size > BatchBlobMax {
			groups = append(groups, []string{h})
			continue
		}
		if len(cur) == batchBlobs || len(cur) > 0 && curBytes+size > batchBytes {
			groups = append(groups, cur)
			cur, curBytes = nil, 0
		}
		cur = append(cur, h)
		curBytes += size
	}
	if len(cur) > 0 {
		groups = append(groups, cur)
	}
	return groups
}

// errNoBatches is control answering that it has no batch endpoint (404
// or 405 from a control older than it).
var errNoBatches = errors.New("control takes no blob batches")

// uploadBatch sends blobs in one batch. The bytes are read and checked
// (Scan.Open) before anything is sent, and the batch is sent again whole
// when retried: storing a blob twice is harmless.
func (c *Client) uploadBatch(ctx context.Context, site string, scan *Scan, hashes []string) error {
	body, err := batchBody(scan, hashes)
	if err != nil {
		return err
	}
	req := apiclient.Request{
		Method: http.MethodPost,
		Path:   sitePath(site, "/blobs"),
		Body: func() (io.ReadCloser, int64, error) {
			return io.NopCloser(bytes.NewReader(body)), int64(len(body)), nil
		},
		ContentType: BlobBatchType,
		Idempotent:  true,
	}
	var stored BatchStored
	err = c.call(ctx, req, &stored)
	var ae *APIError
	if errors.As(err, &ae) && (ae.StatusCode == http.StatusNotFound || ae.StatusCode == http.StatusMethodNotAllowed) {
		return errNoBatches
	}
	if err != nil {
		return fmt.Errorf("upload %d blobs (%s, ...): %w", len(hashes), scan.Sources[hashes[0]].Path, err)
	}
	if len(stored.Blobs) != len(hashes) {
		return fmt.Errorf("upload %d blobs: control answered for %d", len(hashes), len(stored.Blobs))
	}
	return nil
}

// batchBody is the body WriteBlobBatch would write for hashes, each blob
// read from its file straight into place and checked against its name:
// one buffer for the batch, where reading each blob into its own and
// copying them into the body took twice the memory.
func batchBody(scan *Scan, hashes []string) ([]byte, error) {
	total := int64(len(blobBatchMagic)) + 1 // and the byte that reads a blob to its end
	for _, h := range hashes {
		size, _ := scan.blobSize(h)
		total += blobFrameSize(h, size)
	}
	body := append(make([]byte, 0, total), blobBatchMagic...)
	for _, h := range hashes {
		var err error
		if body, err = appendBlob(body, scan, h); err != nil {
			return nil, fmt.Errorf("upload blob %s (%s): %w", h[:12], scan.Sources[h].Path, err)
		}
	}
	return body, nil
}

// appendBlob appends blob hash to body, framed as in a batch, checked
// against its name.
func appendBlob(body []byte, scan *Scan, hash string) ([]byte, error) {
	r, size, err := scan.Open(hash)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	body = appendBlobLine(body, hash, size)
	start := len(body)
	// One byte more than the blob, so the read reaches the end, where
	// the reader checks the bytes against the name.
	body = slices.Grow(body, int(size)+1)[:start+int(size)+1]
	n, err := io.ReadFull(r, body[start:])
	if (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)) && int64(n) == size {
		return body[:start+n], nil
	}
	if err == nil {
		err = fmt.Errorf("blob %s: more than its %d bytes: %w", hash, size, ErrChanged)
	}
	return nil, err
}

// uploadOne sends one blob, retried as the API client retries a PUT: the
// blob is opened again for each attempt and sent whole. A file changed
// since the scan is not retried: it would fail the same way.
func (c *Client) uploadOne(ctx context.Context, site string, scan *Scan, hash string) error {
	req := apiclient.Request{
		Method:      http.MethodPut,
		Path:        sitePath(site, "/blobs/"+hash),
		Body:        func() (io.ReadCloser, int64, error) { return scan.Open(hash) },
		ContentType: "application/octet-stream",
		Final:       func(err error) bool { return errors.Is(err, ErrChanged) },
	}
	if err := c.call(ctx, req, nil); err != nil {
		return fmt.Errorf("upload blob %s (%s): %w", hash[:12], scan.Sources[hash].Path, err)
	}
	return nil
}

// Releases lists a site's releases, newest first, and the live one.
func (c *Client) Releases(ctx context.Context, site string) ([]Release, uint64, error) {
	var out struct {
		Live     uint64    `json:"live"`
		Releases []Release `json:"releases"`
	}
	if err := c.call(ctx, apiclient.Request{Method: http.MethodGet, Path: sitePath(site, "/releases")}, &out); err != nil {
		return nil, 0, fmt.Errorf("list releases of %s: %w", site, err)
	}
	return out.Releases, out.Live, nil
}

// Activate switches a site to release n (a rollback, or a held release),
// waiting up to wait for the edges; an unfinished wait is ErrNotServed.
func (c *Client) Activate(ctx context.Context, site string, n uint64, wait time.Duration) (Status, error) {
	// Switching the site to n twice leaves it on n: safe to retry.
	req := apiclient.Request{Method: http.MethodPost, Path: sitePath(site, "/releases/"+strconv.FormatUint(n, 10)+"/activate"), Idempotent: true}
	if wait > 0 {
		req.Path += "?wait=" + wait.String()
	}
	var st Status
	if err := c.call(ctx, req, &st); err != nil {
		return st, fmt.Errorf("activate release %d of %s: %w", n, site, err)
	}
	if wait > 0 && !st.Complete {
		return st, notServed(n, st)
	}
	return st, nil
}

// notServed is ErrNotServed for release n, naming the edges st says are
// pending and why, or saying that no edge is there to serve it.
func notServed(n uint64, st Status) error {
	if st.Expected == 0 && len(st.Pending) == 0 {
		return fmt.Errorf("release %d: %w: %s", n, ErrNotServed, cmp.Or(st.Message, "control counts no edge to wait for"))
	}
	return fmt.Errorf("release %d: %w (pending: %s)", n, ErrNotServed, st.PendingWhy())
}

// sitePath is the API path of rest under site.
func sitePath(site, rest string) string {
	return "/v1/sites/" + url.PathEscape(site) + rest
}

// call sends req through the shared API client, its error answers read
// as *APIError, and decodes the answer into out (nil: discard).
func (c *Client) call(ctx context.Context, req apiclient.Request, out any) error {
	req.AsError = newAPIError
	api := apiclient.Client{BaseURL: c.BaseURL, Token: c.Token, HTTP: c.HTTP}
	return api.Do(ctx, req, out)
}

// MaxWait is the longest wait one API call accepts.
const MaxWait = purge.MaxWait
