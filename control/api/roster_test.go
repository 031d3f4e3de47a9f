package api

import (
	"context"
	"log/slog"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/selfcdn/cdn/internal/state"
)

// TestRosterCensus: a live roster, fed by watches of the two buckets,
// counts the same edges with the same verdicts as listing them; one not
// live (not yet, or a watch lost) lists them.
func TestRosterCensus(t *testing.T) {
	for _, tt := range waitCases {
		t.Run(tt.name, func(t *testing.T) {
			ta := startAPI(t)
			ta.setUp(t, tt.edges)
			a := New(ta.store, NewProgress(), slog.New(slog.DiscardHandler), time.Now, 4096, 1<<20)
			want, err := a.census(t.Context(), nil)
			if err != nil {
				t.Fatal(err)
			}

			a.Roster = NewRoster()
			if _, _, live := a.Roster.census(); live {
				t.Fatal("a roster no watch fed is live")
			}
			ctx, stop := context.WithCancel(t.Context())
			var wg sync.WaitGroup
			defer wg.Wait()
			defer stop()
			wg.Go(func() { ta.store.WatchEdges(ctx, a.Roster.SetEdges) })
			wg.Go(func() { ta.store.WatchEdgeStatuses(ctx, a.Roster.SetStatuses) })
			deadline := time.Now().Add(10 * time.Second)
			for {
				got, changed, live := a.Roster.census()
				if live {
					if !maps.Equal(got, want) {
						t.Errorf("roster census = %v, listing = %v", got, want)
					}
					break
				}
				select {
				case <-changed:
				case <-time.After(time.Until(deadline)):
					t.Fatal("the roster is not live 10s after its watches started")
				}
			}

			// A lost watch: census lists the buckets again.
			a.Roster.LostStatuses()
			if _, _, live := a.Roster.census(); live {
				t.Error("roster live after its verdicts' watch was lost")
			}
			got, err := a.census(t.Context(), nil)
			if err != nil || !maps.Equal(got, want) {
				t.Errorf("census with a lost roster = %v, %v; want the listing %v", got, err, want)
			}
		})
	}
}

// TestRosterFollows: registrations, verdicts and deletions reach a live
// roster, and a change wakes whoever waits on it.
func TestRosterFollows(t *testing.T) {
	ta := startAPI(t)
	ctx, stop := context.WithCancel(t.Context())
	r := NewRoster()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stop()
	wg.Go(func() { ta.store.WatchEdges(ctx, r.SetEdges) })
	wg.Go(func() { ta.store.WatchEdgeStatuses(ctx, r.SetStatuses) })
	// until waits for the roster to say want.
	until := func(what string, want map[string]verdict) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			got, changed, live := r.census()
			if live && maps.Equal(got, want) {
				return
			}
			select {
			case <-changed:
			case <-time.After(time.Until(deadline)):
				t.Fatalf("%s: roster census = %v (live %v), want %v", what, got, live, want)
			}
		}
	}
	until("empty", map[string]verdict{})
	if err := ta.store.Heartbeat(ctx, state.Edge{Name: "e1", HTTP: "http://127.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	until("registered", map[string]verdict{"e1": {health: state.HealthUnknown}})
	if err := ta.store.SetEdgeStatus(ctx, state.EdgeStatus{Name: "e1", Health: state.HealthDown}); err != nil {
		t.Fatal(err)
	}
	until("judged down", map[string]verdict{"e1": {health: state.HealthDown}})
	if err := ta.store.DeleteEdge(ctx, "e1"); err != nil {
		t.Fatal(err)
	}
	until("deleted", map[string]verdict{})
}
