package freshness

import "time"

// State is what a cache may do with a stored response for one request.
type State int

const (
	// Fresh: serve it.
	Fresh State = iota
	// StaleRevalidate: serve it now and refresh it in the background
	// (RFC 5861 stale-while-revalidate).
	StaleRevalidate
	// Validate: ask the origin first (conditional request); the stored
	// response may still answer if the origin fails (see StaleIfError).
	Validate
)

func (s State) String() string {
	switch s {
	case Fresh:
		return "fresh"
	case StaleRevalidate:
		return "stale-while-revalidate"
	default:
		return "validate"
	}
}

// Check judges a stored response against the request's own Cache-Control
// (RFC 9111 §5.2.1) at now.
func Check(m Meta, req Directives, now time.Time) State {
	if m.NoCache || req.Is(NoCache) {
		return Validate
	}
	age := m.Age(now)
	if req.Is(HasMaxAge) && age > req.MaxAge {
		return Validate
	}
	ttl := m.Lifetime - age
	if req.Is(HasMinFresh) && ttl < req.MinFresh {
		return Validate
	}
	if ttl > 0 {
		return Fresh
	}
	if m.NoStale {
		return Validate
	}
	stale := -ttl
	if req.Is(HasMaxStale) && stale <= req.MaxStale {
		return Fresh
	}
	if stale < m.StaleWhileRevalidate {
		return StaleRevalidate
	}
	return Validate
}

// StaleIfError reports whether the stored response may answer in place of
// an origin error or 5xx at now (RFC 5861 §4).
func StaleIfError(m Meta, now time.Time) bool {
	if m.NoStale {
		return false
	}
	stale := m.Age(now) - m.Lifetime
	return stale < m.StaleIfError
}
