package push

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/http/httpguts"
)

// Limits on a manifest, so one push cannot exhaust control or an edge.
const (
	MaxFiles     = 200_000
	MaxPathBytes = 1024
	MaxRedirects = 10_000
	// MaxHeaders bounds the header fields one file carries.
	MaxHeaders = 32
)

// Codings are the content codings a file may be precompressed in, in the
// order an edge prefers them when a client takes both.
var Codings = []string{"zstd", "gzip"}

// Manifest is one release of a site: every path it serves.
type Manifest struct {
	// Files are the site's files by URL path ("/index.html").
	Files map[string]File `json:"files"`
	// Redirects answer paths that no file serves.
	Redirects []Redirect `json:"redirects,omitempty"`
	// NotFound is the path of the page a push-only site answers 404 with
	// ("/404.html"); empty sends a plain 404.
	NotFound string `json:"not_found,omitempty"`
}

// File is one served file.
type File struct {
	Blob
	// Type is the Content-Type.
	Type string `json:"type,omitempty"`
	// Header holds extra response fields (Cache-Control, Surrogate-Key),
	// from the site's _headers rules.
	Header http.Header `json:"header,omitempty"`
	// Encoded are precompressed variants by content coding ("gzip",
	// "zstd"), made at push time and smaller than the file.
	Encoded map[string]Blob `json:"encoded,omitempty"`
}

// Blob names content by its hash.
type Blob struct {
	// Hash is the SHA-256 of the bytes, lower-case hex.
	Hash string `json:"hash"`
	Size int64  `json:"size"`
}

// Redirect sends From to To with Status.
type Redirect struct {
	From   string `json:"from"`
	To     string `json:"to"`
	Status int    `json:"status"`
}

