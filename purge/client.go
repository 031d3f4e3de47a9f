package purge

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// MaxWait is the longest wait the control API accepts (?wait=).
const MaxWait = 5 * time.Minute

// Defaults for the Client's zero fields.
const (
	// DefaultRetries is how many times a call is retried after a transient
	// failure when Client.Retries is zero: five attempts in all.
	DefaultRetries = 4
	// DefaultBackoff is the first pause before a retry; it doubles on each.
	DefaultBackoff = 500 * time.Millisecond
	// DefaultMaxBackoff bounds any one pause, Retry-After included.
	DefaultMaxBackoff = 30 * time.Second
)

const (
	// attemptGrace is how long one attempt may take beyond the wait it
	// asked control for, before it is abandoned and retried.
	attemptGrace = 30 * time.Second
	// maxAnswer bounds an answer's body: a Status repeats its Request,
	// which may hold MaxItems URLs of MaxURLLength bytes.
	maxAnswer = 64 << 20
)

// ErrNotApplied reports a purge control wrote but that not every edge
// applied within the wait, or that no edge is there to apply (its
// Status.Expected is 0): the API answered 504 "not_applied". The purge has
// a version and edges will still apply it. errors.Is(err, ErrNotApplied)
// holds for that *APIError, whose Status names the pending edges.
var ErrNotApplied = errors.New("not applied by every edge in time")

// ErrInvalid reports a call the Client refused to send: the request does
// not validate, the wait is out of range, the idempotency key is
// malformed, or the site or BaseURL is empty. Nothing was sent.
var ErrInvalid = errors.New("invalid purge")

// APIError is an error answer of the control API. Callers branch on it
// with errors.As; a 4xx means the call was refused and nothing written.
type APIError struct {
	// StatusCode is the HTTP status, e.g. 403.
	StatusCode int
	// Code is the API's error code ("forbidden", "not_applied"); empty
	// when the body was not the API's JSON, such as a proxy's 502 page.
	Code string
	// Message is the API's explanation, or the start of a non-JSON body.
	Message string
	// Version is the purge's version when the answer carries one (504
	// not_applied); zero otherwise.
	Version uint64
	// Status is the purge's progress from a 504 not_applied answer, its
	// Pending listing the edges that had not applied it; nil otherwise.
	Status *Status

	retryAfter time.Duration // from the Retry-After header; zero if none
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "control answered %d", e.StatusCode)
	if e.Code != "" {
		b.WriteString(" " + e.Code)
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	if e.Status != nil && len(e.Status.Pending) > 0 {
		b.WriteString(" (pending: " + strings.Join(e.Status.Pending, ", ") + ")")
	}
	return b.String()
}

// Is makes errors.Is(err, ErrNotApplied) true for a 504 not_applied.
func (e *APIError) Is(target error) bool {
	return target == ErrNotApplied && e.Code == "not_applied"
}

// transient reports whether the same call may succeed later: a gateway
// error, or control unable to reach its state. A 504 not_applied is an
// answer, not a failure: the purge is written.
func (e *APIError) transient() bool {
	switch e.StatusCode {
	case http.StatusBadGateway, http.StatusServiceUnavailable:
		return true
	case http.StatusGatewayTimeout:
		return e.Code != "not_applied"
	}
	return false
}

// Options tune one Purge call. The zero value sends without waiting,
// under a generated idempotency key.
type Options struct {
	// Wait, when > 0, makes control answer only once every edge has
	// applied the purge (every registered edge not down or draining, one
	// not judged yet included), or fail with ErrNotApplied after Wait or
	// when there is no such edge. At most MaxWait.
	Wait time.Duration
	// IdempotencyKey names this purge so a repeated call (a retry, a
	// re-run CI step) returns the first call's version instead of writing
	// it again. Empty: a random key, made once per call and sent on each
	// of its retries. 1 to 128 characters of [A-Za-z0-9._:-].
	IdempotencyKey string
}

// Client calls the control API's purge endpoints, retrying transient
// failures. Set BaseURL and Token; the other fields have working
// defaults. A Client is safe for concurrent use once its fields are set.
//
// What an error from Purge means for the purge:
//   - nil: written; with Options.Wait, applied by every edge.
//   - errors.Is(err, ErrNotApplied): written (Result.Version is set) but
//     not applied by every edge within the wait, or no edge is there to
//     apply it (Result.Status.Expected is 0).
//   - ErrInvalid, or an *APIError with a 4xx status: refused; nothing
//     written.
//   - anything else (a connection error, a 5xx after the last retry, ctx
//     ended): not known to be written. Repeating the call with the same
//     IdempotencyKey is safe: at worst it returns Duplicate.
type Client struct {
	// BaseURL is control's API address, e.g. "https://control:8443".
	BaseURL string
	// Token is an API token with scope purge:<site> (or admin).
	Token string
	// HTTP sends the requests. Nil: a client whose timeout (MaxWait plus
	// a minute) outlasts any wait. Each attempt is also bounded by its
	// wait plus 30 seconds.
	HTTP *http.Client
	// Retries is how many times a transient failure is retried: a
	// connection error, 502, 503, or a 504 other than not_applied. 4xx
	// answers are never retried. Zero means DefaultRetries; negative,
	// none.
	Retries int
	// Backoff is the pause before the first retry; it doubles on each
	// retry, with jitter. Zero means DefaultBackoff.
	Backoff time.Duration
	// MaxBackoff bounds one pause, including one asked for by a
	// Retry-After header. Zero means DefaultMaxBackoff.
	MaxBackoff time.Duration

	// sleep pauses between attempts; nil waits on a timer. Tests replace
	// it to record pauses without taking them.
	sleep func(ctx context.Context, d time.Duration) error
}

