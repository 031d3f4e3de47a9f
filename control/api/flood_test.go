package api

import (
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/selfcdn/cdn/internal/natstest"
	"github.com/selfcdn/cdn/internal/state"
	"github.com/selfcdn/cdn/internal/testheap"
	"github.com/selfcdn/cdn/purge"
)

// Flood parameters: the 1,000 purges of 10,000 URLs from one
// purge-scoped token, at control's default write rate, into a purge log
// capped small enough that the flood overflows it.
const (
	floodRequests = 1000
	floodWorkers  = 8
	floodRate     = 10 // control's default limits.write_rate
	floodBurst    = 50 // and limits.write_burst
	floodLogBytes = 4 << 20
)

// TestPurgeFlood: one token sends 1,000 purges of 10,000 URLs each. At
// control's default write rate most are refused with 429; with the rate
// off (and 300 purges) every one is written. Either way the purge log stays under its byte
// cap, its directory under the cap and one file-store block, and control's
// heap does not grow with what was sent. The numbers are logged for the
// dated table in docs/performance.md ("Abuse limits").
func TestPurgeFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("sends 1,000 purges of 10,000 URLs, twice")
	}
	// A few distinct bodies, made before any heap is measured: the flood
	// is what control holds, not what the test built to send.
	bodies := make([]string, 4)
	for b := range bodies {
		urls := make([]string, purge.MaxItems)
		for i := range urls {
			urls[i] = fmt.Sprintf(`"/f/%d/%d"`, b, i)
		}
		bodies[b] = `{"urls":[` + strings.Join(urls, ",") + `]}`
	}
	tests := []struct {
		name     string
		requests int
		rate     float64 // limits.write_rate; 0: off
		burst    int
	}{
		{name: "default write rate", requests: floodRequests, rate: floodRate, burst: floodBurst},
		// Every purge written: 36 MB through a 4 MiB log, which is
		// enough to show the cap (and -race keeps it under 10 s).
		{name: "write rate off", requests: 300},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := startFlood(t, Limits{WriteRate: tt.rate, WriteBurst: tt.burst})
			r := f.run(t, bodies, tt.requests)
			accepted, limited := r.codes[202], r.codes[429]
			if accepted+limited != int64(tt.requests) {
				t.Errorf("answers by status %v, want only 202s and 429s", r.codes)
			}
			switch {
			case tt.rate == 0 && limited > 0:
				t.Errorf("%d answers were 429 with the write rate off", limited)
			case tt.rate > 0:
				// The burst, then the rate; one more second of it for
				// the clock around the first and last request.
				most := int64(float64(tt.burst) + tt.rate*(r.elapsed.Seconds()+1))
				if accepted < int64(tt.burst) || accepted > most || limited == 0 {
					t.Errorf("accepted %d purges in %s, want between the burst (%d) and %d, the rest 429", accepted, r.elapsed.Round(time.Millisecond), tt.burst, most)
				}
				if got := testutil.ToFloat64(f.api.RateLimited.WithLabelValues("purge")); got != float64(limited) {
					t.Errorf(`cdn_control_rate_limited_total{scope="purge"} = %v, want %d`, got, limited)
				}
			}
			if r.noRetryAfter > 0 {
				t.Errorf("%d answers 429 without Retry-After", r.noRetryAfter)
			}
			if r.log.Bytes > floodLogBytes {
				t.Errorf("purge log holds %d bytes, over its cap of %d", r.log.Bytes, floodLogBytes)
			}
			if r.log.LastSeq != uint64(accepted) || r.log.FirstSeq <= 1 {
				t.Errorf("purge log holds versions %d-%d; want up to %d, the oldest dropped for the cap", r.log.FirstSeq, r.log.LastSeq, accepted)
			}
			// Expired purges leave the disk a block at a time: at most one
			// partly expired block (8 MB: the stream was made without a
			// byte limit) besides the capped log, and its index.
			if limit := int64(floodLogBytes + 8<<20 + 1<<20); r.streamDisk > limit {
				t.Errorf("the purge stream's directory holds %d bytes, over %d (the cap and one block)", r.streamDisk, limit)
			}
			// 36-120 MB were sent, and with the rate off written; what
			// control keeps must not follow. The slack covers the file
			// store's caches and connection buffers.
			if r.heapGrowth > 32<<20 {
				t.Errorf("heap in use grew %.1f MiB during the flood, want under 32 MiB", float64(r.heapGrowth)/(1<<20))
			}
			t.Logf("%s: %d purges of %d URLs (%.0f MB) in %s by %d workers: %d accepted (202), %d refused (429)",
				tt.name, tt.requests, purge.MaxItems, float64(r.sent)/1e6, r.elapsed.Round(time.Millisecond), floodWorkers, accepted, limited)
			t.Logf("%s: purge log %d purges (versions %d-%d), %d bytes of a %d-byte cap; stream directory %d bytes, JetStream directory %d; heap in use %.1f -> %.1f MiB (%+.1f)",
				tt.name, r.log.Msgs, r.log.FirstSeq, r.log.LastSeq, r.log.Bytes, floodLogBytes, r.streamDisk, r.disk,
				mib(r.heapBefore), mib(r.heapBefore+uint64(r.heapGrowth)), float64(r.heapGrowth)/(1<<20))
		})
	}
}

