package api

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/selfcdn/cdn/internal/state"
	"github.com/selfcdn/cdn/push"
)

// waitEdge is an edge as a wait test sets it up.
type waitEdge struct {
	name string
	// registered: the edge heartbeat at least once.
	registered bool
	// health is control's verdict; "" leaves the edge unjudged.
	health   string
	draining bool
	// done: the edge applied the purge, or serves the release.
	done bool
}

// waitCases are the edge sets both wait tests (purge and release) run.
var waitCases = []struct {
	name         string
	edges        []waitEdge
	wantExpected int
	wantPending  []string
	wantDone     bool // applied, or complete
}{
	{name: "unjudged edge is waited for",
		edges:        []waitEdge{{name: "e1", registered: true}},
		wantExpected: 1, wantPending: []string{"e1"}},
	{name: "unjudged edge that is done counts",
		edges:        []waitEdge{{name: "e1", registered: true, done: true}},
		wantExpected: 1, wantPending: []string{}, wantDone: true},
	{name: "down and draining are not waited for",
		edges: []waitEdge{
			{name: "up", registered: true, health: state.HealthUp, done: true},
			{name: "down", registered: true, health: state.HealthDown},
			{name: "drained", registered: true, health: state.HealthUp, draining: true},
			{name: "drained-unjudged", registered: true, health: state.HealthUnknown, draining: true},
		},
		wantExpected: 1, wantPending: []string{}, wantDone: true},
	{name: "up and unjudged both pending",
		edges: []waitEdge{
			{name: "a", registered: true, health: state.HealthUp},
			{name: "b", registered: true},
			{name: "c", registered: true, health: state.HealthUp, done: true},
		},
		wantExpected: 3, wantPending: []string{"a", "b"}},
	{name: "no edge registered",
		wantExpected: 0, wantPending: []string{}},
	{name: "every edge down or draining",
		edges: []waitEdge{
			{name: "down", registered: true, health: state.HealthDown, done: true},
			{name: "drained", registered: true, health: state.HealthUp, draining: true, done: true},
		},
		wantExpected: 0, wantPending: []string{}},
	{name: "status of a deleted edge is not counted",
		edges:        []waitEdge{{name: "gone", health: state.HealthUp}},
		wantExpected: 0, wantPending: []string{}},
}