// Purge writes r for site. See Client for what its error means. On
// ErrNotApplied the Result is filled in too (Version, Site and Status),
// since the purge was written.
func (c *Client) Purge(ctx context.Context, site string, r Request, opts Options) (Result, error) {
	if err := c.checkPurge(site, r, opts); err != nil {
		return Result{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	key := opts.IdempotencyKey
	if key == "" {
		key = NewIdempotencyKey() // once, so every retry carries it
	}
	body, err := json.Marshal(r)
	if err != nil {
		return Result{}, fmt.Errorf("encode purge request: %w", err)
	}
	u := strings.TrimSuffix(c.BaseURL, "/") + "/v1/sites/" + url.PathEscape(site) + "/purge"
	if opts.Wait > 0 {
		u += "?wait=" + opts.Wait.String()
	}
	var res Result
	err = c.call(ctx, call{method: http.MethodPost, url: u, body: body, key: key, wait: opts.Wait}, &res)
	if ae, ok := errors.AsType[*APIError](err); ok && errors.Is(ae, ErrNotApplied) {
		res = Result{Version: ae.Version, Site: site, Status: ae.Status}
		if res.Version == 0 && ae.Status != nil {
			res.Version = ae.Status.Version
		}
	}
	if err != nil {
		return res, fmt.Errorf("purge site %s: %w", site, err)
	}
	return res, nil
}

// Status reports which edges have applied the purge version. With wait >
// 0 control answers once every edge has applied it or the wait ends,
// whichever comes first: check Status.Applied (false with no edge to
// apply it), an unfinished wait is not an error. An unknown version is an *APIError with status 404.
func (c *Client) Status(ctx context.Context, version uint64, wait time.Duration) (Status, error) {
	if err := c.checkWait(wait); err != nil {
		return Status{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	u := strings.TrimSuffix(c.BaseURL, "/") + "/v1/purges/" + strconv.FormatUint(version, 10)
	if wait > 0 {
		u += "?wait=" + wait.String()
	}
	var st Status
	if err := c.call(ctx, call{method: http.MethodGet, url: u, wait: wait}, &st); err != nil {
		return Status{}, fmt.Errorf("purge status %d: %w", version, err)
	}
	return st, nil
}

// Sites lists control's sites, for SiteFor. It needs a token that may
// list sites (scope read or admin); a purge-scoped token gets an
// *APIError with status 403.
func (c *Client) Sites(ctx context.Context) ([]Site, error) {
	if c.BaseURL == "" {
		return nil, fmt.Errorf("%w: the client has no BaseURL", ErrInvalid)
	}
	var out struct {
		Sites []Site `json:"sites"`
	}
	u := strings.TrimSuffix(c.BaseURL, "/") + "/v1/sites"
	if err := c.call(ctx, call{method: http.MethodGet, url: u}, &out); err != nil {
		return nil, fmt.Errorf("list sites: %w", err)
	}
	return out.Sites, nil
}

// NewIdempotencyKey returns a random key (26 characters from
// crypto/rand) for Options.IdempotencyKey.
func NewIdempotencyKey() string { return rand.Text() }

// CheckIdempotencyKey reports whether key is one control accepts: 1 to
// 128 characters of [A-Za-z0-9._:-].
func CheckIdempotencyKey(key string) error {
	if key == "" || len(key) > 128 {
		return fmt.Errorf("idempotency key must be 1 to 128 characters, got %d", len(key))
	}
	for _, c := range key {
		ok := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.ContainsRune("._:-", c)
		if !ok {
			return fmt.Errorf("idempotency key %q: only A-Z a-z 0-9 . _ : - are allowed", key)
		}
	}
	return nil
}

// checkPurge refuses what control would refuse anyway, without a round
// trip. Hosts are control's to check: only it knows the site's.
func (c *Client) checkPurge(site string, r Request, opts Options) error {
	if site == "" {
		return errors.New("no site")
	}
	if err := c.checkWait(opts.Wait); err != nil {
		return err
	}
	if opts.IdempotencyKey != "" {
		if err := CheckIdempotencyKey(opts.IdempotencyKey); err != nil {
			return err
		}
	}
	return r.Validate([]string{"*"})
}

func (c *Client) checkWait(wait time.Duration) error {
	switch {
	case c.BaseURL == "":
		return errors.New("the client has no BaseURL")
	case wait < 0 || wait > MaxWait:
		return fmt.Errorf("wait %s: want 0 to %s", wait, MaxWait)
	}
	return nil
}

// call is one API call, sent again on each retry.
type call struct {
	method, url string
	body        []byte // nil: none
	key         string // Idempotency-Key; empty: none
	wait        time.Duration
}

// call sends cl, retrying transient failures, and decodes a 2xx answer
// into v.
func (c *Client) call(ctx context.Context, cl call, v any) error {
	retries := c.Retries
	switch {
	case retries == 0:
		retries = DefaultRetries
	case retries < 0:
		retries = 0
	}
	for attempt := 0; ; attempt++ {
		retry, err := c.attempt(ctx, cl, v)
		if err == nil {
			return nil
		}
		if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
			// ctx ended as the answer came: say so, not just the answer.
			return fmt.Errorf("%w; last attempt: %w", cerr, err)
		}
		if ctx.Err() != nil || !retry {
			return err
		}
		if attempt == retries {
			return fmt.Errorf("give up after %d attempts: %w", attempt+1, err)
		}
		if serr := c.pause(ctx, c.delay(attempt, err)); serr != nil {
			return fmt.Errorf("wait to retry: %w; last attempt: %w", serr, err)
		}
	}
}

// attempt sends cl once. retry says whether a failure is transient.
func (c *Client) attempt(ctx context.Context, cl call, v any) (retry bool, err error) {
	// A hung connection must not eat the whole call: bound the attempt,
	// then retry it under the same idempotency key.
	ctx, cancel := context.WithTimeout(ctx, cl.wait+attemptGrace)
	defer cancel()
	var body io.Reader
	if cl.body != nil {
		body = bytes.NewReader(cl.body)
	}
	req, err := http.NewRequestWithContext(ctx, cl.method, cl.url, body)
	if err != nil {
		return false, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	req.Header.Set("Accept", "application/json")
	if cl.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if cl.key != "" {
		req.Header.Set("Idempotency-Key", cl.key)
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: MaxWait + time.Minute}
	}
	res, err := hc.Do(req)
	if err != nil {
		return true, err // *url.Error names the method and URL
	}
	defer res.Body.Close()
	data, err := io.ReadAll(io.LimitReader(res.Body, maxAnswer))
	if err != nil {
		return true, fmt.Errorf("read answer to %s %s: %w", cl.method, cl.url, err)
	}
	if res.StatusCode < 200 || res.StatusCode > 299 {
		ae := newAPIError(res, data)
		return ae.transient(), ae
	}
	if err := json.Unmarshal(data, v); err != nil {
		return false, fmt.Errorf("decode answer to %s %s: %w", cl.method, cl.url, err)
	}
	return false, nil
}

// newAPIError reads an error answer: the API's JSON, or the start of
// whatever else a proxy in between sent.
func newAPIError(res *http.Response, data []byte) *APIError {
	var body struct {
		Error struct {
			Code, Message string
		} `json:"error"`
		Version uint64  `json:"version"`
		Status  *Status `json:"status"`
	}
	ae := &APIError{StatusCode: res.StatusCode, retryAfter: parseRetryAfter(res.Header.Get("Retry-After"), time.Now())}
	if json.Unmarshal(data, &body) == nil && body.Error.Code != "" {
		ae.Code, ae.Message, ae.Version, ae.Status = body.Error.Code, body.Error.Message, body.Version, body.Status
		return ae
	}
	msg := strings.Join(strings.Fields(string(data[:min(len(data), 200)])), " ")
	if msg == "" {
		msg = http.StatusText(res.StatusCode)
	}
	ae.Message = msg
	return ae
}

// parseRetryAfter reads Retry-After as seconds or an HTTP date (RFC 9110
// §10.2.3); zero when absent or unreadable.
func parseRetryAfter(h string, now time.Time) time.Duration {
	if h == "" {
		return 0
	}
	if s, err := strconv.ParseInt(h, 10, 64); err == nil {
		return time.Duration(min(max(s, 0), 24*3600)) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil {
		return max(t.Sub(now), 0)
	}
	return 0
}

// delay is the pause before retry number attempt+1: exponential backoff
// with equal jitter, at least what Retry-After asked for, never more than
// MaxBackoff.
func (c *Client) delay(attempt int, err error) time.Duration {
	base, ceiling := c.Backoff, c.MaxBackoff
	if base <= 0 {
		base = DefaultBackoff
	}
	if ceiling <= 0 {
		ceiling = DefaultMaxBackoff
	}
	b := base << min(attempt, 30)
	if b <= 0 || b > ceiling {
		b = ceiling
	}
	d := b/2 + mrand.N(b/2+1)
	if ae, ok := errors.AsType[*APIError](err); ok {
		d = max(d, ae.retryAfter)
	}
	return min(d, ceiling)
}

// pause waits d or until ctx ends.
func (c *Client) pause(ctx context.Context, d time.Duration) error {
	if c.sleep != nil {
		return c.sleep(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
