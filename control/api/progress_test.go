package api

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/selfcdn/cdn/internal/state"
	"github.com/selfcdn/cdn/internal/testwait"
)

// TestProgressFollow: a follower gets each edge's latest report at once,
// then every newer one, never an older one, and stops with its context.
func TestProgressFollow(t *testing.T) {
	p := NewProgress()
	p.Set(state.PurgeApplied{Edge: "a", Version: 3})
	p.Set(state.PurgeApplied{Edge: "b", Version: 1})
	var mu sync.Mutex
	got := map[string][]uint64{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- p.Follow(ctx, func(a state.PurgeApplied) {
			mu.Lock()
			got[a.Edge] = append(got[a.Edge], a.Version)
			mu.Unlock()
		})
	}()
	has := func(edge string, v uint64) bool {
		mu.Lock()
		defer mu.Unlock()
		s := got[edge]
		return len(s) > 0 && s[len(s)-1] == v
	}
	testwait.Until(t, "the reports so far", func() bool { return has("a", 3) && has("b", 1) })
	p.Set(state.PurgeApplied{Edge: "b", Version: 2})
	p.Set(state.PurgeApplied{Edge: "a", Version: 2}) // older: Set drops it
	p.Set(state.PurgeApplied{Edge: "c", Version: 4})
	testwait.Until(t, "the newer reports", func() bool { return has("b", 2) && has("c", 4) })
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Follow did not return after its context ended")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got["a"]) != 1 {
		t.Errorf("edge a reported %v, want only 3", got["a"])
	}
	for edge, vs := range got {
		for i := 1; i < len(vs); i++ {
			if vs[i] <= vs[i-1] {
				t.Errorf("edge %s: %v, not rising", edge, vs)
			}
		}
	}
}
