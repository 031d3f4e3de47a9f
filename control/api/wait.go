package api

import (
	"cmp"
	"context"
	"errors"

	"github.com/selfcdn/cdn/internal/state"
)

// Who a wait counts (issue 19, an honest --wait). A purge or release wait
// (?wait=) counts every registered edge that is not known to be down or
// draining. An edge control has not judged yet (just started, or control
// just restarted) is waited for, not skipped: counting only the edges
// judged up made a push right after `cdn up` answer "served by every
// healthy edge" at once, since no edge had been judged yet and an empty
// set is trivially done. For the same reason an answer with no edge to
// wait for is never a success: it says so (Expected 0 and a message).

// noEdgeMessage explains an answer with no edge to wait for.
const noEdgeMessage = "no edge to wait for: none is registered, or every one is down or draining"

// verdict is control's word on one registered edge, as a wait reads it.
type verdict struct {
	health   string // state.HealthUp, HealthDown or HealthUnknown
	draining bool
}

// counted reports whether a wait waits for the edge.
func (v verdict) counted() bool { return v.health != state.HealthDown && !v.draining }

// census returns every registered edge by name, with control's verdict on
// it (HealthUnknown when it has none yet).
//
// known is what an earlier call of the same wait returned (nil for the
// first). Listing a bucket can miss a key rewritten while it lists, and
// heartbeats rewrite every edge's registration every second or two: an
// edge a wait has seen once, or one control has judged, is looked up by
// name when the listing misses it, and leaves the census only once it is
// deleted (DELETE /v1/edges/{edge}).
//
// With a live Roster it answers from the roster, which watches both
// buckets and so misses nothing.
func (a *API) census(ctx context.Context, known map[string]verdict) (map[string]verdict, error) {
	if a.Roster != nil {
		if out, _, ok := a.Roster.census(); ok {
			return out, nil
		}
	}
	edges, err := a.store.Edges(ctx)
	if err != nil {
		return nil, err
	}
	statuses, err := a.store.EdgeStatuses(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]verdict, len(edges))
	for _, e := range edges {
		out[e.Name] = verdict{health: state.HealthUnknown}
	}
	missed := make(map[string]bool)
	for _, st := range statuses {
		missed[st.Name] = true
	}
	for name := range known {
		missed[name] = true
	}
	for name := range missed {
		if _, listed := out[name]; listed {
			continue
		}
		// A status without a registration may also be left over from
		// an edge deleted while a health check judged it.
		switch _, err := a.store.Edge(ctx, name); {
		case err == nil:
			out[name] = verdict{health: state.HealthUnknown}
		case !errors.Is(err, state.ErrNotFound):
			return nil, err
		}
	}
	for _, st := range statuses {
		if _, ok := out[st.Name]; ok {
			out[st.Name] = verdict{health: cmp.Or(st.Health, state.HealthUnknown), draining: st.Draining}
		}
	}
	return out, nil
}
