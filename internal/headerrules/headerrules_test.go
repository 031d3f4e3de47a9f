package headerrules

import (
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const example = `# comment
/assets/*
  Cache-Control: public, max-age=31536000, immutable
  Surrogate-Key: assets static
/*.html
  Cache-Control: public, max-age=60
/
  Cache-Control: no-cache
`

func TestHeaders(t *testing.T) {
	tests := []struct {
		name  string
		rules string
		path  string
		want  http.Header
	}{
		{
			name: "prefix star", rules: example, path: "/assets/app.js",
			want: http.Header{
				"Cache-Control": {"public, max-age=31536000, immutable"},
				"Surrogate-Key": {"assets static"},
			},
		},
		{
			name: "star crosses slashes", rules: example, path: "/assets/a/b/c.css",
			want: http.Header{
				"Cache-Control": {"public, max-age=31536000, immutable"},
				"Surrogate-Key": {"assets static"},
			},
		},
		{
			name: "later rule replaces", rules: example, path: "/assets/x.html",
			want: http.Header{
				"Cache-Control": {"public, max-age=60"},
				"Surrogate-Key": {"assets static"},
			},
		},
		{name: "exact root", rules: example, path: "/", want: http.Header{"Cache-Control": {"no-cache"}}},
		{name: "suffix", rules: example, path: "/blog/post.html", want: http.Header{"Cache-Control": {"public, max-age=60"}}},
		{name: "no match", rules: example, path: "/robots.txt", want: nil},
		{name: "prefix without slash", rules: example, path: "/assets", want: nil},
		{name: "empty star match", rules: "/a*b\n  X-A: 1\n", path: "/ab", want: http.Header{"X-A": {"1"}}},
		{name: "middle segments", rules: "/a*b*c\n  X-A: 1\n", path: "/a-c-b-c", want: http.Header{"X-A": {"1"}}},
		{name: "middle segments out of order", rules: "/a*b*c\n  X-A: 1\n", path: "/a-c-b", want: nil},
		{name: "overlapping prefix and suffix", rules: "/ab*ba\n  X-A: 1\n", path: "/aba", want: nil},
		{name: "star only", rules: "/*\n  X-A: 1\n", path: "/anything/at/all", want: http.Header{"X-A": {"1"}}},
		{name: "repeated name in one rule", rules: "/\n  Link: <a>\n  link: <b>\n", path: "/", want: http.Header{"Link": {"<a>", "<b>"}}},
		{name: "canonical names", rules: "/\n  x-frame-options: DENY\n", path: "/", want: http.Header{"X-Frame-Options": {"DENY"}}},
		{name: "crlf and blank lines", rules: "/\r\n\r\n  X-A: 1\r\n", path: "/", want: http.Header{"X-A": {"1"}}},
		{name: "empty value", rules: "/\n  X-A:\n", path: "/", want: http.Header{"X-A": {""}}},
		{name: "rule without headers", rules: "/\n/\n  X-A: 1\n", path: "/", want: http.Header{"X-A": {"1"}}},
		{name: "value keeps colons", rules: "/\n  Link: <https://x/>; rel=preload\n", path: "/", want: http.Header{"Link": {"<https://x/>; rel=preload"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs, err := Parse(strings.NewReader(tt.rules))
			if err != nil {
				t.Fatalf("Parse(%q) error: %v", tt.rules, err)
			}
			if got := rs.Headers(tt.path); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Headers(%q) = %v, want %v", tt.path, got, tt.want)
			}
		})
	}
}

func TestHeadersCallerOwnsResult(t *testing.T) {
	rs, err := Parse(strings.NewReader(example))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	h := rs.Headers("/")
	// Write through the returned slice first: that is what would reach
	// the rules if Headers shared its slices with them.
	h["Cache-Control"][0] = "changed"
	h.Set("Cache-Control", "changed again")
	if got := rs.Headers("/").Get("Cache-Control"); got != "no-cache" {
		t.Errorf("after modifying a result, Headers(\"/\") Cache-Control = %q, want %q", got, "no-cache")
	}
}

func TestNilAndZeroRules(t *testing.T) {
	var nilRules *Rules
	if got := nilRules.Headers("/"); got != nil {
		t.Errorf("nil Rules Headers = %v, want nil", got)
	}
	if got := nilRules.Len(); got != 0 {
		t.Errorf("nil Rules Len = %d, want 0", got)
	}
	var zero Rules
	if got := zero.Headers("/"); got != nil {
		t.Errorf("zero Rules Headers = %v, want nil", got)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name    string
		input   string
		wantErr string
	}{
		{name: "header before path", input: "# c\n\n  X-A: 1\n", wantErr: "line 3: header line before any path"},
		{name: "pattern without slash", input: "/\n  X-A: 1\nassets/*\n", wantErr: "line 3: path pattern \"assets/*\" does not start with \"/\""},
		{name: "pattern with space", input: "/a b\n", wantErr: "line 1: path pattern \"/a b\" contains whitespace"},
		{name: "no colon", input: "/\n  X-A 1\n", wantErr: "line 2: header line \"X-A 1\" has no \":\""},
		{name: "empty name", input: "/\n  : 1\n", wantErr: "line 2: header name \"\" is not a valid token"},
		{name: "name with space", input: "/\n  X A: 1\n", wantErr: "line 2: header name \"X A\" is not a valid token"},
		{name: "name with non-ascii", input: "/\n  X-é: 1\n", wantErr: "line 2: header name"},
		{name: "value with CR", input: "/\n  X-A: a\rSet-Cookie: x\n", wantErr: "line 2: header X-A: value contains a control character"},
		{name: "value with NUL", input: "/\n  X-A: a\x00b\n", wantErr: "line 2: header X-A: value contains a control character"},
		{name: "line too long", input: "/\n  X-A: " + strings.Repeat("a", MaxLineBytes) + "\n", wantErr: "line 2: longer than 8192 bytes"},
		{name: "too many rules", input: strings.Repeat("/\n", MaxRules+1), wantErr: "line 10001: more than 10000 rules"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs, err := Parse(strings.NewReader(tt.input))
			if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Errorf("Parse() = %v, %v; want error starting %q", rs, err, tt.wantErr)
			}
		})
	}
}

