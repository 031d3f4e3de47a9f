// Package testwait is for tests that wait on something running elsewhere
// (a process, a watch, a goroutine): they poll a condition with a bound,
// instead of sleeping and hoping.
package testwait

import (
	"testing"
	"time"
)

// Timeout bounds every wait: far above what anything takes on a loaded
// CI machine, far below a test binary's own timeout.
const Timeout = 10 * time.Second

// Until polls cond every 10ms until it holds, and fails t if Timeout
// passes first, naming what it waited for.
func Until(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(Timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", Timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
