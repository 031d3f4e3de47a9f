package regions

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestSoak (`make soak`, CDN_SOAK=1; CDN_SOAK_DURATION, default 15m)
// runs mixed traffic from every region's users, purges (each one waited
// for, as CI does), pushes and random faults (an edge, the origin, a
// control process or a NATS node killed with -9 and restarted) on the
// three-region network, then checks that no fetch that began after a
// purge or a push was complete got an older body, that no purge or
// release is missing, and prints memory, goroutines and fds of the
// processes that ran throughout.
func TestSoak(t *testing.T) {
	if os.Getenv("CDN_SOAK") != "1" {
		t.Skip("the soak runs with `make soak` (CDN_SOAK=1)")
	}
	dur := 15 * time.Minute
	if s := os.Getenv("CDN_SOAK_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("CDN_SOAK_DURATION: %v", err)
		}
		dur = d
	}
	c := newCluster(t)
	const objects = 20
	for i := range objects {
		c.writeAtomic(c.path("site", "s", fmt.Sprintf("o%d.txt", i)), fmt.Sprintf("o%d v0\n", i))
	}
	s := &soak{c: c, done: map[string][]doneAt{}}
	s.push(t, 0) // the push-only site's first release, before anyone asks
	ctx, cancel := context.WithTimeout(t.Context(), dur)
	defer cancel()
	warm := time.Now().Add(min(time.Minute, dur/4))
	var wg sync.WaitGroup
	for _, r := range regions {
		wg.Go(func() { s.traffic(ctx, c.client(r, false), objects) })
	}
	wg.Go(func() { s.purges(ctx, objects) })
	wg.Go(func() { s.pushes(ctx, t) })
	var before map[string][3]float64
	wg.Go(func() {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(warm)):
		}
		before = s.resources()
	})
	s.faults(ctx, t)
	wg.Wait()
	time.Sleep(5 * time.Second) // let the last requests end
	after := s.resources()
	// No purge lost: every edge applied the last one accepted. No
	// release lost: the last one pushed is what every region gets.
	if v := s.maxVersion.Load(); v > 0 {
		func() {
			defer func() { recover() }()
			c.appliedEverywhere(t, uint64(v), 2*time.Minute, regions...)
		}()
	}
	s.mu.Lock()
	docs := s.done["docs"]
	s.mu.Unlock()
	for _, r := range regions {
		want := docs[len(docs)-1].version
		res, err := c.client(r, false).fetch(t.Context(), "h2", "docs.cdn.test", "/")
		if err != nil || version(res.body) < want {
			s.lost.Add(1)
			t.Errorf("%s users get docs %q (%v) after the soak, want v%d or later", r.name, res.body, err, want)
		}
	}

	fmt.Printf("\nsoak of %v: %d requests (%d failed), %d purges (%d waited for), %d pushes, %d faults injected (%s), %d violations\n",
		dur, s.requests.Load(), s.failed.Load(), s.purged.Load(), s.complete.Load(), s.pushed.Load(), s.faultCount.Load(),
		strings.Join(s.faultNames, ", "), s.violations.Load())
	fmt.Printf("%-10s %12s %12s %8s %8s %6s %6s\n", "process", "rss before", "rss after", "gr bef", "gr aft", "fd bef", "fd aft")
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range after {
			if !yield(n) {
				return
			}
		}
	})
	for _, n := range names {
		b, ok := before[n]
		a := after[n]
		if !ok || s.restarted(n) {
			fmt.Printf("%-10s %12s %12.0f %8s %8.0f %6s %6.0f  (restarted)\n", n, "-", a[0], "-", a[1], "-", a[2])
			continue
		}
		fmt.Printf("%-10s %12.0f %12.0f %8.0f %8.0f %6.0f %6.0f\n", n, b[0], a[0], b[1], a[1], b[2], a[2])
		if a[1] > 2*b[1]+50 || a[2] > 2*b[2]+50 {
			t.Errorf("%s: goroutines %g -> %g, fds %g -> %g; want them flat", n, b[1], a[1], b[2], a[2])
		}
	}
	for _, v := range s.violationList() {
		t.Error(v)
	}
	if s.lost.Load() > 0 {
		t.Errorf("%d purges or releases lost", s.lost.Load())
	}
}

// doneAt is a version of an object (or of the pushed site) and when its
// purge or push was complete everywhere.
type doneAt struct {
	version int
	at      time.Time
}

type soak struct {
	c *cluster

	requests, failed, purged, complete, pushed, faultCount, violations, lost atomic.Int64
	maxVersion                                                               atomic.Int64

	mu         sync.Mutex // guards the fields below
	done       map[string][]doneAt
	violated   []string
	faultNames []string
	restarts   map[string]bool
}

func (s *soak) record(key string, d doneAt) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.done[key] = append(s.done[key], d)
}

// check reports a fetch of key that began at start and got version got,
// older than a version complete before it began.
func (s *soak) check(key string, start time.Time, got int, via string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range s.done[key] {
		if d.at.Before(start) && got < d.version {
			s.violations.Add(1)
			if len(s.violated) < 20 {
				s.violated = append(s.violated, fmt.Sprintf("%s: a fetch begun %v after v%d was complete got v%d (via %s)",
					key, start.Sub(d.at).Round(time.Millisecond), d.version, got, via))
			}
			return
		}
	}
}

func (s *soak) violationList() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.violated)
}

func (s *soak) restarted(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.restarts[name]
}

// version reads "... vN" off a body.
func version(body string) int {
	_, v, _ := strings.Cut(strings.TrimSpace(body), " v")
	n, err := strconv.Atoi(v)
	if err != nil {
		return -1
	}
	return n
}