func TestParseLimitsAccepted(t *testing.T) {
	tests := []struct {
		name  string
		input string
	}{
		{name: "longest line", input: "/\n  X-A: " + strings.Repeat("a", MaxLineBytes-len("  X-A: ")) + "\r\n"},
		{name: "most rules", input: strings.Repeat("/\n", MaxRules)},
		{name: "byte-order mark", input: "\ufeff/\n  X-A: 1\n"},
		{name: "no final newline", input: "/\n  X-A: 1"},
		{name: "tab in value", input: "/\n\tX-A: a\tb\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Parse(strings.NewReader(tt.input)); err != nil {
				t.Errorf("Parse() error: %v", err)
			}
		})
	}
}

func TestParseFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "_headers")
	if err := os.WriteFile(path, []byte(example), 0o644); err != nil {
		t.Fatal(err)
	}
	rs, err := ParseFile(path)
	if err != nil {
		t.Fatalf("ParseFile(%q): %v", path, err)
	}
	if got := rs.Len(); got != 3 {
		t.Errorf("Len() = %d, want 3", got)
	}
	all := rs.All()
	if got := all[0].Pattern; got != "/assets/*" {
		t.Errorf("All()[0].Pattern = %q, want %q", got, "/assets/*")
	}
	if _, err := ParseFile(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ParseFile(missing) = %v, want a not-exist error", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(example, "/assets/app.js")
	f.Add("/a*b*c\n  X-A: 1\n", "/a-c-b-c")
	f.Add("/**\n  X: y\n/\n", "/")
	f.Add("  X: 1\n", "/")
	f.Add("/\r\n  X-A: a\rb\r\n", "/")
	f.Add("\ufeff/*\n\tx-a : b : c\n", "//x")
	f.Fuzz(func(t *testing.T, input, path string) {
		rs, err := Parse(strings.NewReader(input))
		if err != nil {
			if rs != nil {
				t.Fatalf("Parse(%q) = %v, %v; want nil Rules with an error", input, rs, err)
			}
			return
		}
		for _, r := range rs.All() {
			if !strings.HasPrefix(r.Pattern, "/") {
				t.Errorf("pattern %q does not start with /", r.Pattern)
			}
			checkHeader(t, r.Header)
		}
		checkHeader(t, rs.Headers(path))
		checkHeader(t, rs.Headers(strings.TrimPrefix(path, "/")))
	})
}

// checkHeader fails t if h has an invalid name or a value with CR, LF or NUL.
func checkHeader(t *testing.T, h http.Header) {
	t.Helper()
	for name, values := range h {
		if !ValidName(name) {
			t.Errorf("header name %q is not a token", name)
		}
		for _, v := range values {
			if strings.ContainsAny(v, "\r\n\x00") {
				t.Errorf("header %s value %q contains CR, LF or NUL", name, v)
			}
		}
	}
}

func BenchmarkHeaders(b *testing.B) {
	rs, err := Parse(strings.NewReader(example))
	if err != nil {
		b.Fatal(err)
	}
	for _, path := range []string{"/assets/app.js", "/robots.txt"} {
		b.Run(path, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				rs.Headers(path)
			}
		})
	}
}
