// Package nearest ranks edges for a client: the nearest region (by
// great-circle distance) that has a healthy edge answers, and its edges
// are drawn at random in proportion to their weight (capacity, lowered by
// reported load). A region without a healthy edge passes to the next
// nearest; with no healthy edge anywhere, every edge answers (fail open:
// a health system that marks the whole network down is more likely wrong
// than right).
package nearest

import (
	"math"
	"math/rand/v2"
	"slices"
)

// Edge is one edge as the ranking sees it.
type Edge struct {
	Name   string
	Region string
	// Lat and Lon place the edge; a region sits at its edges' mean.
	Lat, Lon float64
	// Weight is the edge's share of its region's answers (capacity,
	// lowered by load); 0 is taken as a small share, not none.
	Weight float64
	// Healthy edges answer; others only when no edge is healthy.
	Healthy bool
	// V4 and V6 say which address families the edge has: an A answer
	// draws only from edges with V4, an AAAA answer from edges with V6.
	V4, V6 bool
}

// Family selects the address family an answer needs.
type Family uint8

const (
	V4 Family = iota
	V6
)

// Set is a ranked view of a fixed list of edges. It is read-only once
// built, so any number of queries may use it at once.
type Set struct {
	edges   []Edge
	regions []region
	byName  map[string]int // region name -> index
	all     []int          // every edge index, for clients of unknown place
	// anyHealthy says some edge, of any family, is healthy: then an
	// answer never fails open (no edge of a family is no reason to send
	// clients to down ones).
	anyHealthy bool
}

type region struct {
	name     string
	lat, lon float64
	// sin/cos of the latitude, kept for the distance formula.
	sinLat, cosLat float64
	edges          []int // indexes into Set.edges
}

// Point is a place on Earth in degrees.
type Point struct{ Lat, Lon float64 }

// Client is who an answer is for.
type Client struct {
	// Point is where the client is, when Located.
	Point   Point
	Located bool
	// Region is tried first when set (the operator mapped the client's
	// network to it); the others follow by distance from Point.
	Region string
}

// NewSet builds a Set of edges.
func NewSet(edges []Edge) *Set {
	s := &Set{edges: slices.Clone(edges), byName: map[string]int{}}
	for i, e := range s.edges {
		r, ok := s.byName[e.Region]
		if !ok {
			r = len(s.regions)
			s.byName[e.Region] = r
			s.regions = append(s.regions, region{name: e.Region})
		}
		s.regions[r].edges = append(s.regions[r].edges, i)
		s.all = append(s.all, i)
		s.anyHealthy = s.anyHealthy || e.Healthy
	}
	for i := range s.regions {
		r := &s.regions[i]
		// The mean of unit vectors, not of degrees: a region that spans the
		// antimeridian must not land on the other side of the planet.
		var x, y, z float64
		for _, ei := range r.edges {
			e := s.edges[ei]
			la, lo := rad(e.Lat), rad(e.Lon)
			x += math.Cos(la) * math.Cos(lo)
			y += math.Cos(la) * math.Sin(lo)
			z += math.Sin(la)
		}
		r.lat = deg(math.Atan2(z, math.Hypot(x, y)))
		r.lon = deg(math.Atan2(y, x))
		r.sinLat, r.cosLat = math.Sin(rad(r.lat)), math.Cos(rad(r.lat))
	}
	return s
}

// Edge returns edge i, as given to NewSet.
func (s *Set) Edge(i int) Edge { return s.edges[i] }

// Region returns the named region's position, if the set has it.
func (s *Set) Region(name string) (Point, bool) {
	r, ok := s.byName[name]
	if !ok {
		return Point{}, false
	}
	return Point{s.regions[r].lat, s.regions[r].lon}, true
}

// Answer is the result of a pick.
type Answer struct {
	// Edges are indexes of the chosen edges, best first.
	Edges []int
	// Region is the region that answered ("" when failing open or when no
	// edge has the family).
	Region string
	// FailOpen says no edge with the family was healthy, so all answered.
	FailOpen bool
	// Drawn says the edges were drawn at random from more than one
	// candidate: the next pick for the same client may differ (in which
	// edges or their order). Otherwise the pick is a function of the
	// client and the set, and an answer built from it may be reused.
	Drawn bool
	// Pool is what a drawn answer was drawn from (the region's edges, or
	// every edge): Draw from it again for another answer to the same
	// client. Read only; nil unless Drawn.
	Pool []int
}

