package edge

import (
	"io"
	"maps"
	"net/http"
	"time"

	"github.com/selfcdn/cdn/edge/cache"
	"github.com/selfcdn/cdn/internal/cachekey"
)

// pass sends a request the cache cannot answer (an unsafe or unknown
// method) to the origin and streams the answer back. A successful unsafe
// request invalidates the cached URL (RFC 9111 §4.4).
func (h *Handler) pass(w http.ResponseWriter, r *http.Request, s *site) outcome {
	return h.proxy(w, r, s, h.statusMethod)
}

// proxy sends r to the origin and streams the answer back uncached, with
// status as its Cache-Status.
func (h *Handler) proxy(w http.ResponseWriter, r *http.Request, s *site, status []string) outcome {
	if h.looped(r) {
		return h.fail(w, r, errLoop)
	}
	if s.origins == nil {
		return h.fail(w, r, errNoOrigin)
	}
	body, size, done, err := h.bodies.take(w, r, h.maxBody) // reqbody.go: small bodies come whole first
	if err != nil {
		return h.fail(w, r, err)
	}
	defer done()
	// The origin's 1xx answers reach the client at once; the transport
	// reports them while this goroutine waits in Do, not writing to w.
	ctx := withInterims(r.Context(), func(code int, hdr http.Header) { writeInterim(w, code, hdr) })
	out, err := http.NewRequestWithContext(ctx, r.Method, "http://origin"+r.URL.RequestURI(), body.r)
	if err != nil {
		return h.fail(w, r, err)
	}
	out.ContentLength = size
	out.GetBody = body.again // a body read whole may go to a backup origin
	out.Header = h.originHeader(r, s)
	out.Host = r.Host
	res, _, err := s.origins.Do(out, r.URL.RequestURI())
	if err != nil {
		h.metrics.fetches.WithLabelValues(s.name, "error").Inc()
		return h.fail(w, r, err)
	}
	defer res.Body.Close()
	h.metrics.fetches.WithLabelValues(s.name, statusClasses[statusClass(res.StatusCode)]).Inc()
	if unsafeMethod(r.Method) && res.StatusCode < 400 {
		h.invalidate(r, s, res.Header)
	}
	hdr := w.Header()
	maps.Copy(hdr, h.clientHeader(res.Header))
	hdr["Cache-Status"] = status
	w.WriteHeader(res.StatusCode)
	n, err := io.Copy(flushWriter{w}, res.Body)
	o := outcome{status: res.StatusCode, result: resultPass, bytes: n}
	if err != nil && r.Context().Err() == nil {
		o.abort = true
	}
	return o
}

// invalidate drops the request URL and the same-host Location and
// Content-Location of the response from the cache.
func (h *Handler) invalidate(r *http.Request, s *site, res http.Header) {
	sch := scheme(r)
	h.tombstone(cachekey.WithHeaders(cachekey.New(sch, r.Host, r.URL.EscapedPath(), r.URL.RawQuery, s.keyRules), s.keyRules.PassHeaders, r.Header))
	for _, name := range []string{"Location", "Content-Location"} {
		v := res.Get(name)
		if v == "" {
			continue
		}
		u, err := r.URL.Parse(v)
		if err != nil || (u.Host != "" && u.Host != r.Host) {
			continue
		}
		h.tombstone(cachekey.WithHeaders(cachekey.New(sch, r.Host, u.EscapedPath(), u.RawQuery, s.keyRules), s.keyRules.PassHeaders, r.Header))
	}
}

// tombstoneTTL is how long an invalidation is remembered against fills
// that were already running; longer than any fill of a cacheable object.
const tombstoneTTL = 10 * time.Minute

// tombstone replaces the entry (or Vary index, orphaning its variants) at
// base with a marker, so a fill that started before now does not store.
func (h *Handler) tombstone(base string) {
	h.mem.PutMarker(base, &cache.Entry{Tombstone: true, Invalidated: h.inval.Add(1)}, tombstoneTTL)
	if h.disk != nil {
		h.disk.Delete(base)
	}
	// A finished fill still in the group (writing a large body to disk)
	// must not hand the old body to requests that come after this.
	h.group.Forget(base, base+"\x00")
}

func unsafeMethod(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return false
	}
	return true
}

// flushWriter flushes after every write, so a streamed pass-through
// response (server-sent events, long polls) reaches the client at once.
type flushWriter struct{ w http.ResponseWriter }

func (f flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if err == nil {
		err = http.NewResponseController(f.w).Flush()
	}
	return n, err
}
