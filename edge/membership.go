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
// ends: the edge registry and control's verdicts on each edge, watched
// together, make the view; the secret is read once control has made it.
func (s *Server) followTier(ctx context.Context, store *state.Store) {
	var running sync.WaitGroup
	defer running.Wait()
	running.Go(func() { s.readPeerSecret(ctx, store) })

	var mu sync.Mutex // protects edges, statuses
	var edges map[string]state.Edge
	var statuses map[string]state.EdgeStatus
	update := func() {
		s.handler.tier.SetView(tier.NewView(members(edges, statuses)))
	}
	running.Go(func() {
		retry(ctx, s.log, "watching the edge registry", func() error {
			return store.WatchEdges(ctx, func(m map[string]state.Edge) {
				mu.Lock()
				defer mu.Unlock()
				edges = maps.Clone(m)
				update()
			})
		})
	})
	retry(ctx, s.log, "watching edge health", func() error {
		return store.WatchEdgeStatuses(ctx, func(m map[string]state.EdgeStatus) {
			mu.Lock()
			defer mu.Unlock()
			statuses = maps.Clone(m)
			update()
		})
	})
}

// members joins the registry with control's verdicts: an edge is a home
// while control judges it up and it is not draining.
func members(edges map[string]state.Edge, statuses map[string]state.EdgeStatus) []tier.Member {
	out := make([]tier.Member, 0, len(edges))
	for name, e := range edges {
		st := statuses[name]
		out = append(out, tier.Member{
			Name: name, Region: e.Region, URL: e.Peer, Lat: e.Lat, Lon: e.Lon, Weight: e.Capacity,
			Up: st.Health == state.HealthUp && !st.Draining, Since: st.Since,
		})
	}
	return out
}

// readPeerSecret hands the tier the edge-to-edge secret, waiting for
// control to make it; until then the edge asks no peer.
func (s *Server) readPeerSecret(ctx context.Context, store *state.Store) {
	retry(ctx, s.log, "reading the peer secret", func() error {
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
// after each failure (up to 5s) and logging the first of a spell (a
// NATS outage fails every attempt).
func retry(ctx context.Context, log *slog.Logger, what string, f func() error) {
	const first, longest = 250 * time.Millisecond, 5 * time.Second
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
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(wait*2, longest)
	}
}
