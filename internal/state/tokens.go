package state

import (
	"context"
	"time"
)

// Token is an API token as stored: never the secret, only its hash.
type Token struct {
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
	// Hash is the hex SHA-256 of the token's secret part.
	Hash string `json:"hash,omitempty"`
	// Scopes: "admin", "read", "purge:<site>", "push:<site>".
	Scopes  []string  `json:"scopes"`
	Created time.Time `json:"created"`
	// Expires, when set, ends the token's validity.
	Expires time.Time `json:"expires,omitzero"`
}

// Token returns the token with the given ID.
func (s *Store) Token(ctx context.Context, id string) (Token, error) {
	t, _, err := get[Token](ctx, s.tkns, id)
	return t, err
}

// Tokens lists every token (hashes only).
func (s *Store) Tokens(ctx context.Context) ([]Token, error) { return list[Token](ctx, s.tkns) }

// PutToken stores a token.
func (s *Store) PutToken(ctx context.Context, t Token) error {
	_, err := put(ctx, s.tkns, t.ID, t)
	return err
}

// DeleteToken revokes a token.
func (s *Store) DeleteToken(ctx context.Context, id string) error { return del(ctx, s.tkns, id) }
