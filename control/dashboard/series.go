package dashboard

import (
	"sync"
	"time"

	"github.com/selfcdn/cdn/internal/state"
)

// The last hour, per second, in memory: one ring of 3,600 seconds per
// series (every site, every region, and the whole network). Prometheus
// stays the long-term store; this is what the charts draw from.

// window is how far back the series reach.
const window = 3600

// maxSeries bounds the series kept, so edges reporting endless site or
// region names cannot grow control's memory without bound.
const maxSeries = 2000

// point is one second of one series.
type point struct {
	sec int64 // Unix second; 0: empty
	f   state.SiteFigure
}

// ring is one series.
type ring [window]point

// seriesSet holds every series.
type seriesSet struct {
	mu    sync.Mutex // guards rings
	rings map[string]*ring
}

func newSeriesSet() *seriesSet { return &seriesSet{rings: map[string]*ring{}} }

// add adds f to the series key at second sec.
func (s *seriesSet) add(key string, sec int64, f state.SiteFigure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rings[key]
	if r == nil {
		if len(s.rings) >= maxSeries {
			return
		}
		r = new(ring)
		s.rings[key] = r
	}
	p := &r[sec%window]
	if p.sec != sec {
		*p = point{sec: sec}
	}
	p.f.Add(f)
}

// Sample is one second of a series as the charts get it.
type Sample struct {
	Time int64 `json:"t"`
	state.SiteFigure
}

// last returns series key's seconds from now-window to now, oldest
// first, with empty seconds as zeros (nothing served then).
func (s *seriesSet) last(key string, now time.Time) []Sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rings[key]
	end := now.Unix()
	out := make([]Sample, 0, window)
	for sec := end - window + 1; sec <= end; sec++ {
		smp := Sample{Time: sec}
		if r != nil {
			if p := r[sec%window]; p.sec == sec {
				smp.SiteFigure = p.f
			}
		}
		out = append(out, smp)
	}
	return out
}

// keys lists the series held.
func (s *seriesSet) keys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.rings))
	for k := range s.rings {
		out = append(out, k)
	}
	return out
}
