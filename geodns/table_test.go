package geodns

import (
	"math"
	"net/netip"
	"testing"

	"github.com/selfcdn/cdn/internal/state"
)

// An edge's share follows its capacity and falls with its reported load,
// never to nothing; its addresses come from its registration or its URL.
func TestTableFromState(t *testing.T) {
	up := state.EdgeStatus{Health: state.HealthUp}
	edges := []edgeInfo{
		edgeFromState(state.Edge{Name: "idle", Region: "eu", Capacity: 2, HTTP: "http://192.0.2.1:8080"}, up, true),
		edgeFromState(state.Edge{Name: "busy", Region: "eu", Capacity: 2, Load: 1, Addrs: []string{"192.0.2.2", "2001:db8::2"}}, up, true),
		edgeFromState(state.Edge{Name: "named", Region: "eu", HTTP: "http://edge.example.net"}, up, true),
		edgeFromState(state.Edge{Name: "unjudged", Region: "eu", Addrs: []string{"192.0.2.4"}}, state.EdgeStatus{}, false),
		edgeFromState(state.Edge{Name: "drained", Region: "eu", Addrs: []string{"192.0.2.5"}}, state.EdgeStatus{Health: state.HealthUp, Draining: true}, true),
	}
	tb := newTable(nil, edges, true)
	want := []struct {
		weight  float64
		healthy bool
		v4, v6  int
	}{
		{2, true, 1, 0},
		{0.2, true, 1, 1},
		{1, true, 0, 0}, // a hostname is no address: nothing to answer with
		{1, false, 1, 0},
		{1, false, 1, 0},
	}
	for i, w := range want {
		e := tb.edges.Edge(i)
		if math.Abs(e.Weight-w.weight) > 1e-9 || e.Healthy != w.healthy || len(tb.v4[i]) != w.v4 || len(tb.v6[i]) != w.v6 {
			t.Errorf("%s: weight %g healthy %v addrs %d/%d, want %g %v %d/%d", e.Name, e.Weight, e.Healthy,
				len(tb.v4[i]), len(tb.v6[i]), w.weight, w.healthy, w.v4, w.v6)
		}
	}
	if tb.healthy != 3 || tb.unknown != 1 || tb.draining != 1 {
		t.Errorf("counts healthy %d unknown %d draining %d, want 3 1 1", tb.healthy, tb.unknown, tb.draining)
	}
	if got := netip.AddrFrom4([4]byte(tb.v4[0][0].To4())); got != netip.MustParseAddr("192.0.2.1") {
		t.Errorf("address from the public URL: %s", got)
	}
}
