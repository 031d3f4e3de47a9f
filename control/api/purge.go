package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/selfcdn/cdn/internal/state"
	"github.com/selfcdn/cdn/purge"
)

// Progress is how far each edge has applied the purge log, as the edges
// report it; control feeds it from a watch (Set), purge calls wait on it.
// The zero value is not usable; use NewProgress.
type Progress struct {
	mu      sync.Mutex        // protects applied and changed
	applied map[string]uint64 // edge -> last version applied
	changed chan struct{}     // closed and replaced on every change
}

// NewProgress returns an empty Progress.
func NewProgress() *Progress {
	return &Progress{applied: map[string]uint64{}, changed: make(chan struct{})}
}

// Set records an edge's report.
func (p *Progress) Set(a state.PurgeApplied) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if a.Version <= p.applied[a.Edge] {
		return
	}
	p.applied[a.Edge] = a.Version
	close(p.changed)
	p.changed = make(chan struct{})
}

// Applied is the last version edge reported applied; ok is false when it
// has reported none.
func (p *Progress) Applied(edge string) (v uint64, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	v, ok = p.applied[edge]
	return v, ok
}

// Follow calls f with each edge's latest report so far, then with every
// newer one, until ctx ends. Control watches the reports once, into
// Progress, and the dashboard follows them here: a watch of its own
// delivered every edge's report of every purge twice.
func (p *Progress) Follow(ctx context.Context, f func(state.PurgeApplied)) error {
	seen := map[string]uint64{}
	for {
		applied, changed := p.snapshot()
		for edge, v := range applied {
			if v > seen[edge] {
				seen[edge] = v
				f(state.PurgeApplied{Edge: edge, Version: v})
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}

// snapshot returns the reports so far and a channel closed at the next.
func (p *Progress) snapshot() (map[string]uint64, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.applied), p.changed
}

// purge writes a purge to the log and, with ?wait=, waits for the edges.
func (a *API) purge(w http.ResponseWriter, r *http.Request) error {
	siteName := r.PathValue("site")
	wait, err := waitParam(r)
	if err != nil {
		return err
	}
	key := r.Header.Get("Idempotency-Key")
	if key != "" {
		if err := purge.CheckIdempotencyKey(key); err != nil {
			return &badRequest{"Idempotency-Key: " + err.Error()}
		}
	}
	var req purge.Request
	if err := decode(r, &req); err != nil {
		return err
	}
	site, _, err := a.store.Site(r.Context(), siteName)
	if err != nil {
		return err
	}
	if err := req.Validate(site.Hosts); err != nil {
		return err
	}
	accepted := a.now()
	data, err := json.Marshal(purge.Message{Site: siteName, Request: req, Time: accepted, IdempotencyKey: key})
	if err != nil {
		return err
	}
	if err := checkPurgeSize(len(data)); err != nil {
		return err
	}
	version, dup, err := a.store.PublishPurge(r.Context(), siteName, key, data)
	if err != nil {
		return err
	}
	if dup {
		// The key was used: it must have meant the same purge.
		first, err := a.store.Purge(r.Context(), version)
		if err != nil {
			return err
		}
		var m purge.Message
		if json.Unmarshal(first.Data, &m) != nil || !reflect.DeepEqual(normalized(m.Request), normalized(req)) {
			return &conflict{fmt.Sprintf("Idempotency-Key %q was used for another purge (version %d)", key, version)}
		}
	}
	a.log.Info("purge accepted", "site", siteName, "version", version, "duplicate", dup,
		"urls", len(req.URLs), "prefixes", len(req.Prefixes), "tags", len(req.Tags), "all", req.All, "soft", req.Soft)
	res := purge.Result{Version: version, Site: siteName, Duplicate: dup}
	if wait == 0 {
		writeJSON(w, http.StatusAccepted, res)
		return nil
	}
	st := purge.Status{Version: version, Site: siteName, Request: req, Time: accepted}
	if err := a.waitApplied(r.Context(), &st, wait); err != nil {
		return err
	}
	res.Status = &st
	if !st.Applied {
		msg := fmt.Sprintf("purge %d was written but not applied within %s by: %s", version, wait, strings.Join(st.Pending, ", "))
		if st.Expected == 0 {
			msg = fmt.Sprintf("purge %d was written, but %s", version, noEdgeMessage)
		}
		writeJSON(w, http.StatusGatewayTimeout, map[string]any{
			"error":   map[string]string{"code": "not_applied", "message": msg},
			"version": version, "status": st,
		})
		return nil
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

// normalized makes empty and nil lists compare equal.
func normalized(r purge.Request) purge.Request {
	for _, l := range []*[]string{&r.URLs, &r.Prefixes, &r.Tags} {
		if len(*l) == 0 {
			*l = nil
		}
	}
	return r
}

// purgeStatus answers which edges have applied a purge.
func (a *API) purgeStatus(w http.ResponseWriter, r *http.Request) error {
	version, err := strconv.ParseUint(r.PathValue("version"), 10, 64)
	if err != nil || version == 0 {
		return &badRequest{"version: want a positive integer, got " + strconv.Quote(r.PathValue("version"))}
	}
	wait, err := waitParam(r)
	if err != nil {
		return err
	}
	p, err := a.store.Purge(r.Context(), version)
	if errors.Is(err, state.ErrPurgeGone) {
		return fmt.Errorf("purge %d: %w (never written, or past the log's retention)", version, state.ErrNotFound)
	}
	if err != nil {
		return err
	}
	t, _ := tokenFrom(r.Context())
	if !allows(t, ScopeRead, "purge:"+p.Site) {
		writeError(w, http.StatusForbidden, "forbidden", "this token may not read purges of site "+p.Site)
		return nil
	}
	var m purge.Message
	json.Unmarshal(p.Data, &m)
	st := purge.Status{Version: version, Site: p.Site, Request: m.Request, Time: p.Time}
	if err := a.waitApplied(r.Context(), &st, wait); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}

// waitApplied fills st with every edge's progress, waiting up to wait
// for every edge the wait counts (see census) to reach st.Version. Edges
// down or draining are listed but not waited for: a dead edge must not
// fail every deploy, and it catches up (or purges its sites) when it
// returns. With no edge counted it waits on, for one to register.
func (a *API) waitApplied(ctx context.Context, st *purge.Status, wait time.Duration) error {
	roster := a.Roster.changes()
	edges, err := a.census(ctx, nil)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	refresh := time.NewTicker(time.Second)
	defer refresh.Stop()
	for {
		applied, changed := a.progress.snapshot()
		fill(st, edges, applied)
		if st.Applied || wait <= 0 {
			return nil
		}
		select {
		case <-changed:
		case <-roster:
			// An edge judged, drained or deleted: a dead edge stops
			// holding the wait as soon as control judges it down.
			roster = a.Roster.changes()
			if e, err := a.census(ctx, edges); err == nil {
				edges = e
			}
		case <-refresh.C:
			// Edges registered, judged, drained or deleted meanwhile
			// (when no live roster says so at once).
			if e, err := a.census(ctx, edges); err == nil {
				edges = e
			}
		case <-ctx.Done():
			return nil // the wait is over (or the caller gone): st says how far it got
		}
	}
}

// fill sets st's per-edge lines and verdict.
func fill(st *purge.Status, edges map[string]verdict, applied map[string]uint64) {
	st.Edges, st.Pending, st.Expected, st.Message = make([]purge.EdgeStatus, 0, len(edges)), []string{}, 0, ""
	for name, v := range edges {
		got := applied[name]
		st.Edges = append(st.Edges, purge.EdgeStatus{Edge: name, Health: v.health, Draining: v.draining, Version: got, Applied: got >= st.Version})
		if !v.counted() {
			continue
		}
		st.Expected++
		if got < st.Version {
			st.Pending = append(st.Pending, name)
		}
	}
	slices.SortFunc(st.Edges, func(x, y purge.EdgeStatus) int { return strings.Compare(x.Edge, y.Edge) })
	slices.Sort(st.Pending)
	// No edge applied it when there is none: never "applied by all 0".
	st.Applied = st.Expected > 0 && len(st.Pending) == 0
	if st.Expected == 0 {
		st.Message = noEdgeMessage
	}
}

// waitParam reads ?wait=, a duration up to MaxWait; absent is 0.
func waitParam(r *http.Request) (time.Duration, error) {
	s := r.URL.Query().Get("wait")
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 || d > purge.MaxWait {
		return 0, &badRequest{fmt.Sprintf("wait: want a duration up to %s (30s, 2m), got %q", purge.MaxWait, s)}
	}
	return d, nil
}

// conflict is a request that contradicts an earlier one (422).
type conflict struct{ msg string }

func (e *conflict) Error() string { return e.msg }
