package control

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/selfcdn/cdn/purge"
)

// benchEdges is how many edges the purge benchmarks run: the 16.
// They run with control's health checks and the edges' heartbeats as
// shipped (2 s); the tests' 100 ms ones cost the benchmark's two cores
// 16 health probes and a registry read every 100 ms.
const benchEdges = 16

// BenchmarkPurgePropagation times purges from the API call to its answer
// with ?wait, which comes once every one of 16 edges (each with its own
// NATS connection and a disk cache whose purge log is fsynced) has applied
// the purge and reported it. Run with -benchtime 1000x for 1,000 purges;
// it reports the p50 and p99 of the round trip.
func BenchmarkPurgePropagation(b *testing.B) {
	n := newPurgeNetWith(b, benchEdges, unlimited, true)
	ctx := b.Context()
	var lat []time.Duration
	i := 0
	for b.Loop() {
		i++
		start := time.Now()
		res, err := n.client.Purge(ctx, "www", purge.Request{URLs: []string{fmt.Sprintf("/bench/%d", i)}}, purge.Options{Wait: 10 * time.Second})
		if err != nil {
			b.Fatalf("purge %d: %v", i, err)
		}
		lat = append(lat, time.Since(start))
		if len(res.Status.Edges) != benchEdges {
			b.Fatalf("purge %d: %d edges in the status, want %d", i, len(res.Status.Edges), benchEdges)
		}
	}
	slices.Sort(lat)
	b.ReportMetric(float64(pct(lat, 50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(pct(lat, 99).Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
}

// BenchmarkPurgeThroughput writes purges as fast as 4 concurrent callers
// can (no wait), while 16 edges serve hits to 8 clients, and reports
// purges per second until every edge applied the last one, and the hits
// served meanwhile. Run with -benchtime 2000x.
func BenchmarkPurgeThroughput(b *testing.B) {
	n := newPurgeNetWith(b, benchEdges, unlimited, true)
	ctx := b.Context()
	n.warm("/hot.css")
	edges := make([]*purgeEdge, 0, len(n.edges))
	for _, e := range n.edges {
		edges = append(edges, e)
	}
	loadCtx, stopLoad := context.WithCancel(ctx)
	var hits atomic.Int64
	var load sync.WaitGroup
	for c := range 8 {
		load.Go(func() {
			for k := c; loadCtx.Err() == nil; k++ {
				if code, _, _ := edges[k%len(edges)].get("/hot.css"); code == http.StatusOK {
					hits.Add(1)
				}
			}
		})
	}
	var next atomic.Int64
	var last atomic.Uint64
	start := time.Now()
	b.ResetTimer()
	var callers sync.WaitGroup
	total := int64(b.N)
	for range 4 {
		callers.Go(func() {
			for i := next.Add(1); i <= total; i = next.Add(1) {
				res, err := n.client.Purge(ctx, "www", purge.Request{Tags: []string{fmt.Sprintf("t%d", i)}}, purge.Options{})
				if err != nil {
					b.Errorf("purge %d: %v", i, err)
					return
				}
				for v := last.Load(); res.Version > v && !last.CompareAndSwap(v, res.Version); v = last.Load() {
				}
			}
		})
	}
	callers.Wait()
	st, err := n.client.Status(ctx, last.Load(), time.Minute)
	elapsed := time.Since(start)
	b.StopTimer()
	stopLoad()
	load.Wait()
	if err != nil || !st.Applied {
		b.Fatalf("last purge %d not applied everywhere: %v %+v", last.Load(), err, st)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "purges/s")
	b.ReportMetric(float64(hits.Load())/elapsed.Seconds(), "hits/s")
}

func pct(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, len(sorted)*p/100)]
}

// unlimited turns the per-token write rate off: the benchmarks measure
// purges, and one token writes them all.
func unlimited(c *Config) { c.Limits.WriteRate = 0 }
