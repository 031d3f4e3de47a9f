package api

import (
	"maps"
	"sync"

	"github.com/selfcdn/cdn/internal/state"
)

// Roster is control's watched view of the edge registry and of its
// verdicts, which waits count edges from (see census). Listing the two
// buckets instead cost every waited-for purge two consumers and a read
// per edge and bucket, more than the purge itself took to reach 16 edges
// (issue 25). The zero value is not usable; use NewRoster.
//
// Until both watches have delivered their current values, and after
// either fails (LostEdges, LostStatuses) until it delivers them again, the roster is not
// live and census lists the buckets as before.
type Roster struct {
	mu       sync.Mutex            // protects the fields below
	edges    map[string]state.Edge // the registry as last delivered, by name
	statuses map[string]state.EdgeStatus
	// edgesLive and statusesLive say each watch has delivered the
	// bucket's current values and not failed since.
	edgesLive, statusesLive bool
	changed                 chan struct{} // closed and replaced on every change
}

// NewRoster returns a roster that is not live yet.
func NewRoster() *Roster {
	return &Roster{edges: map[string]state.Edge{}, statuses: map[string]state.EdgeStatus{}, changed: make(chan struct{})}
}

// SetEdges records the registered edges (by name): the whole registry,
// as a watch of it delivers it.
func (r *Roster) SetEdges(edges map[string]state.Edge) {
	r.mu.Lock()
	defer r.mu.Unlock()
	same := r.edgesLive && len(edges) == len(r.edges)
	for name := range edges {
		_, had := r.edges[name]
		same = same && had
	}
	clear(r.edges)
	maps.Copy(r.edges, edges) // a heartbeat changes only when an edge was seen
	if same {
		return // the set of edges is what it was: waits need not look again
	}
	r.edgesLive = true
	r.notify()
}

// SetStatuses records control's verdicts (by edge name), as a watch of
// them delivers them.
func (r *Roster) SetStatuses(statuses map[string]state.EdgeStatus) {
	r.mu.Lock()
	defer r.mu.Unlock()
	clear(r.statuses)
	maps.Copy(r.statuses, statuses)
	r.statusesLive = true
	r.notify()
}

// LostEdges marks the roster not live because the registry's watch
// failed: the registry may change unseen until the watch is back.
func (r *Roster) LostEdges() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.edgesLive = false
	r.notify()
}

// LostStatuses is LostEdges for the watch of the verdicts.
func (r *Roster) LostStatuses() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.statusesLive = false
	r.notify()
}

func (r *Roster) notify() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// census returns every registered edge with control's verdict on it (as
// API.census), and a channel closed at the roster's next change; ok is
// false while the roster is not live.
func (r *Roster) census() (edges map[string]verdict, changed <-chan struct{}, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.edgesLive || !r.statusesLive {
		return nil, r.changed, false
	}
	edges = make(map[string]verdict, len(r.edges))
	for name := range r.edges {
		v := verdict{health: state.HealthUnknown}
		if st, judged := r.statuses[name]; judged {
			v = verdict{health: st.Health, draining: st.Draining}
			if v.health == "" {
				v.health = state.HealthUnknown
			}
		}
		edges[name] = v
	}
	return edges, r.changed, true
}

// Snapshot returns the registered edges and control's verdicts as the
// watches last delivered them; ok is false while the roster is not live
// (or r is nil).
func (r *Roster) Snapshot() (edges []state.Edge, statuses map[string]state.EdgeStatus, ok bool) {
	if r == nil {
		return nil, nil, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.edgesLive || !r.statusesLive {
		return nil, nil, false
	}
	edges = make([]state.Edge, 0, len(r.edges))
	for _, e := range r.edges {
		edges = append(edges, e)
	}
	return edges, maps.Clone(r.statuses), true
}

// changes returns a channel closed at the roster's next change; nil (a
// channel never ready) for a nil roster.
func (r *Roster) changes() <-chan struct{} {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.changed
}
