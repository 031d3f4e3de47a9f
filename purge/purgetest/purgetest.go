// Package purgetest plays control's purge API for tests of its clients
// (purge.Client, cdn purge): it gives scripted answers in order, the last
// one repeated, and records every request. It does not import purge, so
// purge's own tests can use it.
package purgetest

import (
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
)

// Answer is what the fake API says to one request.
type Answer struct {
	Code       int
	Body       string
	RetryAfter string // the Retry-After header; "" for none
	Hangup     bool   // close the connection without answering
}

// Call is one request the fake API received.
type Call struct {
	Method, Path, Query string
	Auth, Key           string // the Authorization and Idempotency-Key headers
	Body                []byte
}

// API is a running fake, closed with the test.
type API struct {
	*httptest.Server
	// OnCall, if set before the first request, is called with the
	// request's number (from 1) before it is answered.
	OnCall func(n int)

	mu    sync.Mutex // guards calls
	calls []Call
}

// New starts a fake API that answers with answers, in order.
func New(t testing.TB, answers ...Answer) *API {
	t.Helper()
	a := &API{}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		a.mu.Lock()
		a.calls = append(a.calls, Call{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery,
			Auth: r.Header.Get("Authorization"), Key: r.Header.Get("Idempotency-Key"), Body: body})
		n := len(a.calls)
		a.mu.Unlock()
		if a.OnCall != nil {
			a.OnCall(n)
		}
		ans := answers[min(n, len(answers))-1]
		if ans.Hangup {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Errorf("hijack: %v", err)
				return
			}
			conn.Close()
			return
		}
		if ans.RetryAfter != "" {
			w.Header().Set("Retry-After", ans.RetryAfter)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(ans.Code)
		io.WriteString(w, ans.Body)
	}))
	t.Cleanup(a.Close)
	return a
}

// Calls returns the requests received so far.
func (a *API) Calls() []Call {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.calls)
}
