package tier

import (
	"cmp"
	"math"
	"slices"
	"time"

	"github.com/cespare/xxhash/v2"
)

// Member is one edge as the tier sees it.
type Member struct {
	Name, Region string
	// URL is the base URL peers send requests to, without a trailing
	// slash; an edge without one is never a home.
	URL      string
	Lat, Lon float64
	// Weight is the edge's capacity against its region's others (1 if 0).
	Weight float64
	// Up says control judges the edge healthy and not draining: only
	// those are homes. Since is when it came up, for the ramp-up.
	Up    bool
	Since time.Time
}

// View is one membership snapshot: immutable, shared by every request.
type View struct {
	epoch   uint64
	regions map[string][]Member // homes (Up, with a URL) by region, by name
	centers map[string][2]float64
}

// NewView builds a view of members. Regions are placed at the mean of
// all their registered edges, up or not, so a region whose edges are all
// down still has a place to measure the next nearest from.
func NewView(members []Member) *View {
	v := &View{regions: map[string][]Member{}, centers: map[string][2]float64{}}
	counts := map[string]float64{}
	ms := slices.Clone(members)
	slices.SortFunc(ms, func(a, b Member) int { return cmp.Compare(a.Name, b.Name) })
	d := xxhash.New()
	for _, m := range ms {
		c := v.centers[m.Region]
		v.centers[m.Region] = [2]float64{c[0] + m.Lat, c[1] + m.Lon}
		counts[m.Region]++
		if !m.Up || m.URL == "" {
			continue
		}
		if m.Weight <= 0 {
			m.Weight = 1
		}
		v.regions[m.Region] = append(v.regions[m.Region], m)
		// The epoch is the set of homes: two edges with the same one
		// route every key the same way (ramp-up aside).
		d.WriteString(m.Region + "\x00" + m.Name + "\x00" + m.URL + "\n")
	}
	for r, n := range counts {
		c := v.centers[r]
		v.centers[r] = [2]float64{c[0] / n, c[1] / n}
	}
	v.epoch = d.Sum64()
	return v
}

// Epoch identifies the view's membership.
func (v *View) Epoch() uint64 { return v.epoch }

// Homes lists the region's home edges, by name.
func (v *View) Homes(region string) []Member { return v.regions[region] }

// Rank orders the region's homes for key, best first: weighted
// rendezvous hashing, each weight scaled down while the edge ramps up.
func (v *View) Rank(region, key string, now time.Time, rampup time.Duration) []Member {
	homes := v.regions[region]
	if len(homes) == 0 {
		return nil
	}
	type scored struct {
		m     Member
		score float64
	}
	s := make([]scored, len(homes))
	for i, m := range homes {
		s[i] = scored{m, score(key, m.Name, m.Weight*ramp(now.Sub(m.Since), rampup))}
	}
	slices.SortFunc(s, func(a, b scored) int {
		if c := cmp.Compare(b.score, a.score); c != 0 {
			return c
		}
		return cmp.Compare(a.m.Name, b.m.Name)
	})
	out := make([]Member, len(s))
	for i := range s {
		out[i] = s[i].m
	}
	return out
}

// minRamp keeps a just-started edge ranked (last, mostly), not dropped:
// alone in its region it is still the home.
const minRamp = 1e-3

// ramp is the share of its weight an edge up for age carries.
func ramp(age, rampup time.Duration) float64 {
	if rampup <= 0 || age >= rampup {
		return 1
	}
	return max(float64(age)/float64(rampup), minRamp)
}

// score is the weighted rendezvous score of name for key: w / -ln(u),
// u uniform in (0,1) from the hash of both, so an edge's share of keys
// is its share of the weight.
func score(key, name string, w float64) float64 {
	d := xxhash.New()
	d.WriteString(key)
	d.WriteString("\x00")
	d.WriteString(name)
	u := (float64(d.Sum64()>>11) + 0.5) / (1 << 53)
	return w / -math.Log(u)
}

// Nearest returns region if it has homes, else the region with homes
// nearest to it (great-circle distance between the regions' centers),
// "" when none has any or region was never seen.
func (v *View) Nearest(region string) string {
	if len(v.regions[region]) > 0 {
		return region
	}
	c, ok := v.centers[region]
	if !ok {
		return ""
	}
	best, bestD := "", math.Inf(1)
	for r := range v.regions {
		o := v.centers[r]
		if d := distance(c[0], c[1], o[0], o[1]); d < bestD || d == bestD && r < best {
			best, bestD = r, d
		}
	}
	return best
}

// distance is the great-circle distance in radians (haversine).
func distance(lat1, lon1, lat2, lon2 float64) float64 {
	rad := math.Pi / 180
	dLat, dLon := (lat2-lat1)*rad, (lon2-lon1)*rad
	a := math.Sin(dLat/2)*math.Sin(dLat/2) + math.Cos(lat1*rad)*math.Cos(lat2*rad)*math.Sin(dLon/2)*math.Sin(dLon/2)
	return 2 * math.Asin(math.Sqrt(min(a, 1)))
}
