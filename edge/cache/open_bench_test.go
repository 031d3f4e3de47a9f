package cache

import (
	"flag"
	"runtime"
	"strconv"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

var benchDiskObjects = flag.Int("disk-objects", 100_000, "objects on disk for BenchmarkOpenDisk")

// BenchmarkOpenDisk measures a restart: opening a disk tier that holds
// -disk-objects small objects (real files, written through Put) until the
// first object is served, and the heap its index takes per object.
//
//	go test ./edge/cache/ -run '^$' -bench OpenDisk -benchtime 5x -args -disk-objects 1000000
func BenchmarkOpenDisk(b *testing.B) {
	n := *benchDiskObjects
	dir := b.TempDir()
	cfg := DiskConfig{Dir: dir, MaxBytes: 1 << 40}
	d, err := OpenDisk(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	body := make([]byte, 1000)
	e := testEntry(body)
	var wg sync.WaitGroup
	var failed sync.Once
	for w := range 2 {
		wg.Go(func() {
			for i := w; i < n; i += 2 {
				if err := d.Put("https://example.com/asset/"+strconv.Itoa(i), e, nil); err != nil {
					failed.Do(func() { b.Error(err) })
					return
				}
			}
		})
	}
	wg.Wait()
	d.Close()
	if b.Failed() {
		return
	}
	var perObject float64
	for b.Loop() {
		b.StopTimer()
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		b.StartTimer()
		d, err := OpenDisk(cfg, prometheus.NewRegistry())
		if err != nil {
			b.Fatal(err)
		}
		if _, ok := d.Get("https://example.com/asset/"+strconv.Itoa(n/2), 1<<20); !ok {
			b.Fatal("object missing after open")
		}
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&after)
		perObject = float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
		if d.Len() != n {
			b.Fatalf("opened with %d objects, want %d", d.Len(), n)
		}
		d.Close()
		b.StartTimer()
	}
	b.ReportMetric(perObject, "index-B/object")
	b.ReportMetric(float64(n), "objects")
}