// Pick chooses up to n edges of family fam for c: from the first region
// (c.Region, then by distance; for a client of unknown place, every region
// at once) with a healthy edge of the family. dst is reused for the
// result's Edges.
func (s *Set) Pick(c Client, fam Family, n int, dst []int) Answer {
	dst = dst[:0]
	if n <= 0 || len(s.edges) == 0 {
		return Answer{Edges: dst}
	}
	var order [64]int
	ranked := s.rank(c, order[:0])
	if c.Located || c.Region != "" {
		for _, r := range ranked {
			if got, drawn := s.weighted(s.regions[r].edges, fam, n, dst); len(got) > 0 {
				return Answer{Edges: got, Region: s.regions[r].name, Drawn: drawn, Pool: poolIf(drawn, s.regions[r].edges)}
			}
		}
	} else if got, drawn := s.weighted(s.all, fam, n, dst); len(got) > 0 {
		// Unknown place: every region is as near as any other.
		return Answer{Edges: got, Drawn: drawn, Pool: poolIf(drawn, s.all)}
	}
	if s.anyHealthy {
		return Answer{Edges: dst} // healthy edges, none of this family
	}
	// Fail open: every edge of the family, nearest region first.
	for _, r := range ranked {
		for _, ei := range s.regions[r].edges {
			if s.edges[ei].has(fam) {
				dst = append(dst, ei)
			}
		}
	}
	return Answer{Edges: dst, FailOpen: len(dst) > 0}
}

func poolIf(drawn bool, pool []int) []int {
	if drawn {
		return pool
	}
	return nil
}

// Draw draws up to n edges of family fam from pool (an Answer's Pool) as
// Pick did: the same edges are eligible, with the same odds. dst is
// reused for the result.
func (s *Set) Draw(pool []int, fam Family, n int, dst []int) []int {
	got, _ := s.weighted(pool, fam, n, dst[:0])
	return got
}

// Eligible reports whether edge i may be drawn for family fam: healthy,
// with an address of the family.
func (s *Set) Eligible(i int, fam Family) bool {
	e := &s.edges[i]
	return e.Healthy && e.has(fam)
}

func (e Edge) has(f Family) bool {
	if f == V6 {
		return e.V6
	}
	return e.V4
}

// rank orders region indexes for c: its own region first, then by
// distance from its point, nearest first.
func (s *Set) rank(c Client, dst []int) []int {
	for i := range s.regions {
		dst = append(dst, i)
	}
	if c.Located && len(dst) > 1 {
		var distBuf [64]float64
		dist := distBuf[:0]
		p := c.Point
		sinLat, cosLat, lon := math.Sin(rad(p.Lat)), math.Cos(rad(p.Lat)), rad(p.Lon)
		for _, r := range s.regions {
			// The spherical law of cosines, as a cosine: larger is nearer,
			// and no acos is needed to compare.
			dist = append(dist, -(sinLat*r.sinLat + cosLat*r.cosLat*math.Cos(lon-rad(r.lon))))
		}
		slices.SortStableFunc(dst, func(a, b int) int {
			switch {
			case dist[a] < dist[b]:
				return -1
			case dist[a] > dist[b]:
				return 1
			}
			return 0
		})
	}
	if own, ok := s.byName[c.Region]; ok && c.Region != "" {
		i := slices.Index(dst, own)
		copy(dst[1:i+1], dst[:i])
		dst[0] = own
	}
	return dst
}

// weighted draws up to n of candidates without replacement, each with
// probability in proportion to its weight (Efraimidis and Spirakis: the n
// largest keys u^(1/w)). drawn says there was more than one candidate.
func (s *Set) weighted(candidates []int, fam Family, n int, dst []int) (_ []int, drawn bool) {
	type keyed struct {
		key  float64
		edge int
	}
	var buf [16]keyed
	top := buf[:0]
	eligible := 0
	for _, ei := range candidates {
		e := &s.edges[ei]
		if !e.Healthy || !e.has(fam) {
			continue
		}
		eligible++
		w := max(e.Weight, minWeight)
		k := math.Pow(rand.Float64(), 1/w)
		if len(top) < n {
			top = append(top, keyed{k, ei})
			continue
		}
		// Replace the smallest key if this one is larger.
		lo := 0
		for i := range top {
			if top[i].key < top[lo].key {
				lo = i
			}
		}
		if k > top[lo].key {
			top[lo] = keyed{k, ei}
		}
	}
	slices.SortFunc(top, func(a, b keyed) int {
		switch {
		case a.key > b.key:
			return -1
		case a.key < b.key:
			return 1
		}
		return 0
	})
	for _, k := range top {
		dst = append(dst, k.edge)
	}
	return dst, eligible > 1
}

// minWeight is the share of an edge reported at weight 0: tiny, so it
// answers only when nothing else can, but never excluded (a bad capacity
// setting must not take an edge out of service).
const minWeight = 1e-3

// Distance is the great-circle distance between two points in kilometres.
func Distance(a, b Point) float64 {
	const earthRadius = 6371.0
	la1, la2 := rad(a.Lat), rad(b.Lat)
	dLat, dLon := la2-la1, rad(b.Lon-a.Lon)
	h := math.Sin(dLat/2)*math.Sin(dLat/2) + math.Cos(la1)*math.Cos(la2)*math.Sin(dLon/2)*math.Sin(dLon/2)
	return 2 * earthRadius * math.Asin(math.Sqrt(min(h, 1)))
}

func rad(d float64) float64 { return d * math.Pi / 180 }
func deg(r float64) float64 { return r * 180 / math.Pi }
