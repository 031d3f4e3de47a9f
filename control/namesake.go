package control

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/selfcdn/cdn/internal/state"
)

// namesakes spots two edge processes running under one name (a host's
// config copied to another, creds and all): both heartbeat the same key,
// so what control reads flips between their registrations. A restart
// changes an edge's registration once and never goes back; seeing one
// come back after another replaced it means two are alive. Nothing in
// the registry tells them apart, so control says so loudly (an error log
// and a counter) and leaves the name's health as it judges it.
type namesakes struct {
	window    time.Duration // how long a replaced registration is remembered
	conflicts prometheus.Counter

	mu    sync.Mutex // guards names
	names map[string]*namesake
}

// namesake is what was read of one name's registrations.
type namesake struct {
	current  string
	replaced map[string]time.Time // registration -> when it was replaced
	warned   time.Time
}

func newNamesakes(window time.Duration, reg prometheus.Registerer) *namesakes {
	n := &namesakes{window: window, names: map[string]*namesake{},
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{Name: "cdn_control_edge_name_conflicts_total",
			Help: "Times two live edge processes were seen heartbeating under one name."})}
	if reg != nil {
		reg.MustRegister(n.conflicts)
	}
	return n
}

// registration identifies one edge process by what it registers.
func registration(e state.Edge) string {
	return e.HTTP + " started " + e.Started.UTC().Format(time.RFC3339Nano)
}

// observe records e's registration read at now, and returns the other
// registration alive under the same name, if any (once per window, so
// the log is not flooded).
func (n *namesakes) observe(e state.Edge, now time.Time) (other string, conflict bool) {
	reg := registration(e)
	n.mu.Lock()
	defer n.mu.Unlock()
	s := n.names[e.Name]
	if s == nil {
		n.names[e.Name] = &namesake{current: reg, replaced: map[string]time.Time{}}
		return "", false
	}
	for r, at := range s.replaced {
		if now.Sub(at) > n.window {
			delete(s.replaced, r)
		}
	}
	if reg == s.current {
		return "", false
	}
	prev := s.current
	_, back := s.replaced[reg]
	s.replaced[prev] = now
	s.current = reg
	if !back {
		return "", false // a restart, or a first flip
	}
	n.conflicts.Inc()
	if now.Sub(s.warned) < n.window {
		return "", false
	}
	s.warned = now
	return prev, true
}

// watchNames follows every heartbeat (polling would read one process's
// and miss the other's when their periods line up) until ctx ends,
// watching again after a failure.
func (c *checker) watchNames(ctx context.Context) {
	for {
		err := c.store.WatchEdges(ctx, func(edges map[string]state.Edge) {
			now := c.now()
			for _, e := range edges {
				if other, dup := c.names.observe(e, now); dup {
					c.log.Error("two edges heartbeat under one name: give each its own name and creds (cdn control creds --role edge --name NEW)",
						slog.String("edge", e.Name), slog.String("one", registration(e)), slog.String("other", other))
				}
			}
		})
		if ctx.Err() != nil {
			return
		}
		c.log.Warn("watching edge heartbeats failed; retrying", slog.Any("err", err))
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}
