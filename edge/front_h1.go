package edge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/valyala/fasthttp"

	"github.com/selfcdn/cdn/edge/cache"
	"github.com/selfcdn/cdn/edge/fill"
	"github.com/selfcdn/cdn/edge/freshness"
	"github.com/selfcdn/cdn/edge/release"
	"github.com/selfcdn/cdn/edge/tier"
)

// The HTTP/1.1 front. HTTP/1.1 is served by fasthttp, which answers a
// small cached object with far less work per request than net/http; h2c
// (and later h2 and h3) stay on net/http. The cache path is the same for
// both: a plain fresh hit is found by the same lookup (h.find) and
// answered from the same entry, and every other request (misses, stale,
// ranges, conditionals, passes) runs the one net/http Handler through
// bridge, with its body streamed, never buffered whole.

// serveH1 answers one HTTP/1.1 request.
func (h *Handler) serveH1(ctx *fasthttp.RequestCtx) {
	if !validHost(b2s(ctx.Request.Header.Host())) {
		h.h1Error(ctx, errBadHost) // as sent: fasthttp's Host() drops a userinfo
		return
	}
	if h.serveH1Hit(ctx) {
		return
	}
	if ctx.IsConnect() {
		// Its authority-form target is no URL net/http would parse.
		h.h1Error(ctx, errConnect)
		return
	}
	h.bridge(ctx)
}

// acmeChallengePrefix is acmeChallengePath as bytes.
var acmeChallengePrefix = []byte(acmeChallengePath)

// plainHitBlockers are request fields that need the full request path
// (validation, ranges, conditionals, authorization, a peer's mark).
var plainHitBlockers = []string{"Cache-Control", "Authorization", "Range", "If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since", "If-Range", tier.PeerHeader}

// serveH1Hit answers a GET or HEAD that a fresh stored entry answers
// as is, and reports whether it did.
func (h *Handler) serveH1Hit(ctx *fasthttp.RequestCtx) bool {
	if !ctx.IsGet() && !ctx.IsHead() {
		return false
	}
	rh := &ctx.Request.Header
	for _, k := range plainHitBlockers {
		if rh.Peek(k) != nil {
			return false
		}
	}
	now := h.now()
	host := b2s(ctx.Host())
	if len(ctx.RequestURI()) > h.maxURI {
		return false // the full path refuses it
	}
	s := h.routes.Load().Lookup(host)
	if s == nil {
		return false
	}
	secure := ctx.IsTLS()
	if s.httpsRedirect && !secure {
		return false
	}
	if secure && !h.sameSite(ctx.TLSConnectionState().ServerName, host) {
		return false
	}
	uri := ctx.URI()
	path := uri.PathOriginal()
	if !plainPath(path) || (h.certs != nil && bytes.HasPrefix(path, acmeChallengePrefix)) {
		return false // let net/http's escaping (or its 400) decide the key
	}
	if x := s.release.Load(); x != nil || s.pushOnly {
		return h.serveH1Pushed(ctx, s, x, b2s(path), now) // pushed content answers before the cache
	}
	scheme := "http"
	if secure {
		scheme = "https"
	}
	// The one decision (h.decide); this front only writes a plain fresh
	// hit, and hands everything else to the full path.
	l := h.decide(s, scheme, host, b2s(path), b2s(uri.QueryString()), fastHeader{rh}, freshness.Directives{}, now)
	e := l.stored
	if e == nil || l.fresh != freshness.Fresh {
		e.Release()
		return false
	}
	if e.Encodable {
		e = h.encoded(e, oneAcceptEncoding(rh, new([1]string)))
	}
	h.writeH1(ctx, s, e, h.statusHit[0], resultHit, now)
	return true
}

// serveH1Pushed answers a file of release x as is and reports whether it
// did; redirects, 404s and paths x does not hold take the full path.
func (h *Handler) serveH1Pushed(ctx *fasthttp.RequestCtx, s *site, x *release.Index, path string, now time.Time) bool {
	if x == nil {
		return false
	}
	f, _ := x.Lookup(path)
	if f == nil {
		return false
	}
	e, err := h.pushedEntry(f.Pick(oneAcceptEncoding(&ctx.Request.Header, new([1]string))))
	if err != nil {
		return false // unreadable: the full path logs it and decides
	}
	h.writeH1(ctx, s, e, h.statusPushed[0], resultPushed, now)
	return true
}

