package apiclient

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// answer is what the fake API says to one request.
type answer struct {
	code       int
	body       string
	retryAfter string
	hangup     bool // close the connection without answering
}

// call is one request the fake API received.
type call struct {
	method, path, key, auth, agent, ctype string
	body                                  string
}

// fakeAPI answers with answers in order, the last one repeated, and
// records every request.
type fakeAPI struct {
	*httptest.Server
	mu    sync.Mutex // protects calls
	calls []call
}

func newFakeAPI(t *testing.T, answers ...answer) *fakeAPI {
	t.Helper()
	f := &fakeAPI{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.calls = append(f.calls, call{method: r.Method, path: r.URL.RequestURI(), key: r.Header.Get("Idempotency-Key"),
			auth: r.Header.Get("Authorization"), agent: r.Header.Get("User-Agent"), ctype: r.Header.Get("Content-Type"), body: string(body)})
		n := len(f.calls)
		f.mu.Unlock()
		a := answers[min(n, len(answers))-1]
		if a.hangup {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Errorf("hijack: %v", err)
				return
			}
			conn.Close()
			return
		}
		if a.retryAfter != "" {
			w.Header().Set("Retry-After", a.retryAfter)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(a.code)
		io.WriteString(w, a.body)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeAPI) Calls() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]call(nil), f.calls...)
}

// recordPauses makes c record its pauses instead of taking them.
func recordPauses(c *Client) *[]time.Duration {
	var pauses []time.Duration
	c.Sleep = func(ctx context.Context, d time.Duration) error {
		pauses = append(pauses, d)
		return ctx.Err()
	}
	return &pauses
}

const (
	ok          = `{"n":7}`
	unavailable = `{"error":{"code":"unavailable","message":"the shared state is not reachable; try again"}}`
	limited     = `{"error":{"code":"rate_limited","message":"this token is over its write rate"}}`
)

