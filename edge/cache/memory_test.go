package cache

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/selfcdn/cdn/edge/freshness"
)

func TestMemory(t *testing.T) {
	m, err := NewMemory(Config{MemoryBytes: 1 << 20, MaxObjectBytes: 1000}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	meta := freshness.Meta{Lifetime: time.Minute, ResponseTime: time.Now()}
	small := NewEntry(200, http.Header{"Etag": {`"a"`}}, []byte("hello"), meta, nil)
	if !m.Put("k", small) {
		t.Fatalf("Put of a small entry = false, want true")
	}
	if got, ok := m.Get("k"); !ok || got != small {
		t.Errorf("Get after Put = %v, %v; want the entry", got, ok)
	}
	if cl := small.Header.Get("Content-Length"); cl != "5" {
		t.Errorf("prepared Content-Length = %q, want 5", cl)
	}
	big := NewEntry(200, http.Header{}, make([]byte, 2000), meta, nil)
	if m.Put("big", big) {
		t.Errorf("Put of an entry above max_object = true, want false")
	}
	if _, ok := m.Get("big"); ok {
		t.Errorf("entry above max_object is in memory")
	}
	m.Delete("k")
	if _, ok := m.Get("k"); ok {
		t.Errorf("Get after Delete found the entry")
	}
}

func TestEntryExpiry(t *testing.T) {
	meta := freshness.Meta{Lifetime: time.Minute, StaleIfError: time.Hour, InitialAge: 10 * time.Second}
	tests := []struct {
		name   string
		header http.Header
		want   time.Duration
	}{
		{name: "validator: kept for revalidation", header: http.Header{"Etag": {`"a"`}}, want: 0},
		{name: "last-modified: kept", header: http.Header{"Last-Modified": {"Mon, 02 Jan 2026 15:04:05 GMT"}}, want: 0},
		{name: "no validator: lifetime plus stale window", header: http.Header{}, want: time.Minute + time.Hour - 10*time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := NewEntry(200, tt.header, nil, meta, nil)
			if got := e.expiry(); got != tt.want {
				t.Errorf("expiry() = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestMemoryPutSaysVisible: Put reports true exactly when the next Get
// finds the entry, also when the tier is full and its admission refuses
// keys (a fill decides by it whether the next request finds the entry).
// Admission learns from reads asynchronously and may drop them, so the
// test puts until some were refused, within a bound.
func TestMemoryPutSaysVisible(t *testing.T) {
	m, err := NewMemory(Config{MemoryBytes: 64 << 10, MaxObjectBytes: 8 << 10}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	meta := freshness.Meta{Lifetime: time.Minute, ResponseTime: time.Now()}
	limit := 5000
	if raceEnabled {
		limit = 400 // its admission refuses nothing there: the reads are lost
	}
	refused, i := 0, 0
	for ; refused < 20 && i < limit; i++ {
		key := fmt.Sprintf("k%d", i)
		e := NewEntry(200, http.Header{}, make([]byte, 4<<10), meta, nil)
		put := m.Put(key, e)
		if _, found := m.Get(key); found != put {
			t.Fatalf("Put(%s) = %v, but Get finds it: %v", key, put, found)
		}
		if !put {
			refused++
		}
		// The first keys become frequent, so admission keeps them
		// against newcomers once the tier is full.
		for j := range min(i, 8) {
			m.Get(fmt.Sprintf("k%d", j))
		}
		if i%100 == 99 {
			time.Sleep(time.Millisecond) // let the policy take in the reads
		}
	}
	if refused == 0 && !raceEnabled {
		t.Fatalf("no Put of %d was refused: the test did not fill the tier", i)
	}
	t.Logf("%d of %d refused", refused, i)
}
