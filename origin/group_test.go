package origin

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestFailover: each way a primary can fail sends the request to the
// backup, within a bounded time; an ordinary answer does not.
func TestFailover(t *testing.T) {
	const headerTimeout = 300 * time.Millisecond
	hang := func(t *testing.T) string {
		release := make(chan struct{})
		o := newCountingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		})
		t.Cleanup(func() { close(release) }) // runs before o.Close
		return o.URL
	}
	tests := []struct {
		name        string
		primary     func(t *testing.T) string // returns the primary's URL
		wantBackup  bool
		wantStatus  int
		wantResult  string // the primary's cdn_origin_requests_total result
		maxDuration time.Duration
	}{
		{name: "connection refused", primary: deadURL, wantBackup: true, wantStatus: 200, wantResult: "error"},
		{name: "503", primary: func(t *testing.T) string { return newCountingOrigin(t, answer(503, "down")).URL },
			wantBackup: true, wantStatus: 200, wantResult: "5xx"},
		{name: "504", primary: func(t *testing.T) string { return newCountingOrigin(t, answer(504, "slow")).URL },
			wantBackup: true, wantStatus: 200, wantResult: "5xx"},
		{name: "no header in time", primary: hang, wantBackup: true, wantStatus: 200, wantResult: "timeout",
			maxDuration: headerTimeout + time.Second},
		{name: "garbage instead of HTTP", primary: func(t *testing.T) string {
			return newRawOrigin(t, func(c net.Conn) {
				http.ReadRequest(bufio.NewReader(c))
				c.Write([]byte("\x16\x03\x01garbage, not HTTP at all\r\n\r\n"))
			}).URL()
		}, wantBackup: true, wantStatus: 200, wantResult: "error"},
		{name: "connection closed without an answer", primary: func(t *testing.T) string {
			return newRawOrigin(t, func(c net.Conn) { http.ReadRequest(bufio.NewReader(c)) }).URL()
		}, wantBackup: true, wantStatus: 200, wantResult: "error"},
		{name: "oversize header", primary: func(t *testing.T) string {
			return newCountingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("X-Big", strings.Repeat("x", 8<<10))
			}).URL
		}, wantBackup: true, wantStatus: 200, wantResult: "error"},
		{name: "404 is an answer", primary: func(t *testing.T) string { return newCountingOrigin(t, answer(404, "no")).URL },
			wantStatus: 404, wantResult: "4xx"},
		{name: "500 is an answer", primary: func(t *testing.T) string { return newCountingOrigin(t, answer(500, "bug")).URL },
			wantStatus: 500, wantResult: "5xx"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkGoroutines(t)
			backup := newCountingOrigin(t, answer(200, "backup"))
			p, _, _ := newTestPool(t, Config{HeaderTimeout: headerTimeout, MaxHeaderBytes: 4 << 10})
			primary := tt.primary(t)
			g, err := p.Group(GroupConfig{Site: "s", Targets: []Target{
				{URL: backup.URL, Backup: true, Name: "backup"}, // order in the list does not matter
				{URL: primary, Name: "primary"},
			}})
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			res, ans, err := get(t, g, "/a?b=c")
			took := time.Since(start)
			if err != nil {
				t.Fatalf("Do = %v, want an answer", err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != tt.wantStatus || ans.Backup != tt.wantBackup {
				t.Errorf("Do = %d %q from %+v, want %d from backup %v", res.StatusCode, body, ans, tt.wantStatus, tt.wantBackup)
			}
			if tt.maxDuration > 0 && took > tt.maxDuration {
				t.Errorf("Do took %s, want at most %s", took, tt.maxDuration)
			}
			if got := testutil.ToFloat64(p.m.requests.WithLabelValues("s", "primary", tt.wantResult)); got != 1 {
				t.Errorf("cdn_origin_requests_total{origin=primary,result=%s} = %v, want 1", tt.wantResult, got)
			}
			wantFailovers := 0.0
			if tt.wantBackup {
				wantFailovers = 1
			}
			if got := testutil.ToFloat64(p.m.failovers.WithLabelValues("s", "primary", "backup")); got != wantFailovers {
				t.Errorf("cdn_origin_failovers_total = %v, want %v", got, wantFailovers)
			}
		})
	}
}

