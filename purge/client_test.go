package purge

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/selfcdn/cdn/internal/apiclient"
	"github.com/selfcdn/cdn/purge/purgetest"
)

// recordPauses makes c record its pauses between attempts instead of
// taking them, and returns them.
func recordPauses(c *Client) *[]time.Duration {
	var pauses []time.Duration
	c.sleep = func(ctx context.Context, d time.Duration) error {
		pauses = append(pauses, d)
		return ctx.Err()
	}
	return &pauses
}

const (
	accepted   = `{"version":42,"site":"www"}`
	applied    = `{"version":42,"site":"www","status":{"version":42,"site":"www","applied":true,"edges":[{"edge":"e1","health":"up","version":42,"applied":true}],"pending":[]}}`
	notApplied = `{"error":{"code":"not_applied","message":"2 of 3 edges applied version 42"},"version":42,"status":{"version":42,"site":"www","applied":false,"pending":["e3"]}}`
	down       = `{"error":{"code":"unavailable","message":"the shared state is not reachable; try again"}}`
)

func apiErr(code, msg string) string {
	b, _ := json.Marshal(map[string]any{"error": map[string]string{"code": code, "message": msg}})
	return string(b)
}

func TestClientPurge(t *testing.T) {
	req := Request{URLs: []string{"/a.css", "https://www.example.com/b.js"}, Tags: []string{"release-1"}}
	tests := []struct {
		name           string
		wait           time.Duration
		answers        []purgetest.Answer
		wantCalls      int
		wantVersion    uint64
		wantApplied    bool   // Result.Status.Applied
		wantStatusCode int    // of the *APIError; 0 for success
		wantNotApplied bool   // errors.Is(err, ErrNotApplied)
		wantPending    string // the APIError's Status.Pending, joined
	}{
		{name: "accepted", answers: []purgetest.Answer{{Code: 202, Body: accepted}}, wantCalls: 1, wantVersion: 42},
		{name: "waited", wait: 30 * time.Second, answers: []purgetest.Answer{{Code: 200, Body: applied}}, wantCalls: 1, wantVersion: 42, wantApplied: true},
		{name: "503 then accepted", answers: []purgetest.Answer{{Code: 503, Body: down}, {Code: 202, Body: accepted}}, wantCalls: 2, wantVersion: 42},
		{name: "429 then accepted", answers: []purgetest.Answer{{Code: 429, RetryAfter: "1", Body: apiErr("rate_limited", "over the write rate")}, {Code: 202, Body: accepted}},
			wantCalls: 2, wantVersion: 42},
		{name: "502 hangup 504 then applied", wait: time.Minute, answers: []purgetest.Answer{
			{Code: 502, Body: "<html>bad gateway</html>"}, {Hangup: true}, {Code: 504, Body: apiErr("timeout", "gateway timeout")}, {Code: 200, Body: applied},
		}, wantCalls: 4, wantVersion: 42, wantApplied: true},
		{name: "not applied", wait: 30 * time.Second, answers: []purgetest.Answer{{Code: 504, Body: notApplied}},
			wantCalls: 1, wantVersion: 42, wantStatusCode: 504, wantNotApplied: true, wantPending: "e3"},
		{name: "400", answers: []purgetest.Answer{{Code: 400, Body: apiErr("invalid", "urls[1]: host not of this site")}}, wantCalls: 1, wantStatusCode: 400},
		{name: "401", answers: []purgetest.Answer{{Code: 401, Body: apiErr("unauthorized", "bad token")}}, wantCalls: 1, wantStatusCode: 401},
		{name: "403", answers: []purgetest.Answer{{Code: 403, Body: apiErr("forbidden", "token lacks purge:www")}}, wantCalls: 1, wantStatusCode: 403},
		{name: "404", answers: []purgetest.Answer{{Code: 404, Body: apiErr("not_found", "no site www")}}, wantCalls: 1, wantStatusCode: 404},
		{name: "422", answers: []purgetest.Answer{{Code: 422, Body: apiErr("idempotency_mismatch", "key used for another body")}}, wantCalls: 1, wantStatusCode: 422},
		{name: "500 is not retried", answers: []purgetest.Answer{{Code: 500, Body: apiErr("internal", "bug")}}, wantCalls: 1, wantStatusCode: 500},
		{name: "503 forever", answers: []purgetest.Answer{{Code: 503, Body: down}}, wantCalls: 1 + DefaultRetries, wantStatusCode: 503},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			api := purgetest.New(t, tt.answers...)
			c := &Client{BaseURL: api.URL + "/", Token: "tok"}
			recordPauses(c)
			res, err := c.Purge(t.Context(), "www", req, Options{Wait: tt.wait})

			ae, isAPI := errors.AsType[*APIError](err)
			switch {
			case tt.wantStatusCode == 0 && err != nil:
				t.Fatalf("Purge() = %v, want success", err)
			case tt.wantStatusCode != 0 && (!isAPI || ae.StatusCode != tt.wantStatusCode):
				t.Fatalf("Purge() = %v, want an *APIError with status %d", err, tt.wantStatusCode)
			}
			if got := errors.Is(err, ErrNotApplied); got != tt.wantNotApplied {
				t.Errorf("errors.Is(%v, ErrNotApplied) = %v, want %v", err, got, tt.wantNotApplied)
			}
			if tt.wantPending != "" {
				if ae.Status == nil || strings.Join(ae.Status.Pending, ",") != tt.wantPending {
					t.Errorf("APIError.Status = %+v, want pending %s", ae.Status, tt.wantPending)
				}
			}
			if res.Version != tt.wantVersion {
				t.Errorf("Purge().Version = %d, want %d", res.Version, tt.wantVersion)
			}
			if got := res.Status != nil && res.Status.Applied; got != tt.wantApplied {
				t.Errorf("Purge().Status.Applied = %v, want %v", got, tt.wantApplied)
			}

			calls := api.Calls()
			if len(calls) != tt.wantCalls {
				t.Fatalf("control got %d calls, want %d", len(calls), tt.wantCalls)
			}
			wantQuery := ""
			if tt.wait > 0 {
				wantQuery = "wait=" + tt.wait.String()
			}
			for i, s := range calls {
				var body Request
				if err := json.Unmarshal(s.Body, &body); err != nil || !reflect.DeepEqual(body, req) {
					t.Errorf("call %d: body %s (%v), want %+v", i, s.Body, err, req)
				}
				if s.Method != "POST" || s.Path != "/v1/sites/www/purge" || s.Query != wantQuery || s.Auth != "Bearer tok" {
					t.Errorf("call %d: %s %s?%s auth %q, want POST /v1/sites/www/purge?%s auth %q",
						i, s.Method, s.Path, s.Query, s.Auth, wantQuery, "Bearer tok")
				}
				if err := CheckIdempotencyKey(s.Key); err != nil {
					t.Errorf("call %d: %v", i, err)
				}
				if s.Key != calls[0].Key {
					t.Errorf("call %d: Idempotency-Key %q, want the first call's %q", i, s.Key, calls[0].Key)
				}
			}
		})
	}
}

