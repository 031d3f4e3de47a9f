package freshness

import (
	"net/http"
	"strings"
	"time"
)

// maxDelta is the largest delta-seconds value a cache must represent; larger
// or overflowing values are read as this (RFC 9111 §1.2.2).
const maxDelta = time.Duration(1<<31) * time.Second

// Directives is a parsed Cache-Control or CDN-Cache-Control field. The zero
// value means "no directives". Durations are only meaningful when the
// matching Has flag is set.
type Directives struct {
	MaxAge, SMaxAge                    time.Duration
	StaleWhileRevalidate, StaleIfError time.Duration
	MaxStale, MinFresh                 time.Duration
	Has                                Has
}

// Has is a set of directives present in a field.
type Has uint32

// The directives Parse recognizes.
const (
	HasMaxAge Has = 1 << iota
	HasSMaxAge
	HasStaleWhileRevalidate
	HasStaleIfError
	HasMaxStale
	HasMinFresh
	NoStore
	NoCache
	Private
	Public
	MustRevalidate
	ProxyRevalidate
	OnlyIfCached
	Immutable
	NoTransform
)

// Is reports whether every directive in h is present.
func (d Directives) Is(h Has) bool { return d.Has&h == h }

// Any reports whether at least one directive in h is present.
func (d Directives) Any(h Has) bool { return d.Has&h != 0 }

// ParseHeader parses every line of the named field in h as one list.
func ParseHeader(h http.Header, name string) Directives {
	lines := h.Values(name)
	var d Directives
	for _, l := range lines {
		d.parse(l)
	}
	return d
}

// Parse parses one Cache-Control field value. Unknown directives are
// ignored; a malformed delta-seconds makes max-age and s-maxage 0 (stale, as
// RFC 9111 §4.2.1 asks) and drops the other durations; a directive that
// appears twice keeps its most restrictive (smallest) value.
func Parse(v string) Directives {
	var d Directives
	d.parse(v)
	return d
}

func (d *Directives) parse(v string) {
	for len(v) > 0 {
		var item string
		item, v = nextItem(v)
		name, arg, hasArg := strings.Cut(item, "=")
		name = strings.TrimSpace(name)
		arg = strings.TrimSpace(arg)
		switch name = strings.ToLower(name); name {
		case "max-age":
			d.setDelta(HasMaxAge, &d.MaxAge, arg, true)
		case "s-maxage":
			d.setDelta(HasSMaxAge, &d.SMaxAge, arg, true)
		case "stale-while-revalidate":
			d.setDelta(HasStaleWhileRevalidate, &d.StaleWhileRevalidate, arg, false)
		case "stale-if-error":
			d.setDelta(HasStaleIfError, &d.StaleIfError, arg, false)
		case "max-stale":
			if !hasArg { // "max-stale" alone accepts any staleness
				d.Has |= HasMaxStale
				d.MaxStale = maxDelta
			} else {
				d.setDelta(HasMaxStale, &d.MaxStale, arg, false)
			}
		case "min-fresh":
			d.setDelta(HasMinFresh, &d.MinFresh, arg, false)
		case "only-if-cached":
			d.Has |= OnlyIfCached
		default:
			d.Has |= flagDirective(name)
		}
	}
}

// flagDirective is the flag of a directive without an argument that both
// Cache-Control and CDN-Cache-Control know, 0 for any other name.
func flagDirective(name string) Has {
	switch name {
	case "no-store":
		return NoStore
	case "no-cache":
		return NoCache
	case "private":
		return Private
	case "public":
		return Public
	case "must-revalidate":
		return MustRevalidate
	case "proxy-revalidate":
		return ProxyRevalidate
	case "immutable":
		return Immutable
	case "no-transform":
		return NoTransform
	}
	return 0
}

// setDelta records a delta-seconds argument. invalidIsStale selects the
// RFC 9111 §4.2.1 reading for freshness lifetimes: a bad value means 0.
func (d *Directives) setDelta(flag Has, dst *time.Duration, arg string, invalidIsStale bool) {
	v, ok := parseDelta(arg)
	if !ok {
		if !invalidIsStale {
			return
		}
		v = 0
	}
	if d.Has&flag == 0 || v < *dst {
		*dst = v
	}
	d.Has |= flag
}

// parseDelta reads delta-seconds (1*DIGIT, optionally quoted, which senders
// must not do but some do), saturating at 2^31 seconds.
func parseDelta(s string) (time.Duration, bool) {
	s = strings.Trim(s, `"`)
	if s == "" {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		if n < int64(maxDelta/time.Second) {
			n = n*10 + int64(c-'0')
		}
	}
	d := time.Duration(min(n, int64(maxDelta/time.Second))) * time.Second
	return d, true
}

// nextItem splits off the next comma-separated item, keeping commas inside
// quoted strings (private="Set-Cookie, X-Foo") in the item. A quoted
// string starts only where a directive's argument does (RFC 9111 §5.2:
// token [ "=" ( token / quoted-string ) ]); a quote that is never closed
// quotes nothing, so a malformed field cannot swallow the directives after
// it once and give them back when the field is repeated.
func nextItem(v string) (item, rest string) {
	afterEq := false // only OWS since the last '='
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '"' && afterEq:
			if end := closingQuote(v, i+1); end >= 0 {
				i = end
			}
			afterEq = false
		case c == '=':
			afterEq = true
		case c == ',':
			return v[:i], v[i+1:]
		case c != ' ' && c != '\t':
			afterEq = false
		}
	}
	return v, ""
}

// closingQuote returns the index of the quote that ends a quoted string
// whose content starts at v[i], honouring backslash escapes, or -1.
func closingQuote(v string, i int) int {
	for ; i < len(v); i++ {
		switch v[i] {
		case '\\':
			i++
		case '"':
			return i
		}
	}
	return -1
}
