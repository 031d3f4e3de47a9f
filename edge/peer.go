package edge

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/selfcdn/cdn/edge/fill"
	"github.com/selfcdn/cdn/edge/tier"
	"github.com/selfcdn/cdn/purge"
)

// The edge's side of its region's tier (edge/tier): what a fill asks
// before the origin, and what a request from another edge may do.

// errLoop refuses to forward a request that went round too often: an
// origin pointing back at the CDN, or a client forging CDN-Loop (RFC
// 8586 §3), which earns it nothing else.
var errLoop = errors.New("loop detected: the request went through this CDN too often")

type peerMarkKey struct{}

// receivedFromPeer takes the CDN-Peer field off r and verifies it. A
// verified mark rides on in r's context, where the fill reads which
// stage it was asked for; anything else leaves a client's request like
// any other.
func (h *Handler) receivedFromPeer(r *http.Request) (*http.Request, tier.Mark) {
	m := h.tier.Received(r.Header, r.Host, requestTarget(r))
	delete(r.Header, tier.PeerHeader)
	delete(r.Header, tier.PurgesHeader)
	if m.Stage == tier.StageNone {
		return r, m
	}
	return r.WithContext(context.WithValue(r.Context(), peerMarkKey{}, m)), m
}

// peerStage is the stage a peer asked r for, StageNone from a client.
func peerStage(r *http.Request) tier.Stage { return peerMark(r).Stage }

// peerMark is the verified mark r came with, the zero Mark from a client.
func peerMark(r *http.Request) tier.Mark {
	m, _ := r.Context().Value(peerMarkKey{}).(tier.Mark)
	return m
}

// errPurgesBehind refuses a peer that applied purges this edge has not:
// what this edge holds may be gone for it. The 503 sends the peer on to
// its next hop or the origin, and does not count against this edge.
var errPurgesBehind = errors.New("behind the asking edge's purges")

// requestTarget is the request target as received, which a peer signed.
func requestTarget(r *http.Request) string {
	if r.RequestURI != "" {
		return r.RequestURI
	}
	return r.URL.RequestURI()
}

// looped reports whether r may not be forwarded again.
func (h *Handler) looped(r *http.Request) bool {
	return h.tier.Looped(r.Header["Cdn-Loop"])
}

// flightKey is the fill group's key for r's fill of key. A request that
// carries this network's CDN-Loop mark without a peer's verified mark
// came back through an origin (or claims to): joining the fill it may
// itself be part of would wait on itself until the origin timed out.
// Such requests share fills only with those that went round as often;
// the hop budget bounds the extra fills per key.
func (h *Handler) flightKey(r *http.Request, key string) string {
	if len(r.Header["Cdn-Loop"]) == 0 || peerStage(r) != tier.StageNone {
		return key
	}
	if n := h.tier.Loops(r.Header["Cdn-Loop"]); n > 0 {
		return key + "\x00loop" + strconv.Itoa(n)
	}
	return key
}

// fetchUpstream answers a fill (fill.Upstream): from the hops its plan
// names (the key's home in this region, the shield's), each skipped when
// it cannot be reached, fails or is slow to start its answer, then from
// the origin.
func (h *Handler) fetchUpstream(j *fill.Job) (*http.Response, tier.Stage, error) {
	var ask *http.Request
	if len(j.Hops) > 0 {
		ask = j.Request.Clone(j.Request.Context())
		ask.Host = j.Host                     // a peer serves the site, not its origin
		delete(ask.Header, "Accept-Encoding") // see fromPeer in edge/fill
	}
	for _, hop := range j.Hops {
		res, err := h.tier.Ask(hop, ask, j.URI)
		if err == nil && (res.StatusCode >= 502 && res.StatusCode <= 504 || res.StatusCode == http.StatusMisdirectedRequest) {
			// The peer failing on its side (its origin, its shutdown), or
			// not knowing the site yet: the next hop, or the origin, may
			// do better. Not the peer's own failure: it stays a home.
			h.tier.Decline(res)
			err = errors.New(res.Status)
		} else if err == nil && j.Stored != nil && servedForError(res.Header) {
			// The peer could not reach the origin either and answered
			// from its stale copy: as a 304 that would pass for a
			// revalidation here. This edge has its own copy, and says
			// stale-if-error itself if the origin fails it too.
			h.tier.Decline(res)
			err = errors.New("the peer's origin failed; it answered stale")
		}
		if err != nil {
			if j.Request.Context().Err() != nil {
				return nil, tier.StageNone, err
			}
			h.log.LogAttrs(j.Request.Context(), slog.LevelWarn, "peer skipped for a fill",
				slog.String("site", j.Site.Name), slog.String("peer", hop.Peer.Name), slog.String("stage", hop.Stage.String()), slog.Any("err", err))
			continue
		}
		h.metrics.upstream.WithLabelValues(j.Site.Name, hop.Stage.String()).Inc()
		return res, hop.Stage, nil
	}
	h.metrics.upstream.WithLabelValues(j.Site.Name, "origin").Inc()
	res, err := h.fill.FetchOrigin(j)
	return res, tier.StageNone, err
}

// servedForError reports whether a peer answered from its stale copy
// because its origin failed (stale-if-error in its Cache-Status).
func servedForError(hdr http.Header) bool {
	for _, v := range hdr["Cache-Status"] {
		if strings.Contains(v, `detail="stale-if-error"`) {
			return true
		}
	}
	return false
}

// tagsForPeer gives an edge asking as a peer the object's purge tags,
// which clients never get: its copy must answer to tag purges too.
func tagsForPeer(hdr http.Header, r *http.Request, tags []string) {
	if len(tags) > 0 && peerStage(r) != tier.StageNone {
		hdr[purge.TagHeaders[0]] = []string{strings.Join(tags, " ")}
	}
}
