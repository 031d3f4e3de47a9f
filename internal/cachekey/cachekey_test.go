package cachekey

import (
	"strings"
	"testing"
)

func TestNew(t *testing.T) {
	tests := []struct {
		name                    string
		scheme, host, path, qry string
		rules                   Rules
		want                    string
	}{
		{name: "plain", scheme: "http", host: "example.com", path: "/a/b", want: "http://example.com/a/b"},
		{name: "host case, default port, trailing dot", scheme: "http", host: "Example.COM.:80", path: "/", want: "http://example.com/"},
		{name: "other port kept", scheme: "http", host: "example.com:8080", path: "/", want: "http://example.com:8080/"},
		{name: "https default port", scheme: "https", host: "example.com:443", path: "/x", want: "https://example.com/x"},
		{name: "empty path", scheme: "http", host: "h", path: "", want: "http://h/"},
		{name: "dot segments", scheme: "http", host: "h", path: "/a/./b/../c/", want: "http://h/a/c/"},
		{name: "dotdot above root", scheme: "http", host: "h", path: "/../../etc", want: "http://h/etc"},
		{name: "trailing dotdot", scheme: "http", host: "h", path: "/a/b/..", want: "http://h/a/"},
		{name: "unreserved decoded", scheme: "http", host: "h", path: "/%7Euser/%61", want: "http://h/~user/a"},
		{name: "reserved upper-cased", scheme: "http", host: "h", path: "/a%2fb%3a", want: "http://h/a%2Fb%3A"},
		{name: "stray percent", scheme: "http", host: "h", path: "/100%", want: "http://h/100%25"},
		{name: "dots in names kept", scheme: "http", host: "h", path: "/a.b/..c/.d", want: "http://h/a.b/..c/.d"},
		{name: "query sorted", scheme: "http", host: "h", path: "/", qry: "b=2&a=1", want: "http://h/?a=1&b=2"},
		{name: "query ordered", scheme: "http", host: "h", path: "/", qry: "b=2&a=1", rules: Rules{Query: QueryOrdered}, want: "http://h/?b=2&a=1"},
		{name: "query ignored", scheme: "http", host: "h", path: "/", qry: "b=2", rules: Rules{Query: QueryIgnore}, want: "http://h/"},
		{name: "empty params dropped", scheme: "http", host: "h", path: "/", qry: "&&a=1&", want: "http://h/?a=1"},
		{name: "ignore params", scheme: "http", host: "h", path: "/", qry: "utm_source=x&id=3&fbclid=9", rules: Rules{IgnoreParams: []string{"utm_*", "fbclid"}}, want: "http://h/?id=3"},
		{name: "allow params", scheme: "http", host: "h", path: "/", qry: "v=3&x=1&w=2", rules: Rules{AllowParams: []string{"v", "w"}}, want: "http://h/?v=3&w=2"},
		{name: "query escapes", scheme: "http", host: "h", path: "/", qry: "a=%7e%2f", want: "http://h/?a=~%2F"},
		{name: "version param kept when ignoring", scheme: "http", host: "h", path: "/app.js", qry: "x=1&v=42", rules: Rules{Query: QueryIgnore, VersionParam: "v"}, want: "http://h/app.js?v=42"},
		{name: "version param beside an allow list", scheme: "http", host: "h", path: "/", qry: "v=7&w=2&z=1", rules: Rules{AllowParams: []string{"w"}, VersionParam: "v"}, want: "http://h/?v=7&w=2"},
		{name: "version param absent", scheme: "http", host: "h", path: "/", qry: "x=1", rules: Rules{Query: QueryIgnore, VersionParam: "v"}, want: "http://h/"},
		{name: "site version", scheme: "http", host: "h", path: "/a", rules: Rules{Version: "r2"}, want: "r2\x00http://h/a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := New(tt.scheme, tt.host, tt.path, tt.qry, tt.rules); got != tt.want {
				t.Errorf("New(%q, %q, %q, %q) = %q, want %q", tt.scheme, tt.host, tt.path, tt.qry, got, tt.want)
			}
		})
	}
}

func TestPathNoAlloc(t *testing.T) {
	allocs := testing.AllocsPerRun(100, func() { _ = Path("/assets/app.js") })
	if allocs != 0 {
		t.Errorf("Path on a clean path allocated %v times, want 0", allocs)
	}
}

func FuzzNew(f *testing.F) {
	for _, s := range [][2]string{{"/a/../b", "x=1&a=2"}, {"/%7e/%zz", "%"}, {"", "&&"}, {"/./.././", "a=%41"}} {
		f.Add(s[0], s[1])
	}
	rules := []Rules{{}, {Query: QueryOrdered}, {IgnoreParams: []string{"utm_*"}}}
	f.Fuzz(func(t *testing.T, path, query string) {
		p := Path(path)
		if !strings.HasPrefix(p, "/") {
			t.Fatalf("Path(%q) = %q, not absolute", path, p)
		}
		if again := Path(p); again != p {
			t.Fatalf("Path not idempotent: %q -> %q -> %q", path, p, again)
		}
		for seg := range strings.SplitSeq(p, "/") {
			if seg == ".." || seg == "." {
				t.Fatalf("Path(%q) = %q keeps a dot segment", path, p)
			}
		}
		for _, r := range rules {
			q := Query(query, r)
			if again := Query(q, r); again != q {
				t.Fatalf("Query not idempotent under %+v: %q -> %q -> %q", r, query, q, again)
			}
		}
	})
}

func BenchmarkNew(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = New("http", "example.com", "/assets/app.js", "v=1", Rules{})
	}
}
