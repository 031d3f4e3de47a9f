package edge

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"maps"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/selfcdn/cdn/edge/byterange"
	"github.com/selfcdn/cdn/edge/cache"
	"github.com/selfcdn/cdn/edge/contentcoding"
	"github.com/selfcdn/cdn/edge/fill"
	"github.com/selfcdn/cdn/internal/accesslog"
	"github.com/selfcdn/cdn/internal/httpstats"
	"github.com/selfcdn/cdn/origin"
)

var (
	errUnknownHost  = errors.New("no site for this host")
	errNotCached    = errors.New("only-if-cached and not in cache")
	errShuttingDown = errors.New("edge shutting down")
	errNoOrigin     = errors.New("the site has no origin")
)

// entryAge is the Age a stored entry answers with (RFC 9111 §5.1), the
// same on every protocol; nil for pushed content, which has no age.
func entryAge(e *cache.Entry, now time.Time) []string {
	if e.Meta.ResponseTime.IsZero() {
		return nil
	}
	return ageHeader(e.Meta.Age(now))
}

// ageValues holds the Age header values of the first hour, so a hit does
// not format a number.
var ageValues = func() [3600][]string {
	var a [3600][]string
	for i := range a {
		a[i] = []string{strconv.Itoa(i)}
	}
	return a
}()

func ageHeader(d time.Duration) []string {
	s := int64(d / time.Second)
	if s < int64(len(ageValues)) {
		return ageValues[max(s, 0)]
	}
	return []string{strconv.FormatInt(s, 10)}
}

// serveEntry answers from a stored entry. The header values were prepared
// at store time; only Age and Cache-Status are per request.
func (h *Handler) serveEntry(w http.ResponseWriter, r *http.Request, e *cache.Entry, status []string, res result, now time.Time) outcome {
	hdr := w.Header()
	maps.Copy(hdr, e.Header)
	if age := entryAge(e, now); age != nil {
		hdr["Age"] = age
	}
	hdr["Cache-Status"] = status
	tagsForPeer(hdr, r, e.Tags)
	if e.Status == http.StatusOK && hasValidators(r.Header) {
		return h.serveContent(w, r, e, res)
	}
	w.WriteHeader(e.Status)
	if r.Method == http.MethodHead {
		return outcome{status: e.Status, result: res}
	}
	if e.Disk != nil {
		// Only the HTTP/2 writer takes the mapped file itself: it copies
		// on this goroutine or leaves the copy to the kernel. HTTP/1.1
		// here comes through the bridge's pipe and HTTP/3 through
		// quic-go, which both copy on a goroutine of their own.
		write := e.Disk.CopyTo
		if r.ProtoMajor == 2 {
			write = e.Disk.WriteTo
		}
		n, err := write(w)
		// A block that fails its checksum cuts the client off: a short
		// body is never passed off as whole.
		return outcome{status: e.Status, result: res, bytes: n, abort: err != nil}
	}
	n, _ := w.Write(e.Body)
	return outcome{status: e.Status, result: res, bytes: int64(n)}
}

// serveContent answers conditional and range requests from a stored 200,
// with net/http's RFC 9110 §13 precondition and §14 range handling.
func (h *Handler) serveContent(w http.ResponseWriter, r *http.Request, e *cache.Entry, res result) outcome {
	hdr := w.Header()
	if _, ok := hdr["Content-Type"]; !ok {
		hdr["Content-Type"] = nil // the origin sent none; do not sniff one
	}
	// ServeContent sets the length of what it sends; a 412 or 304 sends
	// nothing, and a stale stored length would promise a body.
	delete(hdr, "Content-Length")
	normalizeRange(r.Header, e.Size())
	cw := &httpstats.Writer{ResponseWriter: w}
	if e.Disk == nil {
		http.ServeContent(cw, r, "", e.LastModified, bytes.NewReader(e.Body))
		return outcome{status: cw.Status, result: res, bytes: cw.Bytes}
	}
	body := &readErr{ReadSeeker: io.NewSectionReader(e.Disk, 0, e.Disk.Size())}
	http.ServeContent(cw, r, "", e.LastModified, body)
	// ServeContent ends quietly on a read error; a block that failed its
	// checksum must cut the client off instead.
	return outcome{status: cw.Status, result: res, bytes: cw.Bytes, abort: body.err != nil}
}

// readErr remembers the first read error of a ReadSeeker.
type readErr struct {
	io.ReadSeeker
	err error
}

func (r *readErr) Read(p []byte) (int, error) {
	n, err := r.ReadSeeker.Read(p)
	if err != nil && err != io.EOF && r.err == nil {
		r.err = err
	}
	return n, err
}

// holdStatus is how long a miss's status waits for its body to start.
const holdStatus = 250 * time.Millisecond