// TestPrimaryDies: a primary whose listener closes mid-test costs no
// client an error; the backup answers everything after it.
func TestPrimaryDies(t *testing.T) {
	checkGoroutines(t)
	primary := newCountingOrigin(t, answer(200, "primary"))
	backup := newCountingOrigin(t, answer(200, "backup"))
	p, _, _ := newTestPool(t, Config{})
	g, err := p.Group(GroupConfig{Site: "s", Targets: []Target{{URL: primary.URL}, {URL: backup.URL, Backup: true}}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		if i == 10 {
			primary.Close()
		}
		res, ans, err := get(t, g, "/x")
		if err != nil {
			t.Fatalf("request %d: %v, want an answer", i, err)
		}
		res.Body.Close()
		if wantBackup := i >= 10; ans.Backup != wantBackup || res.StatusCode != 200 {
			t.Errorf("request %d: %d from %+v, want 200 from backup %v", i, res.StatusCode, ans, wantBackup)
		}
	}
	if got := backup.hits.Load(); got != 30 {
		t.Errorf("backup hits = %d, want 30", got)
	}
	// The breaker (5 failures by default) spares the rest a failed dial.
	pl, bl := strings.TrimPrefix(primary.URL, "http://"), strings.TrimPrefix(backup.URL, "http://")
	if got := testutil.ToFloat64(p.m.failovers.WithLabelValues("s", pl, bl)); got != 5 {
		t.Errorf("cdn_origin_failovers_total = %v, want 5 (then the breaker opens)", got)
	}
	if got := testutil.ToFloat64(p.m.breaker.WithLabelValues(pl)); got != float64(stateOpen) {
		t.Errorf("cdn_origin_breaker_state{origin=primary} = %v, want 2 (open)", got)
	}
}

// TestRedirectNotFollowed: a redirect is an answer to store, even one
// that points at itself.
func TestRedirectNotFollowed(t *testing.T) {
	checkGoroutines(t)
	o := newCountingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, r.URL.RequestURI(), http.StatusMovedPermanently)
	})
	p, _, _ := newTestPool(t, Config{})
	g, err := p.Group(GroupConfig{Targets: []Target{{URL: o.URL}}})
	if err != nil {
		t.Fatal(err)
	}
	res, _, err := get(t, g, "/loop")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 301 || res.Header.Get("Location") != "/loop" || o.hits.Load() != 1 {
		t.Errorf("Do = %d Location %q after %d origin hits, want the 301 to /loop after 1", res.StatusCode, res.Header.Get("Location"), o.hits.Load())
	}
}

// TestUnsafeMethods: a POST goes to a second origin only when the first
// never got it, and only with a body that can be sent again.
func TestUnsafeMethods(t *testing.T) {
	tests := []struct {
		name        string
		primary     func(t *testing.T) string
		noGetBody   bool
		wantStatus  int // 0: an error
		wantBackup  int64
		wantAnswers string // the body the answering origin received
	}{
		{name: "503 after the origin read it", primary: func(t *testing.T) string {
			return newCountingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
				io.ReadAll(r.Body)
				w.WriteHeader(503)
			}).URL
		}, wantStatus: 503, wantBackup: 0},
		{name: "connection refused", primary: deadURL, wantStatus: 200, wantBackup: 1, wantAnswers: "payload"},
		{name: "connection refused, body not rebuildable", primary: deadURL, noGetBody: true, wantBackup: 0},
		{name: "connection closed after the request", primary: func(t *testing.T) string {
			return newRawOrigin(t, func(c net.Conn) {
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err == nil {
					io.ReadAll(req.Body)
				}
			}).URL()
		}, wantBackup: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkGoroutines(t)
			var got atomic.Pointer[string] // the body the backup received
			backup := newCountingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				s := string(b)
				got.Store(&s)
			})
			p, _, _ := newTestPool(t, Config{})
			g, err := p.Group(GroupConfig{Targets: []Target{{URL: tt.primary(t)}, {URL: backup.URL, Backup: true}}})
			if err != nil {
				t.Fatal(err)
			}
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://ignored/", bytes.NewReader([]byte("payload")))
			if tt.noGetBody {
				req.GetBody = nil
			}
			res, _, err := g.Do(req, "/form")
			status := 0
			if err == nil {
				status = res.StatusCode
				res.Body.Close()
			}
			if status != tt.wantStatus || backup.hits.Load() != tt.wantBackup {
				t.Errorf("Do = %d, %v with %d backup hits, want %d with %d", status, err, backup.hits.Load(), tt.wantStatus, tt.wantBackup)
			}
			if b := got.Load(); tt.wantBackup > 0 && (b == nil || *b != tt.wantAnswers) {
				t.Errorf("backup got body %v, want %q", b, tt.wantAnswers)
			}
			if tt.wantStatus == 0 {
				var oe *Error
				if !errors.As(err, &oe) {
					t.Errorf("Do error = %v, want an *origin.Error", err)
				}
			}
		})
	}
}

