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
// timeout, before the handler runs.) A body of empty frames, which
// quic-go parses without limit and hands over as reads of nothing, ends
// after maxEmptyReads of them as a body that did not come.

var (
	// errBodyTimeout is a request body that did not come in time: 408.
	errBodyTimeout = errors.New("request body not received within body_timeout")
	// errBodyBusy is a large body with no streaming slot free in time: 503.
	errBodyBusy = errors.New("too many request bodies streaming to origins")
	// errBodyEmptyFrames is a body of empty frames: no more progress
	// than one that does not come, and 408 too.
	errBodyEmptyFrames = fmt.Errorf("%w: %d reads of nothing (empty DATA frames)", errBodyTimeout, maxEmptyReads)
)

// maxEmptyReads bounds the reads of a request body that return nothing:
// over HTTP/3 each empty DATA frame is one (issue 26; an HTTP/2 client's
// empty frames are counted by edge/h2's flood accounting instead).
const maxEmptyReads = 1024

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
func (g *bodyGate) take(w http.ResponseWriter, r *http.Request, maxBody int64) (body reqBody, size int64, done func(), err error) {
	if r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody {
		return wholeBody(nil), 0, func() {}, nil
	}
	if r.ContentLength > maxBody {
		return reqBody{}, 0, nil, &http.MaxBytesError{Limit: maxBody}
	}
	src := http.MaxBytesReader(w, &progressReader{r: r.Body}, maxBody)
	head, complete, err := g.readHead(src, r)
	if err != nil {
		r.Body.Close() // the client may stop sending (HTTP/3: STOP_SENDING)
		return reqBody{}, 0, nil, err
	}
	if complete {
		return wholeBody(head), int64(len(head)), func() {}, nil
	}
	// Larger than body_buffer: the rest is passed on as it comes, by at
	// most cap(slots) requests at once.
	t := time.NewTimer(g.timeout)
	defer t.Stop()
	select {
	case g.slots <- struct{}{}:
	case <-t.C:
		return reqBody{}, 0, nil, errBodyBusy
	case <-r.Context().Done():
		return reqBody{}, 0, nil, r.Context().Err()
	}
	rest := struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(head), src), src}
	return reqBody{r: rest}, r.ContentLength, func() { <-g.slots }, nil
}

// reqBody is a request body on its way to an origin: r, and again when
// the body was read whole (nil while it streams from the client, which
// can send it only once).
type reqBody struct {
	r     io.ReadCloser
	again func() (io.ReadCloser, error)
}

func wholeBody(b []byte) reqBody {
	if len(b) == 0 {
		return reqBody{r: http.NoBody, again: func() (io.ReadCloser, error) { return http.NoBody, nil }}
	}
	again := func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	r, _ := again()
	return reqBody{r: r, again: again}
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
	// Grown as bytes come: a body that does not come holds next to no
	// memory (a 64 KiB buffer each was a third of the CPU of a flood of
	// POSTs that never send their bodies, in allocation and GC).
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(min(n, 4<<10)))
	}
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

// progressReader fails a body after maxEmptyReads reads that returned
// nothing.
type progressReader struct {
	r     io.ReadCloser
	empty int
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n == 0 && err == nil && len(b) > 0 {
		if p.empty++; p.empty > maxEmptyReads {
			return 0, errBodyEmptyFrames
		}
	}
	return n, err
}

func (p *progressReader) Close() error { return p.r.Close() }
