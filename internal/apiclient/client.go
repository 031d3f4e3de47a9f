package apiclient

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
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// MaxAnswer bounds the body of an answer the Client reads: a purge's
// status repeats its request, which may name 10,000 URLs.
const MaxAnswer = 64 << 20

// ErrBadBaseURL reports a Client whose BaseURL is empty or not an http or
// https URL with a host. Nothing was sent.
var ErrBadBaseURL = errors.New("bad control API base URL")

// Client calls control's API. Set BaseURL and Token; the other fields
// have working defaults. A Client is safe for concurrent use once its
// fields are set.
type Client struct {
	// BaseURL is control's API address, e.g. "https://control:8443"; a
	// trailing slash is ignored. Several controls of one network may be
	// listed, comma-separated: a call goes to the one that answered last,
	// and a failure that may pass is retried on the next.
	BaseURL string
	// Token is sent as "Authorization: Bearer <Token>".
	Token string
	// UserAgent names the calling program. Empty means DefaultUserAgent().
	UserAgent string
	// HTTP sends the requests. Nil means http.DefaultClient, which sets
	// no overall timeout: bound calls with ctx or Request.AttemptTimeout.
	HTTP *http.Client
	// Retry says how often and after what pause a failed call is retried;
	// the zero value has working defaults.
	Retry Policy
	// Sleep pauses between attempts. Nil waits on a timer until ctx ends;
	// tests set it to record the pauses without taking them.
	Sleep func(ctx context.Context, d time.Duration) error

	// answered is the index in BaseURL of the control that answered last.
	answered atomic.Int32
}

// Request is one API call, sent again as it is on each retry. The zero
// value of each optional field sends nothing for it.
type Request struct {
	// Method is the HTTP method; empty means GET.
	Method string
	// Path is the API path and query, appended to BaseURL:
	// "/v1/purges/7?wait=30s".
	Path string
	// JSON, if not nil, is encoded once and sent as an application/json
	// body on every attempt.
	JSON any
	// Body, if set (and JSON nil), opens the body of one attempt and says
	// its length (-1 when unknown). It is called before every attempt, so
	// a retry sends the body again from its start and never resumes one
	// cut off midway; a Body that cannot open again returns an error,
	// which ends the call.
	Body func() (io.ReadCloser, int64, error)
	// ContentType is the Body's media type.
	ContentType string
	// IdempotencyKey is sent as the Idempotency-Key header: control writes
	// a call once per key, so a POST carrying one is safe to retry.
	IdempotencyKey string
	// Idempotent declares a POST safe to send twice: a question (which
	// blobs are missing) or one setting a state to a given value
	// (activate release 3). Other methods are judged by RFC 9110 §9.2.2.
	Idempotent bool
	// AttemptTimeout, when > 0, bounds one attempt, its answer read
	// included, so a hung connection costs an attempt rather than the
	// whole call.
	AttemptTimeout time.Duration
	// Final, if set, reports a failure that is the call's answer rather
	// than a fault that may pass; it is not retried (a purge's 504
	// not_applied; a file that changed under its upload).
	Final func(error) bool
	// AsError, if set, turns an error answer into the caller's own error
	// type, which must unwrap to the *Error. Nil returns the *Error.
	AsError func(*Error) error
}

// Do sends req, retrying as the package doc says, and decodes a 2xx
// answer's JSON into out (nil: the body is read and dropped). An error
// answer is an *Error (or what req.AsError made of it). An error after
// ctx ended wraps both ctx.Err() and the last attempt's error, and so
// does one given up because the next pause would outlast ctx's deadline.
func (c *Client) Do(ctx context.Context, req Request, out any) error {
	bases, err := c.bases()
	if err != nil {
		return err
	}
	first := int(c.answered.Load()) % len(bases)
	var body []byte
	if req.JSON != nil {
		if body, err = json.Marshal(req.JSON); err != nil {
			return fmt.Errorf("encode %s %s: %w", req.Method, req.Path, err)
		}
	}
	for attempt, pauses := 0, 0; ; attempt++ {
		at := (first + attempt) % len(bases)
		err := c.attempt(ctx, bases[at]+req.Path, req, body, out)
		if err == nil {
			c.answered.Store(int32(at))
			return nil
		}
		if cerr := ctx.Err(); cerr != nil {
			if errors.Is(err, cerr) {
				return err
			}
			// ctx ended as the answer came: say so, not just the answer.
			return fmt.Errorf("%w; last attempt: %w", cerr, err)
		}
		if !retryable(req, err) {
			return err
		}
		if attempt >= c.Retry.retries() {
			if attempt == 0 {
				return err
			}
			return fmt.Errorf("give up after %d attempts: %w", attempt+1, err)
		}
		if attempt+1 < len(bases) && neverConnected(err) {
			continue // another control, at once: this one is not there
		}
		d := c.Retry.Delay(pauses, err)
		pauses++
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < d {
			// Sleeping into the deadline only delays the same failure.
			return fmt.Errorf("%w before the retry due in %s; last attempt: %w", context.DeadlineExceeded, d.Round(time.Millisecond), err)
		}
		if serr := c.pause(ctx, d); serr != nil {
			return fmt.Errorf("wait to retry: %w; last attempt: %w", serr, err)
		}
	}
}

