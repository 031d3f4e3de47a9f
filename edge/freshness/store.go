package freshness

import (
	"net/http"
	"time"
)

// Policy is a site's TTL overrides. The zero value follows the origin's
// headers and RFC 9111 heuristics only.
type Policy struct {
	// DefaultTTL is the lifetime of a response that states none (no
	// max-age, s-maxage or Expires). Zero falls back to the heuristic of
	// RFC 9111 §4.2.2 (10% of the time since Last-Modified).
	DefaultTTL time.Duration
	// MinTTL raises shorter lifetimes. It never applies to no-cache.
	MinTTL time.Duration
	// MaxTTL caps longer lifetimes. Zero means no cap.
	MaxTTL time.Duration
}

// heuristicMax caps a Last-Modified based lifetime, so a file untouched for
// ten years is not cached for one.
const heuristicMax = 24 * time.Hour

// Meta is what the cache keeps about a stored response to judge its
// freshness later.
type Meta struct {
	// Lifetime is the freshness lifetime (RFC 9111 §4.2.1) after overrides.
	Lifetime time.Duration
	// InitialAge is the corrected_initial_age of RFC 9111 §4.2.3.
	InitialAge time.Duration
	// ResponseTime is when the response (or its last validation) arrived.
	ResponseTime time.Time
	// StaleWhileRevalidate and StaleIfError are the RFC 5861 windows.
	StaleWhileRevalidate, StaleIfError time.Duration
	// NoCache means every use must be validated with the origin first.
	NoCache bool
	// NoStale forbids serving the response stale in any way
	// (must-revalidate, proxy-revalidate, or s-maxage: RFC 9111 §5.2.2.10).
	NoStale bool
}

// Age is the response's current_age at now (RFC 9111 §4.2.3).
func (m Meta) Age(now time.Time) time.Duration {
	resident := max(now.Sub(m.ResponseTime), 0)
	return m.InitialAge + resident
}

// TTL is how long the response stays fresh from now; negative once stale.
func (m Meta) TTL(now time.Time) time.Duration { return m.Lifetime - m.Age(now) }

// Decision is the verdict on one origin response.
type Decision struct {
	// Store is whether a shared cache may keep the response.
	Store bool
	// Reason says why not, for logs and hit-for-miss decisions.
	Reason string
	// Meta is set whenever Store is true.
	Meta Meta
}

// heuristicStatus lists the status codes cacheable by default
// (RFC 9110 §15.1).
func heuristicStatus(code int) bool {
	switch code {
	case 200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501:
		return true
	}
	return false
}

// understoodStatus lists the final statuses this cache may store at all
// with explicit freshness; 206 and 304 are handled by the caller.
func understoodStatus(code int) bool {
	return heuristicStatus(code) || code == 302 || code == 307 || code == 400 || code == 403 || code == 500 || code == 502 || code == 503 || code == 504
}

