package freshness

import (
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Directives
	}{
		{name: "empty", in: "", want: Directives{}},
		{name: "max-age", in: "max-age=60", want: Directives{MaxAge: time.Minute, Has: HasMaxAge}},
		{name: "case and spaces", in: " Public , MAX-AGE = 10 ", want: Directives{MaxAge: 10 * time.Second, Has: HasMaxAge | Public}},
		{name: "s-maxage and swr", in: "s-maxage=5, stale-while-revalidate=30, stale-if-error=600",
			want: Directives{SMaxAge: 5 * time.Second, StaleWhileRevalidate: 30 * time.Second, StaleIfError: 10 * time.Minute, Has: HasSMaxAge | HasStaleWhileRevalidate | HasStaleIfError}},
		{name: "invalid max-age is stale", in: "max-age=abc", want: Directives{MaxAge: 0, Has: HasMaxAge}},
		{name: "negative max-age is stale", in: "max-age=-5", want: Directives{MaxAge: 0, Has: HasMaxAge}},
		{name: "invalid swr ignored", in: "stale-while-revalidate=x", want: Directives{}},
		{name: "huge saturates", in: "max-age=99999999999999999999999", want: Directives{MaxAge: maxDelta, Has: HasMaxAge}},
		{name: "quoted delta", in: `max-age="30"`, want: Directives{MaxAge: 30 * time.Second, Has: HasMaxAge}},
		{name: "duplicate keeps smallest", in: "max-age=60, max-age=10", want: Directives{MaxAge: 10 * time.Second, Has: HasMaxAge}},
		{name: "quoted comma", in: `private="Set-Cookie, X-A", max-age=5`, want: Directives{MaxAge: 5 * time.Second, Has: HasMaxAge | Private}},
		{name: "flags", in: "no-store, no-cache, must-revalidate, proxy-revalidate, only-if-cached, immutable",
			want: Directives{Has: NoStore | NoCache | MustRevalidate | ProxyRevalidate | OnlyIfCached | Immutable}},
		{name: "max-stale bare", in: "max-stale", want: Directives{MaxStale: maxDelta, Has: HasMaxStale}},
		{name: "min-fresh", in: "min-fresh=20", want: Directives{MinFresh: 20 * time.Second, Has: HasMinFresh}},
		{name: "unknown ignored", in: "foo=bar, ,,", want: Directives{}},
		{name: "unclosed quote quotes nothing", in: `private="x, max-age=5`, want: Directives{MaxAge: 5 * time.Second, Has: HasMaxAge | Private}},
		{name: "quote outside an argument", in: `", s-maxage=7`, want: Directives{SMaxAge: 7 * time.Second, Has: HasSMaxAge}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Parse(tt.in); got != tt.want {
				t.Errorf("Parse(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"max-age=60", `private="a,b", s-maxage=1`, "max-stale", "max-age=99999999999999999999", `"\`, "no-cache,,,",
		"none", "Max-Age=1", "a=(1 2);x, b=:aGk=:", "max-age=1.5", "a=1,", `%"x"`, "30, 60", `"30"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d := Parse(s)
		for _, v := range []time.Duration{d.MaxAge, d.SMaxAge, d.StaleWhileRevalidate, d.StaleIfError, d.MaxStale, d.MinFresh} {
			if v < 0 || v > maxDelta {
				t.Fatalf("Parse(%q) gave duration %v outside [0, 2^31s]", s, v)
			}
		}
		// Parsing the same field twice as one list cannot loosen it.
		twice := Parse(s + "," + s)
		if twice.Has != d.Has || twice.MaxAge != d.MaxAge {
			t.Fatalf("Parse(%q) twice = %+v, once = %+v", s, twice, d)
		}
		// The same bytes as CDN-Cache-Control (a Structured Field) and
		// as an Age value.
		checkTargeted(t, s)
		checkAge(t, s)
	})
}
