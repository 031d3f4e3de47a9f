package push

import (
	"errors"
	"net/http"
	"strings"
	"testing"
)

func TestCheckPath(t *testing.T) {
	tests := []struct {
		name, path string
		want       string // a substring of the problem; "" for a valid path
	}{
		{name: "file at the root", path: "/a"},
		{name: "nested", path: "/a/b.html"},
		{name: "non-ASCII", path: "/ü.txt"},
		{name: "well-known", path: "/.well-known/x"},
		{name: "dotfile segment", path: "/a/.b"},
		{name: "dots inside a name", path: "/a..b/c...d"},
		{name: "longest", path: "/" + strings.Repeat("a", MaxPathBytes-1)},

		{name: "empty", path: "", want: "must start with /"},
		{name: "relative", path: "a", want: "must start with /"},
		{name: "root", path: "/", want: "names a directory"},
		{name: "trailing slash", path: "/a/", want: "names a directory"},
		{name: "dot-dot", path: "/a/../b", want: "not clean"},
		{name: "leading dot-dot", path: "/../a", want: "not clean"},
		{name: "trailing dot-dot", path: "/a/..", want: "not clean"},
		{name: "dot", path: "/./a", want: "not clean"},
		{name: "trailing dot", path: "/a/.", want: "not clean"},
		{name: "empty segment", path: "//a", want: "not clean"},
		{name: "inner empty segment", path: "/a//b", want: "not clean"},
		{name: "NUL", path: "/a\x00b", want: "control character"},
		{name: "newline", path: "/a\nb", want: "control character"},
		{name: "DEL", path: "/a\x7fb", want: "control character"},
		{name: "backslash", path: "/a\\b", want: "backslash"},
		{name: "backslash dot-dot", path: "/a\\..\\b", want: "backslash"},
		{name: "overlong", path: "/" + strings.Repeat("a", MaxPathBytes), want: "longer than"},
		{name: "invalid UTF-8", path: "/a\xffb", want: "UTF-8"},
		{name: "overlong UTF-8 slash", path: "/a\xc0\xafb", want: "UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckPath(tt.path)
			if tt.want == "" {
				if err != nil {
					t.Errorf("CheckPath(%q) = %v, want nil", tt.path, err)
				}
				return
			}
			pe, ok := errors.AsType[*PathError](err)
			if !ok || pe.Path != tt.path || !strings.Contains(pe.Problem, tt.want) {
				t.Errorf("CheckPath(%q) = %v, want a *PathError with %q", tt.path, err, tt.want)
			}
		})
	}
}

// hashA and hashB are valid blob names.
var (
	hashA = HashOf([]byte("a"))
	hashB = HashOf([]byte("b"))
)

