package control

import "time"

// purgeLag tells whether an edge is behind on the purge log. An edge that
// has not applied a purge the log held a while ago would serve what was
// purged: a region back from a cut of its link, whose GeoDNS and clients
// return to it before it has caught up, or an edge whose subscription is
// stuck. The checker samples the log's last version each round; an edge
// is behind when the version it reports is below the log's as of lag
// ago. The lag leaves room for purges in flight, which edges apply within
// milliseconds.
type purgeLag struct {
	lag     time.Duration
	samples []headSample // oldest first; the first at or before now-lag when there is one
}

type headSample struct {
	at   time.Time
	head uint64
}

// observe records the log's last version at now.
func (p *purgeLag) observe(now time.Time, head uint64) {
	p.samples = append(p.samples, headSample{now, head})
	cut := now.Add(-p.lag)
	i := 0
	for i+1 < len(p.samples) && !p.samples[i+1].at.After(cut) {
		i++ // samples[i+1] is old enough to stand for the lag: samples[i] is no longer needed
	}
	p.samples = p.samples[i:]
}

// target is the version every edge should have applied by now: the log's
// last version as of lag ago. ok is false until the checker has watched
// the log that long.
func (p *purgeLag) target(now time.Time) (v uint64, ok bool) {
	cut := now.Add(-p.lag)
	for _, s := range p.samples {
		if s.at.After(cut) {
			break
		}
		v, ok = s.head, true
	}
	return v, ok
}
