// Package statetest opens the shared state for tests, on a NATS server
// of the test's own (natstest) that stops with the test.
package statetest

import (
	"testing"

	"github.com/selfcdn/cdn/internal/natstest"
	"github.com/selfcdn/cdn/internal/state"
)

// Open starts a NATS server for t and opens the state on it.
func Open(t testing.TB) *state.Store {
	t.Helper()
	srv := natstest.Start(t, "", "")
	store, err := state.Open(t.Context(), natstest.Connect(t, srv.URL), state.Options{})
	if err != nil {
		t.Fatalf("open state: %v", err)
	}
	return store
}
