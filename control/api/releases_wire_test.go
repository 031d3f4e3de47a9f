package api

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/selfcdn/cdn/internal/state"
)

// TestReleaseWire: the API answers a release as it did when it sent the
// stored type itself, every field carried over.
func TestReleaseWire(t *testing.T) {
	tests := []struct {
		name string
		rel  state.Release
	}{
		{name: "every field", rel: state.Release{Site: "docs", Number: 7, Manifest: "ab12", Files: 3, Bytes: 4096, Blobs: 5,
			Created: time.Date(2025, 3, 4, 5, 6, 7, 8, time.UTC), Message: "deploy abc123"}},
		{name: "no message", rel: state.Release{Site: "docs", Number: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stored, err := json.Marshal(tt.rel)
			if err != nil {
				t.Fatal(err)
			}
			wire, err := json.Marshal(releaseWire(tt.rel))
			if err != nil {
				t.Fatal(err)
			}
			if string(wire) != string(stored) {
				t.Errorf("releaseWire(%+v) encodes as %s, want %s", tt.rel, wire, stored)
			}
		})
	}
}