// oneAcceptEncoding returns the request's Accept-Encoding as one field
// line, as browsers send it, held in buf so it does not allocate.
func oneAcceptEncoding(rh *fasthttp.RequestHeader, buf *[1]string) []string {
	v := rh.Peek("Accept-Encoding")
	if v == nil {
		return buf[:0]
	}
	buf[0] = b2s(v)
	return buf[:1]
}

// writeH1 sends e, a stored response answered as is, and releases it.
func (h *Handler) writeH1(ctx *fasthttp.RequestCtx, s *site, e *cache.Entry, cacheStatus string, res result, now time.Time) {
	resp := &ctx.Response
	h1Header(&resp.Header, e)
	if age := entryAge(e, now); age != nil {
		resp.Header.Set("Age", age[0])
	}
	resp.Header.Set("Cache-Status", cacheStatus)
	if ctx.IsTLS() {
		if h.altSvc != nil {
			resp.Header.Set("Alt-Svc", h.altSvc[0])
		}
		if s.hsts != nil {
			resp.Header.Set("Strict-Transport-Security", s.hsts[0])
		}
	}
	out := outcome{status: e.Status, result: res}
	switch {
	case e.Disk != nil && ctx.IsHead():
		e.Release()
		resp.Header.SetContentLength(int(e.Size()))
		resp.SkipBody = true
	case e.Disk != nil:
		// Streamed from disk, verified block by block; fasthttp closes the
		// reader when done and cuts the connection if a block is bad.
		var body io.ReadCloser = e.Disk.Reader()
		if h.sendFile && !ctx.IsTLS() {
			body = e.Disk.Sender() // see trackedConn.ReadFrom
		}
		resp.SetBodyStream(body, int(e.Size()))
		out.bytes = e.Size()
	default:
		resp.SetBodyRaw(e.Body) // entries are immutable: no copy
		if !ctx.IsHead() {
			out.bytes = int64(len(e.Body))
		}
	}
	h.observe(fastInfo{ctx}, s, out, now)
}

// h1Header sets rh to e's status and header as HTTP/1.1 sends them (its
// stored Date, no Content-Length: fasthttp frames the body). An entry
// kept for many hits has them prepared once and copied, not built again
// field by field (a third of a small hit's cost).
func h1Header(rh *fasthttp.ResponseHeader, e *cache.Entry) {
	if e.Front != nil {
		if t, ok := e.Front.Load().(*fasthttp.ResponseHeader); ok {
			t.CopyTo(rh)
			return
		}
	}
	setH1Date(rh, e.Header.Get("Date")) // first: it resets the header
	rh.SetStatusCode(e.Status)
	for k, vs := range e.Header {
		if k == "Content-Length" {
			continue
		}
		for _, v := range vs {
			rh.Add(k, v)
		}
	}
	if e.Front != nil {
		t := new(fasthttp.ResponseHeader)
		rh.CopyTo(t) // with the response's NoDefaultDate, which a fresh header lacks
		e.Front.Store(t)
	}
}

// fastHeader reads request header values from fasthttp for Vary.
type fastHeader struct{ h *fasthttp.RequestHeader }

func (f fastHeader) Values(name string) []string {
	var vs []string
	for _, v := range f.h.PeekAll(name) {
		vs = append(vs, string(v))
	}
	return vs
}

