package nearest_test

import (
	"math"
	"slices"
	"testing"

	"github.com/selfcdn/cdn/geodns/nearest"
)

// Cities the tests place edges and clients in.
var (
	frankfurt = nearest.Point{Lat: 50.11, Lon: 8.68}
	ashburn   = nearest.Point{Lat: 39.04, Lon: -77.49}
	tokyo     = nearest.Point{Lat: 35.68, Lon: 139.69}
	saoPaulo  = nearest.Point{Lat: -23.55, Lon: -46.63}
	sydney    = nearest.Point{Lat: -33.87, Lon: 151.21}
	paris     = nearest.Point{Lat: 48.86, Lon: 2.35}
)

func edge(name, region string, p nearest.Point, healthy bool) nearest.Edge {
	return nearest.Edge{Name: name, Region: region, Lat: p.Lat, Lon: p.Lon, Weight: 1, Healthy: healthy, V4: true}
}

func names(s *nearest.Set, idx []int) []string {
	var out []string
	for _, i := range idx {
		out = append(out, s.Edge(i).Name)
	}
	slices.Sort(out)
	return out
}

func TestPick(t *testing.T) {
	world := func(down ...string) []nearest.Edge {
		es := []nearest.Edge{
			edge("fra-1", "eu", frankfurt, true), edge("par-1", "eu", paris, true),
			edge("iad-1", "na", ashburn, true),
			edge("nrt-1", "as", tokyo, true),
			edge("gru-1", "sa", saoPaulo, true),
		}
		for i := range es {
			if slices.Contains(down, es[i].Name) {
				es[i].Healthy = false
			}
		}
		return es
	}
	for _, tc := range []struct {
		name     string
		edges    []nearest.Edge
		client   nearest.Point
		located  bool
		n        int
		want     []string // exact set, when the answer is determined
		region   string
		failOpen bool
	}{
		{name: "europe gets both european edges", edges: world(), client: frankfurt, located: true, n: 2, want: []string{"fra-1", "par-1"}, region: "eu"},
		{name: "n bounds the answer", edges: world(), client: paris, located: true, n: 1, region: "eu"},
		{name: "tokyo", edges: world(), client: tokyo, located: true, n: 2, want: []string{"nrt-1"}, region: "as"},
		{name: "sydney is nearest to tokyo", edges: world(), client: sydney, located: true, n: 2, want: []string{"nrt-1"}, region: "as"},
		{name: "down edge leaves its region's answer", edges: world("fra-1"), client: frankfurt, located: true, n: 2, want: []string{"par-1"}, region: "eu"},
		{name: "empty region falls through to the next nearest", edges: world("nrt-1"), client: tokyo, located: true, n: 2, want: []string{"fra-1", "par-1"}, region: "eu"}, // 9,300 km against 10,900 to Ashburn
		{name: "sao paulo falls to north america", edges: world("gru-1"), client: saoPaulo, located: true, n: 1, want: []string{"iad-1"}, region: "na"},
		{name: "nothing healthy fails open with every edge", edges: world("fra-1", "par-1", "iad-1", "nrt-1", "gru-1"), client: tokyo, located: true, n: 1,
			want: []string{"fra-1", "gru-1", "iad-1", "nrt-1", "par-1"}, failOpen: true},
		{name: "unknown place draws from every healthy edge", edges: world("fra-1", "par-1", "iad-1", "nrt-1"), client: nearest.Point{}, n: 3, want: []string{"gru-1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := nearest.NewSet(tc.edges)
			for range 20 { // random draws: the same answer every time
				a := s.Pick(nearest.Client{Point: tc.client, Located: tc.located}, nearest.V4, tc.n, nil)
				if len(a.Edges) > tc.n && !tc.failOpen {
					t.Fatalf("%d edges, want at most %d", len(a.Edges), tc.n)
				}
				if tc.want != nil && !slices.Equal(names(s, a.Edges), tc.want) {
					t.Fatalf("edges %v, want %v", names(s, a.Edges), tc.want)
				}
				if a.Region != tc.region || a.FailOpen != tc.failOpen {
					t.Fatalf("region %q failOpen %v, want %q %v", a.Region, a.FailOpen, tc.region, tc.failOpen)
				}
			}
		})
	}
}

func TestPickFamily(t *testing.T) {
	v4only := edge("fra-4", "eu", frankfurt, true)
	v6only := edge("iad-6", "na", ashburn, true)
	v6only.V4, v6only.V6 = false, true
	s := nearest.NewSet([]nearest.Edge{v4only, v6only})
	if a := s.Pick(nearest.Client{Point: frankfurt, Located: true}, nearest.V6, 2, nil); !slices.Equal(names(s, a.Edges), []string{"iad-6"}) || a.Region != "na" {
		t.Fatalf("AAAA from Frankfurt: %v in %q, want iad-6 (the nearest edge with IPv6)", names(s, a.Edges), a.Region)
	}
	if a := s.Pick(nearest.Client{Point: ashburn, Located: true}, nearest.V4, 2, nil); !slices.Equal(names(s, a.Edges), []string{"fra-4"}) {
		t.Fatalf("A from Ashburn: %v, want fra-4", names(s, a.Edges))
	}
	empty := nearest.NewSet([]nearest.Edge{v4only})
	if a := empty.Pick(nearest.Client{Point: frankfurt, Located: true}, nearest.V6, 2, nil); len(a.Edges) != 0 || a.FailOpen {
		t.Fatalf("AAAA with no IPv6 edge: %+v, want nothing (NODATA)", a)
	}
	// The only IPv6 edge is down but an IPv4 one is healthy: no fail open
	// for AAAA (clients prefer IPv6, and would go to the down edge).
	v6down := v6only
	v6down.Healthy = false
	mixed := nearest.NewSet([]nearest.Edge{v4only, v6down})
	if a := mixed.Pick(nearest.Client{Point: ashburn, Located: true}, nearest.V6, 2, nil); len(a.Edges) != 0 || a.FailOpen {
		t.Fatalf("AAAA with the IPv6 edge down and an IPv4 edge up: %v, want nothing", names(mixed, a.Edges))
	}
}

