package h2

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// stream is one request and its response. Its fields are guarded by the
// connection's mu.
type stream struct {
	id         uint32
	ctx        context.Context
	cancel     context.CancelFunc
	sendWindow int64 // response bytes we may send
	recvWindow int64 // request body bytes the client may send
	declared   int64 // request Content-Length, -1 if none
	received   int64 // request body bytes so far
	body       *requestBody
	remoteDone bool // END_STREAM received
	localDone  bool // END_STREAM sent
	closed     bool // forgotten: reset, or both sides done
}

// connectionHeaders are HTTP/1 connection-specific fields, which make an
// HTTP/2 request malformed (RFC 9113 §8.2.2) and are never sent.
var connectionHeaders = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Connection": true, "Transfer-Encoding": true, "Upgrade": true,
}

// newRequest builds the request a header block opens, or says why it is
// malformed (RFC 9113 §8.3.1).
func (sc *conn) newRequest(b *headerBlock) (*http.Request, error) {
	method, scheme := b.pseudo("method"), b.pseudo("scheme")
	authority, path := b.pseudo("authority"), b.pseudo("path")
	if b.pseudo("protocol") != "" {
		return nil, errors.New("extended CONNECT is not offered")
	}
	if method == http.MethodConnect {
		if path != "" || scheme != "" || authority == "" {
			return nil, errors.New("malformed CONNECT")
		}
	} else if method == "" || path == "" || (scheme != "http" && scheme != "https") {
		return nil, errors.New("missing or bad :method, :path or :scheme")
	}
	fields := b.regular()
	header := make(http.Header, len(fields))
	for _, hf := range fields {
		name := textproto.CanonicalMIMEHeaderKey(hf.Name)
		if connectionHeaders[name] {
			return nil, errors.New("connection-specific field " + hf.Name)
		}
		if name == "Te" && hf.Value != "trailers" {
			return nil, errors.New(`te other than "trailers"`)
		}
		header[name] = append(header[name], hf.Value)
	}
	if c := header["Cookie"]; len(c) > 1 {
		header["Cookie"] = []string{strings.Join(c, "; ")} // RFC 9113 §8.2.3
	}
	if authority == "" {
		authority = header.Get("Host")
	}
	var u *url.URL
	switch {
	case method == http.MethodConnect:
		u, path = &url.URL{Host: authority}, authority
	case path == "*":
		u = &url.URL{Path: "*"}
	default:
		var err error
		if u, err = url.ParseRequestURI(path); err != nil {
			return nil, errors.New("bad :path")
		}
	}
	r := &http.Request{
		Method: method, URL: u, Proto: "HTTP/2.0", ProtoMajor: 2, Header: header,
		Host: authority, RequestURI: path, RemoteAddr: sc.remote, TLS: sc.tls, ContentLength: -1,
	}
	if b.endStream {
		r.ContentLength = 0
	} else if cl := header["Content-Length"]; len(cl) > 0 {
		n, err := strconv.ParseUint(cl[0], 10, 63)
		if err != nil || len(cl) > 1 {
			return nil, errors.New("bad content-length")
		}
		r.ContentLength = int64(n)
	}
	return r, nil
}

// requestBody is a request's body as DATA frames bring it. Its fields
// are guarded by the connection's mu.
type requestBody struct {
	sc      *conn
	st      *stream
	buf     bytes.Buffer
	err     error // io.EOF once the body ended; set when no more comes
	closed  bool  // the handler is done with it
	unacked int64 // bytes read whose window is not given back yet
}

// windowUpdateMin batches WINDOW_UPDATE frames for bodies being read.
const windowUpdateMin = 16 << 10

var (
	errBodyStalled   = errors.New("h2: request body stalled")
	errWindowStalled = errors.New("h2: client did not open its flow-control window in time")
)

