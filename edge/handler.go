package edge

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/selfcdn/cdn/edge/cache"
	"github.com/selfcdn/cdn/edge/certs"
	"github.com/selfcdn/cdn/edge/fill"
	"github.com/selfcdn/cdn/edge/freshness"
	"github.com/selfcdn/cdn/edge/tier"
	"github.com/selfcdn/cdn/internal/accesslog"
	"github.com/selfcdn/cdn/internal/cachekey"
	"github.com/selfcdn/cdn/internal/routing"
	"github.com/selfcdn/cdn/origin"
	"github.com/selfcdn/cdn/purge"
	"golang.org/x/sync/singleflight"
)

// Handler is the edge's request path, the same for every protocol: route by
// Host, build the cache key, look the key up, and answer from the cache,
// from a shared origin fetch, or by passing the request through.
type Handler struct {
	name        string
	via         string
	routes      atomic.Pointer[routing.Table[site]]
	keyRules    atomic.Pointer[map[string]cachekey.Rules] // by site name, with routes
	mem         *cache.Memory
	disk        *cache.Disk // nil: no disk tier
	group       *fill.Group
	fill        *fill.Filler       // runs the fills; the handler starts them (fill.go)
	compressing singleflight.Group // one compression per body and coding
	pinnedReads singleflight.Group // one read of a pinned blob into memory at a time
	// origins holds every site's origin servers: their connection
	// pools, health checks and breakers, kept across site reloads.
	origins *origin.Pool
	// tier routes misses through the key's home edge and the shield
	// (peer.go); without a control link it routes nothing.
	tier      *tier.Tier
	maxBody   int64
	bodies    *bodyGate // request bodies read before they go to an origin
	maxURI    int       // longer request targets get 414
	maxObject int64     // bodies larger than this are streamed, not stored
	// diskInline is the largest disk object read whole and promoted to
	// memory on a hit; larger ones stream from disk, so a memory tier too
	// small for them is not churned by one read per hit.
	diskInline int64
	access     *accesslog.Log // nil: no access log
	sendFile   bool           // disk bodies on plain HTTP/1.1 go out with sendfile
	log        *slog.Logger
	metrics    *metrics
	now        func() time.Time

	// bgCtx scopes fetches that outlive their request; bg waits for them
	// and for the HTTP/1.1 bridge's handler goroutines.
	bgCtx  context.Context
	bgMu   sync.Mutex // protects closed, and orders bg.Add before bg.Wait
	closed bool
	bg     sync.WaitGroup
	// purges are every site's purge rules and the purge clock that
	// stamps each fill.
	purges *purge.Table
	inval  atomic.Uint64 // invalidations so far; see cache.Entry.Invalidated

	// pinned holds pushed blobs and pushed each push site's live
	// release; pinned is nil without a control link.
	pinned *cache.Pinned
	pushed pushedReleases

	// certs answers ACME http-01 challenges; nil without HTTPS.
	certs *certs.Manager
	// altSvc advertises HTTP/3 on HTTPS responses; nil without it.
	altSvc []string
	// httpsPort is the port redirects to HTTPS name.
	httpsPort string

	// Cache-Status values prepared once (RFC 9211).
	statusHit, statusStale, statusMiss, statusMissStored, statusCollapsed []string
	statusRevalidated, statusStaleError, statusPass, statusMethod         []string
	statusRangePass, statusPushed                                         []string
	// afterMiss, in tests, runs between a miss's lookup and its join.
	afterMiss func(*http.Request)
}

// outcome is what a request step reports for metrics and the access log.
type outcome struct {
	status int
	result result
	bytes  int64
	// abort asks ServeHTTP to cut the connection: the body broke after the
	// status was sent, and a clean end would pass a short body as whole.
	abort bool
}

// ServeHTTP answers one request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := h.now()
	if err := h.checkRequest(r); err != nil {
		h.observe(httpInfo{r}, nil, h.fail(w, r, err), start)
		return
	}
	s := h.routes.Load().Lookup(r.Host)
	var mark tier.Mark
	if len(r.Header[tier.PeerHeader]) > 0 {
		r, mark = h.receivedFromPeer(r)
	}
	var out outcome
	if r.TLS != nil {
		h.addSecure(w.Header(), s, r.ProtoMajor)
	} else if h.certs != nil && strings.HasPrefix(r.URL.Path, acmeChallengePath) && h.certs.HandleHTTPChallenge(w, r) {
		return
	}
	switch {
	case r.TLS == nil && s != nil && s.httpsRedirect:
		out = h.redirectHTTPS(w, r)
	case s == nil:
		out = h.fail(w, r, errUnknownHost)
	case r.Method == http.MethodGet || r.Method == http.MethodHead:
		out = h.serveCacheable(w, r, s, start)
	case s.pushOnly:
		out = h.methodNotAllowed(w)
	default:
		out = h.pass(w, r, s)
	}
	h.observe(httpInfo{r}, s, out, start)
	if mark.Stage != tier.StageNone {
		h.metrics.peerAnswers.WithLabelValues(mark.Stage.String(), out.result.String()).Inc()
	}
	if out.abort {
		panic(http.ErrAbortHandler)
	}
}