// TestLastFailureReturned: when every origin fails, Do returns the last
// failover answer (its Retry-After and body may help the client) or the
// last error, still telling a timeout (504) from the rest (502).
func TestLastFailureReturned(t *testing.T) {
	checkGoroutines(t)
	unavailable := newCountingOrigin(t, answer(503, "busy"))
	release := make(chan struct{})
	hang := newCountingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { close(release) })
	p, _, _ := newTestPool(t, Config{HeaderTimeout: 100 * time.Millisecond})
	tests := []struct {
		name        string
		targets     []Target
		wantStatus  int
		wantTimeout bool
		wantBackup  bool // Answered names the target whose answer or error is returned
	}{
		{name: "503 then refused", targets: []Target{{URL: unavailable.URL}, {URL: deadURL(t), Backup: true}}, wantStatus: 503},
		{name: "refused then 503", targets: []Target{{URL: deadURL(t)}, {URL: unavailable.URL, Backup: true}}, wantStatus: 503, wantBackup: true},
		{name: "refused then timeout", targets: []Target{{URL: deadURL(t)}, {URL: hang.URL, Backup: true}}, wantTimeout: true, wantBackup: true},
		{name: "timeout then refused", targets: []Target{{URL: hang.URL}, {URL: deadURL(t), Backup: true}}, wantBackup: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := p.Group(GroupConfig{Targets: tt.targets})
			if err != nil {
				t.Fatal(err)
			}
			res, ans, err := get(t, g, "/")
			status := 0
			if err == nil {
				status = res.StatusCode
				res.Body.Close()
			}
			if status != tt.wantStatus || errors.Is(err, ErrTimeout) != tt.wantTimeout || ans.Attempts != 2 || ans.Backup != tt.wantBackup {
				t.Errorf("Do = %d, %v, %+v; want %d, timeout %v, backup %v after 2 attempts", status, err, ans, tt.wantStatus, tt.wantTimeout, tt.wantBackup)
			}
		})
	}
}

// TestClientGone: a client that leaves ends Do at once and tells the
// breaker nothing about the origin.
func TestClientGone(t *testing.T) {
	checkGoroutines(t)
	release := make(chan struct{})
	hang := newCountingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { close(release) })
	backup := newCountingOrigin(t, answer(200, "backup"))
	p, _, _ := newTestPool(t, Config{})
	g, err := p.Group(GroupConfig{Targets: []Target{{URL: hang.URL}, {URL: backup.URL, Backup: true}}, Breaker: Breaker{Failures: 1}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://ignored/", nil)
	start := time.Now()
	_, _, err = g.Do(req, "/")
	if err == nil || time.Since(start) > 2*time.Second || backup.hits.Load() != 0 {
		t.Errorf("Do = %v after %s with %d backup hits, want an error at once and no backup hit", err, time.Since(start), backup.hits.Load())
	}
	if s := g.targets[0].br.current(); s != stateClosed {
		t.Errorf("primary breaker = %s, want closed", s)
	}
}

// TestPrimaryDiesUnderLoad: concurrent clients see no error while the
// primary goes away under them.
func TestPrimaryDiesUnderLoad(t *testing.T) {
	checkGoroutines(t)
	primary := newCountingOrigin(t, answer(200, "primary"))
	backup := newCountingOrigin(t, answer(200, "backup"))
	p, _, _ := newTestPool(t, Config{})
	g, err := p.Group(GroupConfig{Targets: []Target{{URL: primary.URL}, {URL: backup.URL, Backup: true}}})
	if err != nil {
		t.Fatal(err)
	}
	const workers, each = 8, 40
	var failed atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				if w == 0 && i == each/4 {
					primary.Close() // waits for requests in flight
				}
				res, _, err := get(t, g, "/x")
				if err != nil {
					failed.Add(1)
					t.Errorf("worker %d request %d: %v", w, i, err)
					continue
				}
				if _, err := io.Copy(io.Discard, res.Body); err != nil {
					failed.Add(1)
					t.Errorf("worker %d request %d body: %v", w, i, err)
				}
				res.Body.Close()
			}
		})
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Errorf("%d of %d requests failed, want none", n, workers*each)
	}
	if backup.hits.Load() == 0 {
		t.Errorf("backup was never asked")
	}
}