func TestClientPurgeKey(t *testing.T) {
	api := purgetest.New(t, purgetest.Answer{Code: 202, Body: accepted})
	c := &Client{BaseURL: api.URL, Token: "tok"}
	req := Request{All: true}
	for _, key := range []string{"deploy-123", "", ""} {
		if _, err := c.Purge(t.Context(), "www", req, Options{IdempotencyKey: key}); err != nil {
			t.Fatalf("Purge(key %q) = %v", key, err)
		}
	}
	calls := api.Calls()
	if calls[0].Key != "deploy-123" {
		t.Errorf("Idempotency-Key = %q, want the one given, %q", calls[0].Key, "deploy-123")
	}
	if calls[1].Key == "" || calls[1].Key == calls[2].Key {
		t.Errorf("generated keys %q and %q, want two different keys", calls[1].Key, calls[2].Key)
	}
}

func TestClientRetryAfter(t *testing.T) {
	tests := []struct {
		name, retryAfter string
		maxBackoff       time.Duration
		wantMin, wantMax time.Duration
	}{
		{name: "none: jittered backoff", wantMin: 0, wantMax: DefaultBackoff},
		{name: "seconds", retryAfter: "3", wantMin: 3 * time.Second, wantMax: 3 * time.Second},
		{name: "shorter than backoff", retryAfter: "0", wantMin: 0, wantMax: DefaultBackoff},
		{name: "capped", retryAfter: "3600", wantMin: DefaultMaxBackoff, wantMax: DefaultMaxBackoff},
		{name: "capped by MaxBackoff", retryAfter: "3", maxBackoff: time.Second, wantMin: time.Second, wantMax: time.Second},
		{name: "date", retryAfter: time.Now().Add(10 * time.Second).UTC().Format(http.TimeFormat), wantMin: 8 * time.Second, wantMax: 10 * time.Second},
		{name: "garbage", retryAfter: "soon", wantMin: 0, wantMax: DefaultBackoff},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			api := purgetest.New(t, purgetest.Answer{Code: 503, RetryAfter: tt.retryAfter, Body: down}, purgetest.Answer{Code: 202, Body: accepted})
			c := &Client{BaseURL: api.URL, Token: "tok", MaxBackoff: tt.maxBackoff}
			pauses := recordPauses(c)
			if _, err := c.Purge(t.Context(), "www", Request{All: true}, Options{}); err != nil {
				t.Fatalf("Purge() = %v", err)
			}
			if len(*pauses) != 1 || (*pauses)[0] < tt.wantMin || (*pauses)[0] > tt.wantMax {
				t.Errorf("pauses after Retry-After %q = %v, want one in [%v, %v]", tt.retryAfter, *pauses, tt.wantMin, tt.wantMax)
			}
		})
	}
}

