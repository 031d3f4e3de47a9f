package edge

import (
	"context"
	"net/http"

	"github.com/selfcdn/cdn/edge/cache"
	"github.com/selfcdn/cdn/edge/fill"
	"github.com/selfcdn/cdn/internal/cachekey"
)

// startFill builds the origin request for r, plans its hops, and has the
// Filler run the fetch in the background, under the server's lifetime
// rather than the client's: one client hanging up must not fail everyone
// waiting on the same fetch. flight is the fill's key in the group
// (flightKey).
func (h *Handler) startFill(r *http.Request, s *site, base, key, flight string, stored *cache.Entry, fl *fill.Flight, solo bool) {
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
	j := &fill.Job{
		Site: fill.Site{Name: s.name, Origins: s.origins, Policy: s.policy, Purges: s.purges},
		Base: base, Key: key, Flight: fl, FlightKey: flight, Solo: solo, Request: out, Cancel: cancel, URI: uri,
		Stored: stored, ClientHeader: r.Header.Clone(), Stamp: h.purges.Clock(), Invalidations: h.inval.Load(),
	}
	if !solo {
		// A response only one client may have is fetched where that
		// client is; the tier is for what can be shared.
		j.Hops, j.Host = h.tier.Plan(base, s.shield, peerStage(r)), r.Host
	}
	if !h.goBackground(func() { h.fill.Run(j) }) {
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
