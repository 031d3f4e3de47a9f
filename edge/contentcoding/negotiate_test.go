package contentcoding

import (
	"strings"
	"testing"
)

func TestNegotiate(t *testing.T) {
	tests := []struct {
		name   string
		fields []string
		want   Coding
	}{
		{name: "no field", fields: nil, want: Identity},
		{name: "empty value", fields: []string{""}, want: Identity},
		{name: "only commas", fields: []string{" , ,"}, want: Identity},
		{name: "gzip", fields: []string{"gzip"}, want: Gzip},
		{name: "zstd", fields: []string{"zstd"}, want: Zstd},
		{name: "browser", fields: []string{"gzip, deflate, br, zstd"}, want: Zstd},
		{name: "tie prefers zstd whatever the order", fields: []string{"zstd, gzip"}, want: Zstd},
		{name: "unsupported only", fields: []string{"br, deflate"}, want: Identity},
		{name: "q decides", fields: []string{"gzip;q=0.5, zstd;q=0.4"}, want: Gzip},
		{name: "q decides for zstd", fields: []string{"gzip;q=0.4, zstd;q=0.5"}, want: Zstd},
		{name: "equal q prefers zstd", fields: []string{"gzip;q=0.8, zstd;q=0.8"}, want: Zstd},
		{name: "three decimals", fields: []string{"gzip;q=0.501, zstd;q=0.5"}, want: Gzip},
		{name: "gzip refused", fields: []string{"gzip;q=0"}, want: Identity},
		{name: "gzip refused, zstd kept", fields: []string{"gzip;q=0, zstd"}, want: Zstd},
		{name: "q=0.000 refuses", fields: []string{"zstd;q=0.000, gzip"}, want: Gzip},
		{name: "q=1.000", fields: []string{"gzip;q=1.000"}, want: Gzip},
		{name: "q=1. and q=0.", fields: []string{"gzip;q=1., zstd;q=0."}, want: Gzip},
		{name: "star", fields: []string{"*"}, want: Zstd},
		{name: "star with q", fields: []string{"gzip;q=0.9, *;q=0.5"}, want: Gzip},
		{name: "star beats a low named q", fields: []string{"gzip;q=0.1, *;q=0.5"}, want: Zstd},
		{name: "star does not revive a refused coding", fields: []string{"zstd;q=0, *"}, want: Gzip},
		{name: "star refused", fields: []string{"*;q=0"}, want: Identity},
		{name: "star refused, named kept", fields: []string{"gzip, *;q=0"}, want: Gzip},
		{name: "identity refused still identity", fields: []string{"identity;q=0"}, want: Identity},
		{name: "identity refused with gzip", fields: []string{"identity;q=0, gzip"}, want: Gzip},
		{name: "identity preferred is not considered", fields: []string{"identity, gzip;q=0.5"}, want: Gzip},
		{name: "x-gzip", fields: []string{"x-gzip"}, want: Gzip},
		{name: "x-gzip q shared with gzip", fields: []string{"x-gzip;q=0.9, zstd;q=0.5"}, want: Gzip},
		{name: "upper case", fields: []string{"GZIP, ZSTD;Q=0.5"}, want: Gzip},
		{name: "mixed case", fields: []string{"Zstd"}, want: Zstd},
		{name: "spaces and tabs", fields: []string{"  gzip ;\tq=0.7 ,\tzstd ; q=0.6  "}, want: Gzip},
		{name: "empty elements", fields: []string{",,gzip,,"}, want: Gzip},
		{name: "bad q skips element", fields: []string{"gzip;q=abc"}, want: Identity},
		{name: "bad q skips only its element", fields: []string{"zstd;q=abc, gzip;q=0.1"}, want: Gzip},
		{name: "q above 1", fields: []string{"gzip;q=1.5"}, want: Identity},
		{name: "q 1.001", fields: []string{"gzip;q=1.001"}, want: Identity},
		{name: "q four decimals", fields: []string{"gzip;q=0.5000"}, want: Identity},
		{name: "q without leading digit", fields: []string{"gzip;q=.5"}, want: Identity},
		{name: "q empty", fields: []string{"gzip;q="}, want: Identity},
		{name: "q negative", fields: []string{"gzip;q=-1"}, want: Identity},
		{name: "space around equals", fields: []string{"gzip;q = 0.5"}, want: Identity},
		{name: "unknown parameter", fields: []string{"gzip;level=9"}, want: Identity},
		{name: "empty parameter tolerated", fields: []string{"gzip;;q=0.5;"}, want: Gzip},
		{name: "last q counts", fields: []string{"gzip;q=0;q=1"}, want: Gzip},
		{name: "no name", fields: []string{";q=1"}, want: Identity},
		{name: "space in name", fields: []string{"gz ip"}, want: Identity},
		{name: "garbage", fields: []string{"\x00\xff;;==,,;"}, want: Identity},
		{name: "prefix is not the coding", fields: []string{"gzipped, zstd2"}, want: Identity},
		{name: "multiple fields", fields: []string{"gzip;q=0.5", "zstd;q=0.4"}, want: Gzip},
		{name: "refusal in a later field", fields: []string{"zstd", "zstd;q=0"}, want: Identity},
		{name: "repeat takes the higher q", fields: []string{"gzip;q=0.2, zstd;q=0.5, gzip;q=0.9"}, want: Gzip},
		{name: "refusal wins over a repeat", fields: []string{"gzip, x-gzip;q=0"}, want: Identity},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Negotiate(tt.fields); got != tt.want {
				t.Errorf("Negotiate(%q) = %q, want %q", tt.fields, got, tt.want)
			}
		})
	}
}

