package origin

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// breakerState is a circuit breaker's state; its value is the
// cdn_origin_breaker_state gauge.
type breakerState int

const (
	stateClosed   breakerState = iota // requests flow
	stateHalfOpen                     // cooled down: one probe request may go
	stateOpen                         // failing: requests skip the target
)

func (s breakerState) String() string { return [...]string{"closed", "half-open", "open"}[s] }

// outcome is what one request to a target tells its breaker.
type outcome int

const (
	outcomeIgnored outcome = iota // says nothing about the origin (the client left)
	outcomeSuccess
	outcomeFailure
)

// breaker is one target's circuit breaker: Failures consecutive failures
// open it; after Cooldown it lets one probe through (half-open), whose
// success closes it and whose failure opens it again. It keeps a dead
// origin from costing every request a failed connection first.
// The zero value is not usable: build it with newBreaker.
type breaker struct {
	failAt   int
	cooldown time.Duration
	gauge    prometheus.Gauge            // set under mu, so it never shows a stale state
	changed  func(from, to breakerState) // logs a change; called without mu

	mu       sync.Mutex // protects the fields below
	state    breakerState
	failures int       // consecutive, while closed
	openedAt time.Time // when it last opened, or failed while open
	probing  bool      // a half-open probe is in flight
}

func newBreaker(cfg Breaker, gauge prometheus.Gauge, changed func(from, to breakerState)) *breaker {
	gauge.Set(float64(stateClosed))
	return &breaker{failAt: cfg.Failures, cooldown: cfg.Cooldown, gauge: gauge, changed: changed}
}

// ready reports whether allow would let a request through now, without
// claiming the probe: it orders the targets of a request.
func (b *breaker) ready(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case stateOpen:
		return now.Sub(b.openedAt) >= b.cooldown
	case stateHalfOpen:
		return !b.probing
	}
	return true
}

// allow reports whether a request may go to the target now, and whether
// it is the half-open probe, which must then be recorded.
func (b *breaker) allow(now time.Time) (ok, probe bool) {
	b.mu.Lock()
	from := b.state
	switch b.state {
	case stateClosed:
		ok = true
	case stateOpen:
		if now.Sub(b.openedAt) >= b.cooldown {
			b.set(stateHalfOpen)
			b.probing = true
			ok, probe = true, true
		}
	case stateHalfOpen:
		if !b.probing {
			b.probing = true
			ok, probe = true, true
		}
	}
	to := b.state
	b.mu.Unlock()
	b.notify(from, to)
	return ok, probe
}

// record counts a request's outcome. probe says whether the request was
// the one allow admitted as the half-open probe.
func (b *breaker) record(o outcome, probe bool, now time.Time) {
	b.mu.Lock()
	from := b.state
	if probe {
		b.probing = false
	}
	switch o {
	case outcomeSuccess:
		// Any success closes it, the probe's or that of a request sent
		// before it opened or as a last resort: the origin answers.
		b.failures = 0
		b.set(stateClosed)
	case outcomeFailure:
		switch b.state {
		case stateClosed:
			b.failures++
			if b.failures >= b.failAt {
				b.failures = 0
				b.set(stateOpen)
				b.openedAt = now
			}
		default:
			b.set(stateOpen)
			b.openedAt = now
		}
	}
	to := b.state
	b.mu.Unlock()
	b.notify(from, to)
}

// current returns the state, for tests and logs.
func (b *breaker) current() breakerState {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state
}

// set changes the state; b.mu must be held.
func (b *breaker) set(s breakerState) {
	b.state = s
	b.gauge.Set(float64(s))
}

func (b *breaker) notify(from, to breakerState) {
	if from != to && b.changed != nil {
		b.changed(from, to)
	}
}
