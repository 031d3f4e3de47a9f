// Package sketch counts how often keys were seen, approximately and in
// fixed memory: a count-min sketch with TinyLFU's aging (Einziger et al.,
// "TinyLFU: A Highly Efficient Cache Admission Policy"). Caches use it to
// ask whether a key is popular enough to keep (the tier's hot copies) or
// more popular than what keeping it would push out (the disk's admission).
package sketch

import (
	"math/bits"
	"math/rand/v2"
	"sync"
)

// Sketch holds 4 rows of saturating 8-bit counters. Every count is halved
// once the sketch has seen 10 × width additions, so old popularity fades
// and a key that was hot yesterday does not hold its place forever.
// Safe for concurrent use.
type Sketch struct {
	mu    sync.Mutex
	rows  [4][]uint8
	mask  uint32
	seed  uint64 // per sketch, so keys cannot be chosen to collide
	adds  int
	reset int
}

// New returns a sketch of width counters per row, rounded up to a power of
// two (at least 64). Width should be about the number of keys that
// compete: fewer counters make popular and unpopular keys collide.
func New(width int) *Sketch {
	w := uint32(64)
	if width > 64 {
		w = 1 << bits.Len32(uint32(width-1))
	}
	s := &Sketch{mask: w - 1, seed: rand.Uint64() | 1, reset: 10 * int(w)}
	for i := range s.rows {
		s.rows[i] = make([]uint8, w)
	}
	return s
}

// Add counts the key with hash h once and returns its estimated count,
// this one included.
func (s *Sketch) Add(h uint64) int { return s.count(h, true) }

// Estimate returns the estimated count of the key with hash h.
func (s *Sketch) Estimate(h uint64) int { return s.count(h, false) }

// count reads h's counters, adding one to each first if add: the
// estimate is the smallest, the one that collided least.
func (s *Sketch) count(h uint64, add bool) int {
	h = s.mix(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	est := 255
	for i := range s.rows {
		c := &s.rows[i][s.index(h, i)]
		if add && *c < 255 {
			*c++
		}
		est = min(est, int(*c))
	}
	if add {
		if s.adds++; s.adds >= s.reset {
			s.age()
		}
	}
	return est
}

// age halves every counter.
func (s *Sketch) age() {
	s.adds = 0
	for i := range s.rows {
		for j := range s.rows[i] {
			s.rows[i][j] >>= 1
		}
	}
}

// mix spreads the seeded hash (splitmix64's finalizer): callers pass
// hashes they also use elsewhere, which an attacker may be able to steer.
func (s *Sketch) mix(h uint64) uint64 {
	h ^= s.seed
	h = (h ^ h>>30) * 0xbf58476d1ce4e5b9
	h = (h ^ h>>27) * 0x94d049bb133111eb
	return h ^ h>>31
}

// index derives row i's counter from the two halves of h.
func (s *Sketch) index(h uint64, i int) uint32 {
	return (uint32(h>>32)*uint32(2*i+1) + uint32(h)) & s.mask
}
