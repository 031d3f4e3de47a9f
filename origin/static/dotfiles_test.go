package static

import (
	"net/http"
	"testing"
)

// dotSite holds the dot names a site root checked out from git or built
// by a tool tends to hold, next to ordinary files.
var dotSite = map[string]string{
	"index.html":                     "<h1>home</h1>",
	"404.html":                       "<h1>custom 404</h1>",
	".env":                           "SECRET=1",
	".git/config":                    "[core]",
	".git/HEAD":                      "ref: refs/heads/main",
	".htaccess":                      "deny from all",
	"a/.hidden/x":                    "hidden",
	"a/.secret":                      "hidden",
	"a/visible.txt":                  "visible",
	"a/..b":                          "a name that starts with two dots",
	"a/b..c":                         "dots inside a name, not a dotfile",
	"b.c/file.txt":                   "a dot inside a directory name",
	".well-known/security.txt":       "Contact: mailto:sec@example.test",
	".well-known/acme-challenge/tok": "tok.key",
	".well-known/.private":           "a dotfile under .well-known",
	"x/.well-known/y":                "not the site's .well-known",
}

// TestDotfiles: dot names get 404 (with the site's 404 page) unless
// serve_dotfiles is on; /.well-known/ is served either way.
func TestDotfiles(t *testing.T) {
	dir := writeSite(t, dotSite)
	hidden, _ := newTestServer(t, dir, nil)
	shown, _ := newTestServer(t, dir, func(c *Config) { c.ServeDotfiles = true })
	tests := []struct {
		name, path string
		wantHidden int // status by default
		wantShown  int // status with serve_dotfiles: true
	}{
		{name: "env", path: "/.env", wantHidden: 404, wantShown: 200},
		{name: "git config", path: "/.git/config", wantHidden: 404, wantShown: 200},
		{name: "git dir", path: "/.git", wantHidden: 404, wantShown: 301},
		{name: "git dir slash", path: "/.git/", wantHidden: 404, wantShown: 404}, // no index.html
		{name: "htaccess", path: "/.htaccess", wantHidden: 404, wantShown: 200},
		{name: "nested dot dir", path: "/a/.hidden/x", wantHidden: 404, wantShown: 200},
		{name: "nested dotfile", path: "/a/.secret", wantHidden: 404, wantShown: 200},
		{name: "missing dotfile", path: "/.nothing", wantHidden: 404, wantShown: 404},
		{name: "dot segment cleaned away", path: "/a/./visible.txt", wantHidden: 200, wantShown: 200},
		{name: "double slash", path: "//.env", wantHidden: 404, wantShown: 200},
		{name: "visible", path: "/a/visible.txt", wantHidden: 200, wantShown: 200},
		{name: "two leading dots", path: "/a/..b", wantHidden: 404, wantShown: 200},
		{name: "dots inside a name", path: "/a/b..c", wantHidden: 200, wantShown: 200},
		{name: "dot inside a dir name", path: "/b.c/file.txt", wantHidden: 200, wantShown: 200},
		{name: "well-known", path: "/.well-known/security.txt", wantHidden: 200, wantShown: 200},
		{name: "acme challenge", path: "/.well-known/acme-challenge/tok", wantHidden: 200, wantShown: 200},
		{name: "dotfile under well-known", path: "/.well-known/.private", wantHidden: 404, wantShown: 200},
		{name: "well-known elsewhere", path: "/x/.well-known/y", wantHidden: 404, wantShown: 200},
		{name: "root", path: "/", wantHidden: 200, wantShown: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, c := range []struct {
				srv  *Server
				want int
				mode string
			}{{hidden, tt.wantHidden, "default"}, {shown, tt.wantShown, "serve_dotfiles"}} {
				res, body := get(t, c.srv, http.MethodGet, tt.path)
				if res.StatusCode != c.want {
					t.Errorf("%s: GET %s = %d, want %d", c.mode, tt.path, res.StatusCode, c.want)
				}
				if c.want == 404 && dotSite[trimSlash(tt.path)] != "" && body != dotSite["404.html"] {
					t.Errorf("%s: GET %s body = %q, want the site's 404 page", c.mode, tt.path, body)
				}
			}
		})
	}
	// HEAD is refused the same way.
	if res, _ := get(t, hidden, http.MethodHead, "/.env"); res.StatusCode != 404 {
		t.Errorf("HEAD /.env = %d, want 404", res.StatusCode)
	}
}

func trimSlash(p string) string {
	for len(p) > 0 && p[0] == '/' {
		p = p[1:]
	}
	return p
}

func TestDotted(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{name: ".", want: false},
		{name: "a/b", want: false},
		{name: ".env", want: true},
		{name: ".git/config", want: true},
		{name: "a/.hidden/x", want: true},
		{name: "a/b/.c", want: true},
		{name: "a..b/c.d", want: false},
		{name: ".well-known", want: false},
		{name: ".well-known/x", want: false},
		{name: ".well-known/.x", want: true},
		{name: "a/.well-known", want: true},
		{name: ".well-knownx/y", want: true},
	}
	for _, tt := range tests {
		if got := dotted(tt.name); got != tt.want {
			t.Errorf("dotted(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}