func TestDoRetries(t *testing.T) {
	tests := []struct {
		name       string
		req        Request
		answers    []answer
		wantCalls  int
		wantStatus int // of the *Error; 0 for success
		// wantPauses lists the pauses taken, each as [min, max].
		wantPauses [][2]time.Duration
	}{
		{name: "429 with Retry-After, then 200", req: Request{Method: "POST", Path: "/v1/x", JSON: map[string]int{"a": 1}},
			answers:   []answer{{code: 429, body: limited, retryAfter: "2"}, {code: 200, body: ok}},
			wantCalls: 2, wantPauses: [][2]time.Duration{{2 * time.Second, 2 * time.Second}}},
		{name: "503 then 200", req: Request{Path: "/v1/edges"},
			answers:   []answer{{code: 503, body: unavailable}, {code: 200, body: ok}},
			wantCalls: 2, wantPauses: [][2]time.Duration{{0, DefaultBackoff}}},
		{name: "503 with Retry-After, then 200", req: Request{Path: "/v1/edges"},
			answers:   []answer{{code: 503, body: unavailable, retryAfter: "3"}, {code: 200, body: ok}},
			wantCalls: 2, wantPauses: [][2]time.Duration{{3 * time.Second, 3 * time.Second}}},
		{name: "502 Retry-After is not a 429's or 503's", req: Request{Path: "/v1/edges"},
			answers:   []answer{{code: 502, body: "<html>bad gateway</html>", retryAfter: "20"}, {code: 200, body: ok}},
			wantCalls: 2, wantPauses: [][2]time.Duration{{0, DefaultBackoff}}},
		{name: "POST without Idempotency-Key: 503 not retried", req: Request{Method: "POST", Path: "/v1/x", JSON: 1},
			answers: []answer{{code: 503, body: unavailable}, {code: 200, body: ok}}, wantCalls: 1, wantStatus: 503},
		{name: "POST without Idempotency-Key: cut off, not retried", req: Request{Method: "POST", Path: "/v1/x", JSON: 1},
			answers: []answer{{hangup: true}, {code: 200, body: ok}}, wantCalls: 1, wantStatus: -1},
		{name: "POST with Idempotency-Key: 503 then 200", req: Request{Method: "POST", Path: "/v1/x", JSON: 1, IdempotencyKey: "k-1"},
			answers: []answer{{code: 503, body: unavailable}, {code: 200, body: ok}}, wantCalls: 2, wantPauses: [][2]time.Duration{{0, DefaultBackoff}}},
		{name: "POST declared idempotent: cut off, then 200", req: Request{Method: "POST", Path: "/v1/x", JSON: 1, Idempotent: true},
			answers: []answer{{hangup: true}, {code: 200, body: ok}}, wantCalls: 2, wantPauses: [][2]time.Duration{{0, DefaultBackoff}}},
		{name: "GET 504 then 200", req: Request{Path: "/v1/edges"},
			answers: []answer{{code: 504, body: "gateway timeout"}, {code: 200, body: ok}}, wantCalls: 2, wantPauses: [][2]time.Duration{{0, DefaultBackoff}}},
		{name: "500 not retried", req: Request{Path: "/v1/edges"},
			answers: []answer{{code: 500, body: `{"error":{"code":"internal","message":"bug"}}`}}, wantCalls: 1, wantStatus: 500},
		{name: "404 not retried", req: Request{Path: "/v1/edges"},
			answers: []answer{{code: 404, body: `{"error":{"code":"not_found","message":"no"}}`}}, wantCalls: 1, wantStatus: 404},
		{name: "a Final answer is not retried", req: Request{Path: "/v1/purges/7", Final: func(err error) bool {
			e, ok := errors.AsType[*Error](err)
			return ok && e.Code == "not_applied"
		}}, answers: []answer{{code: 504, body: `{"error":{"code":"not_applied","message":"1 of 2"}}`}}, wantCalls: 1, wantStatus: 504},
		{name: "503 forever", req: Request{Path: "/v1/edges"}, answers: []answer{{code: 503, body: unavailable}},
			wantCalls: 1 + DefaultRetries, wantStatus: 503, wantPauses: [][2]time.Duration{
				{0, DefaultBackoff}, {0, 2 * DefaultBackoff}, {0, 4 * DefaultBackoff}, {0, 8 * DefaultBackoff}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			api := newFakeAPI(t, tt.answers...)
			c := &Client{BaseURL: api.URL + "/", Token: "tok"}
			pauses := recordPauses(c)
			var out struct{ N int }
			err := c.Do(t.Context(), tt.req, &out)
			e, isAPI := errors.AsType[*Error](err)
			switch {
			case tt.wantStatus == 0 && (err != nil || out.N != 7):
				t.Errorf("Do() = %v, decoded %+v; want success, n 7", err, out)
			case tt.wantStatus == -1 && (err == nil || isAPI):
				t.Errorf("Do() = %v, want a connection error", err)
			case tt.wantStatus > 0 && (!isAPI || e.StatusCode != tt.wantStatus):
				t.Errorf("Do() = %v, want an *Error with status %d", err, tt.wantStatus)
			}
			calls := api.Calls()
			if len(calls) != tt.wantCalls {
				t.Errorf("control got %d calls, want %d", len(calls), tt.wantCalls)
			}
			for i, cl := range calls {
				if cl != calls[0] {
					t.Errorf("call %d = %+v, want the same as the first, %+v", i, cl, calls[0])
				}
			}
			if len(*pauses) != len(tt.wantPauses) {
				t.Fatalf("pauses %v, want %d", *pauses, len(tt.wantPauses))
			}
			for i, d := range *pauses {
				if w := tt.wantPauses[i]; d < w[0] || d > w[1] {
					t.Errorf("pause %d = %v, want in [%v, %v]", i, d, w[0], w[1])
				}
			}
		})
	}
}

// TestDoDeadlineBoundsBackoff: no pause runs past ctx's deadline; the
// call ends when the next pause would, with the last answer.
func TestDoDeadlineBoundsBackoff(t *testing.T) {
	tests := []struct {
		name       string
		answer     answer
		policy     Policy
		deadline   time.Duration
		maxCalls   int
		wantReturn time.Duration // Do returns within this
		// want503 says the error carries the last 503; with many
		// attempts the deadline may come during one instead.
		want503 bool
	}{
		{name: "Retry-After past the deadline", answer: answer{code: 503, body: unavailable, retryAfter: "10"},
			deadline: 300 * time.Millisecond, maxCalls: 1, wantReturn: 250 * time.Millisecond, want503: true},
		{name: "many short pauses", answer: answer{code: 503, body: unavailable},
			policy:   Policy{Retries: 1000, Backoff: 50 * time.Millisecond, MaxBackoff: 50 * time.Millisecond},
			deadline: 400 * time.Millisecond, maxCalls: 1000, wantReturn: 600 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			api := newFakeAPI(t, tt.answer)
			c := &Client{BaseURL: api.URL, Token: "tok", Retry: tt.policy} // the real timer
			ctx, cancel := context.WithTimeout(t.Context(), tt.deadline)
			defer cancel()
			start := time.Now()
			err := c.Do(ctx, Request{Path: "/v1/edges"}, nil)
			took := time.Since(start)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Do() = %v, want context.DeadlineExceeded", err)
			}
			if e, ok := errors.AsType[*Error](err); tt.want503 && (!ok || e.StatusCode != 503) {
				t.Errorf("Do() = %v, want the last 503 in it", err)
			}
			if took > tt.wantReturn {
				t.Errorf("Do() took %v, want at most %v", took, tt.wantReturn)
			}
			if n := len(api.Calls()); n < 1 || n > tt.maxCalls {
				t.Errorf("control got %d calls, want 1 to %d", n, tt.maxCalls)
			}
		})
	}
}

