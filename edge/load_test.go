package edge

import (
	"testing"
	"time"
)

func TestLoadMeter(t *testing.T) {
	var m loadMeter
	if got := m.sample(time.Now()); got != 0 {
		t.Fatalf("first sample %g, want 0", got)
	}
	start := time.Now()
	for time.Since(start) < 100*time.Millisecond { // keep one CPU busy
	}
	got := m.sample(time.Now())
	if got <= 0 || got > 1 {
		t.Fatalf("load after 100ms busy = %g, want in (0, 1]", got)
	}
	time.Sleep(100 * time.Millisecond)
	if idle := m.sample(time.Now()); idle >= got {
		t.Fatalf("load while sleeping %g, not below the busy %g", idle, got)
	}
}
