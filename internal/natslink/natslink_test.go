package natslink

import (
	"context"
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
