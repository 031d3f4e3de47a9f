package origin

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestFetcherErrors(t *testing.T) {
	tests := []struct {
		name        string
		handler     http.HandlerFunc
		wantTimeout bool
	}{
		{name: "no header in time", handler: func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }, wantTimeout: true},
		{name: "connection reset", handler: func(w http.ResponseWriter, r *http.Request) {
			c, _, _ := w.(http.Hijacker).Hijack()
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := httptest.NewServer(tt.handler)
			defer o.Close()
			f := NewFetcher(Config{HeaderTimeout: 200 * time.Millisecond})
			defer f.Close()
			req, _ := http.NewRequestWithContext(t.Context(), "GET", o.URL, nil)
			res, err := f.Do(req)
			if err == nil {
				res.Body.Close()
				t.Fatalf("Do = nil error, want a failure")
			}
			var oe *Error
			if !errors.As(err, &oe) || errors.Is(err, ErrTimeout) != tt.wantTimeout {
				t.Errorf("Do error = %v (timeout %v), want an *origin.Error with timeout %v", err, errors.Is(err, ErrTimeout), tt.wantTimeout)
			}
		})
	}
}

// TestReadTimeoutCountsOnlyTheOrigin checks that time the caller spends
// between reads (writing to a slow client) is not charged to the origin,
// while an origin that stalls mid-body is cut off.
func TestReadTimeoutCountsOnlyTheOrigin(t *testing.T) {
	stall := make(chan struct{})
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(make([]byte, 100))
		w.(http.Flusher).Flush()
		if r.URL.Path == "/stall" {
			select {
			case <-stall:
			case <-r.Context().Done():
			}
		}
	}))
	defer o.Close()
	defer close(stall)
	f := NewFetcher(Config{ReadTimeout: 100 * time.Millisecond})
	defer f.Close()

	req, _ := http.NewRequestWithContext(t.Context(), "GET", o.URL+"/slow-reader", nil)
	res, err := f.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 10)
	res.Body.Read(buf)
	time.Sleep(300 * time.Millisecond) // the caller is busy; the origin is not stalling
	if _, err := io.ReadAll(res.Body); err != nil {
		t.Errorf("reading after a slow caller: %v, want the rest of the body", err)
	}
	res.Body.Close()

	req, _ = http.NewRequestWithContext(t.Context(), "GET", o.URL+"/stall", nil)
	res, err = f.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if _, err := io.ReadAll(res.Body); !errors.Is(err, ErrTimeout) {
		t.Errorf("reading a stalled body: %v, want ErrTimeout", err)
	}
}
