package edge

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/selfcdn/cdn/edge/cache"
	"github.com/selfcdn/cdn/edge/fill"
	"github.com/selfcdn/cdn/edge/freshness"
	"github.com/selfcdn/cdn/edge/tier"
	"github.com/selfcdn/cdn/internal/cachekey"
	"github.com/selfcdn/cdn/purge"
)

// fillJob is one origin fetch that fills the cache. Everything it needs
// from the client's request is copied out before the handler returns.
type fillJob struct {
	site      *site
	base, key string
	flight    string        // the fill group's key: key, unless it looped (flightKey)
	out       *http.Request // the request to the origin
	stored    *cache.Entry  // the entry being revalidated, if any
	fl        *fill.Flight
	solo      bool
	cancel    context.CancelFunc
	// clientHeader is the client's request header, for the Vary selector:
	// out.Header has the edge's own X-Forwarded-* and Via.
	clientHeader http.Header
	// inval is the invalidation count when the fill started.
	inval uint64
	// uri is the request URI each origin or peer is asked for.
	uri string
	// stamp is the purge clock when the fill started: what it stores is
	// as old as that, so a purge applied meanwhile still matches it.
	stamp uint64
	// tags are the response's purge tags.
	tags []string
	// hops are the peers asked before the origin (edge/tier), for the
	// client's host; from is the stage of the one that answered
	// (StageNone: the origin).
	hops []tier.Hop
	host string
	from tier.Stage
}

// startFill builds the origin request for r and runs the fetch in the
// background, under the server's lifetime rather than the client's: one
// client hanging up must not fail everyone waiting on the same fetch.
func (h *Handler) startFill(r *http.Request, s *site, base, key string, stored *cache.Entry, fl *fill.Flight, solo bool) {
	flight := h.flightKey(r, key)
	ctx, cancel := context.WithCancel(h.bgCtx)
	ctx = withInterims(ctx, func(code int, hdr http.Header) { fl.AddInterim(fill.Interim{Status: code, Header: hdr}) })
	hdr := h.originHeader(r, s)
	for _, k := range validators {
		delete(hdr, k)
	}
	if stored != nil {
		if etag := stored.Header.Get("Etag"); etag != "" {
			hdr.Set("If-None-Match", etag)
		}
		if lm := stored.Header.Get("Last-Modified"); lm != "" {
			hdr.Set("If-Modified-Since", lm)
		}
	}
	// HEAD misses fetch the whole object: the next GET will want it. The
	// origin is asked for what the key names, so an answer is never stored
	// under a key the request it answered does not have (ignored or
	// reordered parameters, dot segments).
	uri := upstreamURI(r, s.keyRules)
	// The origin group sets the URL and Host of each origin it tries;
	// the request's own Host is the client's, which peers need.
	out, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://origin"+uri, nil)
	if err == nil && s.origins == nil {
		err = errNoOrigin
	}
	if err != nil {
		cancel()
		h.abandon(flight, fl, solo, err)
		return
	}
	out.Header = hdr
	out.Host = r.Host
	if stored != nil && stored.Disk != nil {
		// The request closes its handle when it is answered; the fill
		// may need the body after that (304, stale-if-error).
		cp := *stored
		cp.Disk = stored.Disk.Clone()
		stored = &cp
	}
	j := &fillJob{site: s, base: base, key: key, flight: flight, out: out, stored: stored, fl: fl, solo: solo, cancel: cancel,
		clientHeader: r.Header.Clone(), inval: h.inval.Load(), uri: uri, stamp: h.purges.Clock()}
	if !solo {
		// A response only one client may have is fetched where that
		// client is; the tier is for what can be shared.
		j.hops, j.host = h.tier.Plan(base, s.shield, peerStage(r)), r.Host
	}
	if !h.goBackground(func() { h.runFill(j) }) {
		cancel()
		stored.Release()
		h.abandon(flight, fl, solo, errShuttingDown)
	}
}

// upstreamURI is the path and query a fill asks the origin for: those of
// the cache key, normalized as the key is under rules.
func upstreamURI(r *http.Request, rules cachekey.Rules) string {
	uri := cachekey.Path(r.URL.EscapedPath())
	if q := cachekey.Query(r.URL.RawQuery, rules); q != "" {
		uri += "?" + q
	}
	return uri
}

// abandon ends a flight whose fetch never started.
func (h *Handler) abandon(key string, fl *fill.Flight, solo bool, err error) {
	fl.Fail(err)
	if !solo {
		h.group.Done(key, fl)
	}
	fl.Body.Release() // the writer's reference
}

