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
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/selfcdn/cdn/internal/state"
	"github.com/selfcdn/cdn/purge"
)

// Client pushes releases through the control API. Set BaseURL and Token
// (scope push:<site>, or admin); a Client is safe for concurrent use.
//
// A push is resumable: blobs are named by their hash and control is asked
// which it lacks, so running an interrupted push again sends only what
// did not arrive. No release exists until the commit, which control
// refuses unless every blob it names is stored.
type Client struct {
	BaseURL string
	Token   string
	// HTTP sends the requests. Nil: a client without an overall timeout
	// (uploads of large files take what they take); waits are bounded by
	// the API.
	HTTP *http.Client
	// Uploaders bounds blobs uploaded at once. Default 4.
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

// APIError is an error answer of the control API.
type APIError struct {
	StatusCode    int
	Code, Message string
	// Missing lists blobs a commit named that control lacks.
	Missing []string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("control answered %d %s: %s", e.StatusCode, e.Code, e.Message)
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
	if err := c.call(ctx, http.MethodPost, c.siteURL(site, "/blobs/missing"), Missing{Blobs: hashes}, &missing); err != nil {
		return res, fmt.Errorf("ask which blobs control lacks: %w", err)
	}
	res.Asking = time.Since(start)
	res.Skipped = len(hashes) - len(missing.Blobs)
	commit := Commit{Manifest: scan.Manifest, Message: opts.Message}
	if opts.Hold {
		commit.Activate = new(bool)
	}
	u := c.siteURL(site, "/releases")
	if opts.Wait > 0 {
		u += "?wait=" + opts.Wait.String()
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
		err = c.call(ctx, http.MethodPost, u, commit, &res.Status)
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

// upload sends blobs, Uploaders at a time; the first failure stops the
// rest. It returns what was sent.
func (c *Client) upload(ctx context.Context, site string, scan *Scan, hashes []string, sizes map[string]int64, progress func(Progress)) (int, int64, error) {
	var (
		mu   sync.Mutex // protects done and serializes progress
		done = Progress{BlobsTotal: len(hashes)}
	)
	for _, h := range hashes {
		done.BytesTotal += sizes[h]
	}
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(cmp.Or(c.Uploaders, 4))
	for _, h := range hashes {
		if ctx.Err() != nil {
			break
		}
		g.Go(func() error {
			if err := c.uploadOne(ctx, site, scan, h); err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			done.Blobs++
			done.Bytes += sizes[h]
			if progress != nil {
				progress(done)
			}
			return nil
		})
	}
	err := g.Wait()
	return done.Blobs, done.Bytes, err
}

// uploadOne sends one blob, retrying transient failures.
func (c *Client) uploadOne(ctx context.Context, site string, scan *Scan, hash string) error {
	var err error
	for attempt := range 4 {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Duration(attempt) * 500 * time.Millisecond):
			}
		}
		var retry bool
		retry, err = c.sendBlob(ctx, site, scan, hash)
		if err == nil || !retry || errors.Is(err, ErrChanged) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("upload blob %s (%s): %w", hash[:12], scan.Sources[hash].Path, err)
	}
	return nil
}

func (c *Client) sendBlob(ctx context.Context, site string, scan *Scan, hash string) (bool, error) {
	body, size, err := scan.Open(hash)
	if err != nil {
		return false, err
	}
	defer body.Close()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, c.siteURL(site, "/blobs/"+hash), body)
	if err != nil {
		return false, err
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/octet-stream")
	return c.do(req, nil)
}

// Releases lists a site's releases, newest first, and the live one.
func (c *Client) Releases(ctx context.Context, site string) ([]state.Release, uint64, error) {
	var out struct {
		Live     uint64          `json:"live"`
		Releases []state.Release `json:"releases"`
	}
	if err := c.call(ctx, http.MethodGet, c.siteURL(site, "/releases"), nil, &out); err != nil {
		return nil, 0, fmt.Errorf("list releases of %s: %w", site, err)
	}
	return out.Releases, out.Live, nil
}

// Activate switches a site to release n (a rollback, or a held release),
// waiting up to wait for the edges; an unfinished wait is ErrNotServed.
func (c *Client) Activate(ctx context.Context, site string, n uint64, wait time.Duration) (Status, error) {
	u := c.siteURL(site, "/releases/"+strconv.FormatUint(n, 10)+"/activate")
	if wait > 0 {
		u += "?wait=" + wait.String()
	}
	var st Status
	if err := c.call(ctx, http.MethodPost, u, nil, &st); err != nil {
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

func (c *Client) siteURL(site, rest string) string {
	return strings.TrimSuffix(c.BaseURL, "/") + "/v1/sites/" + url.PathEscape(site) + rest
}

// call sends a JSON request (in may be nil), retrying transient failures,
// and decodes the answer into out.
func (c *Client) call(ctx context.Context, method, u string, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return err
		}
	}
	var err error
	for attempt := range 5 {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return fmt.Errorf("%w; last attempt: %w", ctx.Err(), err)
			case <-time.After(time.Duration(attempt) * time.Second):
			}
		}
		req, rerr := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
		if rerr != nil {
			return rerr
		}
		if in != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		var retry bool
		if retry, err = c.do(req, out); err == nil || !retry {
			return err
		}
	}
	return err
}

// do sends req and decodes a 2xx JSON answer into out (nil: discard).
// retry says whether a failure is worth another attempt.
func (c *Client) do(req *http.Request, out any) (retry bool, err error) {
	if c.BaseURL == "" {
		return false, errors.New("the client has no BaseURL")
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	req.Header.Set("Accept", "application/json")
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	res, err := hc.Do(req)
	if err != nil {
		return req.Context().Err() == nil, err
	}
	defer res.Body.Close()
	data, err := io.ReadAll(io.LimitReader(res.Body, 64<<20))
	if err != nil {
		return true, fmt.Errorf("read answer to %s %s: %w", req.Method, req.URL.Path, err)
	}
	if res.StatusCode < 200 || res.StatusCode > 299 {
		ae := &APIError{StatusCode: res.StatusCode}
		var body struct {
			Error   struct{ Code, Message string } `json:"error"`
			Missing []string                       `json:"missing"`
		}
		if json.Unmarshal(data, &body) == nil && body.Error.Code != "" {
			ae.Code, ae.Message, ae.Missing = body.Error.Code, body.Error.Message, body.Missing
		} else {
			ae.Message = strings.Join(strings.Fields(string(data[:min(len(data), 200)])), " ")
		}
		transient := res.StatusCode == http.StatusBadGateway || res.StatusCode == http.StatusServiceUnavailable || res.StatusCode == http.StatusGatewayTimeout
		return transient, ae
	}
	if out == nil {
		return false, nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return false, fmt.Errorf("decode answer to %s %s: %w", req.Method, req.URL.Path, err)
	}
	return false, nil
}

// MaxWait is the longest wait one API call accepts.
const MaxWait = purge.MaxWait
