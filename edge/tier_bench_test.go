package edge

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// BenchmarkTierZipf sends Zipf-distributed requests to 8 edges of one
// region, each request to an edge picked at random (as GeoDNS spreads a
// region's clients), with the same total memory: with the tier, and with
// every edge filling on its own. It reports origin fetches per 100,000
// client requests and the network's hit ratio (answered without an
// origin fetch). Run it with a fixed count: -benchtime 200000x.
func BenchmarkTierZipf(b *testing.B) {
	const (
		edges     = 8
		objects   = 100_000
		objSize   = 2 << 10
		perEdge   = 4 << 20 // 32 MiB in all: 16% of the 200 MiB catalogue
		zipfS     = 1.05
		warmShare = 5 // the first fifth of requests warm the caches, uncounted
	)
	body := strings.Repeat("x", objSize)
	for _, tt := range []struct {
		name     string
		off      bool
		hotAfter int // copies of the home's answers kept after this many misses here
	}{
		{"independent", true, 0},
		{"clustered/keep-every-copy", false, 1},
		{"clustered/keep-hot-copies", false, 2}, // the default
		{"clustered/keep-hotter-copies", false, 4},
	} {
		b.Run(tt.name, func(b *testing.B) {
			o := newOrigin(b, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Cache-Control", "max-age=3600")
				io.WriteString(w, body)
			})
			n := startTierNet(b, []string{"eu"}, edges, tierSite(o.URL), func(c *Config) {
				c.Cache.Memory = perEdge
				c.Control.Tier.Off, c.Control.Tier.HotAfter = tt.off, tt.hotAfter
			})
			rng := rand.New(rand.NewPCG(1, 2))
			zipf := rand.NewZipf(rng, zipfS, 1, objects-1)
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
			warm := b.N / warmShare
			var counted, fetched int64
			i := 0
			for b.Loop() {
				e := n.edges[rng.IntN(edges)]
				req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("%s/obj/%d", e.url, zipf.Uint64()), nil)
				req.Host = "www.test"
				before := o.hits.Load()
				res, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != 200 {
					b.Fatalf("status %d", res.StatusCode)
				}
				if i >= warm {
					counted++
					fetched += o.hits.Load() - before
				}
				i++
			}
			if counted > 0 {
				b.ReportMetric(float64(fetched)*100_000/float64(counted), "origin-fetches/100k")
				b.ReportMetric(100*(1-float64(fetched)/float64(counted)), "hit%")
			}
		})
	}
}

// BenchmarkTierPeerHop measures what a hop to the key's home adds to a
// hit: requests at the home itself, and at another edge of the region
// that keeps no copy (hot_after very high), for one object held at the
// home. It reports p50 and p99 in microseconds.
func BenchmarkTierPeerHop(b *testing.B) {
	o := newOrigin(b, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=3600")
		io.WriteString(w, strings.Repeat("x", 1024))
	})
	n := startTierNet(b, []string{"eu"}, 2, tierSite(o.URL), func(c *Config) {
		c.Control.Tier.HotAfter = 1 << 30 // the asker never keeps a copy
	})
	path := "/hop"
	for i := 0; n.homeOf("eu", path) != "eu-2"; i++ {
		path = fmt.Sprintf("/hop%d", i)
	}
	for _, tt := range []struct {
		name, edge, status string
	}{
		{"hit-at-home", "eu-2", "eu-2; hit"},
		{"hit-through-peer", "eu-1", "eu-2; hit, eu-1; fwd=uri-miss"},
	} {
		b.Run(tt.name, func(b *testing.B) {
			e := n.edge(tt.edge)
			client := &http.Client{Transport: &http.Transport{}}
			fetch(b, n.edge("eu-2"), path, nil) // stored at the home
			var took []time.Duration
			for b.Loop() {
				req, _ := http.NewRequest(http.MethodGet, e.url+path, nil)
				req.Host = "www.test"
				start := time.Now()
				res, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				took = append(took, time.Since(start))
				if cs := res.Header.Get("Cache-Status"); cs != tt.status {
					b.Fatalf("Cache-Status %q, want %q", cs, tt.status)
				}
			}
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(took[len(took)*99/100].Microseconds()), "p99-µs")
		})
	}
}
