package edge

import (
	"context"
	"testing"
)

// contextWithCancel is t.Context that the test can also end early; unlike
// t.Context it stays live during t.Cleanup, so servers drain cleanly.
func contextWithCancel(t *testing.T) (context.Context, context.CancelFunc) {
	t.Helper()
	return context.WithCancel(context.Background())
}