// HashOf returns the blob name of b.
func HashOf(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// ValidHash reports whether h is a blob name: 64 lower-case hex digits.
func ValidHash(h string) bool {
	if len(h) != 2*sha256.Size {
		return false
	}
	for i := range len(h) {
		if c := h[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// PathError names a path a manifest may not hold and why.
type PathError struct {
	Path, Problem string
}

func (e *PathError) Error() string { return fmt.Sprintf("path %q: %s", e.Path, e.Problem) }

// CheckPath reports why p cannot be a file's URL path, or nil. A valid
// path is absolute, clean (no "." or ".." segments, no empty segments, no
// trailing slash), valid UTF-8 without control characters or
// backslashes, and at most MaxPathBytes long: joined under any root
// directory it stays inside it.
func CheckPath(p string) error {
	bad := func(problem string) error { return &PathError{Path: p, Problem: problem} }
	switch {
	case p == "" || p[0] != '/':
		return bad("must start with /")
	case len(p) > MaxPathBytes:
		return bad(fmt.Sprintf("longer than %d bytes", MaxPathBytes))
	case !utf8.ValidString(p):
		return bad("not valid UTF-8")
	case strings.ContainsFunc(p, func(r rune) bool { return unicode.IsControl(r) || r == '\\' }):
		return bad("holds a control character, NUL or backslash")
	case p == "/" || strings.HasSuffix(p, "/"):
		return bad("names a directory")
	case path.Clean(p) != p:
		return bad("not clean: no '.', '..' or empty segments")
	}
	return nil
}

// Validate reports every problem with m, each naming the path or field.
// Two paths that differ only in letter case are refused: a site cannot
// hold both on a case-insensitive file system, so one of them would not
// be what the operator sees in their directory.
func (m *Manifest) Validate() error {
	var errs []error
	if len(m.Files) == 0 {
		errs = append(errs, errors.New("files: a release needs at least one file"))
	}
	if len(m.Files) > MaxFiles {
		return fmt.Errorf("files: %d files, limit %d", len(m.Files), MaxFiles)
	}
	if len(m.Redirects) > MaxRedirects {
		return fmt.Errorf("redirects: %d, limit %d", len(m.Redirects), MaxRedirects)
	}
	folded := make(map[string]string, len(m.Files))
	for _, p := range slices.Sorted(maps.Keys(m.Files)) {
		if err := CheckPath(p); err != nil {
			errs = append(errs, err)
			continue
		}
		if other, ok := folded[strings.ToLower(p)]; ok {
			errs = append(errs, &PathError{Path: p, Problem: fmt.Sprintf("differs from %q only in letter case", other)})
		}
		folded[strings.ToLower(p)] = p
		if err := m.Files[p].check(); err != nil {
			errs = append(errs, fmt.Errorf("path %q: %w", p, err))
		}
	}
	sizes := map[string]int64{}
	for _, b := range m.allBlobs() {
		if size, ok := sizes[b.Hash]; ok && size != b.Size {
			errs = append(errs, fmt.Errorf("blob %s: named with sizes %d and %d", b.Hash, size, b.Size))
		}
		sizes[b.Hash] = b.Size
	}
	for i, r := range m.Redirects {
		if err := r.check(); err != nil {
			errs = append(errs, fmt.Errorf("redirects[%d]: %w", i, err))
		}
	}
	if m.NotFound != "" {
		if _, ok := m.Files[m.NotFound]; !ok {
			errs = append(errs, fmt.Errorf("not_found: %q is not a file of the release", m.NotFound))
		}
	}
	return errors.Join(errs...)
}

func (b Blob) check() error {
	if !ValidHash(b.Hash) {
		return fmt.Errorf("hash: want 64 lower-case hex digits (SHA-256), got %q", b.Hash)
	}
	if b.Size < 0 {
		return fmt.Errorf("size: negative")
	}
	return nil
}

// forbiddenHeaders are fields the edge sets itself from the file, or that
// are hop-by-hop and cannot be sent as stored.
var forbiddenHeaders = []string{
	"Content-Length", "Content-Encoding", "Content-Type", "Content-Range", "Etag", "Transfer-Encoding",
	"Connection", "Keep-Alive", "Upgrade", "Trailer", "Te", "Proxy-Connection", "Date", "Age", "Vary",
}

func (f File) check() error {
	if err := f.Blob.check(); err != nil {
		return err
	}
	if f.Type != "" && !httpguts.ValidHeaderFieldValue(f.Type) {
		return fmt.Errorf("type: not a valid header value: %q", f.Type)
	}
	if len(f.Header) > MaxHeaders {
		return fmt.Errorf("header: %d fields, limit %d", len(f.Header), MaxHeaders)
	}
	for name, values := range f.Header {
		if !httpguts.ValidHeaderFieldName(name) || http.CanonicalHeaderKey(name) != name {
			return fmt.Errorf("header: %q is not a canonical field name", name)
		}
		if slices.Contains(forbiddenHeaders, name) {
			return fmt.Errorf("header: %s is set by the edge, not by rules", name)
		}
		for _, v := range values {
			if !httpguts.ValidHeaderFieldValue(v) || len(v) > 8<<10 {
				return fmt.Errorf("header: %s: not a valid value", name)
			}
		}
	}
	for coding, b := range f.Encoded {
		if !slices.Contains(Codings, coding) {
			return fmt.Errorf("encoded: unknown coding %q (want %s)", coding, strings.Join(Codings, " or "))
		}
		if err := b.check(); err != nil {
			return fmt.Errorf("encoded %s: %w", coding, err)
		}
	}
	return nil
}

func (r Redirect) check() error {
	// A redirect may start from a directory ("/old/") or the root.
	if from := strings.TrimSuffix(r.From, "/"); from != "" {
		if err := CheckPath(from); err != nil {
			return fmt.Errorf("from: %w", err)
		}
	} else if r.From != "/" {
		return fmt.Errorf("from: must start with /, got %q", r.From)
	}
	switch r.Status {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
	default:
		return fmt.Errorf("status: want 301, 302, 303, 307 or 308, got %d", r.Status)
	}
	// "//host" and "/\host" leave the site in a browser: they must be
	// written as URLs.
	if strings.HasPrefix(r.To, "/") && !strings.HasPrefix(r.To, "//") && !strings.HasPrefix(r.To, "/\\") {
		if !httpguts.ValidHeaderFieldValue(r.To) || len(r.To) > MaxPathBytes {
			return fmt.Errorf("to: not a valid path: %q", r.To)
		}
		return nil
	}
	u, err := url.Parse(r.To)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || !httpguts.ValidHeaderFieldValue(r.To) {
		return fmt.Errorf("to: want a path or an http(s) URL, got %q", r.To)
	}
	return nil
}

// Blobs returns every blob m names (files and their variants), each once,
// sorted by hash.
func (m *Manifest) Blobs() []Blob {
	out := m.allBlobs()
	slices.SortFunc(out, func(a, b Blob) int { return strings.Compare(a.Hash, b.Hash) })
	return slices.CompactFunc(out, func(a, b Blob) bool { return a.Hash == b.Hash })
}

// allBlobs lists every blob named, repeats included.
func (m *Manifest) allBlobs() []Blob {
	out := make([]Blob, 0, len(m.Files))
	for _, f := range m.Files {
		out = append(out, f.Blob)
		for _, b := range f.Encoded {
			out = append(out, b)
		}
	}
	return out
}

// Encode returns m's canonical JSON (keys sorted), whose hash names the
// manifest's own blob.
func (m *Manifest) Encode() ([]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode manifest: %w", err)
	}
	return b, nil
}

// Decode reads and validates a manifest.
func Decode(b []byte) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("decode manifest: %w", err)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// MaxManifestBytes bounds a manifest's encoding.
const MaxManifestBytes = 256 << 20

// ReadManifest reads a manifest blob, checks it against its name and
// decodes it.
func ReadManifest(r io.Reader, hash string) (*Manifest, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxManifestBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read manifest %s: %w", hash, err)
	}
	if HashOf(b) != hash {
		return nil, fmt.Errorf("manifest %s: the bytes hash to %s", hash, HashOf(b))
	}
	return Decode(b)
}