// serveFlight answers from a fill in progress: the head at once, then the
// body as it arrives, compressed when the client takes gzip or zstd and
// the response is compressible (see encode.go). A head that a stored entry
// answers (revalidated, or stale for an origin error) is served as a hit.
func (h *Handler) serveFlight(w http.ResponseWriter, r *http.Request, s *site, fl *fill.Flight, head fill.Head, leader bool) outcome {
	defer fl.Body.Release()
	if head.Entry != nil {
		// Revalidated, or kept stale for an origin error: the stored entry
		// answers through the same path as a hit, with its compressed
		// copies, validators and ranges (issue 20: a browser's hard reload
		// got the whole body as identity).
		status, res := h.statusStaleError, resultStale
		if head.Revalidated {
			status, res = h.statusRevalidated, resultRevalidated
		}
		return h.serveEntry(w, r, h.encoded(head.Entry, r.Header["Accept-Encoding"]), status, res, h.now())
	}
	if r.Method != http.MethodHead {
		// Hold the status a moment for the body to start, so an origin that
		// breaks before its first byte still gets the client a clear 502
		// or 504; but not longer: a stream whose first event is late (a
		// long poll, server-sent events) must get its header (issue 20).
		wait, cancel := context.WithTimeout(r.Context(), holdStatus)
		err := fl.Body.WaitStart(wait)
		cancel()
		if err != nil && (r.Context().Err() != nil || !errors.Is(err, context.DeadlineExceeded)) {
			return h.fail(w, r, err)
		}
	}
	hdr := w.Header()
	maps.Copy(hdr, head.Header)
	res := resultMiss
	switch {
	case head.Revalidated:
		res = resultRevalidated
		hdr["Cache-Status"] = h.statusRevalidated
	case head.FromCache:
		res = resultStale
		hdr["Cache-Status"] = h.statusStaleError
	case !head.Shareable:
		res = resultPass
		hdr["Cache-Status"] = h.statusPass
	case !leader:
		hdr["Cache-Status"] = h.statusCollapsed
	case head.NotKept, contentLength(head.Header) > h.maxObject && !h.fill.KeepsOnDisk(contentLength(head.Header)):
		hdr["Cache-Status"] = h.statusMiss // too large to keep, or kept by the key's home
	default:
		hdr["Cache-Status"] = h.statusMissStored
	}
	if head.Upstream != "" {
		// The hop that answered, then us (RFC 9211 §2: the cache
		// nearest the origin first).
		hdr["Cache-Status"] = []string{head.Upstream + ", " + hdr["Cache-Status"][0]}
	}
	tagsForPeer(hdr, r, head.Tags)
	encodes := flightEncodable(head, h.maxObject)
	if encodes {
		// Later hits of this URL depend on Accept-Encoding; so does this
		// answer, for any cache downstream.
		addVaryAcceptEncoding(hdr)
	}
	if head.FromCache || (head.Shareable && head.Decision.Meta.InitialAge >= time.Second) {
		// From cache, or fresh from an origin that is itself a cache.
		hdr["Age"] = ageHeader(head.Decision.Meta.Age(h.now()))
	}
	if r.Method == http.MethodGet && head.Status == http.StatusOK && len(r.Header["Range"]) > 0 {
		if out, ok := h.serveFlightRange(w, r, s, fl, head, res); ok {
			return out
		}
	}
	coding := contentcoding.Identity
	if encodes {
		coding = contentcoding.Negotiate(r.Header["Accept-Encoding"])
		setCoded(hdr, coding)
	}
	w.WriteHeader(head.Status)
	if r.Method == http.MethodHead {
		return outcome{status: head.Status, result: res}
	}
	var n int64
	var err error
	if coding != contentcoding.Identity {
		n, err = writeCoded(r.Context(), w, fl.Body, coding)
	} else {
		flush := func() { http.NewResponseController(w).Flush() }
		n, err = fl.Body.WriteTo(r.Context(), w, flush)
	}
	out := outcome{status: head.Status, result: res, bytes: n}
	if err != nil && r.Context().Err() == nil {
		// The origin broke mid-body. Cut the client off so it cannot take
		// the short body for the whole one.
		out.abort = true
	}
	return out
}

// rangeAhead is how far past the bytes a fill has so far a range may start
// and still wait for the fill; farther ranges go to the origin.
const rangeAhead = 2 << 20