func (b *requestBody) Read(p []byte) (int, error) {
	sc := b.sc
	sc.mu.Lock()
	defer sc.mu.Unlock()
	var deadline time.Time // set once a wait starts
	for b.buf.Len() == 0 && b.err == nil && !b.closed && sc.broken == nil {
		if b.unacked > 0 {
			// Waiting for data: the client must be free to send it.
			b.giveBackLocked()
			sc.flushLocked()
		}
		if deadline.IsZero() {
			deadline = time.Now().Add(sc.srv.StallTimeout)
		}
		if !sc.waitLocked(deadline) {
			sc.resetStreamLocked(b.st.id, http2.ErrCodeCancel)
			sc.flushLocked()
			return 0, errBodyStalled
		}
	}
	switch {
	case b.closed:
		return 0, errors.New("h2: read on a closed request body")
	case b.buf.Len() == 0 && b.err == nil:
		return 0, sc.broken
	}
	if b.buf.Len() == 0 {
		return 0, b.err
	}
	n, _ := b.buf.Read(p)
	if b.unacked += int64(n); b.unacked >= windowUpdateMin {
		b.giveBackLocked()
		sc.flushLocked()
	}
	return n, nil
}

func (b *requestBody) giveBackLocked() {
	b.sc.giveBackLocked(b.st, b.unacked)
	b.unacked = 0
}

func (b *requestBody) Close() error {
	sc := b.sc
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	b.unacked += int64(b.buf.Len())
	b.buf.Reset()
	if b.unacked > 0 && sc.broken == nil {
		b.giveBackLocked()
		sc.flushLocked()
	}
	sc.cond.Broadcast()
	return nil
}

// responseWriter is a stream's http.ResponseWriter. Up to bufSize of body
// is held until the handler's writes reach its Content-Length, or it
// returns, so a small response goes out as HEADERS (with its
// Content-Length) and one DATA frame in one write.
type responseWriter struct {
	sc            *conn
	st            *stream
	head          bool
	handlerHeader http.Header
	status        int   // 0 until WriteHeader
	sentHeader    bool  // HEADERS sent
	contentLength int64 // from the handler's Content-Length, -1 if none
	written       int64
	buf           []byte
	err           error // the stream or connection failed
}

const bufSize = 16 << 10

func (w *responseWriter) Header() http.Header { return w.handlerHeader }

func (w *responseWriter) WriteHeader(code int) {
	if w.status != 0 || w.err != nil {
		return
	}
	if code < 100 || code > 999 {
		panic("h2: invalid WriteHeader code " + strconv.Itoa(code))
	}
	if code < 200 {
		if code != http.StatusSwitchingProtocols {
			w.sendInformational(code)
		}
		return
	}
	w.status = code
	if cl := w.handlerHeader.Get("Content-Length"); cl != "" {
		if n, err := strconv.ParseInt(cl, 10, 64); err == nil && n >= 0 {
			w.contentLength = n
		} else {
			w.handlerHeader.Del("Content-Length")
		}
	}
}

// bodyAllowed reports whether the response may have a body at all.
func (w *responseWriter) bodyAllowed() bool {
	return w.status != http.StatusNoContent && w.status != http.StatusNotModified
}

func (w *responseWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	switch {
	case w.err != nil:
		return 0, w.err
	case !w.bodyAllowed():
		return 0, http.ErrBodyNotAllowed
	case w.contentLength >= 0 && w.written+int64(len(p)) > w.contentLength:
		return 0, http.ErrContentLength
	case w.head:
		w.written += int64(len(p))
		return len(p), nil
	case len(p) == 0:
		return 0, nil
	}
	w.written += int64(len(p))
	complete := w.written == w.contentLength
	if len(w.buf)+len(p) <= bufSize && !complete {
		if w.buf == nil {
			w.buf = make([]byte, 0, bufSize)
		}
		w.buf = append(w.buf, p...)
		return len(p), nil
	}
	sc := w.sc
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if err := w.sendBufferedLocked(); err != nil {
		return 0, err
	}
	if err := w.dataLocked(p, complete); err != nil {
		return 0, err
	}
	if complete {
		return len(p), w.flushLocked()
	}
	return len(p), nil
}

// Flush sends what the handler wrote so far.
func (w *responseWriter) Flush() {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	w.sc.mu.Lock()
	defer w.sc.mu.Unlock()
	if w.sendBufferedLocked() == nil {
		w.flushLocked()
	}
}

