package geodns

import (
	"slices"
	"testing"

	"github.com/miekg/dns"

	"github.com/selfcdn/cdn/internal/state"
)

// TestExplain: the explanation is the answer's own reasoning: where the
// client is, the regions in the order tried, why an edge is out.
func TestExplain(t *testing.T) {
	cfg := testConfig(t)
	g := start(t, cfg, Deps{})
	ex := g.explain("192.0.2.0/24")
	if ex.Error != "" || ex.Region != "eu" || !slices.Equal(ex.Chosen, []string{"eu-1"}) || !ex.Location.HasPoint {
		t.Fatalf("explain 192.0.2.0/24 = %+v, want eu-1 from eu", ex)
	}
	if ex.Regions[0].Name != "eu" || len(ex.Regions) != 5 || !sortedByDistance(ex.Regions) {
		t.Errorf("regions %+v: want eu first, then by distance", ex.Regions)
	}
	if e := ex.Regions[0].Edges[0]; e.Name != "eu-1" || !e.Eligible || e.Health != state.HealthUp || e.Weight <= 0 {
		t.Errorf("eu-1 as explained: %+v", e)
	}
	// The same answer as a query from that subnet.
	if got := answers(ask(t, g.addr, "udp", query("www.cdn.test.", dns.TypeA, "192.0.2.0/24"))); !slices.Equal(got, []string{"127.0.2.1"}) {
		t.Errorf("the query's answer %v, want eu-1's 127.0.2.1", got)
	}

	// Drained, eu-1 is out, and says why; the next region answers.
	cfg.Edges[1].Draining = true
	g = start(t, cfg, Deps{})
	ex = g.explain("192.0.2.1")
	if ex.Region == "eu" || slices.Contains(ex.Chosen, "eu-1") || len(ex.Chosen) != 1 {
		t.Errorf("drained: %+v, want another region's edge", ex)
	}
	if e := ex.Regions[0].Edges[0]; e.Name != "eu-1" || e.Eligible || !e.Draining {
		t.Errorf("drained eu-1 as explained: %+v", e)
	}
	if ex.Chosen[0] != ex.Regions[1].Edges[0].Name {
		t.Errorf("chosen %v, want the next region tried (%s)", ex.Chosen, ex.Regions[1].Name)
	}

	for _, bad := range []string{"", "nonsense", "192.0.2.0/33", "<script>"} {
		if ex := g.explain(bad); ex.Error == "" || len(ex.Chosen) != 0 {
			t.Errorf("explain %q = %+v, want an error", bad, ex)
		}
	}
}

func sortedByDistance(rs []state.ExplainRegion) bool {
	for i := 2; i < len(rs); i++ {
		if rs[i].DistanceKM < rs[i-1].DistanceKM {
			return false
		}
	}
	return true
}