func TestManifestValidate(t *testing.T) {
	file := func(mod func(*File)) File {
		f := File{Blob: Blob{Hash: hashA, Size: 1}, Type: "text/plain"}
		if mod != nil {
			mod(&f)
		}
		return f
	}
	one := func(mod func(*File)) map[string]File { return map[string]File{"/a": file(mod)} }
	tests := []struct {
		name string
		m    Manifest
		want []string // substrings of the error; nil for a valid manifest
	}{
		{name: "minimal", m: Manifest{Files: one(nil)}},
		{
			name: "everything",
			m: Manifest{
				Files: map[string]File{
					"/a": file(func(f *File) {
						f.Header = http.Header{"Cache-Control": {"no-cache"}, "Surrogate-Key": {"a b"}}
						f.Encoded = map[string]Blob{"gzip": {Hash: hashB, Size: 1}, "zstd": {Hash: hashB, Size: 1}}
					}),
					"/404.html": file(nil),
				},
				Redirects: []Redirect{
					{From: "/", To: "/a", Status: 302},
					{From: "/old/", To: "https://example.com/new", Status: 301},
					{From: "/x", To: "http://example.com", Status: 308},
				},
				NotFound: "/404.html",
			},
		},
		{name: "no files", m: Manifest{}, want: []string{"at least one file"}},
		{name: "missing blob hash", m: Manifest{Files: one(func(f *File) { f.Hash = "" })}, want: []string{`path "/a": hash`}},
		{name: "upper-case hash", m: Manifest{Files: one(func(f *File) { f.Hash = strings.ToUpper(hashA) })}, want: []string{"hash"}},
		{name: "short hash", m: Manifest{Files: one(func(f *File) { f.Hash = hashA[:63] })}, want: []string{"hash"}},
		{name: "negative size", m: Manifest{Files: one(func(f *File) { f.Size = -1 })}, want: []string{"size: negative"}},
		{name: "bad path", m: Manifest{Files: map[string]File{"/a/../b": file(nil)}}, want: []string{"not clean"}},
		{name: "bad type", m: Manifest{Files: one(func(f *File) { f.Type = "text/html\r\nX: y" })}, want: []string{"type"}},
		{
			name: "forbidden header",
			m:    Manifest{Files: one(func(f *File) { f.Header = http.Header{"Content-Length": {"1"}} })},
			want: []string{"Content-Length is set by the edge"},
		},
		{
			name: "forbidden Content-Type header",
			m:    Manifest{Files: one(func(f *File) { f.Header = http.Header{"Content-Type": {"text/html"}} })},
			want: []string{"Content-Type"},
		},
		{
			name: "non-canonical header",
			m:    Manifest{Files: one(func(f *File) { f.Header = http.Header{"cache-control": {"x"}} })},
			want: []string{"not a canonical field name"},
		},
		{
			name: "header value with CRLF",
			m:    Manifest{Files: one(func(f *File) { f.Header = http.Header{"X-A": {"a\r\nb"}} })},
			want: []string{"X-A: not a valid value"},
		},
		{
			name: "unknown coding",
			m:    Manifest{Files: one(func(f *File) { f.Encoded = map[string]Blob{"br": {Hash: hashB, Size: 1}} })},
			want: []string{`unknown coding "br"`},
		},
		{
			name: "bad variant hash",
			m:    Manifest{Files: one(func(f *File) { f.Encoded = map[string]Blob{"gzip": {Hash: "x", Size: 1}} })},
			want: []string{"encoded gzip: hash"},
		},
		{
			name: "bad redirect status",
			m:    Manifest{Files: one(nil), Redirects: []Redirect{{From: "/a", To: "/b", Status: 200}}},
			want: []string{"redirects[0]: status"},
		},
		{
			name: "redirect to javascript:",
			m:    Manifest{Files: one(nil), Redirects: []Redirect{{From: "/a", To: "/b", Status: 301}, {From: "/c", To: "javascript:alert(1)", Status: 301}}},
			want: []string{"redirects[1]: to"},
		},
		{
			name: "redirect to a protocol-relative URL",
			m:    Manifest{Files: one(nil), Redirects: []Redirect{{From: "/a", To: "//evil.example", Status: 301}}},
			want: []string{"redirects[0]: to"},
		},
		{
			name: "redirect from a relative path",
			m:    Manifest{Files: one(nil), Redirects: []Redirect{{From: "a", To: "/b", Status: 301}}},
			want: []string{"redirects[0]: from"},
		},
		{
			name: "redirect from nothing",
			m:    Manifest{Files: one(nil), Redirects: []Redirect{{From: "", To: "/b", Status: 301}}},
			want: []string{"redirects[0]: from"},
		},
		{
			name: "too many redirects",
			m:    Manifest{Files: one(nil), Redirects: make([]Redirect, MaxRedirects+1)},
			want: []string{"redirects: 10001, limit"},
		},
		{name: "not_found missing", m: Manifest{Files: one(nil), NotFound: "/404.html"}, want: []string{`not_found: "/404.html"`}},
		{
			name: "case collision",
			m:    Manifest{Files: map[string]File{"/A.html": file(nil), "/a.html": file(nil)}},
			want: []string{`"/a.html": differs from "/A.html" only in letter case`},
		},
		{
			name: "every problem at once",
			m: Manifest{
				Files:     map[string]File{"/a": file(func(f *File) { f.Hash = "" }), "b": file(nil)},
				Redirects: []Redirect{{From: "/x", To: "/y", Status: 999}},
				NotFound:  "/nope",
			},
			want: []string{`path "/a": hash`, `path "b"`, "redirects[0]", "not_found"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.m.Validate()
			if tt.want == nil {
				if err != nil {
					t.Errorf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want an error with %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %v, want an error with %q", err, w)
				}
			}
		})
	}
}

func TestEncodeDecode(t *testing.T) {
	m := &Manifest{
		Files: map[string]File{
			"/b.html": {Blob: Blob{Hash: hashA, Size: 1}, Type: "text/html; charset=utf-8",
				Header: http.Header{"Cache-Control": {"no-cache"}}, Encoded: map[string]Blob{"zstd": {Hash: hashB, Size: 1}}},
			"/a.txt": {Blob: Blob{Hash: hashB, Size: 1}},
		},
		Redirects: []Redirect{{From: "/x", To: "/a.txt", Status: 301}},
	}
	b, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	// Keys sorted: the manifest's own blob name must not depend on map order.
	if i, j := strings.Index(string(b), `"/a.txt"`), strings.Index(string(b), `"/b.html"`); i < 0 || j < i {
		t.Errorf("Encode() = %s, want /a.txt before /b.html", b)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatalf("Decode(Encode()) = %v", err)
	}
	b2, err := got.Encode()
	if err != nil || string(b2) != string(b) {
		t.Errorf("Encode(Decode(Encode(m))) = %s, %v; want %s", b2, err, b)
	}
	if _, err := Decode([]byte(`{"files":{}}`)); err == nil {
		t.Error("Decode(no files) = nil error")
	}
	if _, err := Decode([]byte(`{"files":`)); err == nil || !strings.HasPrefix(err.Error(), "decode manifest: ") {
		t.Errorf("Decode(truncated) = %v, want a decode manifest error", err)
	}
}