// sendBufferedLocked sends the HEADERS, if not yet sent, and the body
// held so far, leaving the stream open.
func (w *responseWriter) sendBufferedLocked() error {
	if err := w.sendHeaderLocked(false); err != nil {
		return err
	}
	if len(w.buf) > 0 {
		if err := w.dataLocked(w.buf, false); err != nil {
			return err
		}
		w.buf = w.buf[:0]
	}
	return nil
}

// finish ends the response once the handler returned.
func (w *responseWriter) finish() {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	sc := w.sc
	sc.mu.Lock()
	defer sc.mu.Unlock()
	st := w.st
	switch {
	case w.err != nil || st.closed:
	case w.contentLength >= 0 && w.written < w.contentLength && !w.head && w.bodyAllowed():
		// Short of its Content-Length: the client must not take it
		// for the whole body.
		sc.writeRSTLocked(st.id, errCodeInternal)
		sc.closeStreamLocked(st, errStreamClosed)
		sc.flushLocked()
	case !w.sentHeader:
		if w.contentLength < 0 && w.bodyAllowed() && !w.head {
			w.contentLength = int64(len(w.buf))
			w.handlerHeader.Set("Content-Length", strconv.Itoa(len(w.buf)))
		}
		if w.sendHeaderLocked(len(w.buf) == 0) == nil && len(w.buf) > 0 {
			w.dataLocked(w.buf, true)
		}
	case !st.localDone:
		w.dataLocked(w.buf, true)
	}
	if !st.closed && sc.broken == nil {
		if !st.remoteDone {
			// The request body is not needed any more (RFC 9113 §8.1).
			sc.writeRSTLocked(st.id, errCodeNo)
		}
		sc.flushLocked()
		sc.closeStreamLocked(st, nil)
	}
	w.buf = nil
}

// writableLocked says why nothing can be written on the stream any more.
func (w *responseWriter) writableLocked() error {
	switch {
	case w.err != nil:
	case w.sc.broken != nil:
		w.err = w.sc.broken
	case w.st.closed:
		w.err = errStreamClosed
	}
	return w.err
}

func (w *responseWriter) flushLocked() error {
	if err := w.sc.flushLocked(); err != nil && w.err == nil {
		w.err = err
	}
	return w.err
}

// sendHeaderLocked sends the response's HEADERS, once.
func (w *responseWriter) sendHeaderLocked(endStream bool) error {
	if err := w.writableLocked(); err != nil || w.sentHeader {
		return err
	}
	w.sentHeader = true
	sc := w.sc
	sc.hbuf.Reset()
	sc.henc.WriteField(hpack.HeaderField{Name: ":status", Value: statusText(w.status)})
	w.encodeFieldsLocked()
	if _, ok := w.handlerHeader["Date"]; !ok {
		sc.henc.WriteField(hpack.HeaderField{Name: "date", Value: time.Now().UTC().Format(http.TimeFormat)})
	}
	if err := w.headerFramesLocked(endStream); err != nil {
		return err
	}
	if endStream {
		w.st.localDone = true
	}
	return nil
}

// sendInformational sends a 1xx response ahead of the final one.
func (w *responseWriter) sendInformational(code int) {
	sc := w.sc
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if w.writableLocked() != nil {
		return
	}
	sc.hbuf.Reset()
	sc.henc.WriteField(hpack.HeaderField{Name: ":status", Value: statusText(code)})
	w.encodeFieldsLocked()
	if w.headerFramesLocked(false) == nil {
		w.flushLocked()
	}
}

// encodeFieldsLocked HPACK-encodes the handler's header fields.
func (w *responseWriter) encodeFieldsLocked() {
	for k, vs := range w.handlerHeader {
		if connectionHeaders[k] || k == "Te" || k == "Trailer" || !httpguts.ValidHeaderFieldName(k) {
			continue
		}
		name := lowerHeader(k)
		for _, v := range vs {
			if httpguts.ValidHeaderFieldValue(v) {
				w.sc.henc.WriteField(hpack.HeaderField{Name: name, Value: v})
			}
		}
	}
}

