package edge

import (
	"context"
	"encoding/json"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/selfcdn/cdn/internal/state"
)

// The edge's per-second figures for the operator dashboard: every second
// the edge publishes what it served since the last report (by site), on
// its own stats subject. The figures are differences of the counters
// behind its Prometheus metrics, so every request counts and the request
// path pays nothing more. Control keeps the last hour in memory;
// Prometheus stays the long-term store.

// reportEvery is how often the figures go out.
const reportEvery = time.Second

// reportStats publishes the edge's figures every second until ctx ends.
// A publish that fails (NATS away) is skipped: the next report covers the
// whole span since the last one sent.
func (s *Server) reportStats(ctx context.Context, nc *nats.Conn) {
	t := time.NewTicker(reportEvery)
	defer t.Stop()
	last := s.handler.metrics.totals()
	lastAt := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		cur := s.handler.metrics.totals()
		msg := state.EdgeStats{Edge: s.cfg.Name, Region: s.cfg.Region, Time: now.UTC(), Seconds: now.Sub(lastAt).Seconds(),
			Sites: map[string]state.SiteFigure{}}
		for site, f := range cur {
			if d := since(f, last[site]); d != (state.SiteFigure{}) {
				msg.Sites[site] = d
			}
		}
		b, err := json.Marshal(msg)
		if err != nil {
			continue
		}
		if err := nc.Publish(state.StatsSubject(s.cfg.Name), b); err != nil {
			continue // NATS away: the next report covers this second too
		}
		last, lastAt = cur, now
	}
}

// totals reads the request and byte counters, by site.
func (m *metrics) totals() map[string]state.SiteFigure {
	out := map[string]state.SiteFigure{}
	each(m.requests, func(labels map[string]string, v float64) {
		f := out[labels["site"]]
		n := uint64(v)
		f.Requests += n
		switch labels["cache"] {
		case "hit", "stale", "revalidated", "pushed":
			f.Hits += n
		case "miss":
			f.Misses += n
		case "pass":
			f.Passes += n
		}
		switch labels["code"] {
		case "4xx":
			f.Status4xx += n
		case "5xx":
			f.Status5xx += n
		}
		out[labels["site"]] = f
	})
	each(m.bytes, func(labels map[string]string, v float64) {
		f := out[labels["site"]]
		n := uint64(v)
		f.Bytes += n
		switch labels["cache"] {
		case "hit", "stale", "revalidated", "pushed":
			f.HitBytes += n
		}
		out[labels["site"]] = f
	})
	return out
}

// each calls f with the labels and value of every counter c holds.
func each(c prometheus.Collector, f func(map[string]string, float64)) {
	ch := make(chan prometheus.Metric, 64)
	go func() {
		c.Collect(ch)
		close(ch)
	}()
	for m := range ch {
		var pb dto.Metric
		if m.Write(&pb) != nil || pb.Counter == nil {
			continue
		}
		labels := make(map[string]string, len(pb.Label))
		for _, l := range pb.Label {
			labels[l.GetName()] = l.GetValue()
		}
		f(labels, pb.Counter.GetValue())
	}
}

// minus is a less an earlier reading b (a counter reset reads as zero).
func minus(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}

// since is figure f less an earlier reading o.
func since(f, o state.SiteFigure) state.SiteFigure {
	return state.SiteFigure{
		Requests: minus(f.Requests, o.Requests), Hits: minus(f.Hits, o.Hits), Misses: minus(f.Misses, o.Misses),
		Passes: minus(f.Passes, o.Passes), Bytes: minus(f.Bytes, o.Bytes), HitBytes: minus(f.HitBytes, o.HitBytes),
		Status4xx: minus(f.Status4xx, o.Status4xx), Status5xx: minus(f.Status5xx, o.Status5xx),
	}
}
