package state

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Edge is an edge's own registration, rewritten by its heartbeat.
type Edge struct {
	Name   string  `json:"name"`
	Region string  `json:"region"`
	Lat    float64 `json:"lat"`
	Lon    float64 `json:"lon"`
	// HTTP is the edge's public base URL; Admin its health and metrics
	// base URL, which control's health checks use.
	HTTP  string `json:"http"`
	Admin string `json:"admin,omitempty"`
	// Peer is the base URL other edges send their misses to (edge/tier);
	// empty: the edge is never a home.
	Peer string `json:"peer,omitempty"`
	// Addrs are the public IP addresses GeoDNS answers with; empty means
	// the host of HTTP, when that is an IP address.
	Addrs []string `json:"addrs,omitempty"`
	// Capacity weighs the edge against others in its region (1 if unset).
	Capacity float64 `json:"capacity,omitempty"`
	// Load is how busy the edge was over its last heartbeat period, 0 to
	// 1 (CPU time used over CPU time available); GeoDNS sends a loaded
	// edge fewer clients.
	Load    float64   `json:"load,omitempty"`
	Version string    `json:"version,omitempty"`
	Started time.Time `json:"started"`
	// Seen is the time of the last heartbeat, by the NATS server's clock
	// when read back (edges' clocks may be off).
	Seen time.Time `json:"seen"`
}

// Health values of EdgeStatus.
const (
	HealthUnknown = "unknown"
	HealthUp      = "up"
	HealthDown    = "down"
)

// EdgeStatus is what control decided about an edge: its health (from
// heartbeats and active checks) and whether an operator drained it.
type EdgeStatus struct {
	Name     string    `json:"name"`
	Health   string    `json:"health"`
	Reason   string    `json:"reason,omitempty"`
	Since    time.Time `json:"since"`
	Draining bool      `json:"draining"`
}

// Heartbeat registers e (or refreshes its registration).
func (s *Store) Heartbeat(ctx context.Context, e Edge) error {
	_, err := put(ctx, s.edges, e.Name, e)
	return err
}

// Edges lists the registered edges.
func (s *Store) Edges(ctx context.Context) ([]Edge, error) {
	return listEntries(ctx, s.edges, seen)
}

// Edge returns one edge's registration.
func (s *Store) Edge(ctx context.Context, name string) (Edge, error) {
	e, entry, err := getEntry[Edge](ctx, s.edges, name)
	if err != nil {
		return e, err
	}
	return seen(e, entry), nil
}

func seen(e Edge, entry jetstream.KeyValueEntry) Edge {
	e.Seen = entry.Created()
	return e
}

// WatchEdges calls f with every registered edge (by name) once the
// current set is known, and again after every change (every heartbeat),
// until ctx ends or the watch fails. f must not keep the map.
func (s *Store) WatchEdges(ctx context.Context, f func(map[string]Edge)) error {
	return watchBucket(ctx, s, s.edges, func(_ string, e Edge, entry jetstream.KeyValueEntry) Edge { return seen(e, entry) }, f)
}

// WatchEdgeStatuses calls f with control's status of every judged edge
// (by name) once the current set is known, and again after every change,
// until ctx ends or the watch fails. f must not keep the map.
func (s *Store) WatchEdgeStatuses(ctx context.Context, f func(map[string]EdgeStatus)) error {
	return watchBucket(ctx, s, s.status, func(_ string, st EdgeStatus, _ jetstream.KeyValueEntry) EdgeStatus { return st }, f)
}

// DeleteEdge forgets an edge and its status.
func (s *Store) DeleteEdge(ctx context.Context, name string) error {
	del(ctx, s.status, name)
	return del(ctx, s.edges, name)
}

// Unjudged is the status of an edge control has not judged yet.
func Unjudged(name string) EdgeStatus { return EdgeStatus{Name: name, Health: HealthUnknown} }

// EdgeStatus returns control's status for the named edge; an edge control
// has not judged yet is HealthUnknown.
func (s *Store) EdgeStatus(ctx context.Context, name string) (EdgeStatus, error) {
	st, _, err := get[EdgeStatus](ctx, s.status, name)
	if err == ErrNotFound {
		return Unjudged(name), nil
	}
	return st, err
}

// EdgeStatuses lists control's status of every edge it has judged. It is
// rewritten only when a verdict changes, so unlike Edges (rewritten by
// every heartbeat, and so liable to miss a key being rewritten while it
// lists) it lists every edge.
func (s *Store) EdgeStatuses(ctx context.Context) ([]EdgeStatus, error) {
	return list[EdgeStatus](ctx, s.status)
}

// SetEdgeStatus records control's status for an edge.
func (s *Store) SetEdgeStatus(ctx context.Context, st EdgeStatus) error {
	_, err := put(ctx, s.status, st.Name, st)
	return err
}
