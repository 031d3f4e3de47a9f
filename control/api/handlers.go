package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/selfcdn/cdn/internal/state"
)

func (a *API) listSites(w http.ResponseWriter, r *http.Request) error {
	sites, err := a.store.Sites(r.Context())
	if err != nil {
		return err
	}
	slices.SortFunc(sites, func(x, y state.Site) int { return strings.Compare(x.Name, y.Name) })
	writeJSON(w, http.StatusOK, map[string]any{"sites": nonNil(sites)})
	return nil
}

func (a *API) getSite(w http.ResponseWriter, r *http.Request) error {
	s, _, err := a.store.Site(r.Context(), r.PathValue("site"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s)
	return nil
}

func (a *API) createSite(w http.ResponseWriter, r *http.Request) error {
	var s state.Site
	if err := decode(r, &s); err != nil {
		return err
	}
	if err := a.writeSite(r.Context(), s, true); err != nil {
		return err
	}
	w.Header().Set("Location", "/v1/sites/"+s.Name)
	writeJSON(w, http.StatusCreated, s)
	return nil
}

func (a *API) putSite(w http.ResponseWriter, r *http.Request) error {
	var s state.Site
	if err := decode(r, &s); err != nil {
		return err
	}
	name := r.PathValue("site")
	if s.Name == "" {
		s.Name = name
	}
	if s.Name != name {
		return &badRequest{"name: the body says " + s.Name + ", the path " + name}
	}
	if err := a.writeSite(r.Context(), s, false); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s)
	return nil
}

// writeSite validates s, checks its hosts against the other sites', and
// stores it (with create, only if it is new).
func (a *API) writeSite(ctx context.Context, s state.Site, create bool) error {
	if err := s.Validate(); err != nil {
		return err
	}
	a.sitesMu.Lock()
	defer a.sitesMu.Unlock()
	if err := a.checkHosts(ctx, s); err != nil {
		return err
	}
	_, err := a.store.PutSite(ctx, s, create)
	return err
}

