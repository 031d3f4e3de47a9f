package h2

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the HTTP/2 server's counters; give one to Server.Metrics.
// The zero value is not usable: build it with NewMetrics.
type Metrics struct {
	// floodCloses counts connections cut off, by cause (the flood
	// causes in flood.go: a bounded set).
	floodCloses map[string]prometheus.Counter
	// held is how many cut-off connections are held open (tarpit.go).
	held prometheus.Gauge
}

// NewMetrics builds the counters and registers them with reg (nil: not
// registered, for tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	closes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cdn_edge_h2_flood_closes_total",
		Help: "HTTP/2 connections cut off with GOAWAY ENHANCE_YOUR_CALM, by cause: frames that cost work without progress (reset, refused, empty_frame, window_update, control_frame, malformed) past the flood budget, or a header block too large (header_list), in too many frames (header_frames) or too slow (header_timeout).",
	}, []string{"cause"})
	held := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "cdn_edge_h2_held_connections",
		Help: "HTTP/2 connections cut off for a flood and held open, unread, for up to 10s after their GOAWAY, so a flood client that keeps writing blocks instead of reconnecting.",
	})
	m := &Metrics{floodCloses: make(map[string]prometheus.Counter, len(floodCauses)), held: held}
	for _, c := range floodCauses {
		m.floodCloses[c] = closes.WithLabelValues(c)
	}
	if reg != nil {
		reg.MustRegister(closes, held)
	}
	return m
}
