package control

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/selfcdn/cdn/internal/state"
)

// TestNamesakes: a restart changes an edge's registration once and is
// no conflict; two processes under one name flip back and forth and are.
func TestNamesakes(t *testing.T) {
	t0 := time.Now()
	a := state.Edge{Name: "eu-1", HTTP: "http://10.0.0.1", Started: t0}
	restarted := state.Edge{Name: "eu-1", HTTP: "http://10.0.0.1", Started: t0.Add(time.Minute)}
	copied := state.Edge{Name: "eu-1", HTTP: "http://10.0.0.9", Started: t0.Add(2 * time.Minute)}
	tests := []struct {
		name      string
		seen      []state.Edge
		conflicts float64
	}{
		{name: "steady", seen: []state.Edge{a, a, a}},
		{name: "restart", seen: []state.Edge{a, a, restarted, restarted}},
		{name: "two alive", seen: []state.Edge{restarted, copied, restarted, copied, restarted}, conflicts: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newNamesakes(time.Minute, prometheus.NewRegistry())
			warned := 0
			for i, e := range tt.seen {
				if other, dup := n.observe(e, t0.Add(time.Duration(i)*time.Second)); dup {
					warned++
					if other == registration(e) || other == "" {
						t.Errorf("conflict names %q as the other registration of %q", other, registration(e))
					}
				}
			}
			if got := testutil.ToFloat64(n.conflicts); got != tt.conflicts {
				t.Errorf("conflicts = %g, want %g", got, tt.conflicts)
			}
			if want := min(1, int(tt.conflicts)); warned != want {
				t.Errorf("warned %d times, want %d (once per window)", warned, want)
			}
		})
	}
	// A replaced registration is forgotten after the window: an edge
	// restarted back to an old value much later is no conflict.
	n := newNamesakes(time.Minute, nil)
	n.observe(a, t0)
	n.observe(restarted, t0.Add(time.Second))
	if _, dup := n.observe(a, t0.Add(time.Hour)); dup {
		t.Errorf("a registration replaced an hour ago counted as a namesake")
	}
}
