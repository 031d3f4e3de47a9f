package cachekey

import (
	"net/http"
	"slices"
	"strings"
	"testing"
)

func TestParseVary(t *testing.T) {
	tests := []struct {
		name     string
		vary     []string
		want     []string
		wantStar bool
	}{
		{name: "none", want: nil},
		{name: "canonical sorted unique", vary: []string{"accept-encoding, User-Agent", "Accept-Encoding"}, want: []string{"Accept-Encoding", "User-Agent"}},
		{name: "star", vary: []string{"Accept, *"}, want: []string{"Accept"}, wantStar: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, star := ParseVary(http.Header{"Vary": tt.vary})
			if !slices.Equal(got, tt.want) || star != tt.wantStar {
				t.Errorf("ParseVary(%q) = %q, %v; want %q, %v", tt.vary, got, star, tt.want, tt.wantStar)
			}
		})
	}
}

func TestVariant(t *testing.T) {
	names := []string{"Accept-Encoding", "Accept-Language"}
	tests := []struct {
		name     string
		a, b     http.Header
		wantSame bool
	}{
		{name: "coding order and case", a: http.Header{"Accept-Encoding": {"gzip, br"}}, b: http.Header{"Accept-Encoding": {"BR;q=1.0,gzip"}}, wantSame: true},
		{name: "q=0 is not accepted", a: http.Header{"Accept-Encoding": {"gzip, br;q=0"}}, b: http.Header{"Accept-Encoding": {"gzip"}}, wantSame: true},
		{name: "different codings", a: http.Header{"Accept-Encoding": {"gzip"}}, b: http.Header{"Accept-Encoding": {"br"}}, wantSame: false},
		{name: "language spacing", a: http.Header{"Accept-Language": {"en-US,  fr"}}, b: http.Header{"Accept-Language": {"en-us, fr"}}, wantSame: true},
		{name: "language order matters", a: http.Header{"Accept-Language": {"fr, en"}}, b: http.Header{"Accept-Language": {"en, fr"}}, wantSame: false},
		{name: "absent vs empty", a: http.Header{}, b: http.Header{"Accept-Language": {""}}, wantSame: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ka, kb := Variant("k", names, tt.a), Variant("k", names, tt.b)
			if (ka == kb) != tt.wantSame {
				t.Errorf("Variant(%v) = %q, Variant(%v) = %q; want same = %v", tt.a, ka, tt.b, kb, tt.wantSame)
			}
		})
	}
}

func FuzzVariant(f *testing.F) {
	f.Add("Accept-Encoding, Accept-Language", "gzip;q=0.5, br", "en-US,  fr;q=0")
	f.Add("*", "", "")
	f.Add("x-a,,X-A", "identity;q=0, *;q=0", "\x00,")
	f.Fuzz(func(t *testing.T, vary, ae, al string) {
		names, _ := ParseVary(http.Header{"Vary": {vary}})
		if !slices.IsSorted(names) || len(slices.Compact(slices.Clone(names))) != len(names) {
			t.Fatalf("ParseVary(%q) = %q, not sorted and unique", vary, names)
		}
		h := http.Header{"Accept-Encoding": {ae}, "Accept-Language": {al}}
		k := Variant("base", names, h)
		if !strings.HasPrefix(k, "base") {
			t.Fatalf("Variant(%q) = %q, lost its base", names, k)
		}
		// The same request always selects the same variant.
		if again := Variant("base", names, h.Clone()); again != k {
			t.Fatalf("Variant not deterministic: %q then %q", k, again)
		}
	})
}
