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
	Within(t, what, Timeout, cond)
}

// Within is Until with its own limit, for a wait that is itself what a
// test checks; it returns how long cond took to hold.
func Within(t testing.TB, what string, limit time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

// Recv receives from ch, and fails t if Timeout passes first, naming
// what it waited for.
func Recv[T any](t testing.TB, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(Timeout):
		t.Fatalf("timed out after %s waiting for %s", Timeout, what)
		panic("unreachable")
	}
}
