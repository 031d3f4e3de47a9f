package apiclient

import (
	"context"
	"errors"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"time"
)

// Defaults of a Policy's zero fields.
const (
	// DefaultRetries is how many times a call is retried when
	// Policy.Retries is zero: five attempts in all.
	DefaultRetries = 4
	// DefaultBackoff is the ceiling of the first pause; it doubles on
	// each retry.
	DefaultBackoff = 500 * time.Millisecond
	// DefaultMaxBackoff bounds any one pause, Retry-After included.
	DefaultMaxBackoff = 30 * time.Second
)

// Policy says how often and after what pause a call is retried. The zero
// value retries DefaultRetries times, pausing up to DefaultBackoff and
// then twice as long each time, never more than DefaultMaxBackoff.
type Policy struct {
	// Retries is how many times a failure that may pass is retried. Zero
	// means DefaultRetries; negative, none.
	Retries int
	// Backoff is the ceiling of the first pause; the ceiling doubles on
	// each retry and the pause is drawn below it. Zero means
	// DefaultBackoff.
	Backoff time.Duration
	// MaxBackoff bounds one pause, including one a Retry-After header
	// asks for. Zero means DefaultMaxBackoff.
	MaxBackoff time.Duration
}

// retries is how many retries p allows.
func (p Policy) retries() int {
	switch {
	case p.Retries == 0:
		return DefaultRetries
	case p.Retries < 0:
		return 0
	}
	return p.Retries
}

// Delay is the pause before retry number attempt+1 after err: "full
// jitter", a uniform draw from zero to Backoff·2^attempt (so clients
// failed together do not return together), at least what a 429 or 503
// asked for in Retry-After, and never more than MaxBackoff.
func (p Policy) Delay(attempt int, err error) time.Duration {
	base, ceiling := p.Backoff, p.MaxBackoff
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
	d := mrand.N(b + 1)
	if e, ok := errors.AsType[*Error](err); ok && (e.StatusCode == http.StatusTooManyRequests || e.StatusCode == http.StatusServiceUnavailable) {
		d = max(d, e.RetryAfter)
	}
	return min(d, ceiling)
}

// retryable reports whether a call may be sent again after err: the
// failure may pass, and repeating the call is safe (see the package doc).
func retryable(req Request, err error) bool {
	if req.Final != nil && req.Final(err) {
		return false
	}
	if e, ok := errors.AsType[*Error](err); ok {
		switch e.StatusCode {
		case http.StatusTooManyRequests:
			// Refused before any work (control's rate limit runs before
			// the handler): repeating cannot do anything twice.
			return true
		case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return req.safe()
		}
		return false
	}
	if _, ok := errors.AsType[*transportError](err); !ok {
		return false // the call itself is wrong: the same again fails the same
	}
	return req.safe() || neverConnected(err)
}

// safe reports whether sending req twice does what sending it once does.
func (r Request) safe() bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete, http.MethodOptions, "":
		return true
	}
	return r.IdempotencyKey != "" || r.Idempotent
}

// neverConnected reports whether err is a failure to connect (refused,
// unreachable, no such host): the request never left, so nothing was
// done and any call may be sent again.
func neverConnected(err error) bool {
	op, ok := errors.AsType[*net.OpError](err)
	return ok && op.Op == "dial"
}

// transportError is a failure to send a request or to read its answer: a
// connection refused, reset or timed out. It may pass.
type transportError struct{ err error }

func (e *transportError) Error() string { return e.err.Error() }
func (e *transportError) Unwrap() error { return e.err }

// pause waits d, or until ctx ends.
func (c *Client) pause(ctx context.Context, d time.Duration) error {
	if c.Sleep != nil {
		return c.Sleep(ctx, d)
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
