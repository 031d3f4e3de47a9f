package freshness

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// Regression tests for issue 20's HTTP semantics: invalid Expires, Age
// and CDN-Cache-Control values, each read as the RFC says.

// TestInvalidExpires: an Expires that is not one valid HTTP-date means
// already expired (RFC 9111 §5.3), several values included (§4.2.1).
func TestInvalidExpires(t *testing.T) {
	date := t0.Format(http.TimeFormat)
	inHour := t0.Add(time.Hour).Format(http.TimeFormat)
	inDay := t0.Add(24 * time.Hour).Format(http.TimeFormat)
	tests := []struct {
		name         string
		expires      []string
		wantLifetime time.Duration
	}{
		{name: "valid", expires: []string{inHour}, wantLifetime: time.Hour},
		{name: "rfc 850 form", expires: []string{t0.Add(time.Hour).Format("Monday, 02-Jan-06 15:04:05 GMT")}, wantLifetime: time.Hour},
		{name: "zero", expires: []string{"0"}},
		{name: "two lines", expires: []string{inHour, inDay}},
		{name: "two equal lines", expires: []string{inHour, inHour}},
		{name: "two dates in one line", expires: []string{inHour + ", " + inDay}},
		{name: "empty", expires: []string{""}},
		{name: "garbage", expires: []string{"tomorrow"}},
		{name: "iso 8601", expires: []string{t0.Add(time.Hour).Format(time.RFC3339)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := http.Header{"Date": {date}, "Expires": tt.expires, "Etag": {`"v"`}}
			d := Evaluate(http.Header{}, 200, res, t0, t0, Policy{DefaultTTL: time.Hour})
			if !d.Store || d.Meta.Lifetime != tt.wantLifetime {
				t.Errorf("Evaluate(Expires %q) = store %v lifetime %v, want store true lifetime %v", tt.expires, d.Store, d.Meta.Lifetime, tt.wantLifetime)
			}
		})
	}
}

// TestAgeField: the Age field's first member counts; a value that is not
// a non-negative integer is ignored (RFC 9111 §5.1).
func TestAgeField(t *testing.T) {
	tests := []struct {
		name string
		age  []string
		want time.Duration
	}{
		{name: "none", want: 0},
		{name: "integer", age: []string{"30"}, want: 30 * time.Second},
		{name: "spaces", age: []string{" 30 "}, want: 30 * time.Second},
		{name: "list uses first member", age: []string{"30, 60"}, want: 30 * time.Second},
		{name: "lines use first", age: []string{"30", "60"}, want: 30 * time.Second},
		{name: "empty member skipped", age: []string{", 30"}, want: 30 * time.Second},
		{name: "negative ignored", age: []string{"-5"}, want: 0},
		{name: "quoted ignored", age: []string{`"30"`}, want: 0},
		{name: "fraction ignored", age: []string{"30.5"}, want: 0},
		{name: "plus sign ignored", age: []string{"+30"}, want: 0},
		{name: "text ignored", age: []string{"old"}, want: 0},
		{name: "invalid first member ignored", age: []string{"x, 30"}, want: 0},
		{name: "huge saturates", age: []string{"99999999999999999999"}, want: maxDelta},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := parseAge(tt.age); got != tt.want {
				t.Errorf("parseAge(%q) = %v, want %v", tt.age, got, tt.want)
			}
			// And through Evaluate: corrected_initial_age uses it (§4.2.3).
			res := http.Header{"Date": {t0.Format(http.TimeFormat)}, "Cache-Control": {"max-age=3600"}, "Etag": {`"v"`}}
			if tt.age != nil {
				res["Age"] = tt.age
			}
			if d := Evaluate(http.Header{}, 200, res, t0, t0, Policy{}); d.Meta.InitialAge != tt.want {
				t.Errorf("Evaluate(Age %q).InitialAge = %v, want %v", tt.age, d.Meta.InitialAge, tt.want)
			}
		})
	}
}