// runFill fetches from the origin, publishes the head to the flight's
// waiters, streams the body into the flight, and stores the result.
func (h *Handler) runFill(j *fillJob) {
	defer j.cancel()
	defer j.fl.Body.Release()
	defer j.stored.Release()
	// Every ending below leaves the group (done) before it tells the
	// waiters: a client that got its answer and asks again at once must
	// start a new fetch or find the stored entry, never the old flight.
	sent := h.now()
	res, err := h.fetchUpstream(j)
	h.metrics.fetchDur.Observe(h.now().Sub(sent).Seconds())
	if err != nil {
		h.metrics.fetches.WithLabelValues(j.site.name, "error").Inc()
		if h.staleIfError(j) {
			return
		}
		h.log.LogAttrs(j.out.Context(), slog.LevelWarn, "origin fetch failed",
			slog.String("site", j.site.name), slog.String("key", j.key), slog.Any("err", err))
		h.done(j)
		j.fl.Fail(err)
		return
	}
	defer res.Body.Close()
	h.metrics.fetches.WithLabelValues(j.site.name, statusClasses[statusClass(res.StatusCode)]).Inc()
	got := h.now()

	if res.StatusCode == http.StatusNotModified && j.stored != nil {
		h.revalidated(j, res, sent, got)
		return
	}
	if res.StatusCode >= 500 && h.staleIfError(j) {
		return
	}
	hdr := h.clientHeader(res.Header)
	var upstream string
	keepCopy := true
	if j.from != tier.StageNone {
		fromPeer(hdr)
		upstream = strings.Join(res.Header["Cache-Status"], ", ")
		// A copy of what the region's home holds is kept only for keys
		// asked for often here: the region holds one copy of its long
		// tail. What the shield answered, this edge (a home) keeps.
		keepCopy = j.from != tier.StageHome || h.tier.Hot(j.base)
	}
	j.tags = purge.Tags(res.Header)
	vary, star := cachekey.ParseVary(hdr)
	d := freshness.Evaluate(j.out.Header, res.StatusCode, res.Header, sent, got, j.site.policy)
	head := fill.Head{Status: res.StatusCode, Header: hdr, Shareable: d.Store && !star, Decision: d, Vary: vary,
		Upstream: upstream, NotKept: !keepCopy}
	if len(vary) > 0 {
		head.VariantKey = cachekey.Variant("", vary, j.clientHeader)
	}
	if age, ok := res.Header["Age"]; ok && !head.Shareable {
		hdr["Age"] = age // passed on as is; a stored response gets it recomputed
	}
	j.fl.Publish(head)
	if !head.Shareable {
		h.markHitForMiss(j, res.StatusCode, d.Reason)
		// Let new requests bypass this flight at once instead of queueing
		// behind a body they could not share.
		h.done(j)
	}
	j.fl.Body.Grow(res.ContentLength)
	if err := h.copyBody(j, res.Body, head.Shareable); err != nil {
		h.done(j)
		j.fl.Body.Finish(err)
		if !errors.Is(err, errAbandoned) {
			h.log.LogAttrs(j.out.Context(), slog.LevelWarn, "origin body failed",
				slog.String("site", j.site.name), slog.String("key", j.key), slog.Any("err", err))
		}
		return
	}
	var keep []stored
	if head.Shareable && keepCopy {
		keep = h.store(j, head, d.Meta)
	}
	// Waiters are answered before the disk write. A body that memory holds
	// leaves the group first (the next request finds it stored); one kept
	// only on disk stays in the group until it is there, so requests join
	// the finished flight instead of fetching it again meanwhile.
	onDiskOnly := len(keep) > 0 && keep[len(keep)-1].spool
	if !onDiskOnly {
		h.done(j)
	}
	j.fl.Body.Finish(nil)
	h.persist(j, keep)
	h.done(j)
}

// fetchOrigin sends the fill's request to the site's origin group:
// primaries, then backups, while the answer is a failure another origin
// can fix (no connection, a timeout, a failover status).
func (h *Handler) fetchOrigin(j *fillJob) (*http.Response, error) {
	res, answered, err := j.site.origins.Do(j.out, j.uri)
	if answered.Attempts > 1 {
		h.log.LogAttrs(j.out.Context(), slog.LevelWarn, "origin failed over",
			slog.String("site", j.site.name), slog.String("answered", answered.Origin), slog.Int("attempts", answered.Attempts), slog.Any("err", err))
	}
	return res, err
}

// done takes the job's flight out of the group.
func (h *Handler) done(j *fillJob) {
	if !j.solo {
		h.group.Done(j.flight, j.fl)
	}
}

// errAbandoned ends a download nobody reads and nothing will store.
var errAbandoned = errors.New("abandoned: no reader left and nothing to store")