// headerFramesLocked sends the encoded block in hbuf as HEADERS and
// CONTINUATION frames no larger than the client accepts.
func (w *responseWriter) headerFramesLocked(endStream bool) error {
	sc := w.sc
	block := sc.hbuf.Bytes()
	max := int(sc.maxFrame)
	frag := block[:min(len(block), max)]
	block = block[len(frag):]
	err := sc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: w.st.id, BlockFragment: frag, EndStream: endStream, EndHeaders: len(block) == 0})
	for err == nil && len(block) > 0 {
		frag = block[:min(len(block), max)]
		block = block[len(frag):]
		err = sc.fr.WriteContinuation(w.st.id, len(block) == 0, frag)
	}
	if err != nil {
		sc.failLocked(err)
		w.err = err
	}
	return err
}

// dataLocked sends p in DATA frames as flow control allows, waiting for
// the client's WINDOW_UPDATEs (with mu released) when it must. p is the
// caller's: whatever of it the connection's out references is written
// before dataLocked returns.
func (w *responseWriter) dataLocked(p []byte, endStream bool) error {
	err := w.framesLocked(p, endStream)
	if w.sc.out.refs > 0 {
		if ferr := w.flushLocked(); err == nil {
			err = ferr
		}
	}
	return err
}

func (w *responseWriter) framesLocked(p []byte, endStream bool) error {
	sc, st := w.sc, w.st
	if st.localDone || len(p) == 0 && !endStream {
		return nil
	}
	var deadline time.Time // set when a wait for window starts, cleared by progress
	sent := 0
	for {
		if err := w.writableLocked(); err != nil {
			return err
		}
		if sent >= yieldEvery {
			// Let the other streams and the read loop in between the
			// frames of a large body.
			sent = 0
			sc.mu.Unlock()
			sc.mu.Lock()
			continue
		}
		n := min(int64(len(p)), int64(sc.maxFrame), st.sendWindow, sc.sendWindow)
		if n <= 0 && len(p) > 0 {
			// Out of window: let the client see what it has, then wait.
			if w.flushLocked() != nil {
				return w.err
			}
			if deadline.IsZero() {
				deadline = time.Now().Add(sc.srv.StallTimeout)
			}
			if !sc.waitLocked(deadline) {
				sc.resetStreamLocked(st.id, http2.ErrCodeCancel)
				sc.flushLocked()
				w.err = errWindowStalled
				return w.err
			}
			continue
		}
		deadline = time.Time{}
		n = max(n, 0) // an empty END_STREAM frame while windows are negative
		sent += int(n)
		last := endStream && n == int64(len(p))
		if err := sc.out.dataFrame(st.id, last, p[:n]); err != nil {
			sc.failLocked(err)
			w.err = err
			return err
		}
		st.sendWindow -= n
		sc.sendWindow -= n
		p = p[n:]
		if last {
			st.localDone = true
		}
		if last || len(p) == 0 {
			return nil
		}
	}
}

// yieldEvery is how many body bytes one stream writes before it lets go
// of the connection's lock for a moment.
const yieldEvery = 64 << 10

// statusText is the :status value for code, without allocating for the
// common ones.
func statusText(code int) string {
	switch code {
	case 200:
		return "200"
	case 206:
		return "206"
	case 304:
		return "304"
	case 404:
		return "404"
	}
	return strconv.Itoa(code)
}

// commonLower maps canonical header names to their HTTP/2 (lower case)
// form without allocating.
var commonLower = map[string]string{}

func init() {
	for _, k := range []string{
		"Accept-Ranges", "Age", "Alt-Svc", "Cache-Control", "Cache-Status", "Cdn-Cache-Control", "Content-Encoding",
		"Content-Language", "Content-Length", "Content-Location", "Content-Range", "Content-Security-Policy",
		"Content-Type", "Date", "Etag", "Expires", "Last-Modified", "Link", "Location", "Retry-After", "Server",
		"Set-Cookie", "Strict-Transport-Security", "Surrogate-Key", "Vary", "Via", "Www-Authenticate",
		"X-Content-Type-Options", "X-Frame-Options", "Access-Control-Allow-Origin",
	} {
		commonLower[k] = strings.ToLower(k)
	}
}

func lowerHeader(k string) string {
	if v, ok := commonLower[k]; ok {
		return v
	}
	return strings.ToLower(k)
}