func (a *API) deleteSite(w http.ResponseWriter, r *http.Request) error {
	if err := a.store.DeleteSite(r.Context(), r.PathValue("site")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// edgeView is an edge as the API shows it: its registration and control's
// verdict.
type edgeView struct {
	state.Edge
	Health   string    `json:"health"`
	Reason   string    `json:"reason,omitempty"`
	Since    time.Time `json:"since,omitzero"`
	Draining bool      `json:"draining"`
}

func (a *API) view(r *http.Request, e state.Edge) (edgeView, error) {
	st, err := a.store.EdgeStatus(r.Context(), e.Name)
	if err != nil {
		return edgeView{}, err
	}
	return edgeView{Edge: e, Health: st.Health, Reason: st.Reason, Since: st.Since, Draining: st.Draining}, nil
}

func (a *API) listEdges(w http.ResponseWriter, r *http.Request) error {
	views, err := a.edgeViews(w, r)
	if err != nil {
		return err
	}
	slices.SortFunc(views, func(x, y edgeView) int { return strings.Compare(x.Region+x.Name, y.Region+y.Name) })
	writeJSON(w, http.StatusOK, map[string]any{"edges": views})
	return nil
}

// fromWatch is the header an answer carries when it was built from the
// roster's watches because the buckets could not be read.
const fromWatch = "Cdn-From-Watch"

// sitesUnread is the header of a /v1/health answer whose site count is
// null because the sites could not be read; it holds the read's error.
const sitesUnread = "Cdn-Sites-Unread"

// edgeViews reads every registered edge with control's verdict on it.
// The buckets come first, so a client reads its own writes (a drain, a
// delete) at once. If they cannot be read (a get answered by a replica
// cut off from the rest times out, and would for as long as the cut
// lasts) and the roster's watches are live, which the streams' leaders
// serve, the answer is built from those instead and says so in a
// Cdn-From-Watch header.
func (a *API) edgeViews(w http.ResponseWriter, r *http.Request) ([]edgeView, error) {
	views, err := a.readEdgeViews(r)
	if err == nil || r.Context().Err() != nil {
		return views, err
	}
	edges, statuses, ok := a.Roster.Snapshot()
	if !ok {
		return nil, err
	}
	a.log.Warn("edge registry not readable; answering from control's watch of it", slog.Any("err", err))
	w.Header().Set(fromWatch, "registry read failed: "+err.Error())
	views = make([]edgeView, 0, len(edges))
	for _, e := range edges {
		st, judged := statuses[e.Name]
		if !judged {
			st = state.Unjudged(e.Name)
		}
		views = append(views, edgeView{Edge: e, Health: st.Health, Reason: st.Reason, Since: st.Since, Draining: st.Draining})
	}
	return views, nil
}

func (a *API) readEdgeViews(r *http.Request) ([]edgeView, error) {
	edges, err := a.store.Edges(r.Context())
	if err != nil {
		return nil, err
	}
	views := []edgeView{}
	for _, e := range edges {
		v, err := a.view(r, e)
		if err != nil {
			return nil, err
		}
		views = append(views, v)
	}
	return views, nil
}

func (a *API) getEdge(w http.ResponseWriter, r *http.Request) error {
	e, err := a.store.Edge(r.Context(), r.PathValue("edge"))
	if err != nil {
		return err
	}
	v, err := a.view(r, e)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

// deleteEdge forgets a decommissioned edge; one that still heartbeats
// registers again.
func (a *API) deleteEdge(w http.ResponseWriter, r *http.Request) error {
	// Revoked first: an edge forgotten but still admitted would register
	// again with its next heartbeat.
	if err := a.revokeEdgeUsers(r.Context(), r.PathValue("edge")); err != nil {
		return err
	}
	if err := a.store.DeleteEdge(r.Context(), r.PathValue("edge")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// health summarizes the network: edges by health, drained, and sites.
func (a *API) health(w http.ResponseWriter, r *http.Request) error {
	views, err := a.edgeViews(w, r)
	if err != nil {
		return err
	}
	var nsites *int // null: not read
	if sites, err := a.store.Sites(r.Context()); err == nil {
		nsites = new(len(sites))
	} else if r.Context().Err() != nil {
		return err
	} else {
		// The edges are what an operator asks for here, and the cut that
		// keeps the sites from being read (a replica behind it times out)
		// is when they ask: answer without the count, and say why.
		a.log.Warn("sites not readable; /v1/health answers without their count", slog.Any("err", err))
		w.Header().Set(sitesUnread, err.Error())
	}
	counts := map[string]int{state.HealthUp: 0, state.HealthDown: 0, state.HealthUnknown: 0}
	draining := 0
	for _, v := range views {
		counts[v.Health]++
		if v.Draining {
			draining++
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"edges": counts, "draining": draining, "sites": nsites})
	return nil
}

// drain sets or clears an edge's draining flag: a drained edge keeps
// serving but gets no new DNS answers.
func (a *API) drain(on bool) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		name := r.PathValue("edge")
		if _, err := a.store.Edge(r.Context(), name); err != nil {
			return err
		}
		st, err := a.store.EdgeStatus(r.Context(), name)
		if err != nil {
			return err
		}
		st.Draining = on
		if err := a.store.SetEdgeStatus(r.Context(), st); err != nil {
			return err
		}
		return a.getEdge(w, r)
	}
}

// tokenRequest is the body of POST /v1/tokens.
type tokenRequest struct {
	Name   string   `json:"name"`
	Scopes []string `json:"scopes"`
	// TTL, when set, makes the token expire ("720h").
	TTL state.Duration `json:"ttl,omitzero"`
}

func (a *API) createToken(w http.ResponseWriter, r *http.Request) error {
	var req tokenRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if len(req.Scopes) == 0 {
		return &badRequest{"scopes: at least one scope is required (admin, read, purge:<site>, push:<site>)"}
	}
	for _, s := range req.Scopes {
		if !validScope(s) {
			return &badRequest{"scopes: unknown scope " + s + " (admin, read, purge:<site>, push:<site>)"}
		}
	}
	if req.TTL < 0 {
		return &badRequest{"ttl: must be >= 0"}
	}
	if err := a.checkScopeSites(r.Context(), req.Scopes); err != nil {
		return err
	}
	secret, t := NewToken(req.Name, req.Scopes, time.Duration(req.TTL), a.now())
	if err := a.store.PutToken(r.Context(), t); err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, map[string]any{"token": secret, "id": t.ID, "scopes": t.Scopes, "expires": t.Expires})
	return nil
}

// checkScopeSites refuses site scopes (purge:<site>, push:<site>) for
// sites that do not exist: a token minted for a typo would only fail
// later, and one minted ahead for a site another team then creates would
// hand that team's site to whoever holds it.
func (a *API) checkScopeSites(ctx context.Context, scopes []string) error {
	for _, sc := range scopes {
		_, site, ok := strings.Cut(sc, ":")
		if !ok {
			continue // admin, read
		}
		_, _, err := a.store.Site(ctx, site)
		if errors.Is(err, state.ErrNotFound) {
			return &unknownSite{scope: sc, site: site}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// unknownSite is a scope naming a site that does not exist (422).
type unknownSite struct{ scope, site string }

func (e *unknownSite) Error() string {
	return fmt.Sprintf("scopes: %s names site %q, which does not exist; create the site first", e.scope, e.site)
}

func (a *API) listTokens(w http.ResponseWriter, r *http.Request) error {
	tokens, err := a.store.Tokens(r.Context())
	if err != nil {
		return err
	}
	for i := range tokens {
		tokens[i].Hash = "" // not even the hash leaves control
	}
	writeJSON(w, http.StatusOK, map[string]any{"tokens": nonNil(tokens)})
	return nil
}

func (a *API) deleteToken(w http.ResponseWriter, r *http.Request) error {
	if err := a.store.DeleteToken(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
