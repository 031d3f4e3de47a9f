package edge

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/selfcdn/cdn/edge/tier"
	"github.com/selfcdn/cdn/internal/state"
)

// followTier keeps the tier's membership and secret current until ctx
// ends. Control's verdicts (written only when one changes) are watched;
// the registry, rewritten by every heartbeat of every edge, is read when
// a verdict changes and every registryRefresh, not watched: a watch would
// deliver each heartbeat of the network to every edge.
func (s *Server) followTier(ctx context.Context, store *state.Store) {
	var running sync.WaitGroup
	defer running.Wait()
	running.Go(func() { s.readPeerSecret(ctx, store) })

	changed := make(chan map[string]state.EdgeStatus, 1)
	running.Go(func() {
		retry(ctx, s.log, "watching edge health", 5*time.Second, func() error {
			return store.WatchEdgeStatuses(ctx, func(m map[string]state.EdgeStatus) {
				m = maps.Clone(m)
				select {
				case <-changed: // replaced by the newer set
				default:
				}
				changed <- m
			})
		})
	})
	t := time.NewTimer(registryRefresh)
	defer t.Stop()
	var statuses map[string]state.EdgeStatus
	for {
		select {
		case <-ctx.Done():
			return
		case statuses = <-changed:
		case <-t.C:
		}
		next := registryRefresh
		if statuses != nil { // before control's first verdict nothing is up
			edges, err := store.Edges(ctx)
			switch {
			case err != nil && ctx.Err() == nil:
				s.log.LogAttrs(ctx, slog.LevelDebug, "reading the edge registry", slog.Any("err", err))
				next = time.Second
			case err == nil:
				s.handler.tier.SetView(tier.NewView(members(edges, statuses)))
				if unregistered(edges, statuses) {
					// An edge judged up whose registration has not
					// reached us yet: look again soon.
					next = 250 * time.Millisecond
				}
			}
		}
		t.Reset(next)
	}
}

// unregistered reports whether an edge control judges up is missing
// from edges.
func unregistered(edges []state.Edge, statuses map[string]state.EdgeStatus) bool {
	up := 0
	for _, st := range statuses {
		if st.Health == state.HealthUp {
			up++
		}
	}
	for _, e := range edges {
		if st, ok := statuses[e.Name]; ok && st.Health == state.HealthUp {
			up--
		}
	}
	return up > 0
}

// registryRefresh is how often the registry is read for what changes
// without a verdict changing (a peer URL after a restart).
const registryRefresh = 10 * time.Second

// members joins the registry with control's verdicts: an edge is a home
// while control judges it up and it is not draining.
func members(edges []state.Edge, statuses map[string]state.EdgeStatus) []tier.Member {
	out := make([]tier.Member, 0, len(edges))
	for _, e := range edges {
		st := statuses[e.Name]
		out = append(out, tier.Member{
			Name: e.Name, Region: e.Region, URL: e.Peer, Lat: e.Lat, Lon: e.Lon, Weight: e.Capacity,
			Up: st.Health == state.HealthUp && !st.Draining, Since: st.Since,
		})
	}
	return out
}

// readPeerSecret hands the tier the edge-to-edge secret, waiting for
// control to make it; until then the edge asks no peer.
func (s *Server) readPeerSecret(ctx context.Context, store *state.Store) {
	retry(ctx, s.log, "reading the peer secret", 5*time.Second, func() error {
		secret, err := store.PeerSecret(ctx)
		if err != nil {
			return err
		}
		s.handler.tier.SetSecret(secret)
		return errDone
	})
}

// errDone ends a retry loop that succeeded.
var errDone = errors.New("done")

// retry runs f until ctx ends or f returns errDone, waiting longer
// after each failure (up to longest) and logging the first of a spell
// (a NATS outage fails every attempt).
func retry(ctx context.Context, log *slog.Logger, what string, longest time.Duration, f func() error) {
	const first = 250 * time.Millisecond
	wait := first
	logged := false
	for {
		began := time.Now()
		err := f()
		if errors.Is(err, errDone) || ctx.Err() != nil {
			return
		}
		if time.Since(began) > 2*longest {
			// It ran a good while first: a new spell.
			wait, logged = first, false
		}
		if !logged {
			log.LogAttrs(ctx, slog.LevelWarn, what+" failed; retrying", slog.Any("err", err))
			logged = true
		} else {
			log.LogAttrs(ctx, slog.LevelDebug, what+" failed again", slog.Any("err", err), slog.Duration("retry_in", wait))
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(wait*2, longest)
	}
}
