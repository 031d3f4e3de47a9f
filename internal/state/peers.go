package state

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// PeerBucket holds the network's edge-to-edge secret: edges sign the
// requests they send each other with it (edge/tier), so a client cannot
// pass for an edge. Edges read it; geodns does not.
const PeerBucket = "cdn_peer"

const peerSecretKey = "secret"

// peerSecretBytes is the HMAC-SHA256 key size.
const peerSecretBytes = 32

// EnsurePeerSecret creates the edge-to-edge secret if there is none. Safe
// from every control process at once: the first create wins and the
// others keep it.
func (s *Store) EnsurePeerSecret(ctx context.Context) error {
	secret := make([]byte, peerSecretBytes)
	if _, err := rand.Read(secret); err != nil {
		return fmt.Errorf("make peer secret: %w", err)
	}
	_, err := s.peer.Create(ctx, peerSecretKey, secret)
	if err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("store peer secret: %w", err)
	}
	return nil
}

// PeerSecret returns the edge-to-edge secret, ErrNotFound before control
// made one.
func (s *Store) PeerSecret(ctx context.Context) ([]byte, error) {
	e, err := s.peer.Get(ctx, peerSecretKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read peer secret: %w", err)
	}
	if len(e.Value()) < peerSecretBytes {
		return nil, fmt.Errorf("peer secret: %d bytes, want %d", len(e.Value()), peerSecretBytes)
	}
	return e.Value(), nil
}