// TestTargetedInvalidIgnored: a CDN-Cache-Control that is not a valid
// Structured Field Dictionary is ignored whole (RFC 9213 §2.2, RFC 8941
// §4.2), so Cache-Control governs; a valid one replaces Cache-Control.
func TestTargetedInvalidIgnored(t *testing.T) {
	tests := []struct {
		name         string
		cdn          []string
		cc           string
		wantTargeted bool
		wantStore    bool
		wantReason   string
		wantLifetime time.Duration
	}{
		{name: "valid", cdn: []string{"max-age=600"}, cc: "max-age=60", wantTargeted: true, wantStore: true, wantLifetime: 10 * time.Minute},
		{name: "valid overrides no-store", cdn: []string{"max-age=600"}, cc: "no-store", wantTargeted: true, wantStore: true, wantLifetime: 10 * time.Minute},
		{name: "valid lines combined", cdn: []string{"public", "max-age=600"}, cc: "no-store", wantTargeted: true, wantStore: true, wantLifetime: 10 * time.Minute},
		{name: "none placeholder", cdn: []string{"none"}, cc: "no-store", wantTargeted: true, wantStore: false, wantReason: "stale on arrival"},
		{name: "upper case key", cdn: []string{"Max-Age=600"}, cc: "max-age=60", wantStore: true, wantLifetime: time.Minute},
		{name: "unterminated string", cdn: []string{`max-age=600, private="x`}, cc: "max-age=60", wantStore: true, wantLifetime: time.Minute},
		{name: "trailing comma", cdn: []string{"max-age=600,"}, cc: "max-age=60", wantStore: true, wantLifetime: time.Minute},
		{name: "bad bare item", cdn: []string{"max-age=600, no-store=@"}, cc: "max-age=60", wantStore: true, wantLifetime: time.Minute},
		{name: "invalid no-store ignored", cdn: []string{"no-store;"}, cc: "max-age=60", wantStore: true, wantLifetime: time.Minute},
		{name: "empty", cdn: []string{""}, cc: "max-age=60", wantStore: true, wantLifetime: time.Minute},
		{name: "invalid falls to expires", cdn: []string{"max-age=6OO"}, cc: "", wantStore: true, wantLifetime: time.Hour},
		{name: "decimal max-age not coerced", cdn: []string{"max-age=1.5"}, cc: "max-age=60", wantTargeted: true, wantReason: "stale on arrival"},
		{name: "string max-age not coerced", cdn: []string{`max-age="600"`}, cc: "max-age=60", wantTargeted: true, wantReason: "stale on arrival"},
		{name: "last duplicate wins", cdn: []string{"max-age=10, max-age=600"}, cc: "max-age=60", wantTargeted: true, wantStore: true, wantLifetime: 10 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := http.Header{
				"Date": {t0.Format(http.TimeFormat)}, "Expires": {t0.Add(time.Hour).Format(http.TimeFormat)},
				"Cdn-Cache-Control": tt.cdn, "Etag": {`"v"`},
			}
			if tt.cc != "" {
				res["Cache-Control"] = []string{tt.cc}
			}
			if _, targeted := Targeted(res); targeted != tt.wantTargeted {
				t.Errorf("Targeted(%q) targeted = %v, want %v", tt.cdn, targeted, tt.wantTargeted)
			}
			delete(res, "Etag") // "none" must not be stored only for being validatable
			d := Evaluate(http.Header{}, 200, res, t0, t0, Policy{})
			if d.Store != tt.wantStore || d.Reason != tt.wantReason || d.Store && d.Meta.Lifetime != tt.wantLifetime {
				t.Errorf("Evaluate(CDN-Cache-Control %q, Cache-Control %q) = store %v (%q) lifetime %v, want %v (%q) %v",
					tt.cdn, tt.cc, d.Store, d.Reason, d.Meta.Lifetime, tt.wantStore, tt.wantReason, tt.wantLifetime)
			}
		})
	}
}

