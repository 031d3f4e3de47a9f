package api

import (
	"context"
	"errors"
	"net/http"

	"github.com/selfcdn/cdn/internal/state"
)

// ErrBadToken is a token that is missing, unknown, wrong or expired.
var ErrBadToken = errBadToken

// Authenticate checks a token as the API does for its bearer tokens and
// returns its record: the dashboard signs in with it. ErrBadToken means
// the token is not valid; any other error, that the state could not be
// read.
func (a *API) Authenticate(ctx context.Context, token string) (state.Token, error) {
	r, err := http.NewRequestWithContext(ctx, http.MethodGet, "/", nil)
	if err != nil {
		return state.Token{}, err
	}
	r.Header.Set("Authorization", "Bearer "+token)
	t, err := a.authenticate(ctx, r)
	if errors.Is(err, errNoToken) {
		return t, errBadToken
	}
	return t, err
}

// Can reports whether t may use an endpoint needing one of scopes (admin
// holds every scope), as the API decides it.
func Can(t state.Token, scopes ...string) bool { return allows(t, scopes...) }