func TestClientBackoffGrows(t *testing.T) {
	api := purgetest.New(t, purgetest.Answer{Code: 503, Body: down})
	c := &Client{BaseURL: api.URL, Token: "tok", Retries: 6, Backoff: 100 * time.Millisecond, MaxBackoff: time.Second}
	pauses := recordPauses(c)
	_, err := c.Purge(t.Context(), "www", Request{All: true}, Options{})
	if ae, ok := errors.AsType[*APIError](err); !ok || ae.StatusCode != 503 {
		t.Fatalf("Purge() = %v, want the last 503", err)
	}
	if len(*pauses) != 6 {
		t.Fatalf("pauses = %v, want 6", *pauses)
	}
	// Full jitter: each pause is drawn from zero up to a ceiling that
	// doubles, up to MaxBackoff.
	for i, d := range *pauses {
		b := min(100*time.Millisecond<<i, time.Second)
		if d < 0 || d > b {
			t.Errorf("pause %d = %v, want in [0, %v]", i, d, b)
		}
	}
}

func TestClientCancelStopsRetries(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	api := purgetest.New(t, purgetest.Answer{Code: 503, RetryAfter: "30", Body: down})
	api.OnCall = func(int) { cancel() }
	// The real timer: a pause that ignored ctx would hold the test 30s.
	c := &Client{BaseURL: api.URL, Token: "tok"}
	_, err := c.Purge(ctx, "www", Request{All: true}, Options{})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Purge() = %v, want context.Canceled", err)
	}
	if n := len(api.Calls()); n != 1 {
		t.Errorf("control got %d calls, want 1", n)
	}
}

func TestClientNegativeRetries(t *testing.T) {
	api := purgetest.New(t, purgetest.Answer{Code: 503, Body: down})
	c := &Client{BaseURL: api.URL, Token: "tok", Retries: -1}
	if _, err := c.Purge(t.Context(), "www", Request{All: true}, Options{}); err == nil {
		t.Errorf("Purge() = nil, want the 503")
	}
	if n := len(api.Calls()); n != 1 {
		t.Errorf("control got %d calls, want 1", n)
	}
}

func TestClientInvalid(t *testing.T) {
	tests := []struct {
		name, site, baseURL string
		req                 Request
		opts                Options
		wantErr             string
	}{
		{name: "nothing to purge", req: Request{}, wantErr: "nothing to purge"},
		{name: "all and urls", req: Request{All: true, URLs: []string{"/a"}}, wantErr: "takes no urls"},
		{name: "too many", req: Request{Tags: make([]string, MaxItems+1)}, wantErr: "more than"},
		{name: "no site", site: "-", req: Request{All: true}, wantErr: "no site"},
		{name: "no base URL", baseURL: "-", req: Request{All: true}, wantErr: "no BaseURL"},
		{name: "base URL without a scheme", baseURL: "control:8443", req: Request{All: true}, wantErr: "base URL"},
		{name: "negative wait", req: Request{All: true}, opts: Options{Wait: -time.Second}, wantErr: "wait -1s"},
		{name: "long wait", req: Request{All: true}, opts: Options{Wait: MaxWait + time.Second}, wantErr: "wait 5m1s"},
		{name: "bad key", req: Request{All: true}, opts: Options{IdempotencyKey: "a b"}, wantErr: "idempotency key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			api := purgetest.New(t, purgetest.Answer{Code: 202, Body: accepted})
			c := &Client{BaseURL: api.URL, Token: "tok"}
			site := "www"
			if tt.site == "-" {
				site = ""
			}
			switch tt.baseURL {
			case "":
			case "-":
				c.BaseURL = ""
			default:
				c.BaseURL = tt.baseURL
			}
			_, err := c.Purge(t.Context(), site, tt.req, tt.opts)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Purge() = %v, want ErrInvalid containing %q", err, tt.wantErr)
			}
			if n := len(api.Calls()); n != 0 {
				t.Errorf("control got %d calls, want none", n)
			}
		})
	}
}