func TestDoCancelStopsRetries(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	api := newFakeAPI(t, answer{code: 503, body: unavailable})
	c := &Client{BaseURL: api.URL, Token: "tok", Sleep: func(context.Context, time.Duration) error {
		cancel() // cancelled while pausing
		return context.Canceled
	}}
	err := c.Do(ctx, Request{Path: "/v1/edges"}, nil)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Do() = %v, want context.Canceled", err)
	}
	if n := len(api.Calls()); n != 1 {
		t.Errorf("control got %d calls, want 1", n)
	}
}

func TestPauseCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	var c Client
	if err := c.pause(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Errorf("pause(cancelled, 1h) = %v, want context.Canceled", err)
	}
}

// TestDoNeverConnected: a call that never reached control is retried
// whatever its method, since nothing was done.
func TestDoNeverConnected(t *testing.T) {
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close() // nothing listens there now
	c := &Client{BaseURL: closed.URL, Token: "tok", Retry: Policy{Retries: 2}}
	pauses := recordPauses(c)
	err := c.Do(t.Context(), Request{Method: "POST", Path: "/v1/x", JSON: 1}, nil)
	if _, ok := errors.AsType[*transportError](err); !ok || !neverConnected(err) {
		t.Errorf("Do() = %v, want a connection refused", err)
	}
	if len(*pauses) != 2 || !strings.Contains(err.Error(), "give up after 3 attempts") {
		t.Errorf("Do() = %v after pauses %v, want 3 attempts", err, *pauses)
	}
}

// TestDoReplaysBody: a PUT cut off after its body was sent is sent again
// whole, from a body opened afresh; a body that cannot open again ends
// the call.
func TestDoReplaysBody(t *testing.T) {
	const blob = "0123456789abcdef"
	t.Run("reopened", func(t *testing.T) {
		api := newFakeAPI(t, answer{hangup: true}, answer{code: 201, body: ok})
		c := &Client{BaseURL: api.URL, Token: "tok"}
		recordPauses(c)
		opens := 0
		req := Request{Method: "PUT", Path: "/v1/sites/a/blobs/h", ContentType: "application/octet-stream",
			Body: func() (io.ReadCloser, int64, error) {
				opens++
				return io.NopCloser(strings.NewReader(blob)), int64(len(blob)), nil
			}}
		if err := c.Do(t.Context(), req, nil); err != nil {
			t.Fatalf("Do() = %v", err)
		}
		calls := api.Calls()
		if opens != 2 || len(calls) != 2 || calls[0].body != blob || calls[1].body != blob || calls[1].ctype != "application/octet-stream" {
			t.Errorf("opened %d times, calls %+v; want 2 calls each with the whole body", opens, calls)
		}
	})
	t.Run("cannot reopen", func(t *testing.T) {
		api := newFakeAPI(t, answer{hangup: true}, answer{code: 201, body: ok})
		c := &Client{BaseURL: api.URL, Token: "tok"}
		recordPauses(c)
		gone := errors.New("file gone")
		opens := 0
		req := Request{Method: "PUT", Path: "/v1/sites/a/blobs/h", Body: func() (io.ReadCloser, int64, error) {
			if opens++; opens > 1 {
				return nil, 0, gone
			}
			return io.NopCloser(strings.NewReader(blob)), int64(len(blob)), nil
		}}
		if err := c.Do(t.Context(), req, nil); !errors.Is(err, gone) {
			t.Errorf("Do() = %v, want %v", err, gone)
		}
		if n := len(api.Calls()); n != 1 {
			t.Errorf("control got %d calls, want 1", n)
		}
	})
}

func TestDoHeaders(t *testing.T) {
	api := newFakeAPI(t, answer{code: 200, body: ok})
	c := &Client{BaseURL: api.URL, Token: "tok"}
	if err := c.Do(t.Context(), Request{Method: "POST", Path: "/v1/sites/www/purge?wait=30s", JSON: map[string]bool{"all": true}, IdempotencyKey: "deploy-7"}, nil); err != nil {
		t.Fatal(err)
	}
	c.UserAgent = "ci-tool/1"
	if err := c.Do(t.Context(), Request{Path: "/v1/sites"}, nil); err != nil {
		t.Fatal(err)
	}
	want := []call{
		{method: "POST", path: "/v1/sites/www/purge?wait=30s", key: "deploy-7", auth: "Bearer tok", agent: DefaultUserAgent(), ctype: "application/json", body: `{"all":true}`},
		{method: "GET", path: "/v1/sites", auth: "Bearer tok", agent: "ci-tool/1"},
	}
	if got := api.Calls(); len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("calls %+v, want %+v", got, want)
	}
	if !strings.HasPrefix(DefaultUserAgent(), "selfcdn-cdn/") {
		t.Errorf("DefaultUserAgent() = %q, want selfcdn-cdn/VERSION", DefaultUserAgent())
	}
}