// bridge runs the net/http Handler for a fasthttp request. The handler runs
// in its own goroutine; its header is sent as soon as it is written, and
// its body flows through a pipe that fasthttp drains to the client, so a
// large miss streams with the same backpressure as on net/http.
func (h *Handler) bridge(ctx *fasthttp.RequestCtx) {
	// fasthttp cannot tell us the client left. The request's context ends
	// once the response is done with, or when the edge shuts down; a write
	// to a client that is gone fails when fasthttp closes the body.
	reqCtx, cancel := context.WithCancel(h.bgCtx)
	r, err := h1Request(ctx, reqCtx)
	if err != nil {
		cancel()
		h.h1Error(ctx, err) // a request target net/http cannot parse: 400
		return
	}
	pr, pw := io.Pipe()
	// At shutdown, unblocks a handler stuck writing into the pipe.
	stop := context.AfterFunc(reqCtx, func() { pr.CloseWithError(context.Cause(reqCtx)) })
	w := &bridgeWriter{header: make(http.Header), pw: pw, head: make(chan int, 1), interim: make(chan fill.Interim, 8)}
	done := make(chan struct{})
	serve := func() {
		defer close(done)
		defer func() {
			rec := recover()
			if rec != nil && rec != http.ErrAbortHandler {
				h.log.Error("handler panic", "err", fmt.Sprint(rec))
			}
			if rec != nil {
				w.sendHead(http.StatusBadGateway)
				pw.CloseWithError(errors.New("response aborted"))
				return
			}
			w.sendHead(http.StatusOK)
			pw.Close()
		}()
		h.ServeHTTP(w, r)
	}
	release := func() {
		stop()
		cancel()
	}
	if !h.goBackground(serve) {
		release()
		h.h1Error(ctx, errShuttingDown)
		return
	}
	status := w.waitHead(ctx)
	setH1Date(&ctx.Response.Header, w.snapshot.Get("Date")) // first: it resets the header
	ctx.SetStatusCode(status)
	// The header goes out on its own, not with the first body bytes: a
	// stream whose body comes late (server-sent events, a long poll, an
	// origin stalling) reaches the client as it arrives (issue 20).
	ctx.Response.ImmediateHeaderFlush = true
	size := contentLength(w.snapshot)
	for k, vs := range w.snapshot {
		if k == "Content-Length" {
			continue // fasthttp writes it from size
		}
		for _, v := range vs {
			ctx.Response.Header.Add(k, v)
		}
	}
	if ctx.IsHead() || status == http.StatusNotModified || status == http.StatusNoContent || status < 200 {
		// No body goes out: let the handler finish without one.
		pr.CloseWithError(errNoBody)
		<-done
		release()
		if size >= 0 {
			ctx.Response.Header.SetContentLength(int(size))
		}
		ctx.Response.SkipBody = true
		return
	}
	ctx.Response.SetBodyStream(&pipeBody{pr: pr, done: done, release: release}, int(size))
}

var errNoBody = errors.New("response has no body")

// h1Error answers a request fasthttp could not read, with the statuses
// net/http would use.
func (h *Handler) h1Error(ctx *fasthttp.RequestCtx, err error) {
	status, detail := fasthttp.StatusBadRequest, "bad-request"
	var small *fasthttp.ErrSmallBuffer
	var ne net.Error
	refused, isRefusal := refusalOf(err)
	switch {
	case isRefusal:
		status, detail = refused.status, refused.detail
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		status, detail = fasthttp.StatusRequestEntityTooLarge, "body-too-large"
	case errors.As(err, &small) && oneLine(small):
		status, detail = fasthttp.StatusRequestURITooLong, "uri-too-long"
	case errors.As(err, &small):
		status, detail = fasthttp.StatusRequestHeaderFieldsTooLarge, "header-too-large"
	case errors.As(err, &ne) && ne.Timeout():
		status, detail = fasthttp.StatusRequestTimeout, "request-timeout"
	case errors.Is(err, errShuttingDown):
		status, detail = fasthttp.StatusServiceUnavailable, "shutting-down"
	}
	ctx.Error(fasthttp.StatusMessage(status)+"\n", status) // resets the header: set ours after
	ctx.Response.Header.Set("Cache-Status", h.name+`; detail="`+detail+`"`)
	if status == fasthttp.StatusMethodNotAllowed {
		ctx.Response.Header.Set("Allow", allowedMethods)
	}
}

// oneLine reports whether a head that did not fit the read buffer was
// all one line: the request line alone, so its target is what is too
// long (414, not 431). fasthttp names only the buffer's first and last
// 200 bytes; a line break in neither means one line, as far as can be
// seen (pinned by TestHostileClients).
func oneLine(err *fasthttp.ErrSmallBuffer) bool {
	msg := err.Error()
	_, contents, ok := strings.Cut(msg, "contents: ")
	return ok && !strings.Contains(contents, `\n`)
}

// pipeBody is the response body fasthttp reads; closing it (fasthttp does
// when the response is written or the client is gone) unblocks the handler
// and waits for it to finish.
type pipeBody struct {
	pr      *io.PipeReader
	done    chan struct{}
	release func() // ends the request's context
}

func (p *pipeBody) Read(b []byte) (int, error) { return p.pr.Read(b) }

func (p *pipeBody) Close() error {
	p.pr.CloseWithError(errNoBody)
	<-p.done
	p.release()
	return nil
}

// bridgeWriter is the http.ResponseWriter the bridged handler writes to.
type bridgeWriter struct {
	header   http.Header
	snapshot http.Header // the header as of WriteHeader
	pw       *io.PipeWriter
	once     sync.Once
	head     chan int
	interim  chan fill.Interim // 1xx responses before head
}

