package edge

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"
)

// Request bodies on their way to an origin (issue 26). Over HTTP/2 and
// HTTP/3 a request's body arrives after its head; passed on as it
// arrives, a body that does not come holds an origin connection (and a
// transport's goroutines) for as long as the client likes: 1,000 pending
// POSTs once held 1,000 origin connections. nginx reads bodies first.
// Here a body up to body_buffer is read whole before the origin is
// contacted, within body_timeout; a larger one is passed on after its
// first body_buffer bytes came, and only max_streaming_bodies of those
// at once. (HTTP/1.1 bodies are read whole by fasthttp, within its read
// timeout, before the handler runs.)

var (
	// errBodyTimeout is a request body that did not come in time: 408.
	errBodyTimeout = errors.New("request body not received within body_timeout")
	// errBodyBusy is a large body with no streaming slot free in time: 503.
	errBodyBusy = errors.New("too many request bodies streaming to origins")
)

// bodyGate reads request bodies before they go to an origin. Safe for
// concurrent use; the zero value is not: build it with newBodyGate.
type bodyGate struct {
	buffer  int64         // bodies up to this are read whole first
	timeout time.Duration // bounds that read, and the wait for a slot
	slots   chan struct{} // one per large body streaming to an origin
}

func newBodyGate(buffer int64, timeout time.Duration, streaming int) *bodyGate {
	return &bodyGate{buffer: buffer, timeout: timeout, slots: make(chan struct{}, streaming)}
}

// take returns what to send the origin as r's body, its length (-1:
// unknown), and done, to call once the origin exchange is over. An error
// is errBodyTimeout, errBodyBusy, an *http.MaxBytesError past maxBody, or
// the client's.
func (g *bodyGate) take(w http.ResponseWriter, r *http.Request, maxBody int64) (body io.ReadCloser, size int64, done func(), err error) {
	if r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody {
		return http.NoBody, 0, func() {}, nil
	}
	if r.ContentLength > maxBody {
		return nil, 0, nil, &http.MaxBytesError{Limit: maxBody}
	}
	src := http.MaxBytesReader(w, r.Body, maxBody)
	head, complete, err := g.readHead(src, r)
	if err != nil {
		return nil, 0, nil, err
	}
	if complete {
		return io.NopCloser(bytes.NewReader(head)), int64(len(head)), func() {}, nil
	}
	// Larger than body_buffer: the rest is passed on as it comes, by at
	// most cap(slots) requests at once.
	t := time.NewTimer(g.timeout)
	defer t.Stop()
	select {
	case g.slots <- struct{}{}:
	case <-t.C:
		return nil, 0, nil, errBodyBusy
	case <-r.Context().Done():
		return nil, 0, nil, r.Context().Err()
	}
	rest := struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(head), src), src}
	return rest, r.ContentLength, func() { <-g.slots }, nil
}

// readHead reads src until it ends or passes g.buffer, within g.timeout,
// and reports whether it ended.
func (g *bodyGate) readHead(src io.Reader, r *http.Request) ([]byte, bool, error) {
	// A body that does not come is cut off by closing it: the read
	// fails (h2 and quic-go both wake a blocked Read on Close).
	var late atomic.Bool
	t := time.AfterFunc(g.timeout, func() {
		late.Store(true)
		r.Body.Close()
	})
	defer t.Stop()
	n := g.buffer + 1 // one more tells a body of exactly g.buffer from a larger one
	if r.ContentLength > 0 {
		n = min(n, r.ContentLength+1)
	}
	buf := bytes.NewBuffer(make([]byte, 0, min(n, 64<<10)))
	_, err := buf.ReadFrom(io.LimitReader(src, n))
	switch {
	case late.Load():
		return nil, false, errBodyTimeout
	case err != nil && r.Context().Err() != nil:
		return nil, false, r.Context().Err() // the client left: 499
	case err != nil:
		return nil, false, fmt.Errorf("read the request body: %w", err)
	}
	return buf.Bytes(), int64(buf.Len()) <= g.buffer, nil
}
