package static

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestCleanPath(t *testing.T) {
	tests := []struct {
		name, in, want string
		wantOK         bool
	}{
		{name: "root", in: "/", want: ".", wantOK: true},
		{name: "file", in: "/a/b.html", want: "a/b.html", wantOK: true},
		{name: "dir slash", in: "/docs/", want: "docs", wantOK: true},
		{name: "dot segments", in: "/a/./b//c", want: "a/b/c", wantOK: true},
		{name: "dot dot", in: "/a/../b", wantOK: false},
		{name: "trailing dot dot", in: "/a/..", wantOK: false},
		{name: "dots in name", in: "/a..b/..c", want: "a..b/..c", wantOK: true},
		{name: "relative", in: "a/b", wantOK: false},
		{name: "empty", in: "", wantOK: false},
		{name: "NUL", in: "/a\x00b", wantOK: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := cleanPath(tt.in)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("cleanPath(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{"/", "/a/b", "/../x", "/a/./../b", "//x", "/\x00", "/a/..", "/%2e%2e/",
		"/.env", "/.git/config", "/a/.hidden/x", "/./.well-known/x", "/.well-known/.x", "/a/.well-known"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		name, ok := cleanPath(p)
		if !ok {
			return
		}
		// The name never leaves the site root and is already clean.
		if name != "." && !filepath.IsLocal(name) {
			t.Errorf("cleanPath(%q) = %q, not local to the root", p, name)
		}
		if strings.HasPrefix(name, "/") || strings.Contains(name, "\x00") {
			t.Errorf("cleanPath(%q) = %q, absolute or holding NUL", p, name)
		}
		if again, _ := cleanPath("/" + name); name != "." && again != name {
			t.Errorf("cleanPath is not idempotent: %q -> %q -> %q", p, name, again)
		}
		// Cleaning never hides a dot name from the dotfile check: the
		// cleaned name is refused exactly when a segment of the request
		// path (other than "." and a leading .well-known) starts with a dot.
		if got, want := dotted(name), dotSegment(p); got != want {
			t.Errorf("dotted(cleanPath(%q) = %q) = %v, want %v", p, name, got, want)
		}
	})
}

// dotSegment is dotted computed on the raw request path: its segments
// other than empty ones and ".", the first of which may be .well-known.
func dotSegment(p string) bool {
	first := true
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "" || seg == "." {
			continue
		}
		if strings.HasPrefix(seg, ".") && !(first && seg == ".well-known") {
			return true
		}
		first = false
	}
	return false
}