// A client the operator mapped to a region gets it first, even when
// regions share a position (lat/lon left at 0).
func TestPickOwnRegion(t *testing.T) {
	s := nearest.NewSet([]nearest.Edge{
		edge("a-1", "ra", nearest.Point{}, true), edge("b-1", "rb", nearest.Point{}, true), edge("c-1", "rc", tokyo, true),
	})
	for _, region := range []string{"ra", "rb", "rc"} {
		p, _ := s.Region(region)
		a := s.Pick(nearest.Client{Point: p, Located: true, Region: region}, nearest.V4, 1, nil)
		if a.Region != region {
			t.Errorf("client mapped to %s answered by %s", region, a.Region)
		}
	}
	// Its region empty: the nearest other one.
	s = nearest.NewSet([]nearest.Edge{edge("a-1", "ra", frankfurt, false), edge("p-1", "rp", paris, true), edge("c-1", "rc", tokyo, true)})
	p, _ := s.Region("ra")
	if a := s.Pick(nearest.Client{Point: p, Located: true, Region: "ra"}, nearest.V4, 1, nil); a.Region != "rp" {
		t.Errorf("mapped to a region with no healthy edge: answered by %s, want the nearest (rp)", a.Region)
	}
}

// Weights share a region's answers in proportion, measured over many draws.
func TestPickWeights(t *testing.T) {
	heavy := edge("heavy", "eu", frankfurt, true)
	heavy.Weight = 3
	light := edge("light", "eu", paris, true)
	zero := edge("zero", "eu", paris, true)
	zero.Weight = 0
	s := nearest.NewSet([]nearest.Edge{heavy, light, zero})
	counts := map[string]int{}
	const draws = 40000
	for range draws {
		a := s.Pick(nearest.Client{Point: frankfurt, Located: true}, nearest.V4, 1, nil)
		counts[s.Edge(a.Edges[0]).Name]++
	}
	ratio := float64(counts["heavy"]) / float64(counts["light"])
	if math.Abs(ratio-3) > 0.3 {
		t.Errorf("heavy:light = %.2f (%v), want about 3", ratio, counts)
	}
	if counts["zero"] > draws/100 {
		t.Errorf("a weight-0 edge got %d of %d answers", counts["zero"], draws)
	}
}

// Ranking agrees with the great-circle distance to each region's centre,
// including a region that spans the antimeridian.
func TestRankMatchesDistance(t *testing.T) {
	fiji := edge("fiji", "pacific", nearest.Point{Lat: -17.7, Lon: 179.9}, true)
	samoa := edge("samoa", "pacific", nearest.Point{Lat: -13.8, Lon: -171.8}, true)
	syd := edge("syd", "au", sydney, true)
	s := nearest.NewSet([]nearest.Edge{fiji, samoa, syd})
	centre, _ := s.Region("pacific")
	if centre.Lon < 170 && centre.Lon > -170 {
		t.Fatalf("pacific region centre at lon %g, want near the antimeridian", centre.Lon)
	}
	client := nearest.Point{Lat: -18, Lon: -178} // Tonga-ish
	a := s.Pick(nearest.Client{Point: client, Located: true}, nearest.V4, 2, nil)
	au, _ := s.Region("au")
	if nearest.Distance(client, centre) > nearest.Distance(client, au) || a.Region != "pacific" {
		t.Fatalf("Tonga answered by %q; distances pacific %.0f km, au %.0f km", a.Region,
			nearest.Distance(client, centre), nearest.Distance(client, au))
	}
	if d := nearest.Distance(frankfurt, tokyo); math.Abs(d-9330) > 50 {
		t.Errorf("Frankfurt-Tokyo %.0f km, want about 9330", d)
	}
}

func BenchmarkPick(b *testing.B) {
	var es []nearest.Edge
	for i, p := range []nearest.Point{frankfurt, ashburn, tokyo, saoPaulo, sydney, paris} {
		for j := range 3 {
			es = append(es, edge(string(rune('a'+i))+string(rune('0'+j)), string(rune('a'+i)), p, true))
		}
	}
	s := nearest.NewSet(es)
	dst := make([]int, 0, 4)
	for b.Loop() {
		dst = s.Pick(nearest.Client{Point: tokyo, Located: true}, nearest.V4, 2, dst).Edges
	}
}