// setUp registers and judges edges in a's store.
func (a *testAPI) setUp(t *testing.T, edges []waitEdge) {
	t.Helper()
	ctx := t.Context()
	for _, e := range edges {
		if e.registered {
			if err := a.store.Heartbeat(ctx, state.Edge{Name: e.name, HTTP: "http://127.0.0.1:1"}); err != nil {
				t.Fatal(err)
			}
		}
		if e.health != "" || e.draining {
			st := state.EdgeStatus{Name: e.name, Health: e.health, Draining: e.draining}
			if err := a.store.SetEdgeStatus(ctx, st); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestPurgeWaitCounts: which edges a purge's status counts, and that with
// none counted it is never applied.
func TestPurgeWaitCounts(t *testing.T) {
	for _, tt := range waitCases {
		t.Run(tt.name, func(t *testing.T) {
			a := startAPI(t)
			admin := a.token(t, 0, ScopeAdmin)
			a.do(t, "POST", "/v1/sites", admin, siteA)
			a.setUp(t, tt.edges)
			code, v := a.do(t, "POST", "/v1/sites/a/purge", admin, `{"all":true}`)
			if code != 202 {
				t.Fatalf("purge: %d %v", code, v)
			}
			version := uint64(v["version"].(float64))
			for _, e := range tt.edges {
				if e.done {
					a.progress.Set(state.PurgeApplied{Edge: e.name, Version: version})
				}
			}
			code, v = a.do(t, "GET", fmt.Sprintf("/v1/purges/%d", version), admin, "")
			if code != 200 {
				t.Fatalf("GET purge status: %d %v", code, v)
			}
			if v["expected"] != float64(tt.wantExpected) || v["applied"] != tt.wantDone || fmt.Sprint(v["pending"]) != fmt.Sprint(tt.wantPending) {
				t.Errorf("purge status: expected %v, applied %v, pending %v; want %d, %v, %v", v["expected"], v["applied"], v["pending"], tt.wantExpected, tt.wantDone, tt.wantPending)
			}
			if msg, _ := v["message"].(string); (tt.wantExpected == 0) != strings.Contains(msg, "no edge to wait for") {
				t.Errorf("purge status message %q with %d edges expected", msg, tt.wantExpected)
			}
		})
	}
}

// TestPurgeWaitNoEdge: a purge waited for with no edge to apply it is
// answered 504 not_applied saying so, never 200.
func TestPurgeWaitNoEdge(t *testing.T) {
	a := startAPI(t)
	admin := a.token(t, 0, ScopeAdmin)
	a.do(t, "POST", "/v1/sites", admin, siteA)
	a.setUp(t, []waitEdge{{name: "down", registered: true, health: state.HealthDown}})
	code, v := a.do(t, "POST", "/v1/sites/a/purge?wait=300ms", admin, `{"all":true}`)
	st, _ := v["status"].(map[string]any)
	if code != 504 || !strings.Contains(errMessage(v), "no edge to wait for") || st == nil || st["expected"] != 0.0 || st["applied"] != false {
		t.Errorf("purge ?wait with no edge up = %d %v, want 504 not_applied saying no edge, expected 0", code, v)
	}
}

// TestPurgeWaitUnjudged: a wait returns when an edge control has not
// judged yet applies the purge, not before.
func TestPurgeWaitUnjudged(t *testing.T) {
	a := startAPI(t)
	admin := a.token(t, 0, ScopeAdmin)
	a.do(t, "POST", "/v1/sites", admin, siteA)
	a.setUp(t, []waitEdge{{name: "new", registered: true}})
	code, v := a.do(t, "POST", "/v1/sites/a/purge", admin, `{"all":true}`)
	if code != 202 {
		t.Fatalf("purge: %d %v", code, v)
	}
	version := uint64(v["version"].(float64))
	type answer struct {
		code int
		v    map[string]any
	}
	done := make(chan answer, 1)
	go func() {
		code, v := a.do(t, "GET", fmt.Sprintf("/v1/purges/%d?wait=20s", version), admin, "")
		done <- answer{code, v}
	}()
	select {
	case got := <-done:
		t.Fatalf("wait returned before the unjudged edge applied the purge: %d %v", got.code, got.v)
	case <-time.After(300 * time.Millisecond):
	}
	a.progress.Set(state.PurgeApplied{Edge: "new", Version: version})
	select {
	case got := <-done:
		if got.code != 200 || got.v["applied"] != true || got.v["expected"] != 1.0 {
			t.Errorf("GET ?wait = %d %v, want 200 applied by 1 edge", got.code, got.v)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("GET ?wait did not return when the unjudged edge applied the purge")
	}
}

// TestReleaseWaitCounts: which edges a release's status counts, and that
// with none counted it is never complete.
func TestReleaseWaitCounts(t *testing.T) {
	blob := []byte("pushed")
	b := push.Blob{Hash: push.HashOf(blob), Size: int64(len(blob))}
	for _, tt := range waitCases {
		t.Run(tt.name, func(t *testing.T) {
			a := startAPI(t)
			admin := a.token(t, 0, ScopeAdmin)
			a.do(t, "POST", "/v1/sites", admin, siteA)
			a.setUp(t, tt.edges)
			for _, e := range tt.edges {
				if e.done {
					r := state.EdgeReleases{Edge: e.name, Sites: map[string]state.SiteRelease{"a": {Serving: 1}}}
					if err := a.store.ReportReleases(t.Context(), r); err != nil {
						t.Fatal(err)
					}
				}
			}
			if code, v := a.do(t, "PUT", "/v1/sites/a/blobs/"+b.Hash, admin, string(blob)); code != 201 {
				t.Fatalf("blob: %d %v", code, v)
			}
			code, v := a.do(t, "POST", "/v1/sites/a/releases", admin, commitBody("/a.txt", b))
			if code != 201 {
				t.Fatalf("commit: %d %v", code, v)
			}
			if v["expected"] != float64(tt.wantExpected) || v["complete"] != tt.wantDone || fmt.Sprint(v["pending"]) != fmt.Sprint(tt.wantPending) {
				t.Errorf("release status: expected %v, complete %v, pending %v; want %d, %v, %v", v["expected"], v["complete"], v["pending"], tt.wantExpected, tt.wantDone, tt.wantPending)
			}
			if msg, _ := v["message"].(string); (tt.wantExpected == 0) != strings.Contains(msg, "no edge to wait for") {
				t.Errorf("release status message %q with %d edges expected", msg, tt.wantExpected)
			}
		})
	}
}

// hidingStore lists edges as a listing that missed some would: those in
// hide are left out of Edges, still found by Edge.
type hidingStore struct {
	*state.Store
	hide map[string]bool
}

func (s hidingStore) Edges(ctx context.Context) ([]state.Edge, error) {
	edges, err := s.Store.Edges(ctx)
	return slices.DeleteFunc(edges, func(e state.Edge) bool { return s.hide[e.Name] }), err
}

// TestCensusMissedListing: an edge a listing misses stays counted when
// control judged it or the wait saw it before; a deleted one leaves.
func TestCensusMissedListing(t *testing.T) {
	ta := startAPI(t)
	ctx := t.Context()
	ta.setUp(t, []waitEdge{
		{name: "judged", registered: true, health: state.HealthUp},
		{name: "seen", registered: true},
		{name: "listed", registered: true},
	})
	a := New(hidingStore{ta.store, map[string]bool{"judged": true, "seen": true}}, NewProgress(), slog.New(slog.DiscardHandler), time.Now, 4096, 1<<20)
	got, err := a.census(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"judged", "listed"}; !slices.Equal(slices.Sorted(maps.Keys(got)), want) {
		t.Errorf("census() = %v, want %v", got, want)
	}
	got, err = a.census(ctx, map[string]verdict{"seen": {health: state.HealthUnknown}, "deleted": {health: state.HealthUp}})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"judged", "listed", "seen"}; !slices.Equal(slices.Sorted(maps.Keys(got)), want) {
		t.Errorf("census(known) = %v, want %v", got, want)
	}
	if got["judged"] != (verdict{health: state.HealthUp}) || got["seen"] != (verdict{health: state.HealthUnknown}) {
		t.Errorf("census verdicts = %v, want judged up, seen unknown", got)
	}
}

// laggingLive reads the live key as a replica that has not applied the
// last writes would: not found, for its first misses reads.
type laggingLive struct {
	*state.Store
	misses *atomic.Int32
}

func (s laggingLive) Live(ctx context.Context, site string) (state.Live, error) {
	if s.misses.Add(-1) >= 0 {
		return state.Live{}, state.ErrNotFound
	}
	return s.Store.Live(ctx, site)
}

// TestReleaseWaitLaggingLive: a push's wait does not end on a read of the
// live key that lags the push's own activation (it said "not served" for
// a release every edge switched to a moment later); a held release, never
// made live, still ends the wait at once.
func TestReleaseWaitLaggingLive(t *testing.T) {
	blob := []byte("pushed")
	b := push.Blob{Hash: push.HashOf(blob), Size: int64(len(blob))}
	ta := startAPI(t)
	admin := ta.token(t, 0, ScopeAdmin)
	ta.do(t, "POST", "/v1/sites", admin, siteA)
	ta.setUp(t, []waitEdge{{name: "e1", registered: true, health: state.HealthUp}})
	misses := new(atomic.Int32)
	h := httptest.NewServer(New(laggingLive{ta.store, misses}, ta.progress, slog.New(slog.DiscardHandler), func() time.Time { return *ta.clock }, 4096, 1<<20))
	t.Cleanup(h.Close)
	ta.url = h.URL
	if code, v := ta.do(t, "PUT", "/v1/sites/a/blobs/"+b.Hash, admin, string(blob)); code != 201 {
		t.Fatalf("blob: %d %v", code, v)
	}

	// e1 already serves release 1: only the lagging reads of the live key
	// stand between the wait and its answer.
	r := state.EdgeReleases{Edge: "e1", Sites: map[string]state.SiteRelease{"a": {Wanted: 1, Serving: 1}}}
	if err := ta.store.ReportReleases(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	misses.Store(3)
	code, v := ta.do(t, "POST", "/v1/sites/a/releases?wait=10s", admin, commitBody("/a.txt", b))
	if code != 201 || v["complete"] != true {
		t.Fatalf("commit with a lagging live key: %d, complete %v, live %v, pending %v; want 201 and complete once the live key reads right", code, v["complete"], v["live"], v["pending"])
	}

	held := strings.Replace(commitBody("/a.txt", b), "{", `{"activate":false,`, 1)
	start := time.Now()
	code, v = ta.do(t, "POST", "/v1/sites/a/releases?wait=10s", admin, held)
	if code != 201 || v["live"] != false || time.Since(start) > 5*time.Second {
		t.Fatalf("held release: %d, live %v after %v; want 201, not live, at once", code, v["live"], time.Since(start))
	}
}
