package tier

import (
	"sync"

	"github.com/cespare/xxhash/v2"
)

// sketch counts keys approximately in fixed memory (a count-min sketch
// of 4 rows of saturating 8-bit counters), halved every
// resetAfter additions so old popularity fades (TinyLFU's aging).
type sketch struct {
	mu    sync.Mutex
	rows  [4][]uint8
	adds  int
	reset int
}

const sketchWidth = 1 << 16 // 256 KiB in all

func newSketch() *sketch {
	s := &sketch{reset: 10 * sketchWidth}
	for i := range s.rows {
		s.rows[i] = make([]uint8, sketchWidth)
	}
	return s
}

// add counts key once and returns its estimated count.
func (s *sketch) add(key string) int {
	h := xxhash.Sum64String(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	est := 255
	for i := range s.rows {
		// Four indexes from one hash: its halves, mixed per row.
		idx := uint32(h>>32)*uint32(2*i+1) + uint32(h)
		c := &s.rows[i][idx%sketchWidth]
		if *c < 255 {
			*c++
		}
		est = min(est, int(*c))
	}
	if s.adds++; s.adds >= s.reset {
		s.adds = 0
		for i := range s.rows {
			for j := range s.rows[i] {
				s.rows[i][j] >>= 1
			}
		}
	}
	return est
}
