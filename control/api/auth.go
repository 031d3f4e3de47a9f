package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/selfcdn/cdn/internal/state"
)

// Scopes a token may hold. Site scopes are "purge:<site>" and "push:<site>".
const (
	ScopeAdmin = "admin"
	ScopeRead  = "read"
)

// A token reads "cdn_<id>_<secret>". Only the SHA-256 of the secret is
// stored; the ID finds the record without comparing against every token.
const tokenPrefix = "cdn_"

// NewToken makes a token with the given scopes and returns the text to
// hand to its user (shown once) and the record to store.
func NewToken(name string, scopes []string, ttl time.Duration, now time.Time) (string, state.Token) {
	id := rand.Text()[:12]
	secret := rand.Text()
	sum := sha256.Sum256([]byte(secret))
	t := state.Token{ID: strings.ToLower(id), Name: name, Hash: hex.EncodeToString(sum[:]), Scopes: scopes, Created: now}
	if ttl > 0 {
		t.Expires = now.Add(ttl)
	}
	return tokenPrefix + t.ID + "_" + secret, t
}

var (
	errNoToken  = errors.New("missing bearer token")
	errBadToken = errors.New("invalid or expired token")
)

// authenticate returns the token record for the request's bearer token.
func (a *API) authenticate(ctx context.Context, r *http.Request) (state.Token, error) {
	raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || raw == "" {
		return state.Token{}, errNoToken
	}
	rest, ok := strings.CutPrefix(raw, tokenPrefix)
	id, secret, ok2 := strings.Cut(rest, "_")
	if !ok || !ok2 || id == "" || secret == "" {
		return state.Token{}, errBadToken
	}
	t, err := a.store.Token(ctx, id)
	if errors.Is(err, state.ErrNotFound) {
		return state.Token{}, errBadToken
	}
	if err != nil {
		return state.Token{}, err
	}
	sum := sha256.Sum256([]byte(secret))
	want, err := hex.DecodeString(t.Hash)
	if err != nil || subtle.ConstantTimeCompare(sum[:], want) != 1 {
		return state.Token{}, errBadToken
	}
	if !t.Expires.IsZero() && !a.now().Before(t.Expires) {
		return state.Token{}, errBadToken
	}
	return t, nil
}

// scopeAnyPurge admits a token with any purge:<site> scope; the handler
// then checks the site.
const scopeAnyPurge = "purge:*"

// allows reports whether t holds one of the scopes (admin holds all).
func allows(t state.Token, scopes ...string) bool {
	if slices.Contains(t.Scopes, ScopeAdmin) {
		return true
	}
	for _, s := range scopes {
		if slices.Contains(t.Scopes, s) {
			return true
		}
		if s == scopeAnyPurge && slices.ContainsFunc(t.Scopes, func(h string) bool { return strings.HasPrefix(h, "purge:") }) {
			return true
		}
	}
	return false
}

// validScope reports whether s is a scope this API knows.
func validScope(s string) bool {
	if s == ScopeAdmin || s == ScopeRead {
		return true
	}
	kind, site, ok := strings.Cut(s, ":")
	return ok && (kind == "purge" || kind == "push") && site != "" && !strings.ContainsAny(site, " *")
}
