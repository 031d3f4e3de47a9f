package apiclient

import (
	"errors"
	"net/http"
	"testing"
	"time"
)

// TestErrorFields: an error answer becomes an *Error with the status,
// the API's code and message, Retry-After and the body, whatever sent it.
func TestErrorFields(t *testing.T) {
	tests := []struct {
		name, body, retryAfter string
		code                   int
		want                   Error
		wantText               string
	}{
		{name: "api", code: 403, body: `{"error":{"code":"forbidden","message":"token lacks purge:www"}}`,
			want:     Error{StatusCode: 403, Code: "forbidden", Message: "token lacks purge:www"},
			wantText: "control answered 403 forbidden: token lacks purge:www"},
		{name: "api, extra fields", code: 422, body: `{"error":{"code":"missing_blobs","message":"2 blobs"},"missing":["a","b"]}`,
			want:     Error{StatusCode: 422, Code: "missing_blobs", Message: "2 blobs"},
			wantText: "control answered 422 missing_blobs: 2 blobs"},
		{name: "rate limited", code: 429, retryAfter: "7", body: limited,
			want:     Error{StatusCode: 429, Code: "rate_limited", Message: "this token is over its write rate", RetryAfter: 7 * time.Second},
			wantText: "control answered 429 rate_limited: this token is over its write rate"},
		{name: "proxy page", code: 502, body: "<html>\n  <h1>Bad   Gateway</h1>\n</html>",
			want: Error{StatusCode: 502, Message: "<html> <h1>Bad Gateway</h1> </html>"}, wantText: "control answered 502: <html> <h1>Bad Gateway</h1> </html>"},
		{name: "empty", code: 503, retryAfter: "soon", want: Error{StatusCode: 503, Message: "Service Unavailable"},
			wantText: "control answered 503: Service Unavailable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			api := newFakeAPI(t, answer{code: tt.code, body: tt.body, retryAfter: tt.retryAfter})
			c := &Client{BaseURL: api.URL, Token: "tok", Retry: Policy{Retries: -1}}
			err := c.Do(t.Context(), Request{Path: "/v1/x"}, nil)
			e, ok := errors.AsType[*Error](err)
			if !ok {
				t.Fatalf("Do() = %v, want an *Error", err)
			}
			if e.StatusCode != tt.want.StatusCode || e.Code != tt.want.Code || e.Message != tt.want.Message || e.RetryAfter != tt.want.RetryAfter || string(e.Body) != tt.body {
				t.Errorf("Do() error = %+v (body %q), want %+v (body %q)", *e, e.Body, tt.want, tt.body)
			}
			if e.Error() != tt.wantText {
				t.Errorf("Error() = %q, want %q", e.Error(), tt.wantText)
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name, header string
		want         time.Duration
	}{
		{name: "none", want: 0},
		{name: "seconds", header: "3", want: 3 * time.Second},
		{name: "negative", header: "-5", want: 0},
		{name: "past a day", header: "999999", want: 24 * time.Hour},
		{name: "date", header: now.Add(10 * time.Second).Format(http.TimeFormat), want: 10 * time.Second},
		{name: "date past", header: now.Add(-time.Minute).Format(http.TimeFormat), want: 0},
		{name: "garbage", header: "soon", want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := parseRetryAfter(tt.header, now); got != tt.want {
				t.Errorf("parseRetryAfter(%q) = %v, want %v", tt.header, got, tt.want)
			}
		})
	}
}

// TestDelay: full jitter under a ceiling that doubles, raised to a 429's
// or 503's Retry-After, and never over MaxBackoff.
func TestDelay(t *testing.T) {
	p := Policy{Backoff: 100 * time.Millisecond, MaxBackoff: time.Second}
	for attempt := range 6 {
		ceiling := min(100*time.Millisecond<<attempt, time.Second)
		low := 0
		for range 200 {
			d := p.Delay(attempt, errors.New("reset"))
			if d < 0 || d > ceiling {
				t.Fatalf("Delay(%d) = %v, want in [0, %v]", attempt, d, ceiling)
			}
			if d < ceiling/2 {
				low++
			}
		}
		// Full jitter draws from the whole range, not its upper half:
		// 200 draws with none in the lower half has odds of 2^-200.
		if low == 0 {
			t.Errorf("Delay(%d): 200 draws, none below %v: want full jitter", attempt, ceiling/2)
		}
	}
	tests := []struct {
		name string
		err  error
		want time.Duration // the least delay
		max  time.Duration
	}{
		{name: "429 Retry-After", err: &Error{StatusCode: 429, RetryAfter: 700 * time.Millisecond}, want: 700 * time.Millisecond, max: 700 * time.Millisecond},
		{name: "503 Retry-After", err: &Error{StatusCode: 503, RetryAfter: 500 * time.Millisecond}, want: 500 * time.Millisecond, max: 500 * time.Millisecond},
		{name: "capped", err: &Error{StatusCode: 503, RetryAfter: time.Hour}, want: time.Second, max: time.Second},
		{name: "504 Retry-After ignored", err: &Error{StatusCode: 504, RetryAfter: 900 * time.Millisecond}, want: 0, max: 100 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if d := p.Delay(0, tt.err); d < tt.want || d > tt.max {
				t.Errorf("Delay(0, %v) = %v, want in [%v, %v]", tt.err, d, tt.want, tt.max)
			}
		})
	}
}
