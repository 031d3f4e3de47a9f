package cache

import (
	"github.com/dgraph-io/ristretto/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// registerMetrics exports ristretto's own counters, read at scrape time so
// the hot path pays nothing extra for them.
func registerMetrics(reg prometheus.Registerer, c *ristretto.Cache[string, *Entry]) {
	if reg == nil {
		return
	}
	m := c.Metrics
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "cdn_edge_cache_bytes", Help: "Bytes held by the cache tier.",
			ConstLabels: prometheus.Labels{"tier": "memory"},
		}, func() float64 { return float64(m.CostAdded() - m.CostEvicted()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "cdn_edge_cache_max_bytes", Help: "Byte budget of the cache tier.",
			ConstLabels: prometheus.Labels{"tier": "memory"},
		}, func() float64 { return float64(c.MaxCost()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "cdn_edge_cache_evictions_total", Help: "Entries evicted to make room.",
			ConstLabels: prometheus.Labels{"tier": "memory"},
		}, func() float64 { return float64(m.KeysEvicted()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "cdn_edge_cache_admissions_rejected_total", Help: "Stores refused by the admission policy or dropped under contention.",
			ConstLabels: prometheus.Labels{"tier": "memory"},
		}, func() float64 { return float64(m.SetsRejected() + m.SetsDropped()) }),
	)
}
