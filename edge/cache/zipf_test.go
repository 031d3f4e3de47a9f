package cache

import (
	"container/list"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/maypok86/otter/v2"

	"github.com/selfcdn/cdn/edge/freshness"
	"github.com/selfcdn/cdn/internal/sketch"
)

// The Zipf simulation replays skewed traffic (Zipf, alpha 0.8, the usual
// fit for CDN request logs) over a catalog of objects with long-tailed
// sizes through the two tiers as the edge uses them: the real memory tier
// (ristretto, bounded by bytes, TinyLFU admission) over the disk tier's
// index, admission and eviction policy (TinyLFU admission over SIEVE,
// bounded by bytes; no files, so a million requests take seconds). A miss
// stores in memory and, if admitted, on disk, so a memory eviction falls
// back to disk; a disk hit is promoted to memory. Beside it, on the same
// request stream: one plain LRU cache holding as many bytes as both tiers
// together, a W-TinyLFU cache (otter) of the same bytes, an LRU in place
// of the disk tier, and the disk tier without admission (every miss
// written through, as before issue 25).
//
//	go test -run '^$' -bench ZipfHitRatio ./edge/cache/

const (
	zipfObjects  = 200_000
	zipfRequests = 2_000_000
	zipfAlpha    = 0.8
)

type zipfWorkload struct {
	sizes    []int64 // per object
	requests []int32 // object ids
	total    int64   // catalog bytes
}

func newZipfWorkload() *zipfWorkload {
	r := rand.New(rand.NewPCG(42, 42))
	w := &zipfWorkload{sizes: make([]int64, zipfObjects)}
	for i := range w.sizes {
		// Log-normal sizes, median ~12 KiB, capped at 8 MiB: many small
		// assets, a few large ones.
		s := int64(math.Exp(9.4 + 1.6*r.NormFloat64()))
		w.sizes[i] = min(max(s, 200), 8<<20)
		w.total += w.sizes[i]
	}
	// Popularity rank is independent of size.
	r.Shuffle(len(w.sizes), func(i, j int) { w.sizes[i], w.sizes[j] = w.sizes[j], w.sizes[i] })
	cdf := make([]float64, zipfObjects)
	var sum float64
	for i := range cdf {
		sum += 1 / math.Pow(float64(i+1), zipfAlpha)
		cdf[i] = sum
	}
	w.requests = make([]int32, zipfRequests)
	for i := range w.requests {
		id, _ := slices.BinarySearch(cdf, r.Float64()*sum)
		w.requests[i] = int32(min(id, zipfObjects-1))
	}
	return w
}

// byteLRU is a plain LRU bounded by bytes: the baseline.
type byteLRU struct {
	max, bytes int64
	order      *list.List // front: most recent
	items      map[int32]*list.Element
	sizes      []int64
}

func newByteLRU(max int64, sizes []int64) *byteLRU {
	return &byteLRU{max: max, order: list.New(), items: map[int32]*list.Element{}, sizes: sizes}
}

func (c *byteLRU) get(id int32) bool {
	if e, ok := c.items[id]; ok {
		c.order.MoveToFront(e)
		return true
	}
	return false
}

func (c *byteLRU) put(id int32) {
	size := c.sizes[id]
	if size > c.max {
		return
	}
	for c.bytes+size > c.max {
		e := c.order.Back()
		old := e.Value.(int32)
		c.order.Remove(e)
		delete(c.items, old)
		c.bytes -= c.sizes[old]
	}
	c.items[id] = c.order.PushFront(id)
	c.bytes += size
}

type zipfResult struct {
	memHits, diskHits, lruHits, lruDiskHits, tinyHits, counted int
	// Without disk admission: every miss written through.
	throughMemHits, throughDiskHits int
	diskWrites, throughDiskWrites   int
}