// serveFlightRange answers a range request from a fill in progress: from
// the fill's body when the bytes are there or close, else straight from the
// origin, so a range at the end of a large object does not wait for the
// whole object (the fill goes on in the background). ok is false when the
// Range header is to be ignored and the whole 200 sent. The response header
// is already in w.
func (h *Handler) serveFlightRange(w http.ResponseWriter, r *http.Request, s *site, fl *fill.Flight, head fill.Head, res result) (outcome, bool) {
	size := contentLength(head.Header)
	lm, _ := http.ParseTime(head.Header.Get("Last-Modified"))
	if size < 0 || !byterange.IfRange(r.Header.Get("If-Range"), head.Header.Get("Etag"), lm) {
		return outcome{}, false
	}
	ranges, err := byterange.Parse(r.Header.Get("Range"), size)
	switch {
	case errors.Is(err, byterange.ErrUnsatisfiable), errors.Is(err, byterange.ErrInvalid):
		byterange.Unsatisfiable(w, size)
		return outcome{status: http.StatusRequestedRangeNotSatisfiable, result: res}, true
	case err != nil:
		return outcome{}, false
	}
	var farthest int64
	for _, rg := range ranges {
		farthest = max(farthest, rg.Start)
	}
	if farthest > fl.Body.Size()+rangeAhead {
		clear(w.Header())
		return h.proxy(w, r, s, h.statusRangePass), true
	}
	n, err := byterange.Write(w, ranges, size, head.Header.Get("Content-Type"), fl.Body.At(r.Context()), false)
	return outcome{status: http.StatusPartialContent, result: res, bytes: n, abort: err != nil && r.Context().Err() == nil}, true
}

// normalizeRange rewrites a request's Range for net/http's ServeContent:
// ranges coalesced and bounded in count (byterange), and dropped where RFC
// 9110 §14.2 lets a server ignore them (unknown unit, too many ranges), so
// the whole representation is sent. Malformed and unsatisfiable ranges
// get ServeContent's 416 with Content-Range: bytes */size.
func normalizeRange(h http.Header, size int64) {
	v := h.Get("Range")
	if v == "" {
		return
	}
	ranges, err := byterange.Parse(v, size)
	switch {
	case errors.Is(err, byterange.ErrUnknownUnit), errors.Is(err, byterange.ErrTooMany):
		delete(h, "Range")
	case errors.Is(err, byterange.ErrInvalid):
		// Answered 416 like an unsatisfiable range, with Content-Range.
		h["Range"] = []string{"bytes=" + strconv.FormatInt(size, 10) + "-"}
	case err == nil:
		b := make([]byte, 0, 64)
		b = append(b, "bytes="...)
		for i, rg := range ranges {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendInt(b, rg.Start, 10)
			b = append(b, '-')
			b = strconv.AppendInt(b, rg.Start+rg.Length-1, 10)
		}
		h["Range"] = []string{string(b)}
	}
}

// fail is the one place an error becomes a status.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) outcome {
	var status int
	var detail string
	var tooBig *http.MaxBytesError
	refused, isRefusal := refusalOf(err)
	switch {
	case errors.Is(err, errUnknownHost):
		status, detail = http.StatusMisdirectedRequest, "unknown-host"
	case isRefusal:
		status, detail = refused.status, refused.detail
		if status == http.StatusMethodNotAllowed {
			w.Header()["Allow"] = []string{allowedMethods}
		}
	case errors.Is(err, errBodyTimeout):
		status, detail = http.StatusRequestTimeout, "body-timeout"
	case errors.Is(err, errBodyBusy):
		status, detail = http.StatusServiceUnavailable, "body-busy"
	case errors.Is(err, errNotCached):
		status, detail = http.StatusGatewayTimeout, "only-if-cached"
	case errors.As(err, &tooBig):
		status, detail = http.StatusRequestEntityTooLarge, "body-too-large"
	case errors.Is(err, origin.ErrTimeout):
		status, detail = http.StatusGatewayTimeout, "origin-timeout"
	case errors.Is(err, errShuttingDown):
		status, detail = http.StatusServiceUnavailable, "shutting-down"
	case errors.Is(err, errPurgesBehind):
		status, detail = http.StatusServiceUnavailable, "purges-behind"
	case errors.Is(err, errLoop):
		status, detail = http.StatusLoopDetected, "loop"
	case r.Context().Err() != nil && errors.Is(err, context.Canceled):
		// The client left; nobody reads what we would write.
		return outcome{status: 499, result: resultError}
	default:
		status, detail = http.StatusBadGateway, "origin-error"
	}
	hdr := w.Header()
	hdr["Cache-Status"] = []string{h.name + `; fwd=miss; detail="` + detail + `"`}
	hdr["Content-Type"] = []string{"text/plain; charset=utf-8"}
	hdr["Cache-Control"] = []string{"no-store"}
	hdr["Date"] = []string{h.now().UTC().Format(http.TimeFormat)}
	w.WriteHeader(status)
	n, _ := w.Write([]byte(http.StatusText(status) + ": " + detail + "\n"))
	return outcome{status: status, result: resultError, bytes: int64(n)}
}

