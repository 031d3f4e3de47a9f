package push

import (
	"bytes"
	"path"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzCheckPath checks the promise CheckPath makes to every reader of a
// manifest: a path it accepts is clean, holds no NUL, and joined under a
// root directory stays inside it.
func FuzzCheckPath(f *testing.F) {
	for _, p := range []string{
		"/a", "/a/b.html", "/ü.txt", "/.well-known/x", "", "a", "/", "/a/", "/a/../b", "/./a",
		"//a", "/a\x00b", "/a\\b", "/..", "/a/..", "/...", "/.a", "/a\xffb", "/" + strings.Repeat("a", MaxPathBytes),
	} {
		f.Add(p)
	}
	root := filepath.Join(f.TempDir(), "site")
	f.Fuzz(func(t *testing.T, p string) {
		if CheckPath(p) != nil {
			return
		}
		if strings.ContainsRune(p, 0) {
			t.Fatalf("CheckPath(%q) = nil for a path with NUL", p)
		}
		if path.Clean(p) != p {
			t.Fatalf("CheckPath(%q) = nil for an unclean path (clean: %q)", p, path.Clean(p))
		}
		joined := filepath.Join(root, filepath.FromSlash(p))
		rel, err := filepath.Rel(root, joined)
		if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) || filepath.IsAbs(rel) {
			t.Fatalf("CheckPath(%q) = nil, but it joins to %q, outside %q (rel %q, %v)", p, joined, root, rel, err)
		}
	})
}

// FuzzDecode checks that Decode never panics and that a manifest it
// accepts is a fixed point of Encode and Decode: what control stores and
// names by hash reads back the same. Encoded bytes are compared rather than
// structs, as JSON does not keep an empty map apart from a missing one.
func FuzzDecode(f *testing.F) {
	seeds := []string{
		`{"files":{"/a":{"hash":"` + hashA + `","size":1}}}`,
		`{"files":{"/a":{"hash":"` + hashA + `","size":1,"type":"text/html","header":{"Cache-Control":["no-cache"]},` +
			`"encoded":{"gzip":{"hash":"` + hashB + `","size":1}}}},"redirects":[{"from":"/x","to":"/a","status":301}],"not_found":"/a"}`,
		`{"files":{"/a":{"hash":"` + hashA + `","size":1,"header":{},"encoded":{}}},"redirects":[]}`,
		`{"files":{"/A":{"hash":"` + hashA + `","size":1},"/a":{"hash":"` + hashA + `","size":1}}}`,
		`{"files":{"/a":{"hash":"` + hashA + `","size":-1}}}`,
		`{"files":{}}`, `null`, `{}`, `[]`, `{"files":{"/a":null}}`, ``,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err != nil {
			return
		}
		enc, err := m.Encode()
		if err != nil {
			t.Fatalf("Encode of a decoded manifest: %v", err)
		}
		m2, err := Decode(enc)
		if err != nil {
			t.Fatalf("Decode(Encode(Decode(%q))) = %v; encoded %s", b, err, enc)
		}
		enc2, err := m2.Encode()
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("Encode is not stable for %q:\n%s\nthen\n%s (%v)", b, enc, enc2, err)
		}
		for _, blob := range m.Blobs() {
			if !ValidHash(blob.Hash) || blob.Size < 0 {
				t.Fatalf("Blobs() of a valid manifest holds %+v", blob)
			}
		}
	})
}

// FuzzParseRedirects checks that a _redirects file either fails or gives
// at most MaxRedirects redirects that each pass the manifest's check.
func FuzzParseRedirects(f *testing.F) {
	for _, s := range []string{
		"", "/a /b\n", "# c\n/a https://x.example/ 302\r\n", "/a /b 30x", "/a /b 301 x", "\ufeff/ /home 308",
		"/a javascript:x", "/a //x", "/a /b 200", "/a\t/b\t307\n\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rs, err := parseRedirects(strings.NewReader(s))
		if err != nil {
			return
		}
		if len(rs) > MaxRedirects {
			t.Fatalf("%d redirects, limit %d", len(rs), MaxRedirects)
		}
		for i, r := range rs {
			if err := r.check(); err != nil {
				t.Fatalf("redirect %d %+v of %q fails its check: %v", i, r, s, err)
			}
		}
	})
}
