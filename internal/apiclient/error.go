package apiclient

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Error is an error answer of control's API: a status outside 2xx.
// Callers branch on it with errors.AsType[*apiclient.Error]; a 4xx other
// than 429 means control refused the call and did nothing.
type Error struct {
	// StatusCode is the HTTP status, e.g. 403.
	StatusCode int
	// Code is the API's error code ("forbidden", "rate_limited"); empty
	// when the body was not the API's JSON, such as a proxy's 502 page.
	Code string
	// Message is the API's explanation, the start of a body that was not
	// the API's JSON, or else the status text.
	Message string
	// RetryAfter is the pause the Retry-After header asked for; zero when
	// there was none or it did not parse.
	RetryAfter time.Duration
	// Body is the answer's body (at most MaxAnswer bytes), for the fields
	// an endpoint adds beside "error": a purge's version and status, the
	// blobs a commit lacks.
	Body []byte
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "control answered %d", e.StatusCode)
	if e.Code != "" {
		b.WriteString(" " + e.Code)
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	return b.String()
}

// newError reads an error answer: the API's JSON error, or the start of
// whatever a proxy in between sent.
func newError(res *http.Response, body []byte, now time.Time) *Error {
	e := &Error{StatusCode: res.StatusCode, Body: body, RetryAfter: parseRetryAfter(res.Header.Get("Retry-After"), now)}
	var answer struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &answer) == nil && answer.Error.Code != "" {
		e.Code, e.Message = answer.Error.Code, answer.Error.Message
		return e
	}
	e.Message = strings.Join(strings.Fields(string(body[:min(len(body), 200)])), " ")
	if e.Message == "" {
		e.Message = http.StatusText(res.StatusCode)
	}
	return e
}

// parseRetryAfter reads Retry-After as seconds or an HTTP date (RFC 9110
// §10.2.3); zero when absent or unreadable, at most a day.
func parseRetryAfter(h string, now time.Time) time.Duration {
	if h == "" {
		return 0
	}
	if s, err := strconv.ParseInt(h, 10, 64); err == nil {
		return time.Duration(min(max(s, 0), 24*3600)) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil {
		return min(max(t.Sub(now), 0), 24*time.Hour)
	}
	return 0
}