func (s *soak) traffic(ctx context.Context, cl *client, objects int) {
	for i := 0; ctx.Err() == nil; i++ {
		host, path, key := "www.cdn.test", "", ""
		if i%10 == 9 {
			host, path, key = "docs.cdn.test", "/", "docs"
		} else {
			o := rand.IntN(objects)
			path, key = fmt.Sprintf("/s/o%d.txt", o), fmt.Sprintf("o%d", o)
		}
		start := time.Now()
		res, err := cl.fetch(ctx, protos[i%len(protos)], host, path)
		if ctx.Err() != nil {
			return
		}
		s.requests.Add(1)
		if err != nil || res.status != 200 {
			s.failed.Add(1)
		} else if key != "docs" || res.body != "" {
			s.check(key, start, version(res.body), res.edge.String()+" "+res.proto)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// purges changes one object at the origin and purges it, waiting until
// every edge applied it, through whichever control answers.
func (s *soak) purges(ctx context.Context, objects int) {
	versions := make([]int, objects)
	for n := 0; ctx.Err() == nil; n++ {
		o := rand.IntN(objects)
		versions[o]++
		s.c.writeAtomic(s.c.path("site", "s", fmt.Sprintf("o%d.txt", o)), fmt.Sprintf("o%d v%d\n", o, versions[o]))
		key := fmt.Sprintf("soak-%d-%d", os.Getpid(), n)
		for _, r := range []region{controlRegions[n%2], controlRegions[(n+1)%2]} {
			var res struct {
				Version int64 `json:"version"`
			}
			code, body, err := s.c.apiKey(r, http.MethodPost, "/v1/sites/www/purge?wait=30s", key,
				map[string]any{"urls": []string{fmt.Sprintf("/s/o%d.txt", o)}}, &res)
			if err != nil || code >= 500 && code != http.StatusGatewayTimeout {
				continue // that control is down: the other
			}
			if code == http.StatusGatewayTimeout {
				var late struct {
					Version int64 `json:"version"`
				}
				json.Unmarshal([]byte(body), &late)
				res.Version = late.Version
			}
			for v := s.maxVersion.Load(); res.Version > v && !s.maxVersion.CompareAndSwap(v, res.Version); v = s.maxVersion.Load() {
			}
			s.purged.Add(1)
			if code == http.StatusOK {
				s.complete.Add(1)
				s.record(fmt.Sprintf("o%d", o), doneAt{versions[o], time.Now()})
			}
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// pushes deploys a new release of the docs site every 20s, waiting for
// every edge to serve it.
func (s *soak) pushes(ctx context.Context, t *testing.T) {
	for n := 1; ctx.Err() == nil; n++ {
		s.push(t, n)
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Second):
		}
	}
}

// push deploys release n of the docs site through one of the controls
// (the other when it is down) and waits until every edge serves it.
func (s *soak) push(t *testing.T, n int) {
	dir := s.c.path(fmt.Sprintf("docs-soak-%d", n))
	s.c.writeAtomic(dir+"/index.html", fmt.Sprintf("docs v%d\n", 100+n))
	for _, r := range []region{controlRegions[n%2], controlRegions[(n+1)%2]} {
		out, err := s.c.cdnIn(r, "push", dir, "--site", "docs", "--control-url", controlURL(r), "--token", s.c.token, "--wait", "60s")
		if err == nil {
			s.pushed.Add(1)
			s.record("docs", doneAt{100 + n, time.Now()})
			return
		}
		t.Logf("push %d through %s: %v\n%s", n, controlName(r), err, out)
	}
}

// faults kills a random part every 40s and starts it again 10s later.
func (s *soak) faults(ctx context.Context, t *testing.T) {
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
			return
		case <-time.After(30 * time.Second):
		}
		r := regions[rand.IntN(len(regions))]
		var name string
		var restart func()
		switch rand.IntN(4) {
		case 0:
			i := 1 + rand.IntN(2)
			name, restart = edgeName(r, i), func() { s.c.startEdge(r, i) }
		case 1:
			name, restart = "origin", func() { s.c.startOrigin() }
		case 2:
			r = controlRegions[rand.IntN(2)]
			name, restart = controlName(r), func() { s.c.startControl(r) }
		default:
			name, restart = natsName(r), func() { s.c.startNATS(r) }
		}
		s.c.kill(name)
		s.faultCount.Add(1)
		s.mu.Lock()
		s.faultNames = append(s.faultNames, name)
		if s.restarts == nil {
			s.restarts = map[string]bool{}
		}
		s.restarts[name] = true
		s.mu.Unlock()
		time.Sleep(10 * time.Second)
		restart()
		t.Logf("%s killed and restarted", name)
	}
}

// resources reads RSS, goroutines and open fds of every process that
// serves /metrics.
func (s *soak) resources() map[string][3]float64 {
	out := map[string][3]float64{}
	add := func(name string, r region, url string) {
		page := s.c.scrape(r, url)
		if page == "" {
			return
		}
		out[name] = [3]float64{metric(page, "process_resident_memory_bytes"), metric(page, "go_goroutines"), metric(page, "process_open_fds")}
	}
	for _, r := range regions {
		for i, h := range edgeHosts {
			add(edgeName(r, i+1), r, edgeMetrics(r, h))
		}
		add(geodnsName(r), r, geodnsMetrics(r))
	}
	for _, r := range controlRegions {
		add(controlName(r), r, controlURL(r)+"/metrics")
	}
	return out
}

// writeAtomic replaces a file whole, so the origin never serves half.
func (c *cluster) writeAtomic(path, text string) {
	c.write(path+".tmp", text)
	if err := os.Rename(path+".tmp", path); err != nil {
		c.t.Fatal(err)
	}
}