// copyBody streams the origin body into the flight. An unshareable body
// nobody reads any more is abandoned rather than downloaded for no one.
func (h *Handler) copyBody(j *fillJob, body io.Reader, shareable bool) error {
	buf := make([]byte, 32<<10)
	for {
		n, err := body.Read(buf)
		if n > 0 {
			if _, werr := j.fl.Body.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		// Nobody reads it and it will not be stored: stop downloading.
		if (!shareable || j.fl.Body.Spilled() && !h.keepsOnDisk(j.fl.Body.Size())) && j.fl.Body.Readers() == 0 {
			return errAbandoned
		}
	}
}

// stored is an entry stored in memory (or meant for disk only) that the
// disk tier should keep too.
type stored struct {
	key   string
	e     *cache.Entry
	spool bool // the body is the flight's spool file, not e.Body
}

// keepsOnDisk reports whether a body of n bytes, too large for memory,
// can be kept on disk.
func (h *Handler) keepsOnDisk(n int64) bool {
	return h.disk != nil && n <= h.disk.MaxObjectBytes()
}

// store puts a complete, shareable response into the memory tier: under its
// variant key with a Vary index at the base key, or under the base key. It
// returns what the disk tier should keep: the same entries, and a body too
// large for memory.
func (h *Handler) store(j *fillJob, head fill.Head, m freshness.Meta) []stored {
	if h.invalidatedSince(j) {
		return nil // fetched before an unsafe request changed the URL
	}
	body, err := j.fl.Body.Bytes()
	spool := errors.Is(err, fill.ErrTooLarge)
	switch {
	case spool && !h.keepsOnDisk(j.fl.Body.Size()):
		return nil // streamed through, not kept
	case err != nil && !spool:
		return nil
	}
	e := cache.NewEntry(head.Status, head.Header.Clone(), body, m, head.Vary)
	e.Stamp, e.Tags = j.stamp, j.tags
	if spool {
		e.Header["Content-Length"] = []string{strconv.FormatInt(j.fl.Body.Size(), 10)}
	}
	put := func(key string, e *cache.Entry, spool bool) []stored {
		markEncodable(e, key, h.maxObject)
		if !spool {
			h.mem.Put(key, e)
		}
		return []stored{{key: key, e: e, spool: spool}}
	}
	inval := h.lastInvalidation(j.base)
	if len(head.Vary) == 0 {
		e.Invalidated = inval
		return put(j.base, e, spool)
	}
	var keep []stored
	idx, ok := h.get(j.base)
	if !ok || !idx.VaryIndex || !slices.Equal(idx.Vary, head.Vary) {
		idx.Release()
		idx = &cache.Entry{VaryIndex: true, Vary: head.Vary, Variants: new(cache.Counter), Gen: h.gen.Add(1), Invalidated: inval}
		keep = put(j.base, idx, false)
	}
	key := cache.VariantKey(j.base, idx, head.VariantKey)
	if !h.held(key) && idx.Variants.Add(1) > int64(h.maxVariants) {
		return keep // bounded: a header with endless values must not flood memory
	}
	return append(keep, put(key, e, spool)...)
}

// held reports whether key is stored in either tier.
func (h *Handler) held(key string) bool {
	if _, ok := h.mem.Get(key); ok {
		return true
	}
	return h.disk != nil && h.disk.Has(key)
}

// persist writes stored entries to the disk tier. It runs after the
// waiters got their answer; a failure only costs a later miss.
func (h *Handler) persist(j *fillJob, keep []stored) {
	if h.disk == nil {
		return
	}
	for _, s := range keep {
		var body io.Reader
		if s.spool {
			body = j.fl.Body.Reader()
		} else if s.e.Disk != nil {
			body = s.e.Disk.Reader()
		}
		if err := h.disk.Put(s.key, s.e, body); err != nil {
			// Whatever older version is on disk must not outlive this one.
			h.disk.Delete(s.key)
			if !errors.Is(err, cache.ErrTooLarge) {
				h.log.LogAttrs(j.out.Context(), slog.LevelDebug, "disk tier write failed", slog.String("key", s.key), slog.Any("err", err))
			}
			continue
		}
		if h.invalidatedSince(j) {
			// An unsafe request for the URL ran while we wrote: its
			// tombstone was set before its own disk delete, so checking
			// after the write closes the race either way.
			h.disk.Delete(s.key)
		}
	}
}

// revalidated handles a 304 to our conditional request: the stored entry,
// with the 304's header fields, is fresh again.
func (h *Handler) revalidated(j *fillJob, res *http.Response, sent, got time.Time) {
	hdr := mergeNotModified(j.stored.Header, h.clientHeader(res.Header))
	judged := hdr
	if age, ok := res.Header["Age"]; ok {
		// The 304's Age dates the validation; clientHeader dropped it.
		judged = hdr.Clone()
		judged["Age"] = age
	}
	d := freshness.Evaluate(j.out.Header, j.stored.Status, judged, sent, got, j.site.policy)
	e := j.stored
	var keep []stored
	if d.Store && !h.invalidatedSince(j) {
		e = cache.NewEntry(j.stored.Status, hdr, j.stored.Body, d.Meta, j.stored.Vary)
		e.Invalidated = j.stored.Invalidated
		e.Stamp, e.Tags = j.stamp, j.stored.Tags
		if tags := purge.Tags(res.Header); tags != nil {
			e.Tags = tags
		}
		if j.stored.Disk != nil {
			// The body stays where it is, on disk; the entry is rewritten
			// there with the new header.
			e.Disk = j.stored.Disk
			e.Header["Content-Length"] = j.stored.Header["Content-Length"]
		}
		markEncodable(e, j.key, h.maxObject)
		if j.stored.Disk == nil {
			h.mem.Put(j.key, e)
		}
		keep = []stored{{key: j.key, e: e}}
	}
	h.publishEntry(j, e, fill.Head{Revalidated: true})
	h.persist(j, keep)
}

// staleIfError answers the flight with the stored entry when the origin
// failed and RFC 5861 stale-if-error allows it.
// A soft-purged entry may always answer so; a hard-purged one never.
func (h *Handler) staleIfError(j *fillJob) bool {
	if j.stored == nil {
		return false
	}
	switch j.site.purges.Check(j.stored.Stamp, j.base, j.stored.Tags) {
	case purge.Gone:
		return false
	case purge.Keep:
		if !freshness.StaleIfError(j.stored.Meta, h.now()) {
			return false
		}
	}
	h.log.LogAttrs(j.out.Context(), slog.LevelWarn, "serving stale for origin error",
		slog.String("site", j.site.name), slog.String("key", j.key))
	h.publishEntry(j, j.stored, fill.Head{})
	return true
}

// publishEntry answers a flight from a stored entry.
func (h *Handler) publishEntry(j *fillJob, e *cache.Entry, head fill.Head) {
	head.Status, head.Header, head.Shareable, head.FromCache = e.Status, e.Header, true, true
	head.Vary = e.Vary
	if len(e.Vary) > 0 {
		head.VariantKey = cachekey.Variant("", e.Vary, j.clientHeader)
	}
	head.Decision.Meta = e.Meta
	if e.Disk == nil {
		head.Entry = e // waiters answer from it as from a hit (issue 20)
	}
	j.fl.Publish(head)
	var err error
	if e.Disk != nil {
		_, err = e.Disk.WriteTo(j.fl.Body)
	} else {
		_, err = j.fl.Body.Write(e.Body)
	}
	h.done(j)
	j.fl.Body.Finish(err)
}

// markHitForMiss remembers for a while that the URL's answer cannot be
// shared, so later requests go straight to the origin instead of queueing
// behind one another. Reasons that come from the request, not the
// response, say nothing about the URL.
// An origin failing (5xx) is not a property of the URL either, and during
// an outage coalescing matters most.
func (h *Handler) markHitForMiss(j *fillJob, status int, reason string) {
	if j.solo || h.hitForMissTTL <= 0 || status >= 500 || reason == "request no-store" || reason == "authorization" {
		return
	}
	e, ok := h.get(j.base)
	e.Release()
	if ok && e.VaryIndex {
		// One variant that cannot be shared (a Set-Cookie for one
		// language) must not evict every variant of the URL.
		return
	}
	h.mem.PutMarker(j.base, &cache.Entry{HitForMiss: true, Invalidated: h.lastInvalidation(j.base)}, h.hitForMissTTL)
	if h.disk != nil {
		// The marker replaces the URL's object; it must not come back
		// from disk when the marker expires.
		h.disk.Delete(j.base)
	}
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

// invalidatedSince reports whether the job's URL was invalidated after the
// job started (RFC 9111 §4.4): storing its response would bring back what
// the unsafe request changed.
func (h *Handler) invalidatedSince(j *fillJob) bool {
	return h.lastInvalidation(j.base) > j.inval
}

// lastInvalidation is the number of the latest invalidation the entry at
// base remembers, 0 if none.
func (h *Handler) lastInvalidation(base string) uint64 {
	if e, ok := h.mem.Get(base); ok {
		return e.Invalidated
	}
	return 0
}