// serveCacheable answers a GET or HEAD: from the cache when it can, else
// through a coalesced fill.
func (h *Handler) serveCacheable(w http.ResponseWriter, r *http.Request, s *site, now time.Time) outcome {
	if x := s.release.Load(); x != nil || s.pushOnly {
		if out, ok := h.servePushed(w, r, s, x, now); ok {
			return out
		}
	}
	if m := peerMark(r); m.Stage != tier.StageNone && h.tier.Behind(m) {
		return h.fail(w, r, errPurgesBehind)
	}
	var reqCC freshness.Directives
	if len(r.Header["Cache-Control"]) > 0 {
		reqCC = freshness.ParseHeader(r.Header, "Cache-Control")
	}
	out, storedMeanwhile := h.serveDecided(w, r, s, reqCC, now, true)
	if storedMeanwhile {
		// A fill stored the key between the lookup and the join (fetch):
		// decide again, once.
		out, _ = h.serveDecided(w, r, s, reqCC, now, false)
	}
	return out
}

// serveDecided is serveCacheable from one lookup. On a miss that finds,
// when it joins, the key stored meanwhile (recheck), it answers nothing
// and reports storedMeanwhile.
func (h *Handler) serveDecided(w http.ResponseWriter, r *http.Request, s *site, reqCC freshness.Directives, now time.Time, recheck bool) (out outcome, storedMeanwhile bool) {
	l := h.decide(s, scheme(r), r.Host, r.URL.EscapedPath(), r.URL.RawQuery, r.Header, reqCC, now)
	defer l.stored.Release()
	e := l.stored
	switch l.fresh {
	case freshness.Fresh:
		return h.serveEntry(w, r, h.encoded(e, r.Header["Accept-Encoding"]), h.statusHit, resultHit, now), false
	case freshness.StaleRevalidate:
		h.refresh(r, s, l.base, l.key, e)
		return h.serveEntry(w, r, h.encoded(e, r.Header["Accept-Encoding"]), h.statusStale, resultStale, now), false
	}
	if reqCC.Is(freshness.OnlyIfCached) {
		return h.fail(w, r, errNotCached), false
	}
	if h.looped(r) {
		// Refused before it joins a flight, so it fails no one else.
		return h.fail(w, r, errLoop), false
	}
	if h.afterMiss != nil {
		h.afterMiss(r)
	}
	return h.fetch(w, r, s, l.base, l.key, e, l.solo || len(r.Header["Authorization"]) > 0, recheck && e == nil)
}

// lookup is what the cache says about a GET or HEAD before any protocol
// writes an answer: the one hit decision of every front (issue 21).
type lookup struct {
	// base is the request's cache key, key the variant's (Vary).
	base, key string
	// stored is the usable entry, nil if none (or a hit-for-miss
	// marker); the caller Releases it.
	stored *cache.Entry
	// fresh says how stored may answer: Fresh and StaleRevalidate serve
	// it, anything else fetches (validating stored when there is one).
	fresh freshness.State
	// solo asks for a fetch of its own: the URL's answer is known not to
	// be shareable (hit-for-miss).
	solo bool
}

// decide routes nothing (s is the request's site) and writes nothing:
// it builds the key, looks it up in both tiers and the Vary index, and
// judges the entry by the site's purges and RFC 9111 freshness under
// the request's Cache-Control.
func (h *Handler) decide(s *site, scheme, host, path, query string, hdr cachekey.Header, reqCC freshness.Directives, now time.Time) lookup {
	l := lookup{fresh: freshness.Validate}
	l.base = cachekey.WithHeaders(cachekey.New(scheme, host, path, query, s.keyRules), s.keyRules.PassHeaders, hdr)
	e, key, verdict := h.find(s, l.base, hdr)
	l.key = key
	if e != nil && e.HitForMiss {
		e.Release()
		e, l.solo = nil, true
	}
	if e == nil {
		return l
	}
	l.stored = e
	l.fresh = freshness.Check(e.Meta, reqCC, now)
	if verdict == purge.Stale {
		// Soft-purged: served only while it is revalidated, unless it may
		// never be served stale.
		l.fresh = freshness.StaleRevalidate
		if e.Meta.NoStale || reqCC.Is(freshness.NoCache) {
			l.fresh = freshness.Validate
		}
	}
	return l
}