func TestClientStatus(t *testing.T) {
	status := `{"version":7,"site":"www","applied":false,"edges":[{"edge":"e1","health":"up","version":6}],"pending":["e1"]}`
	tests := []struct {
		name           string
		wait           time.Duration
		answers        []purgetest.Answer
		wantCalls      int
		wantQuery      string
		wantPending    []string
		wantStatusCode int
	}{
		{name: "now", answers: []purgetest.Answer{{Code: 200, Body: status}}, wantCalls: 1, wantPending: []string{"e1"}},
		{name: "waited, not applied", wait: 30 * time.Second, answers: []purgetest.Answer{{Code: 200, Body: status}},
			wantCalls: 1, wantQuery: "wait=30s", wantPending: []string{"e1"}},
		{name: "503 then ok", answers: []purgetest.Answer{{Code: 503, Body: down}, {Code: 200, Body: status}}, wantCalls: 2, wantPending: []string{"e1"}},
		{name: "unknown version", answers: []purgetest.Answer{{Code: 404, Body: apiErr("not_found", "no purge 7")}}, wantCalls: 1, wantStatusCode: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			api := purgetest.New(t, tt.answers...)
			c := &Client{BaseURL: api.URL, Token: "tok"}
			recordPauses(c)
			st, err := c.Status(t.Context(), 7, tt.wait)
			if tt.wantStatusCode != 0 {
				if ae, ok := errors.AsType[*APIError](err); !ok || ae.StatusCode != tt.wantStatusCode {
					t.Errorf("Status(7) = %v, want an *APIError with status %d", err, tt.wantStatusCode)
				}
			} else if err != nil || st.Version != 7 || st.Applied || !slices.Equal(st.Pending, tt.wantPending) {
				t.Errorf("Status(7) = %+v, %v; want version 7 pending %v", st, err, tt.wantPending)
			}
			calls := api.Calls()
			if len(calls) != tt.wantCalls {
				t.Fatalf("control got %d calls, want %d", len(calls), tt.wantCalls)
			}
			for i, s := range calls {
				if s.Method != "GET" || s.Path != "/v1/purges/7" || s.Query != tt.wantQuery || s.Key != "" {
					t.Errorf("call %d: %s %s?%s key %q, want GET /v1/purges/7?%s without a key", i, s.Method, s.Path, s.Query, s.Key, tt.wantQuery)
				}
			}
		})
	}
}

func TestCheckIdempotencyKey(t *testing.T) {
	tests := []struct {
		name, key string
		ok        bool
	}{
		{name: "generated", key: NewIdempotencyKey(), ok: true},
		{name: "ci", key: "deploy-123.4:A_b", ok: true},
		{name: "longest", key: strings.Repeat("k", 128), ok: true},
		{name: "empty", key: ""},
		{name: "too long", key: strings.Repeat("k", 129)},
		{name: "space", key: "a b"},
		{name: "slash", key: "a/b"},
		{name: "unicode", key: "clé"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := CheckIdempotencyKey(tt.key); (err == nil) != tt.ok {
				t.Errorf("CheckIdempotencyKey(%q) = %v, want ok %v", tt.key, err, tt.ok)
			}
		})
	}
}

// TestAPIErrorUnwraps: a purge's APIError is the shared client's error
// with the purge's version and status added.
func TestAPIErrorUnwraps(t *testing.T) {
	api := purgetest.New(t, purgetest.Answer{Code: 504, RetryAfter: "5", Body: notApplied})
	c := &Client{BaseURL: api.URL, Token: "tok"}
	_, err := c.Purge(t.Context(), "www", Request{All: true}, Options{Wait: time.Second})
	ae, ok := errors.AsType[*APIError](err)
	inner, okInner := errors.AsType[*apiclient.Error](err)
	if !ok || !okInner || ae.Version != 42 || inner.StatusCode != 504 || inner.Code != "not_applied" || inner.RetryAfter != 5*time.Second {
		t.Errorf("Purge() = %v (%+v, %+v); want an *APIError of version 42 unwrapping to a 504 not_applied", err, ae, inner)
	}
	if (&APIError{}).Unwrap() != nil {
		t.Errorf("APIError{}.Unwrap() is not nil")
	}
}

func TestAPIErrorMessage(t *testing.T) {
	tests := []struct {
		name string
		err  *APIError
		want string
	}{
		{name: "api", err: &APIError{StatusCode: 403, Code: "forbidden", Message: "token lacks purge:www"},
			want: "control answered 403 forbidden: token lacks purge:www"},
		{name: "proxy", err: &APIError{StatusCode: 502, Message: "Bad Gateway"}, want: "control answered 502: Bad Gateway"},
		{name: "not applied", err: &APIError{StatusCode: 504, Code: "not_applied", Message: "timed out", Status: &Status{Pending: []string{"e1", "e2"}}},
			want: "control answered 504 not_applied: timed out (pending: e1, e2)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
		})
	}
}