// Evaluate decides whether a response to a GET with request header reqH may
// be stored, and with what freshness. requestTime is when the request went
// to the origin, responseTime when its header arrived.
func Evaluate(reqH http.Header, status int, h http.Header, requestTime, responseTime time.Time, p Policy) Decision {
	req := ParseHeader(reqH, "Cache-Control")
	cc, targeted := Targeted(h)
	switch {
	case req.Is(NoStore):
		return Decision{Reason: "request no-store"}
	case cc.Is(NoStore):
		return Decision{Reason: "no-store"}
	case cc.Is(Private):
		return Decision{Reason: "private"}
	case !understoodStatus(status):
		return Decision{Reason: "status"}
	case h.Get("Vary") == "*":
		return Decision{Reason: "vary *"}
	case len(h["Set-Cookie"]) > 0:
		// Storing a Set-Cookie would hand one visitor's session to the
		// next; like Varnish, such responses pass through uncached.
		return Decision{Reason: "set-cookie"}
	}
	// RFC 9111 §3.5: a shared cache stores answers to authorized requests
	// only when the origin says that is fine.
	if reqH.Get("Authorization") != "" && !cc.Any(Public|HasSMaxAge|MustRevalidate) {
		return Decision{Reason: "authorization"}
	}

	date := parseDate(h.Get("Date"), responseTime)
	m := Meta{
		ResponseTime:         responseTime,
		InitialAge:           initialAge(h, date, requestTime, responseTime),
		NoCache:              cc.Is(NoCache),
		NoStale:              cc.Any(MustRevalidate|ProxyRevalidate) || (!targeted && cc.Is(HasSMaxAge)),
		StaleWhileRevalidate: durIf(cc, HasStaleWhileRevalidate, cc.StaleWhileRevalidate),
		StaleIfError:         durIf(cc, HasStaleIfError, cc.StaleIfError),
	}
	lifetime, explicit := explicitLifetime(cc, targeted, h, date)
	if !explicit {
		if !heuristicStatus(status) && !cc.Is(Public) {
			return Decision{Reason: "no freshness"}
		}
		lifetime = heuristicLifetime(h, date, p)
	}
	if !m.NoCache {
		lifetime = max(lifetime, p.MinTTL)
	}
	if p.MaxTTL > 0 {
		lifetime = min(lifetime, p.MaxTTL)
	}
	m.Lifetime = lifetime
	if m.NoCache {
		m.Lifetime = 0
	}
	// A response that is stale on arrival and cannot be validated or served
	// stale is of no use to anyone later.
	if m.Lifetime <= m.InitialAge && h.Get("Etag") == "" && h.Get("Last-Modified") == "" &&
		(m.NoStale || m.StaleWhileRevalidate+m.StaleIfError == 0) {
		return Decision{Reason: "stale on arrival"}
	}
	return Decision{Store: true, Meta: m}
}

func durIf(d Directives, h Has, v time.Duration) time.Duration {
	if d.Is(h) {
		return v
	}
	return 0
}

// explicitLifetime applies RFC 9111 §4.2.1: s-maxage, then max-age, then
// Expires minus Date.
func explicitLifetime(cc Directives, targeted bool, h http.Header, date time.Time) (time.Duration, bool) {
	switch {
	case cc.Is(HasSMaxAge):
		return cc.SMaxAge, true
	case cc.Is(HasMaxAge):
		return cc.MaxAge, true
	case targeted:
		// CDN-Cache-Control without a lifetime still replaces
		// Cache-Control; Expires is not consulted (RFC 9213 §2.1).
		return 0, false
	}
	if exp, ok := h["Expires"]; ok {
		// RFC 9111 §5.3: an invalid Expires (a bad date, "0") means
		// already expired. Expires is a singleton; several values are
		// invalid too, and §4.2.1 lets a cache consider such a response
		// stale rather than guess which one the origin meant.
		if len(exp) != 1 {
			return 0, true
		}
		t, err := http.ParseTime(exp[0])
		if err != nil {
			return 0, true
		}
		return max(t.Sub(date), 0), true
	}
	return 0, false
}

func heuristicLifetime(h http.Header, date time.Time, p Policy) time.Duration {
	if p.DefaultTTL > 0 {
		return p.DefaultTTL
	}
	lm, err := http.ParseTime(h.Get("Last-Modified"))
	if err != nil || !lm.Before(date) {
		return 0
	}
	return min(date.Sub(lm)/10, heuristicMax)
}

// initialAge computes corrected_initial_age (RFC 9111 §4.2.3).
func initialAge(h http.Header, date, requestTime, responseTime time.Time) time.Duration {
	apparent := max(responseTime.Sub(date), 0)
	ageValue := parseAge(h["Age"])
	delay := max(responseTime.Sub(requestTime), 0)
	return max(apparent, ageValue+delay)
}

func parseDate(v string, fallback time.Time) time.Time {
	t, err := http.ParseTime(v)
	if err != nil {
		return fallback
	}
	return t
}