// find looks up the entry for base, following a Vary index to the variant
// the request header selects: the one lookup of every protocol front. It
// returns the key the response lives (or would live) under, and what the
// site's purges say of the entry; a purged one is not returned.
// An entry whose body stays on disk must be Released.
func (h *Handler) find(s *site, base string, hdr cachekey.Header) (*cache.Entry, string, purge.Verdict) {
	e, ok := h.get(base)
	if !ok || e.Tombstone {
		return nil, base, purge.Keep
	}
	key := base
	if e.VaryIndex {
		key = cache.VariantKey(base, e, cachekey.Variant("", e.Vary, hdr))
		if e, ok = h.get(key); !ok {
			return nil, key, purge.Keep
		}
	}
	if e.HitForMiss {
		return e, key, purge.Keep
	}
	v := s.purges.Check(e.Stamp, base, e.Tags)
	if v == purge.Gone {
		e.Release()
		return nil, key, v
	}
	return e, key, v
}

// get looks key up in memory, then on disk. A disk hit small enough for
// memory is promoted there; a larger one comes back open on disk.
func (h *Handler) get(key string) (*cache.Entry, bool) {
	if e, ok := h.mem.Get(key); ok {
		if !e.VaryIndex {
			h.metrics.tierHits[tierMemory].Inc()
		}
		return e, true
	}
	if h.disk == nil {
		return nil, false
	}
	deletes := h.disk.Deletes()
	e, ok := h.disk.Get(key, h.diskInline)
	if !ok {
		return nil, false
	}
	if !e.VaryIndex {
		h.metrics.tierHits[tierDisk].Inc()
	}
	markEncodable(e, key, h.maxObject)
	// Promote, unless an invalidation ran while we read: its tombstone in
	// memory must not be overwritten by what it invalidated.
	if e.Disk == nil && h.disk.Deletes() == deletes {
		h.mem.Put(key, e)
	}
	return e, true
}

// fetch answers from an origin fetch shared with every request for the
// same key. A waiter that cannot use the shared answer (not shareable, or
// a different Vary variant) tries again on its own.
// With recheck, a miss's first join asks the memory tier whether key was
// stored meanwhile, and if so fetches nothing and reports storedMeanwhile.
func (h *Handler) fetch(w http.ResponseWriter, r *http.Request, s *site, base, key string, stored *cache.Entry, solo, recheck bool) (out outcome, storedMeanwhile bool) {
	for attempt := 0; ; attempt++ {
		if attempt >= 2 {
			// An origin whose Vary keeps changing must not keep a client
			// hopping between flights.
			solo = true
		}
		var fl *fill.Flight
		leader := true
		flight := h.flightKey(r, key)
		switch {
		case solo:
			fl = h.group.Solo()
		case recheck && attempt == 0:
			var isStored bool
			if fl, leader, isStored = h.group.JoinUnless(flight, func() bool { return h.mem.Has(key) }); isStored {
				return outcome{}, true
			}
		default:
			fl, leader = h.group.Join(flight)
		}
		if leader {
			h.startFill(r, s, base, key, flight, stored, fl, solo)
		} else {
			h.metrics.coalesced.Inc()
		}
		head, err := fl.WaitInterim(r.Context(), func(i fill.Interim) { writeInterim(w, i.Status, i.Header) })
		if err != nil {
			fl.Body.Release()
			return h.fail(w, r, err), false
		}
		if !leader && !head.Shareable {
			fl.Body.Release()
			solo = true
			continue
		}
		if sel := cachekey.Variant("", head.Vary, r.Header); !leader && len(head.Vary) > 0 && sel != head.VariantKey {
			// The shared response is another variant; fetch ours, and do
			// not validate it with the other variant's validators.
			fl.Body.Release()
			key, stored = base+sel, nil
			continue
		}
		return h.serveFlight(w, r, s, fl, head, leader), false
	}
}

// refresh revalidates e in the background (stale-while-revalidate), unless
// a fetch for the key already runs.
func (h *Handler) refresh(r *http.Request, s *site, base, key string, e *cache.Entry) {
	if h.looped(r) {
		return
	}
	flight := h.flightKey(r, key)
	fl, leader := h.group.Join(flight)
	fl.Body.Release() // nobody here reads it
	if leader {
		h.startFill(r, s, base, key, flight, e, fl, false)
	}
}

// goBackground runs f as a background task of the handler, unless the
// handler is shutting down; it reports whether f was started.
func (h *Handler) goBackground(f func()) bool {
	h.bgMu.Lock()
	defer h.bgMu.Unlock()
	if h.closed {
		return false
	}
	h.bg.Go(f)
	return true
}

// closeBackground stops new background tasks and waits for the running ones.
func (h *Handler) closeBackground() {
	h.bgMu.Lock()
	h.closed = true
	h.bgMu.Unlock()
	h.bg.Wait()
}
