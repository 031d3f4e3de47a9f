package edge

import (
	"net"
	"net/http"
	"net/textproto"
	"slices"
	"strconv"
	"strings"

	"github.com/selfcdn/cdn/edge/tier"
	"github.com/selfcdn/cdn/internal/cachekey"
	"github.com/selfcdn/cdn/purge"
)

// hopByHop are the connection-level fields a proxy never forwards
// (RFC 9110 §7.6.1), plus the proxy credentials meant for us.
var hopByHop = []string{
	"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer",
	"Transfer-Encoding", "Upgrade", "Proxy-Authenticate", "Proxy-Authorization",
}

// removeHopByHop deletes hop-by-hop fields from h, including those the
// Connection header names.
func removeHopByHop(h http.Header) {
	for _, v := range h["Connection"] {
		for f := range strings.SplitSeq(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				h.Del(textproto.CanonicalMIMEHeaderKey(f))
			}
		}
	}
	for _, k := range hopByHop {
		delete(h, k)
	}
}

// validators are the request fields that make a request conditional or
// partial; a fill drops the client's and sends its own.
var validators = []string{"If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since", "If-Range", "Range"}

// hasValidators reports whether r is conditional or asks for a range.
func hasValidators(h http.Header) bool {
	for _, k := range validators {
		if len(h[k]) > 0 {
			return true
		}
	}
	return false
}

// originHeader returns the header for a request to the origin on behalf of
// r for site s: hop-by-hop fields and the URL and method overrides the
// site does not key on dropped; Via, Forwarded and X-Forwarded-* set by
// the edge. Nothing the origin sees is the client's word unless the key
// holds it (issue 20).
func (h *Handler) originHeader(r *http.Request, s *site) http.Header {
	out := r.Header.Clone()
	if out == nil {
		out = http.Header{}
	}
	removeHopByHop(out)
	for _, k := range cachekey.OverrideHeaders {
		if !slices.ContainsFunc(s.keyRules.PassHeaders, func(p string) bool { return strings.EqualFold(p, k) }) {
			delete(out, k)
		}
	}
	proto := scheme(r)
	ip, _, err := net.SplitHostPort(r.RemoteAddr)
	if err == nil {
		xff := ip
		if prior := out["X-Forwarded-For"]; len(prior) > 0 {
			// Appended, as proxies do: the origin trusts only the
			// addresses its own proxies added.
			xff = strings.Join(prior, ", ") + ", " + ip
		}
		out["X-Forwarded-For"] = []string{xff}
	}
	out["Forwarded"] = []string{forwarded(ip, proto, r.Host)}
	out["X-Forwarded-Proto"] = []string{proto}
	out["X-Forwarded-Host"] = []string{r.Host}
	out["Via"] = append(out["Via"], h.via)
	out["Cdn-Loop"] = append(out["Cdn-Loop"], h.tier.LoopValue())
	delete(out, tier.PeerHeader) // taken off in ServeHTTP; never the client's to pass on
	delete(out, tier.PurgesHeader)
	return out
}

// forwarded is the edge's own Forwarded field (RFC 7239), replacing any
// the client sent: one element, for the hop from client to edge.
func forwarded(ip, proto, host string) string {
	var b strings.Builder
	if ip != "" {
		b.WriteString("for=")
		if strings.Contains(ip, ":") {
			b.WriteString(`"[` + ip + `]"`) // §6: an IPv6 address is quoted, in brackets
		} else {
			b.WriteString(ip)
		}
		b.WriteByte(';')
	}
	b.WriteString("proto=")
	b.WriteString(proto)
	b.WriteString(";host=")
	b.WriteString(strconv.Quote(host)) // a quoted-string: a host:port's colon is not a token character
	return b.String()
}

// clientHeader turns an origin response header into the one sent to
// clients and stored: hop-by-hop fields dropped, Via added.
func (h *Handler) clientHeader(res http.Header) http.Header {
	out := res.Clone()
	removeHopByHop(out)
	delete(out, "Age") // recomputed on every answer from cache
	for _, k := range purge.TagHeaders {
		delete(out, k) // kept for purging, not for clients (as Fastly and Cloudflare do)
	}
	out["Via"] = append(out["Via"], h.via)
	return out
}

func scheme(r *http.Request) string {
	if r.TLS != nil {
		return "https"
	}
	return "http"
}
