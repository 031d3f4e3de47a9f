package cache

import (
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
