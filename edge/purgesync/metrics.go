package purgesync

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	version prometheus.Gauge
	rules   prometheus.Gauge
	applied prometheus.Counter
	lost    prometheus.Counter
	widened prometheus.Counter
	lag     prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		version: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cdn_edge_purge_applied_version", Help: "Last purge version applied and written to the purge log (fsynced within 100 ms).",
		}),
		rules: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cdn_edge_purge_rules", Help: "Purge rules held (URLs, prefixes, tags since each site's last whole-site purge).",
		}),
		applied: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cdn_edge_purges_applied_total", Help: "Purges applied from the purge log.",
		}),
		lost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cdn_edge_purge_log_gaps_total", Help: "Times purges were gone from the log before this edge applied them (or the log was made anew).",
		}),
		widened: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cdn_edge_purge_widened_total", Help: "Purges applied as whole-site purges because the site held too many rules.",
		}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "cdn_edge_purge_apply_lag_seconds", Help: "Time from a purge's acceptance by control to its application here.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5, 30},
		}),
	}
	if reg != nil {
		reg.MustRegister(m.version, m.rules, m.applied, m.lost, m.widened, m.lag)
	}
	return m
}
