package purge

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/selfcdn/cdn/internal/apiclient"
)

// MaxWait is the longest wait the control API accepts (?wait=).
const MaxWait = 5 * time.Minute

// Defaults for the Client's zero fields: those of every control API
// client (internal/apiclient).
const (
	// DefaultRetries is how many times a call is retried after a transient
	// failure when Client.Retries is zero: five attempts in all.
	DefaultRetries = apiclient.DefaultRetries
	// DefaultBackoff is the ceiling of the first pause before a retry; it
	// doubles on each.
	DefaultBackoff = apiclient.DefaultBackoff
	// DefaultMaxBackoff bounds any one pause, Retry-After included.
	DefaultMaxBackoff = apiclient.DefaultMaxBackoff
)

// attemptGrace is how long one attempt may take beyond the wait it asked
// control for, before it is abandoned and retried.
const attemptGrace = 30 * time.Second

// ErrNotApplied reports a purge control wrote but that not every edge
// applied within the wait, or that no edge is there to apply (its
// Status.Expected is 0): the API answered 504 "not_applied". The purge has
// a version and edges will still apply it. errors.Is(err, ErrNotApplied)
// holds for that *APIError, whose Status names the pending edges.
var ErrNotApplied = errors.New("not applied by every edge in time")

// ErrInvalid reports a call the Client refused to send: the request does
// not validate, the wait is out of range, the idempotency key is
// malformed, the site is empty, or BaseURL is not an http or https URL.
// Nothing was sent.
var ErrInvalid = errors.New("invalid purge")

// APIError is an error answer of the control API. Callers branch on it
// with errors.As; a 4xx means the call was refused and nothing written.
// It unwraps to the *apiclient.Error it was read from.
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

	api *apiclient.Error // nil when built by hand
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

// Unwrap returns the answer as the shared API client read it.
func (e *APIError) Unwrap() error {
	if e.api == nil {
		return nil
	}
	return e.api
}

// newAPIError adds to an error answer the purge's version and status
// that a 504 not_applied carries.
func newAPIError(e *apiclient.Error) error {
	ae := &APIError{StatusCode: e.StatusCode, Code: e.Code, Message: e.Message, api: e}
	var body struct {
		Version uint64  `json:"version"`
		Status  *Status `json:"status"`
	}
	if e.Code != "" && json.Unmarshal(e.Body, &body) == nil {
		ae.Version, ae.Status = body.Version, body.Status
	}
	return ae
}

// applyVerdict reports a 504 not_applied: an answer, not a failure (the
// purge is written), so it is never retried.
func applyVerdict(err error) bool { return errors.Is(err, ErrNotApplied) }

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
// failures through the shared control API client (internal/apiclient).
// Set BaseURL and Token; the other fields have working defaults. A
// Client is safe for concurrent use once its fields are set.
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
	// BaseURL is control's API address, e.g. "https://control:8443", or
	// several controls' comma-separated: a call fails over to the next
	// (see apiclient.Client.BaseURL).
	BaseURL string
	// Token is an API token with scope purge:<site> (or admin).
	Token string
	// HTTP sends the requests. Nil: a client whose timeout (MaxWait plus
	// a minute) outlasts any wait. Each attempt is also bounded by its
	// wait plus 30 seconds.
	HTTP *http.Client
	// Retries is how many times a transient failure is retried: a
	// connection error, 429, 502, 503, or a 504 other than not_applied.
	// Other 4xx answers are never retried. Every attempt of a purge
	// carries the same Idempotency-Key, so none writes it twice. Zero
	// means DefaultRetries; negative, none.
	Retries int
	// Backoff is the ceiling of the first pause; it doubles on each retry
	// and the pause is drawn below it (full jitter), or is what a 429 or
	// 503 asked for in Retry-After if longer. Zero means DefaultBackoff.
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
	req := apiclient.Request{Method: http.MethodPost, Path: "/v1/sites/" + url.PathEscape(site) + "/purge",
		JSON: r, IdempotencyKey: key, AttemptTimeout: opts.Wait + attemptGrace, Final: applyVerdict}
	if opts.Wait > 0 {
		req.Path += "?wait=" + opts.Wait.String()
	}
	var res Result
	err := c.call(ctx, req, &res)
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
	req := apiclient.Request{Method: http.MethodGet, Path: "/v1/purges/" + strconv.FormatUint(version, 10), AttemptTimeout: wait + attemptGrace}
	if wait > 0 {
		req.Path += "?wait=" + wait.String()
	}
	var st Status
	if err := c.call(ctx, req, &st); err != nil {
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
	if err := c.call(ctx, apiclient.Request{Method: http.MethodGet, Path: "/v1/sites", AttemptTimeout: attemptGrace}, &out); err != nil {
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

// call sends req through the shared API client, its error answers read
// as *APIError, and decodes a 2xx answer into v.
func (c *Client) call(ctx context.Context, req apiclient.Request, v any) error {
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: MaxWait + time.Minute}
	}
	req.AsError = newAPIError
	api := apiclient.Client{
		BaseURL: c.BaseURL,
		Token:   c.Token,
		HTTP:    hc,
		Retry:   apiclient.Policy{Retries: c.Retries, Backoff: c.Backoff, MaxBackoff: c.MaxBackoff},
		Sleep:   c.sleep,
	}
	err := api.Do(ctx, req, v)
	if errors.Is(err, apiclient.ErrBadBaseURL) {
		return fmt.Errorf("%w: %w", ErrInvalid, err) // nothing was sent
	}
	return err
}
