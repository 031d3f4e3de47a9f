// Package locate turns a client's address (the resolver's, or the subnet
// in EDNS Client Subnet) into a Location: first the operator's CIDR map,
// then a MaxMind-format database. It also says how wide a network the
// answer holds for, which is the ECS scope a DNS answer carries.
package locate

import (
	"math/bits"
	"net/netip"
	"slices"
)

// Location is where a client is, as far as one lookup can tell.
type Location struct {
	// Region names the edge region the operator's CIDR map sends this
	// network to; empty for a database answer.
	Region string
	// Lat and Lon are set when HasPoint.
	Lat, Lon  float64
	HasPoint  bool
	Country   string // ISO 3166-1 alpha-2, "" if unknown
	Continent string // two-letter code (EU, NA, ...), "" if unknown
}

// Known says whether the lookup found anything to steer by.
func (l Location) Known() bool { return l.Region != "" || l.HasPoint }

// Locator finds a client. Implementations are safe for concurrent use.
type Locator interface {
	// Locate returns addr's location and the prefix length of the network
	// it holds for (the answer is the same for every address in it).
	Locate(addr netip.Addr) (Location, int)
}

// Chain asks each locator in turn and takes the first that knows the
// address. The prefix length is the longest any of them reported: the
// answer holds only where every locator asked would answer the same, so
// its scope is never wider than is true.
type Chain []Locator

func (c Chain) Locate(addr netip.Addr) (Location, int) {
	bits := 0
	for _, l := range c {
		loc, b := l.Locate(addr)
		bits = max(bits, b)
		if loc.Known() {
			return loc, bits
		}
	}
	return Location{}, bits
}

// CIDRMap is the operator's network → region map. The longest matching
// prefix wins.
type CIDRMap struct {
	// v4 and v6 hold, longest prefix length first, the networks of one
	// length each.
	v4, v6 []prefixSet
	// all4 and all6 are every network, for the scope of an answer.
	all4, all6 []netip.Prefix
}

type prefixSet struct {
	bits int
	nets map[netip.Prefix]string
}

// NewCIDRMap builds a map from network to region name.
func NewCIDRMap(m map[netip.Prefix]string) *CIDRMap {
	c := &CIDRMap{}
	for p, region := range m {
		p = p.Masked()
		sets := &c.v6
		if p.Addr().Is4() {
			sets = &c.v4
		}
		i := slices.IndexFunc(*sets, func(s prefixSet) bool { return s.bits == p.Bits() })
		if i < 0 {
			*sets = append(*sets, prefixSet{bits: p.Bits(), nets: map[netip.Prefix]string{}})
			i = len(*sets) - 1
		}
		(*sets)[i].nets[p] = region
		if p.Addr().Is4() {
			c.all4 = append(c.all4, p)
		} else {
			c.all6 = append(c.all6, p)
		}
	}
	for _, sets := range [][]prefixSet{c.v4, c.v6} {
		slices.SortFunc(sets, func(a, b prefixSet) int { return b.bits - a.bits })
	}
	return c
}

// Locate returns the region of the longest prefix holding addr, and the
// prefix length of the largest network around addr that every address of
// gets the same answer: the match, narrowed past any longer network of the
// map inside it (a /8 with a /24 of its own elsewhere in it holds only for
// the blocks that miss the /24).
func (c *CIDRMap) Locate(addr netip.Addr) (Location, int) {
	addr = addr.Unmap()
	sets, all := c.v6, c.all6
	if addr.Is4() {
		sets, all = c.v4, c.all4
	}
	var loc Location
	matched := 0
	for _, s := range sets {
		p, err := addr.Prefix(s.bits)
		if err != nil {
			continue
		}
		if region, ok := s.nets[p]; ok {
			loc, matched = Location{Region: region}, s.bits
			break
		}
	}
	// A network of the map that does not hold addr but shares its first
	// k bits lies inside addr's /(k+1) block and beyond: the answer holds
	// only for the block one bit longer than the longest such k.
	bits := matched
	for _, p := range all {
		if p.Bits() <= matched || p.Contains(addr) {
			continue // holds addr, or is the match or wider
		}
		bits = max(bits, min(commonBits(addr, p.Addr())+1, addr.BitLen()))
	}
	return loc, bits
}

// commonBits is the length of the prefix a and b share.
func commonBits(a, b netip.Addr) int {
	x, y := a.As16(), b.As16()
	n := 0
	for i := range x {
		d := x[i] ^ y[i]
		if d != 0 {
			n += bits.LeadingZeros8(d)
			break
		}
		n += 8
	}
	if a.Is4() {
		n -= 96 // the As16 form of an IPv4 address starts with 96 fixed bits
	}
	return n
}
