package control

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/selfcdn/cdn/internal/state"
	"github.com/selfcdn/cdn/internal/statetest"
)

// TestHealthPurgeLag: an edge that has not applied a purge the log held
// health.purge_lag ago goes down at once and stays down until it has
// caught up, however good its heartbeat; nobody is judged before the
// checker has watched the log that long, nor when no edge at all looks
// caught up (control's view of the reports is what is stale then).
func TestHealthPurgeLag(t *testing.T) {
	ctx := t.Context()
	store := statetest.Open(t)
	for _, name := range []string{"a", "b"} {
		if err := store.Heartbeat(ctx, state.Edge{Name: name, HTTP: "http://127.0.0.9:80"}); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	var mu sync.Mutex
	applied := map[string]uint64{}
	report := func(edge string, v uint64) { mu.Lock(); applied[edge] = v; mu.Unlock() }
	c := newChecker(store, HealthConfig{Interval: time.Second, Timeout: time.Second, HeartbeatTimeout: time.Hour,
		FailAfter: 2, RecoverAfter: 2, PurgeLag: 5 * time.Second}, logger(t), func() time.Time { return now }, nil)
	c.applied = func(edge string) (uint64, bool) {
		mu.Lock()
		defer mu.Unlock()
		v, ok := applied[edge]
		return v, ok
	}
	publish := func() uint64 {
		v, _, err := store.PublishPurge(ctx, "www", "", []byte(`{"site":"www","all":true}`))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	health := func(edge string) (string, string) {
		st, err := store.EdgeStatus(ctx, edge)
		if err != nil {
			t.Fatal(err)
		}
		return st.Health, st.Reason
	}
	round := func(d time.Duration) {
		now = now.Add(d)
		if err := c.round(context.Background()); err != nil {
			t.Fatal(err)
		}
	}

	v := publish()
	report("a", v)
	report("b", v)
	round(0)
	round(time.Second)
	if a, _ := health("a"); a != "up" {
		t.Fatalf("a is %s after two good rounds, want up", a)
	}
	// b misses the next two purges; a applies them.
	publish()
	v = publish()
	report("a", v)
	for range 4 { // under the lag: purges in flight
		round(time.Second)
		if h, r := health("b"); h != "up" {
			t.Fatalf("b %s (%s) within the lag, want up", h, r)
		}
	}
	round(2 * time.Second)
	if h, r := health("b"); h != "down" || !strings.HasPrefix(r, reasonBehind) {
		t.Errorf("b is %s (%q) with purges the log held 5s ago unapplied, want down, behind on purges", h, r)
	}
	if h, _ := health("a"); h != "up" {
		t.Errorf("a, caught up, is %s", h)
	}
	if got := testutil.ToFloat64(c.behind); got != 1 {
		t.Errorf("cdn_control_edges_behind_purges %g, want 1", got)
	}
	// Back: caught up, b needs RecoverAfter good rounds.
	report("b", v)
	round(time.Second)
	if h, _ := health("b"); h != "down" {
		t.Errorf("b up after one good round, want RecoverAfter (2)")
	}
	round(time.Second)
	if h, _ := health("b"); h != "up" {
		t.Errorf("b caught up is %s after two rounds, want up", h)
	}

	// Every edge behind: control's view is stale, nobody goes down.
	publish()
	for range 7 {
		round(time.Second)
	}
	for _, e := range []string{"a", "b"} {
		if h, r := health(e); h != "up" {
			t.Errorf("%s %s (%s) when no edge looks caught up, want up", e, h, r)
		}
	}
}

// TestHealthHeartbeatNeverOlder: a registry read answered by a replica
// that is catching up gives an edge an older heartbeat than the last
// read did; the checker keeps the newest it has seen, so the edge does
// not flap down and up with the replica that answers.
func TestHealthHeartbeatNeverOlder(t *testing.T) {
	now := time.Now()
	c := newChecker(nil, HealthConfig{Interval: time.Second, Timeout: time.Second, HeartbeatTimeout: 4 * time.Second,
		FailAfter: 2, RecoverAfter: 2}, logger(t), func() time.Time { return now }, nil)
	t0 := now
	for _, tc := range []struct {
		name string
		at   time.Duration // when the checker reads, after t0
		seen time.Duration // the heartbeat read, before t0
		ok   bool
	}{
		{"fresh", 0, time.Second, true},
		{"a lagging replica's older heartbeat", 0, 10 * time.Second, true},
		{"the newest seen, gone stale", 5 * time.Second, 10 * time.Second, false},
	} {
		now = t0.Add(tc.at)
		ok, reason := c.probe(t.Context(), state.Edge{Name: "a", Seen: t0.Add(-tc.seen)})
		if ok != tc.ok {
			t.Errorf("%s: ok %v (%q), want %v", tc.name, ok, reason, tc.ok)
		}
	}
}

// unreadableRegistry is a store whose registry and verdict reads fail,
// as gets answered by a replica cut off from the rest do; writes work.
type unreadableRegistry struct{ *state.Store }

var errReplicaCut = errors.New("context deadline exceeded (a replica behind a cut)")

func (unreadableRegistry) Edges(context.Context) ([]state.Edge, error) { return nil, errReplicaCut }
func (unreadableRegistry) EdgeStatus(context.Context, string) (state.EdgeStatus, error) {
	return state.EdgeStatus{}, errReplicaCut
}

// TestHealthJudgesByWatchWhenUnreadable: when the registry cannot be
// read, a round judges by what control's watches last delivered instead
// of failing whole (for as long as the cut lasts); without live watches
// it fails as before.
func TestHealthJudgesByWatchWhenUnreadable(t *testing.T) {
	ctx := t.Context()
	store := statetest.Open(t)
	now := time.Now()
	c := newChecker(unreadableRegistry{store}, HealthConfig{Interval: time.Second, Timeout: time.Second, HeartbeatTimeout: 4 * time.Second,
		FailAfter: 2, RecoverAfter: 2, PurgeLag: -1}, logger(t), func() time.Time { return now }, nil)
	if err := c.round(ctx); !errors.Is(err, errReplicaCut) {
		t.Fatalf("round with the registry unreadable and no watch = %v, want its error", err)
	}
	watched := []state.Edge{{Name: "fresh", Seen: now}, {Name: "silent", Seen: now.Add(-time.Minute)}}
	live := false
	c.watched = func() ([]state.Edge, map[string]state.EdgeStatus, bool) {
		return watched, map[string]state.EdgeStatus{"silent": {Name: "silent", Health: state.HealthUp}}, live
	}
	if err := c.round(ctx); !errors.Is(err, errReplicaCut) {
		t.Fatalf("round with the watches down = %v, want the read's error", err)
	}
	live = true
	for range 2 {
		if err := c.round(ctx); err != nil {
			t.Fatalf("round with the watches live: %v", err)
		}
	}
	for edge, want := range map[string]string{"fresh": state.HealthUp, "silent": state.HealthDown} {
		st, err := store.EdgeStatus(ctx, edge)
		if err != nil {
			t.Fatal(err)
		}
		if st.Health != want {
			t.Errorf("%s judged %s (%s) by the watched registry, want %s", edge, st.Health, st.Reason, want)
		}
	}
}

// TestHealthForgetsGoneEdges: what the checker keeps per edge goes once
// the edge is no longer registered and its last heartbeat is long past;
// an edge a listing missed (its key being rewritten) keeps it.
func TestHealthForgetsGoneEdges(t *testing.T) {
	now := time.Now()
	c := newChecker(nil, HealthConfig{Interval: time.Second, Timeout: time.Second, HeartbeatTimeout: 4 * time.Second},
		logger(t), func() time.Time { return now }, nil)
	for name, seen := range map[string]time.Duration{"kept": time.Second, "missed": time.Second, "deleted": time.Minute} {
		c.probe(t.Context(), state.Edge{Name: name, Seen: now.Add(-seen)})
		c.streaks[name] = &streak{fail: 1}
	}
	c.forgetGone([]state.Edge{{Name: "kept"}})
	for name, want := range map[string]bool{"kept": true, "missed": true, "deleted": false} {
		_, seen := c.seen[name]
		_, streak := c.streaks[name]
		if seen != want || streak != want {
			t.Errorf("%s: heartbeat kept %v, streak kept %v; want %v", name, seen, streak, want)
		}
	}
}