// simulate replays the workload; the first fifth warms the caches up.
func simulate(b *testing.B, w *zipfWorkload, memBytes, diskBytes int64) zipfResult {
	mem, err := NewMemory(Config{MemoryBytes: memBytes, MaxObjectBytes: 16 << 20}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer mem.Close()
	disk := newSieve()
	asked := sketch.New(sketchWidth(diskBytes, 0))
	through, err := NewMemory(Config{MemoryBytes: memBytes, MaxObjectBytes: 16 << 20}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer through.Close()
	throughDisk := newSieve()
	lru := newByteLRU(memBytes+diskBytes, w.sizes)
	lruDisk := newByteLRU(diskBytes, w.sizes)
	// W-TinyLFU (otter, Caffeine's policy in Go) bounded by the same
	// bytes as both tiers together.
	tiny, err := otter.New(&otter.Options[int32, int64]{
		MaximumWeight: uint64(memBytes + diskBytes),
		Weigher:       func(_ int32, size int64) uint32 { return uint32(size) },
	})
	if err != nil {
		b.Fatal(err)
	}
	keys := make([]string, zipfObjects)
	for i := range keys {
		keys[i] = "k" + strconv.Itoa(i)
	}
	meta := freshness.Meta{Lifetime: time.Hour, ResponseTime: time.Now()}
	entries := make([]*Entry, zipfObjects) // made on first store; bodies not held
	var res zipfResult
	warm := len(w.requests) / 5
	for n, id := range w.requests {
		count := n >= warm
		if count {
			res.counted++
		}
		size := w.sizes[id]
		key := keys[id]
		if entries[id] == nil {
			entries[id] = &Entry{Status: 200, Header: http.Header{"Etag": {`"z"`}}, Meta: meta}
		}
		hash := keyHash(key)
		switch {
		case func() bool { _, ok := mem.Get(key); return ok }():
			if count {
				res.memHits++
			}
		case func() bool { asked.Add(hash); return disk.touch(hash) }(): // as Disk.Get
			if count {
				res.diskHits++
			}
			mem.put(key, entries[id], size)
		default:
			mem.put(key, entries[id], size)
			if size <= diskBytes/8 && admits(disk, asked, hash, size, diskBytes, 0) {
				storeEvicting(disk, hash, size, diskBytes)
				if count {
					res.diskWrites++
				}
			}
		}
		switch {
		case func() bool { _, ok := through.Get(key); return ok }():
			if count {
				res.throughMemHits++
			}
		case throughDisk.touch(hash):
			if count {
				res.throughDiskHits++
			}
			through.put(key, entries[id], size)
		default:
			through.put(key, entries[id], size)
			if size <= diskBytes/8 {
				storeEvicting(throughDisk, hash, size, diskBytes)
				if count {
					res.throughDiskWrites++
				}
			}
		}
		if lru.get(id) {
			if count {
				res.lruHits++
			}
		} else {
			lru.put(id)
		}
		if lruDisk.get(id) {
			if count {
				res.lruDiskHits++
			}
		} else {
			lruDisk.put(id)
		}
		if _, ok := tiny.GetIfPresent(id); ok {
			if count {
				res.tinyHits++
			}
		} else {
			tiny.Set(id, size)
		}
	}
	return res
}

// storeEvicting inserts hash into a disk index bounded by max bytes, as
// Disk.commit does.
func storeEvicting(idx *sieve, hash uint64, size, max int64) {
	for idx.bytes+size > max {
		v, _ := idx.victim()
		idx.remove(v)
	}
	idx.insert(hash, size)
}

func BenchmarkZipfHitRatio(b *testing.B) {
	w := newZipfWorkload()
	for _, tt := range []struct{ memPct, diskPct float64 }{
		{1, 10}, {1, 30}, {5, 10}, {5, 30},
	} {
		memBytes := int64(float64(w.total) * tt.memPct / 100)
		diskBytes := int64(float64(w.total) * tt.diskPct / 100)
		b.Run(fmt.Sprintf("mem=%g%%/disk=%g%%", tt.memPct, tt.diskPct), func(b *testing.B) {
			var res zipfResult
			for b.Loop() {
				res = simulate(b, w, memBytes, diskBytes)
			}
			pct := func(n int) float64 { return 100 * float64(n) / float64(res.counted) }
			b.ReportMetric(pct(res.memHits+res.diskHits), "hit%")
			b.ReportMetric(pct(res.memHits), "mem-hit%")
			b.ReportMetric(pct(res.diskHits), "disk-hit%")
			b.ReportMetric(pct(res.throughMemHits+res.throughDiskHits), "no-admission-hit%")
			b.ReportMetric(pct(res.diskWrites), "disk-writes%")
			b.ReportMetric(pct(res.throughDiskWrites), "no-admission-disk-writes%")
			b.ReportMetric(pct(res.lruHits), "lru-same-bytes-hit%")
			b.ReportMetric(pct(res.lruDiskHits), "lru-disk-only-hit%")
			b.ReportMetric(pct(res.tinyHits), "wtinylfu-same-bytes-hit%")
		})
	}
}
