package regions

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// sample is one fetch a watching client made.
type sample struct {
	at  time.Time
	res result
	err error
}

// watch is a client fetching one URL over and over (cycling through h1,
// h2 and h3) while a fault happens, as a user reloading a page would.
type watch struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex // guards samples
	samples []sample
}

// watchClient starts cl fetching https://host/path every 200ms until
// stop.
func watchClient(cl *client, host, path string) *watch {
	ctx, cancel := context.WithCancel(context.Background())
	w := &watch{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for i := 0; ctx.Err() == nil; i++ {
			at := time.Now()
			res, err := cl.fetch(ctx, protos[i%len(protos)], host, path)
			if ctx.Err() != nil {
				return
			}
			if err == nil && res.status != 200 {
				err = fmt.Errorf("status %d", res.status)
			}
			w.mu.Lock()
			w.samples = append(w.samples, sample{at: at, res: res, err: err})
			w.mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	return w
}

// stop ends the watch and returns every sample.
func (w *watch) stop() []sample {
	w.cancel()
	<-w.done
	return w.snapshot()
}

func (w *watch) snapshot() []sample {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]sample(nil), w.samples...)
}

// summary counts fetches and failures after since, and how long after
// since the first fetch served from an edge that ok accepts began.
func summary(samples []sample, since time.Time, ok func(netip.Addr) bool) (n, failed int, firstOK time.Duration, seen bool) {
	for _, s := range samples {
		if s.at.Before(since) {
			continue
		}
		n++
		if s.err != nil {
			failed++
			continue
		}
		if !seen && ok(s.res.edge) {
			firstOK, seen = s.at.Sub(since), true
		}
	}
	return n, failed, firstOK, seen
}

// inRegion accepts edges of the given regions.
func inRegion(rs ...region) func(netip.Addr) bool {
	return func(a netip.Addr) bool {
		got, err := regionOf(a)
		if err != nil {
			return false
		}
		return slices.Contains(rs, got)
	}
}

func notAddr(bad netip.Addr) func(netip.Addr) bool {
	return func(a netip.Addr) bool { return a != bad }
}
