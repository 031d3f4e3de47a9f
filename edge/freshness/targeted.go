package freshness

import (
	"net/http"
	"strings"
	"time"
)

// ParseTargeted parses a targeted cache control field such as
// CDN-Cache-Control (RFC 9213). Unlike Cache-Control, it is a Structured
// Field Dictionary (RFC 8941): keys are lower case, a repeated key takes
// its last value, and one syntax error anywhere makes the whole field
// invalid. ok is false for an invalid or empty field, which a cache
// ignores (RFC 9213 §2.2; RFC 8941 §4.2).
//
// max-age and s-maxage must be non-negative Integers; another type (a
// Decimal such as 1.5, a String such as "60") is not coerced, as RFC
// 9213 §2.1 asks, and reads as 0, stale, as an invalid max-age in
// Cache-Control does (RFC 9111 §4.2.1). Other durations of another type
// are dropped. Flag directives count whatever their value.
func ParseTargeted(v string) (d Directives, ok bool) {
	members, ok := parseSFDictionary(v)
	if !ok || len(members) == 0 {
		return Directives{}, false
	}
	for _, m := range members {
		switch m.key {
		case "max-age":
			d.setInteger(HasMaxAge, &d.MaxAge, m, true)
		case "s-maxage":
			d.setInteger(HasSMaxAge, &d.SMaxAge, m, true)
		case "stale-while-revalidate":
			d.setInteger(HasStaleWhileRevalidate, &d.StaleWhileRevalidate, m, false)
		case "stale-if-error":
			d.setInteger(HasStaleIfError, &d.StaleIfError, m, false)
		default:
			d.Has |= flagDirective(m.key)
		}
	}
	return d, true
}

// setInteger records a duration member: a non-negative Integer, saturated
// at 2^31 seconds. invalidIsStale keeps a lifetime of another type as 0.
func (d *Directives) setInteger(flag Has, dst *time.Duration, m sfMember, invalidIsStale bool) {
	switch {
	case m.kind == sfInteger && m.n >= 0:
		*dst = time.Duration(min(m.n, int64(maxDelta/time.Second))) * time.Second
	case invalidIsStale:
		*dst = 0
	default:
		return
	}
	d.Has |= flag
}

// Targeted returns the directives that govern this cache: CDN-Cache-Control
// when the origin sent a valid, non-empty one (RFC 9213 §2.2), otherwise
// Cache-Control. Field lines are combined with commas before parsing
// (RFC 8941 §4.2).
func Targeted(h http.Header) (d Directives, targeted bool) {
	if lines := h["Cdn-Cache-Control"]; len(lines) > 0 {
		if d, ok := ParseTargeted(strings.Join(lines, ", ")); ok {
			return d, true
		}
		// Invalid: ignored whole, as if it were not there; Cache-Control
		// and Expires apply.
	}
	return ParseHeader(h, "Cache-Control"), false
}