func (w *bridgeWriter) Header() http.Header { return w.header }

func (w *bridgeWriter) WriteHeader(code int) {
	if code < 200 {
		if code != http.StatusSwitchingProtocols {
			select {
			case w.interim <- fill.Interim{Status: code, Header: w.header.Clone()}:
			default: // a flood of them: the rest are dropped
			}
		}
		return
	}
	w.sendHead(code)
}

// waitHead waits for the handler's status, writing the informational
// responses it sends before it to the client (HTTP/1.1 only).
func (w *bridgeWriter) waitHead(ctx *fasthttp.RequestCtx) int {
	for {
		select {
		case i := <-w.interim:
			writeH1Interim(ctx, i)
		case status := <-w.head:
			for {
				select {
				case i := <-w.interim:
					writeH1Interim(ctx, i)
				default:
					return status
				}
			}
		}
	}
}

// writeH1Interim writes an informational response straight to the
// connection, ahead of the final one fasthttp writes (as its EarlyHints
// does); HTTP/1.0 clients do not understand them and get none.
func writeH1Interim(ctx *fasthttp.RequestCtx, i fill.Interim) {
	if !ctx.Request.Header.IsHTTP11() {
		return
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\n", i.Status, http.StatusText(i.Status))
	for k, vs := range i.Header {
		for _, v := range vs {
			b.WriteString(k + ": " + v + "\r\n")
		}
	}
	b.WriteString("\r\n")
	ctx.Conn().Write(b.Bytes())
}

func (w *bridgeWriter) sendHead(code int) {
	w.once.Do(func() {
		w.snapshot = w.header.Clone()
		w.head <- code
	})
}

func (w *bridgeWriter) Write(p []byte) (int, error) {
	w.sendHead(http.StatusOK)
	return w.pw.Write(p)
}

// Flush has nothing to do: the pipe hands every write to fasthttp at once.
func (w *bridgeWriter) Flush() {}

// h1Request builds the net/http request for a fasthttp one. Every string is
// copied: fasthttp reuses its buffers for the connection's next request,
// while a fill started by this one may still run.
func h1Request(ctx *fasthttp.RequestCtx, base context.Context) (*http.Request, error) {
	uri := string(ctx.RequestURI())
	u, err := url.ParseRequestURI(uri)
	if err != nil {
		return nil, err
	}
	r := &http.Request{
		Method:     string(ctx.Method()),
		URL:        u,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     make(http.Header),
		Host:       string(ctx.Host()),
		RemoteAddr: ctx.RemoteAddr().String(),
		RequestURI: uri,
		TLS:        ctx.TLSConnectionState(),
	}
	if !ctx.Request.Header.IsHTTP11() {
		r.Proto, r.ProtoMinor = "HTTP/1.0", 0
	}
	for k, v := range ctx.Request.Header.All() {
		r.Header.Add(string(k), string(v))
	}
	delete(r.Header, "Host") // net/http keeps it in r.Host only
	body := ctx.PostBody()
	r.ContentLength = int64(len(body))
	r.Body = http.NoBody
	if len(body) > 0 {
		r.Body = io.NopCloser(bytes.NewReader(bytes.Clone(body)))
	}
	// fasthttp does not report a client hanging up before the response;
	// fetches and reads are bounded by the origin timeouts instead.
	return r.WithContext(base), nil
}

// fastInfo describes a fasthttp request for the access log.
type fastInfo struct{ ctx *fasthttp.RequestCtx }

func (f fastInfo) describe() requestInfo {
	info := requestInfo{
		method: b2s(f.ctx.Method()), host: b2s(f.ctx.Host()), path: b2s(f.ctx.Path()),
		proto: b2s(f.ctx.Request.Header.Protocol()),
	}
	if ta, ok := f.ctx.RemoteAddr().(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		info.remoteAddr = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	} else {
		info.remote = f.ctx.RemoteAddr().String()
	}
	return info
}

// b2s views b as a string without copying. Only for lookups that do not
// keep the string past the request.
func b2s(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// plainPath reports whether p is already in the form net/http's
// URL.EscapedPath gives it: only characters a path may carry unescaped and
// well-formed %XX escapes. For such paths both fronts build the same key.
func plainPath(p []byte) bool {
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("-._~/!$&'()*+,;=:@", c) >= 0:
		case c == '%' && i+2 < len(p) && isHexDigit(p[i+1]) && isHexDigit(p[i+2]):
			i += 2
		default:
			return false
		}
	}
	return true
}

func isHexDigit(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