func TestParseSFDictionary(t *testing.T) {
	tests := []struct {
		in     string
		wantOK bool
		want   []sfMember
	}{
		{in: "", wantOK: true},
		{in: "  a=1", wantOK: true, want: []sfMember{{key: "a", kind: sfInteger, n: 1}}},
		{in: "a=1 ,\tb", wantOK: true, want: []sfMember{{key: "a", kind: sfInteger, n: 1}, {key: "b", kind: sfTrue}}},
		{in: "a=-12, b=?0, c=?1", wantOK: true, want: []sfMember{{key: "a", kind: sfInteger, n: -12}, {key: "b", kind: sfFalse}, {key: "c", kind: sfTrue}}},
		{in: `a="x, \"y\"", b=tok/en:1, c=:aGk=:, d=(1 "two" three);p=1, e=1.25;q, f=@1700000000, g=%"caf%c3%a9"`, wantOK: true, want: []sfMember{
			{key: "a"}, {key: "b"}, {key: "c"}, {key: "d"}, {key: "e"}, {key: "f"}, {key: "g"}}},
		{in: "*a.b_c-d=1", wantOK: true, want: []sfMember{{key: "*a.b_c-d", kind: sfInteger, n: 1}}},
		{in: "a=1, a=2", wantOK: true, want: []sfMember{{key: "a", kind: sfInteger, n: 2}}},
		{in: "a;x=1;y", wantOK: true, want: []sfMember{{key: "a", kind: sfTrue}}},
		{in: "a=999999999999999", wantOK: true, want: []sfMember{{key: "a", kind: sfInteger, n: 999999999999999}}},
		{in: "a=1234567890123456"},
		{in: "a=1234567890123.1"},
		{in: "a=1.1234"},
		{in: "a=1."},
		{in: "a=-"},
		{in: "a=-.5"},
		{in: "A=1"},
		{in: "1a=1"},
		{in: "\ta=1"},
		{in: "a=1,"},
		{in: "a=1,,b=2"},
		{in: "a=1 b=2"},
		{in: `a="unterminated`},
		{in: `a="bad \q escape"`},
		{in: "a=\"tab\tinside\""},
		{in: "a=(1 2"},
		{in: "a=(1,2)"},
		{in: "a=:not base64!:"},
		{in: "a=?2"},
		{in: "a=@1.5"},
		{in: `a=%"%C3%A9"`},
		{in: `a=%"%ff"`},
		{in: "a=é"},
		{in: "a;=1"},
	}
	for _, tt := range tests {
		got, ok := parseSFDictionary(tt.in)
		if ok != tt.wantOK {
			t.Errorf("parseSFDictionary(%q) ok = %v, want %v", tt.in, ok, tt.wantOK)
			continue
		}
		if len(got) != len(tt.want) {
			t.Errorf("parseSFDictionary(%q) = %+v, want %+v", tt.in, got, tt.want)
			continue
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("parseSFDictionary(%q)[%d] = %+v, want %+v", tt.in, i, got[i], tt.want[i])
			}
		}
	}
}

// checkTargeted asserts ParseTargeted's properties on s; FuzzParse
// calls it on every input.
func checkTargeted(t *testing.T, s string) {
	d, ok := ParseTargeted(s)
	for _, v := range []time.Duration{d.MaxAge, d.SMaxAge, d.StaleWhileRevalidate, d.StaleIfError} {
		if v < 0 || v > maxDelta {
			t.Fatalf("ParseTargeted(%q) gave duration %v outside [0, 2^31s]", s, v)
		}
	}
	if !ok {
		if d != (Directives{}) {
			t.Fatalf("ParseTargeted(%q) invalid but gave %+v", s, d)
		}
		// An invalid field stays invalid whatever follows it.
		if _, ok2 := ParseTargeted(s + ", max-age=1"); ok2 && strings.TrimLeft(s, " ") != "" {
			t.Fatalf("ParseTargeted(%q) invalid, but valid with a member appended", s)
		}
		return
	}
	// A dictionary repeated is the same dictionary: later keys win, with
	// the same values.
	twice, ok2 := ParseTargeted(s + ", " + s)
	if !ok2 || twice != d {
		t.Fatalf("ParseTargeted(%q) = %+v, but twice = %+v, %v", s, d, twice, ok2)
	}
}

// checkAge asserts parseAge's properties on s: within [0, 2^31s], and
// equal to the delta-seconds reading for a plain number.
func checkAge(t *testing.T, s string) {
	got := parseAge([]string{s})
	if got < 0 || got > maxDelta {
		t.Fatalf("parseAge(%q) = %v outside [0, 2^31s]", s, got)
	}
	if s != "" && strings.Trim(s, "0123456789") == "" {
		if want, _ := parseDelta(s); got != want {
			t.Fatalf("parseAge(%q) = %v, want %v", s, got, want)
		}
	}
	if strings.ContainsAny(s, `"+-.`) && !strings.Contains(s, ",") && got != 0 {
		t.Fatalf("parseAge(%q) = %v, want the invalid value ignored", s, got)
	}
}
