package api

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/selfcdn/cdn/internal/state"
	"github.com/selfcdn/cdn/internal/statetest"
)

// cutRegistry is a store whose registry reads fail, as gets answered by
// a replica cut off from the rest do for as long as the cut lasts.
type cutRegistry struct{ *state.Store }

func (cutRegistry) Edges(context.Context) ([]state.Edge, error) {
	return nil, errors.New("nats: timeout (a replica behind a cut)")
}

func (cutRegistry) Sites(context.Context) ([]state.Site, error) {
	return nil, errors.New("nats: timeout (a replica behind a cut)")
}

// TestEdgesFromWatchWhenUnreadable: with the registry unreadable,
// /v1/edges and /v1/health answer from the roster's watches, saying so
// in a header, once those are live; before that they fail as before.
// The sites cannot be read either, so /v1/health has no site count, and
// says why in another header.
func TestEdgesFromWatchWhenUnreadable(t *testing.T) {
	store := statetest.Open(t)
	clock := time.Now()
	a := New(cutRegistry{store}, NewProgress(), slog.New(slog.DiscardHandler), func() time.Time { return clock }, 4096, 1<<20)
	a.Roster = NewRoster()
	h := httptest.NewServer(a)
	t.Cleanup(h.Close)
	secret, tok := NewToken("test", []string{ScopeRead}, time.Hour, clock)
	if err := store.PutToken(t.Context(), tok); err != nil {
		t.Fatal(err)
	}
	get := func(path string) (int, string, map[string]any) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, h.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+secret)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var v map[string]any
		json.NewDecoder(res.Body).Decode(&v)
		if path == "/v1/health" && res.StatusCode == http.StatusOK && res.Header.Get(sitesUnread) == "" {
			t.Errorf("/v1/health without its site count and no %s header", sitesUnread)
		}
		return res.StatusCode, res.Header.Get(fromWatch), v
	}
	if code, _, _ := get("/v1/edges"); code < 500 {
		t.Fatalf("/v1/edges unreadable, roster not live: %d, want a 5xx", code)
	}
	a.Roster.SetEdges(map[string]state.Edge{"eu-1": {Name: "eu-1", Region: "eu"}, "us-1": {Name: "us-1", Region: "us"}})
	a.Roster.SetStatuses(map[string]state.EdgeStatus{"eu-1": {Name: "eu-1", Health: state.HealthDown, Reason: "no heartbeat", Draining: true}})
	code, from, v := get("/v1/edges")
	if code != http.StatusOK || from == "" {
		t.Fatalf("/v1/edges from the watch: %d, %s %q", code, fromWatch, from)
	}
	edges, _ := v["edges"].([]any)
	want := []struct{ name, health string }{{"eu-1", "down"}, {"us-1", "unknown"}}
	if len(edges) != len(want) {
		t.Fatalf("%d edges, want %d: %v", len(edges), len(want), v)
	}
	for i, w := range want {
		e := edges[i].(map[string]any)
		if e["name"] != w.name || e["health"] != w.health {
			t.Errorf("edge %d: %v %v, want %s %s", i, e["name"], e["health"], w.name, w.health)
		}
	}
	code, from, v = get("/v1/health")
	counts, _ := v["edges"].(map[string]any)
	if sites, ok := v["sites"]; !ok || sites != nil {
		t.Errorf("/v1/health sites %v, want null (unread)", sites)
	}
	if code != http.StatusOK || from == "" || counts["down"] != 1.0 || counts["unknown"] != 1.0 || v["draining"] != 1.0 {
		t.Errorf("/v1/health from the watch: %d %q %v", code, from, v)
	}
}