func TestParseQ(t *testing.T) {
	tests := []struct {
		in     string
		want   int
		wantOK bool
	}{
		{in: "0", want: 0, wantOK: true},
		{in: "0.", want: 0, wantOK: true},
		{in: "0.5", want: 500, wantOK: true},
		{in: "0.05", want: 50, wantOK: true},
		{in: "0.123", want: 123, wantOK: true},
		{in: "1", want: 1000, wantOK: true},
		{in: "1.000", want: 1000, wantOK: true},
		{in: "1.5"},
		{in: "2"},
		{in: "0.1234"},
		{in: "00"},
		{in: "0,5"},
		{in: ""},
	}
	for _, tt := range tests {
		got, ok := parseQ(tt.in)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("parseQ(%q) = %d, %v; want %d, %v", tt.in, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestCodingString(t *testing.T) {
	tests := []struct {
		c    Coding
		want string
	}{
		{c: Identity, want: ""},
		{c: Gzip, want: "gzip"},
		{c: Zstd, want: "zstd"},
		{c: Coding(9), want: "Coding(9)"},
	}
	for _, tt := range tests {
		if got := tt.c.String(); got != tt.want {
			t.Errorf("Coding(%d).String() = %q, want %q", uint8(tt.c), got, tt.want)
		}
	}
}

// The edge negotiates on every request, so Negotiate must stay allocation
// free; the benchmark shows it too, but only when someone runs it.
func TestNegotiateAllocs(t *testing.T) {
	fields := []string{"gzip, deflate, br, zstd", "x-gzip;q=0.5, *;q=0.1"}
	if n := testing.AllocsPerRun(100, func() { Negotiate(fields) }); n != 0 {
		t.Errorf("Negotiate(%q) allocates %.0f times per call, want 0", fields, n)
	}
}

func FuzzNegotiate(f *testing.F) {
	for _, s := range []string{
		"", "gzip, deflate, br, zstd", "gzip;q=0.5, zstd;q=0.4", "gzip;q=0", "*", "*;q=0",
		"identity;q=0", "x-gzip", "GZIP, ZSTD;Q=0.5", " gzip ;\tq=0.7 ", "gzip;q=abc", "gzip;q=1.5",
		"zstd;q=0, *", "gzip;;q=0.5;", "\x00\xff;;==,,;",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, value string) {
		got := Negotiate([]string{value})
		if got != Identity && got != Gzip && got != Zstd {
			t.Fatalf("Negotiate(%q) = %d, not a known coding", value, uint8(got))
		}
		lower := strings.ToLower(value)
		hasGzip, hasZstd, hasStar := strings.Contains(lower, "gzip"), strings.Contains(lower, "zstd"), strings.Contains(lower, "*")
		if !hasGzip && !hasZstd && !hasStar && got != Identity {
			t.Errorf("Negotiate(%q) = %q, want identity: no coding or * named", value, got)
		}
		if got == Gzip && !hasGzip && !hasStar {
			t.Errorf("Negotiate(%q) = gzip, but neither gzip nor * is named", value)
		}
		if got == Zstd && !hasZstd && !hasStar {
			t.Errorf("Negotiate(%q) = zstd, but neither zstd nor * is named", value)
		}
		// A list split over several field lines means the same (RFC 9110 §5.3).
		if split := Negotiate(strings.Split(value, ",")); split != got {
			t.Errorf("Negotiate(%q) = %q, but split at commas = %q", value, got, split)
		}
		// A later refusal always holds, and a refused identity changes nothing.
		if r := Negotiate([]string{value, "zstd;q=0"}); r == Zstd {
			t.Errorf("Negotiate(%q, zstd;q=0) = zstd", value)
		}
		if r := Negotiate([]string{value, "gzip;q=0"}); r == Gzip {
			t.Errorf("Negotiate(%q, gzip;q=0) = gzip", value)
		}
		if r := Negotiate([]string{value, "identity;q=0"}); r != got {
			t.Errorf("Negotiate(%q, identity;q=0) = %q, want %q as without it", value, r, got)
		}
	})
}

func BenchmarkNegotiate(b *testing.B) {
	fields := []string{"gzip, deflate, br, zstd"}
	b.ReportAllocs()
	for b.Loop() {
		Negotiate(fields)
	}
}
