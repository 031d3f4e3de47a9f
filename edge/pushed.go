package edge

import (
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/selfcdn/cdn/edge/cache"
	"github.com/selfcdn/cdn/edge/release"
	"github.com/selfcdn/cdn/push"
)

// Pushed releases on the request path: a push site's live release answers
// before the cache does, so a switch takes effect for the next request;
// paths it does not hold go on to the cache and origin, or, on a
// push-only site, get the release's 404 page.

// pushedReleases holds each push site's live release by site name. A
// site's routes are rebuilt on every config change; the holder outlives
// them.
type pushedReleases struct {
	mu sync.Mutex // protects m
	m  map[string]*atomic.Pointer[release.Index]
}

// holder returns the site's release pointer, made on first use.
func (p *pushedReleases) holder(site string) *atomic.Pointer[release.Index] {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[string]*atomic.Pointer[release.Index]{}
	}
	ptr, ok := p.m[site]
	if !ok {
		ptr = new(atomic.Pointer[release.Index])
		p.m[site] = ptr
	}
	return ptr
}

// setRelease switches a site to x (nil: no release), in one step.
func (h *Handler) setRelease(site string, x *release.Index) { h.pushed.holder(site).Store(x) }

// servePushed answers from x (which may be nil on a push-only site) and
// reports whether it did; a path x does not hold is left to the cache,
// unless the site is push-only.
func (h *Handler) servePushed(w http.ResponseWriter, r *http.Request, s *site, x *release.Index, now time.Time) (outcome, bool) {
	var f *release.File
	var redirect *push.Redirect
	if x != nil {
		f, redirect = x.Lookup(r.URL.Path)
	}
	status := http.StatusOK
	switch {
	case f != nil:
	case redirect != nil:
		w.Header()["Location"] = []string{redirect.To}
		w.Header()["Cache-Status"] = h.statusPushed
		w.WriteHeader(redirect.Status)
		return outcome{status: redirect.Status, result: resultPushed}, true
	case !s.pushOnly:
		return outcome{}, false
	case x != nil && x.NotFound() != nil:
		f, status = x.NotFound(), http.StatusNotFound
	default:
		w.Header()["Cache-Status"] = h.statusPushed
		http.Error(w, "404 not found", http.StatusNotFound)
		return outcome{status: http.StatusNotFound, result: resultPushed}, true
	}
	v := f.Pick(r.Header["Accept-Encoding"])
	e, err := h.pushedEntry(v)
	if err != nil {
		// Dropped as corrupt or gone behind the edge's back: release sync
		// fetches it again. Meanwhile the origin answers, if there is one.
		h.log.Warn("pushed blob unreadable", slog.String("site", s.name), slog.String("path", r.URL.Path), slog.Any("err", err))
		if !s.pushOnly {
			return outcome{}, false
		}
		http.Error(w, "503 pushed content unavailable", http.StatusServiceUnavailable)
		return outcome{status: http.StatusServiceUnavailable, result: resultError}, true
	}
	defer e.Release()
	e.Status = status
	return h.serveEntry(w, r, e, h.statusPushed, resultPushed, now), true
}

// methodNotAllowed answers an unsafe method on a push-only site, which has
// no origin to pass it to.
func (h *Handler) methodNotAllowed(w http.ResponseWriter) outcome {
	w.Header()["Allow"] = []string{"GET, HEAD"}
	http.Error(w, "405 method not allowed", http.StatusMethodNotAllowed)
	return outcome{status: http.StatusMethodNotAllowed, result: resultPushed}
}

// pushedEntry opens v for one response: the body the index holds, the
// memory tier's copy, or the pinned file. A blob the memory tier could
// keep is read whole (once for concurrent requests), verified, and offered
// to it, so hot pushed files are served from memory like cache hits and
// admission keeps the hot ones; bigger blobs stream from disk.
func (h *Handler) pushedEntry(v *release.Variant) (*cache.Entry, error) {
	if v.Body != nil || v.Size == 0 || !h.mem.Fits(v.Size) {
		return v.Entry(h.pinned)
	}
	if m, ok := h.mem.Get(v.MemoryKey); ok {
		return v.WithBody(m.Body), nil
	}
	body, err, _ := h.pinnedReads.Do(v.MemoryKey, func() (any, error) {
		e, err := h.pinned.Open(v.Hash, v.Size)
		if err != nil {
			return nil, err
		}
		if e.Disk != nil { // the file records a longer body than the manifest
			e.Release()
			return nil, fmt.Errorf("pinned blob %s: %w: longer than its %d bytes", v.Hash, cache.ErrCorrupt, v.Size)
		}
		h.mem.PutBody(v.MemoryKey, e.Body)
		return e.Body, nil
	})
	if err != nil {
		return nil, err
	}
	return v.WithBody(body.([]byte)), nil
}