// flood is an API over its own NATS with the purge log capped at
// floodLogBytes, a site "www" and a purge:www token.
type flood struct {
	api     *API
	url     string
	nc      *nats.Conn
	dir     string
	flooder string // the purge:www token
}

func startFlood(t *testing.T, l Limits) *flood {
	t.Helper()
	dir := t.TempDir()
	srv := natstest.Start(t, "", dir)
	nc := natstest.Connect(t, srv.URL)
	store, err := state.Open(t.Context(), nc, state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.LimitPurgeBytes(t.Context(), floodLogBytes); err != nil {
		t.Fatal(err)
	}
	a := New(store, NewProgress(), slog.New(slog.DiscardHandler), time.Now, 1<<20, 1<<20)
	a.RateLimited = NewRateLimitedMetric()
	a.SetLimits(l)
	h := httptest.NewServer(a)
	t.Cleanup(h.Close)
	now := time.Now()
	ta := &testAPI{url: h.URL, store: store, clock: &now}
	admin := ta.token(t, 0, ScopeAdmin)
	if code, v := ta.do(t, "POST", "/v1/sites", admin, `{"name":"www","hosts":["www.example.com"],"origin":"http://127.0.0.1:9000"}`); code != 201 {
		t.Fatalf("create site: %d %v", code, v)
	}
	return &flood{api: a, url: h.URL, nc: nc, dir: dir, flooder: ta.token(t, 0, "purge:www")}
}

// floodResult is what a flood did.
type floodResult struct {
	codes        map[int]int64 // answers by status
	noRetryAfter int64         // 429s without Retry-After
	sent         int64         // body bytes sent
	elapsed      time.Duration
	log          jetstream.StreamState
	streamDisk   int64 // bytes under the purge stream's directory
	disk         int64 // bytes under JetStream's whole directory
	heapBefore   uint64
	heapGrowth   int64
}

// run sends requests purges, floodWorkers at a time, cycling through
// bodies, and measures.
func (f *flood) run(t *testing.T, bodies []string, requests int) floodResult {
	t.Helper()
	var (
		mu  sync.Mutex // protects r.codes, r.noRetryAfter and r.sent
		r   = floodResult{codes: map[int]int64{}}
		nxt atomic.Int64
	)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: floodWorkers}}
	defer client.CloseIdleConnections()
	r.heapBefore = testheap.InUse()
	start := time.Now()
	var wg sync.WaitGroup
	for range floodWorkers {
		wg.Go(func() {
			for i := nxt.Add(1); i <= int64(requests); i = nxt.Add(1) {
				body := bodies[int(i)%len(bodies)]
				req, _ := http.NewRequestWithContext(t.Context(), "POST", f.url+"/v1/sites/www/purge", strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+f.flooder)
				res, err := client.Do(req)
				if err != nil {
					t.Errorf("purge %d: %v", i, err)
					return
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				mu.Lock()
				r.codes[res.StatusCode]++
				r.sent += int64(len(body))
				if res.StatusCode == 429 && res.Header.Get("Retry-After") == "" {
					r.noRetryAfter++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	r.elapsed = time.Since(start)
	client.CloseIdleConnections()
	r.heapGrowth = int64(testheap.InUse()) - int64(r.heapBefore)

	js, err := jetstream.New(f.nc)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(t.Context(), state.PurgeStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	r.log = info.State
	r.streamDisk = dirBytes(t, f.dir, state.PurgeStream)
	r.disk = dirBytes(t, f.dir, "")
	return r
}

// dirBytes sums the sizes of the files under root whose path has a
// directory named within (every file when within is empty).
func dirBytes(t *testing.T, root, within string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if within != "" && !strings.Contains(path, string(filepath.Separator)+within+string(filepath.Separator)) {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		n += info.Size()
		return nil
	})
	if err != nil {
		t.Fatalf("size of %s: %v", root, err)
	}
	return n
}

func mib(n uint64) float64 { return float64(n) / (1 << 20) }