// bases returns the URLs in BaseURL without their trailing slashes, once
// checked.
func (c *Client) bases() ([]string, error) {
	if strings.TrimSpace(c.BaseURL) == "" {
		return nil, fmt.Errorf("%w: the client has no BaseURL", ErrBadBaseURL)
	}
	var bases []string
	for b := range strings.SplitSeq(c.BaseURL, ",") {
		b = strings.TrimSpace(b)
		u, err := url.Parse(b)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadBaseURL, err)
		}
		if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
			return nil, fmt.Errorf("%w: %q: want http:// or https:// and a host", ErrBadBaseURL, b)
		}
		bases = append(bases, strings.TrimSuffix(b, "/"))
	}
	return bases, nil
}

// attempt sends req to u once. A failure to send or to read the answer is
// a *transportError, an error answer an *Error (through req.AsError).
func (c *Client) attempt(ctx context.Context, u string, req Request, body []byte, out any) error {
	if req.AttemptTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, req.AttemptTimeout)
		defer cancel()
	}
	hr, err := c.newRequest(ctx, u, req, body)
	if err != nil {
		return err
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	res, err := hc.Do(hr)
	if err != nil {
		return &transportError{err} // *url.Error names the method and URL
	}
	defer res.Body.Close()
	data, err := io.ReadAll(io.LimitReader(res.Body, MaxAnswer))
	if err != nil {
		return &transportError{fmt.Errorf("read answer to %s %s: %w", hr.Method, hr.URL.Path, err)}
	}
	if res.StatusCode < 200 || res.StatusCode > 299 {
		e := newError(res, data, time.Now())
		if req.AsError != nil {
			return req.AsError(e)
		}
		return e
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decode answer to %s %s: %w", hr.Method, hr.URL.Path, err)
	}
	return nil
}

// newRequest builds one attempt's request, its body opened afresh.
func (c *Client) newRequest(ctx context.Context, u string, req Request, body []byte) (*http.Request, error) {
	var (
		r    io.Reader
		size int64 = -1
	)
	switch {
	case body != nil:
		r = bytes.NewReader(body)
	case req.Body != nil:
		rc, n, err := req.Body()
		if err != nil {
			return nil, err
		}
		r, size = rc, n
	}
	hr, err := http.NewRequestWithContext(ctx, req.Method, u, r)
	if err != nil {
		if rc, ok := r.(io.Closer); ok {
			rc.Close()
		}
		return nil, fmt.Errorf("build request: %w", err)
	}
	if req.Body != nil && body == nil && size >= 0 {
		hr.ContentLength = size
	}
	hr.Header.Set("Authorization", "Bearer "+c.Token)
	hr.Header.Set("Accept", "application/json")
	hr.Header.Set("User-Agent", cmp.Or(c.UserAgent, DefaultUserAgent()))
	switch {
	case body != nil:
		hr.Header.Set("Content-Type", "application/json")
	case req.ContentType != "":
		hr.Header.Set("Content-Type", req.ContentType)
	}
	if req.IdempotencyKey != "" {
		hr.Header.Set("Idempotency-Key", req.IdempotencyKey)
	}
	return hr, nil
}

// modulePath is this module's path, looked up in the build info.
const modulePath = "github.com/selfcdn/cdn"

// DefaultUserAgent is "selfcdn-cdn/VERSION", VERSION being this module's
// version in the running binary (the main module's, or a dependency's in
// a CI tool that imports purge or push), "devel" when not known.
var DefaultUserAgent = sync.OnceValue(func() string {
	v := "devel"
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Path == modulePath && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
		for _, d := range bi.Deps {
			if d.Path == modulePath && d.Version != "" {
				v = d.Version
			}
		}
	}
	return "selfcdn-cdn/" + v
})
