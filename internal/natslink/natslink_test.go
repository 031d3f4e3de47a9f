package natslink

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	var b Backoff
	start := time.Now()
	for range 2 {
		if !b.Wait(context.Background()) {
			t.Fatal("Wait returned false with a live context")
		}
	}
	if took := time.Since(start); took < 750*time.Millisecond {
		t.Fatalf("two waits took %s, want 250ms + 500ms", took)
	}
	for range 10 {
		b.next = min(b.next*2, maxWait)
	}
	if b.next != maxWait {
		t.Fatalf("pause grew to %s, want the %s ceiling", b.next, maxWait)
	}
	b.Reset()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if b.Wait(ctx) {
		t.Fatal("Wait returned true with an ended context")
	}
	if b.next != 2*firstWait {
		t.Fatalf("after Reset the next pause is %s, want %s", b.next, 2*firstWait)
	}
}

// TestFollow: a failing session is retried after pauses with Down said
// once per spell, a linked one ends the spell (Up), and a reconnect
// starts the session again at once.
func TestFollow(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	reconnected := make(chan struct{}, 1)
	var downs, ups atomic.Int32
	runs := make(chan int, 16)
	n := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		Follow(ctx, reconnected, Hooks{Down: func(error) { downs.Add(1) }, Up: func() { ups.Add(1) }},
			func(sctx context.Context, linked func()) error {
				n++
				runs <- n
				switch n {
				case 1, 2:
					return errors.New("no NATS") // a spell of two failures
				case 3:
					linked()
					<-sctx.Done() // ended by the reconnect below
					return sctx.Err()
				default:
					linked()
					<-sctx.Done()
					return sctx.Err()
				}
			})
	}()
	start := time.Now()
	for want := 1; want <= 3; want++ {
		if got := <-runs; got != want {
			t.Fatalf("session %d, want %d", got, want)
		}
	}
	if took := time.Since(start); took < firstWait {
		t.Errorf("failed sessions retried after %s, want pauses of at least %s", took, firstWait)
	}
	if downs.Load() != 1 || ups.Load() != 1 {
		t.Errorf("Down called %d times, Up %d; want once each for one spell", downs.Load(), ups.Load())
	}
	restart := time.Now()
	reconnected <- struct{}{}
	if got := <-runs; got != 4 {
		t.Fatalf("after a reconnect: session %d, want 4", got)
	}
	if took := time.Since(restart); took > firstWait/2 {
		t.Errorf("a reconnect restarted the session after %s, want at once", took)
	}
	cancel()
	<-done
}