// requestInfo is what the access log says about a request. Its strings
// may view the request's own bytes: the log copies them before the
// request ends.
type requestInfo struct {
	method, host, path, proto, remote string
	remoteAddr                        netip.AddrPort // instead of remote, when valid
}

// describer yields a requestInfo only when the access log wants one, so the
// HTTP/1.1 front copies no strings for a log that is off.
type describer interface{ describe() requestInfo }

type httpInfo struct{ r *http.Request }

func (i httpInfo) describe() requestInfo {
	r := i.r
	return requestInfo{method: r.Method, host: r.Host, path: r.URL.Path, proto: r.Proto, remote: r.RemoteAddr}
}

// observe records a finished request in the metrics and the access log.
func (h *Handler) observe(d describer, s *site, out outcome, start time.Time) {
	end := h.now()
	dur := end.Sub(start)
	if s != nil {
		s.metrics.requests[out.result][statusClass(out.status)].Inc()
		s.metrics.bytes[out.result].Add(float64(out.bytes))
	}
	h.metrics.durations[out.result].Observe(dur.Seconds())
	if h.access == nil {
		return
	}
	siteName := ""
	if s != nil {
		siteName = s.name
	}
	r := d.describe()
	h.access.Write(accesslog.Record{Time: end, Site: siteName, Method: r.method, Host: r.host, Path: r.path, Proto: r.proto,
		Status: out.status, Cache: out.result.String(), Bytes: out.bytes, Remote: r.remote, RemoteAddr: r.remoteAddr, Dur: dur})
}

// setH1Date starts an HTTP/1.1 response header with the answer's Date
// (date; empty when it has none). Call it before anything else is set on
// rh: it resets rh. fasthttp runs with NoDefaultDate, since its own Date
// would replace a stored response's, which a cache must not change (Age
// carries the time in cache); but it drops a Date set through its API,
// so the stored one is handed to its header parser. A response without
// Date gets fasthttp's, the time now (RFC 9110 §6.6.1).
func setH1Date(rh *fasthttp.ResponseHeader, date string) {
	if date == "" {
		rh.Reset() // back to fasthttp's own Date
		rh.SetNoDefaultContentType(true)
		return
	}
	// Parsing costs a hit a quarter of a microsecond; most hits repeat a
	// Date seen before (the hot objects), so the parsed header is kept
	// per Date and copied.
	dates := h1Dates.Load()
	if t, ok := dates.m.Load(date); ok {
		t.(*fasthttp.ResponseHeader).CopyTo(rh)
		return
	}
	if !parseH1Date(rh, date) {
		return
	}
	t := new(fasthttp.ResponseHeader)
	rh.CopyTo(t) // with rh's NoDefaultDate, which a fresh header lacks
	if dates.n.Add(1) > maxH1Dates {
		h1Dates.Store(new(h1DateCache)) // bounded: start over
	}
	dates.m.Store(date, t)
}

// h1DateCache maps a Date value to a response header holding just it.
type h1DateCache struct {
	m sync.Map // string -> *fasthttp.ResponseHeader, never changed once stored
	n atomic.Int64
}

// maxH1Dates bounds h1Dates: distinct Dates of hot objects, not every
// object's.
const maxH1Dates = 4096

var h1Dates = func() *atomic.Pointer[h1DateCache] {
	var p atomic.Pointer[h1DateCache]
	p.Store(new(h1DateCache))
	return &p
}()

// parseH1Date sets rh to a header holding date, by fasthttp's parser;
// false (and rh with fasthttp's own Date) when fasthttp refuses it.
func parseH1Date(rh *fasthttp.ResponseHeader, date string) bool {
	p := h1DateParsers.Get().(*h1DateParser)
	defer h1DateParsers.Put(p)
	// A length, as a header fresh from Reset has: without one the parser
	// takes the response as read-until-close and marks the connection to
	// be closed. The caller sets the real length.
	p.buf = append(append(append(p.buf[:0], "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nDate: "...), date...), "\r\n\r\n"...)
	p.r.Reset(p.buf)
	p.br.Reset(&p.r)
	if err := rh.Read(p.br); err != nil {
		// A value fasthttp will not send as is (a control character):
		// the time now instead.
		rh.Reset()
		rh.SetNoDefaultContentType(true)
		return false
	}
	return true
}

// h1DateParser is what setH1Date parses with, pooled so an HTTP/1.1 hit
// allocates nothing for it.
type h1DateParser struct {
	buf []byte
	r   bytes.Reader
	br  *bufio.Reader
}

var h1DateParsers = sync.Pool{New: func() any {
	p := &h1DateParser{}
	p.br = bufio.NewReaderSize(&p.r, 256)
	return p
}}

// contentLength is the declared body length, or -1.
func contentLength(h http.Header) int64 {
	n, err := strconv.ParseInt(h.Get("Content-Length"), 10, 64)
	if err != nil {
		return -1
	}
	return n
}