func TestDoBadBaseURL(t *testing.T) {
	for _, base := range []string{"", "control:8443", "ftp://control", "http://", "http://a b"} {
		c := &Client{BaseURL: base, Token: "tok"}
		if err := c.Do(t.Context(), Request{Path: "/v1/sites"}, nil); !errors.Is(err, ErrBadBaseURL) {
			t.Errorf("Do() with BaseURL %q = %v, want ErrBadBaseURL", base, err)
		}
	}
}

// TestDoAsError: the caller's error type comes back, wrapped as the
// *Error would be, and still classifies as the *Error it unwraps to.
func TestDoAsError(t *testing.T) {
	api := newFakeAPI(t, answer{code: 503, body: unavailable})
	c := &Client{BaseURL: api.URL, Token: "tok", Retry: Policy{Retries: 1}}
	recordPauses(c)
	err := c.Do(t.Context(), Request{Path: "/v1/x", AsError: func(e *Error) error { return &wrapped{e} }}, nil)
	if _, ok := errors.AsType[*wrapped](err); !ok || len(api.Calls()) != 2 {
		t.Errorf("Do() = %v after %d calls, want a *wrapped after 2", err, len(api.Calls()))
	}
}

type wrapped struct{ e *Error }

func (w *wrapped) Error() string { return "wrapped: " + w.e.Error() }
func (w *wrapped) Unwrap() error { return w.e }

// TestDoFailsOver: with two controls listed, a call finds the live one
// after the dead one refused the connection, with no pause, and the next
// call goes straight to the one that answered; a control answering 503
// sends a safe call on to the next after a pause.
func TestDoFailsOver(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	var liveCalls, busyCalls atomic.Int32
	live := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		liveCalls.Add(1)
		io.WriteString(w, `{"ok":true}`)
	}))
	defer live.Close()
	busy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		busyCalls.Add(1)
		http.Error(w, `{"error":{"code":"unavailable","message":"no quorum"}}`, http.StatusServiceUnavailable)
	}))
	defer busy.Close()

	c := &Client{BaseURL: dead.URL + ", " + live.URL + "/", Token: "tok"}
	pauses := recordPauses(c)
	var out struct{ OK bool }
	if err := c.Do(t.Context(), Request{Method: "POST", Path: "/v1/purges", JSON: 1}, &out); err != nil || !out.OK {
		t.Fatalf("Do() = %v, %+v; want the live control's answer", err, out)
	}
	if len(*pauses) != 0 || liveCalls.Load() != 1 {
		t.Errorf("pauses %v, live calls %d; want none and 1", *pauses, liveCalls.Load())
	}
	if err := c.Do(t.Context(), Request{Path: "/v1/sites"}, nil); err != nil {
		t.Fatal(err)
	}
	if liveCalls.Load() != 2 {
		t.Errorf("second call: live calls %d, want 2 (straight to the control that answered)", liveCalls.Load())
	}

	c = &Client{BaseURL: busy.URL + "," + live.URL, Token: "tok"}
	pauses = recordPauses(c)
	if err := c.Do(t.Context(), Request{Path: "/v1/sites"}, nil); err != nil {
		t.Fatal(err)
	}
	if busyCalls.Load() != 1 || len(*pauses) != 1 {
		t.Errorf("busy control: %d calls, pauses %v; want 1 call and 1 pause before the next control", busyCalls.Load(), *pauses)
	}
	// A POST that is not safe to repeat is not sent to a second control
	// after the first answered 503: it may have done its work there.
	c = &Client{BaseURL: busy.URL + "," + live.URL, Token: "tok"}
	before := liveCalls.Load()
	if err := c.Do(t.Context(), Request{Method: "POST", Path: "/v1/x", JSON: 1}, nil); err == nil || liveCalls.Load() != before {
		t.Errorf("unsafe POST after a 503: %v, live calls +%d; want the 503 and none", err, liveCalls.Load()-before)
	}
}

func TestDoBadBaseURLInList(t *testing.T) {
	for _, base := range []string{"http://a,", "http://a, control:8443", " , "} {
		c := &Client{BaseURL: base, Token: "tok"}
		if err := c.Do(t.Context(), Request{Path: "/v1/sites"}, nil); !errors.Is(err, ErrBadBaseURL) {
			t.Errorf("Do() with BaseURL %q = %v, want ErrBadBaseURL", base, err)
		}
	}
}
