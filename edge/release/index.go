// Package release keeps an edge's pushed releases: it follows the release
// each site serves, fetches the blobs it lacks (bounded, in parallel),
// verifies and pins them, and only then switches the site to the new
// Index in one step, so no request sees a mix of two releases.
package release

import (
	"cmp"
	"maps"
	"net/http"
	"strconv"
	"strings"

	"github.com/selfcdn/cdn/edge/cache"
	"github.com/selfcdn/cdn/edge/contentcoding"
	"github.com/selfcdn/cdn/push"
)

// Index is one release of a site as the edge serves it: immutable once
// built, swapped whole.
type Index struct {
	Site     string
	Number   uint64
	Manifest string
	files    map[string]*File
	// redirects by From; notFound is the push-only 404 page (nil: none).
	redirects map[string]push.Redirect
	notFound  *File
	// blobs are every blob the release needs, for sync and collection.
	blobs []push.Blob
}

// File is one pushed path, with a variant per content coding it has.
type File struct {
	// Variants by contentcoding.Coding; only Identity is always set.
	Variants [3]*Variant
}

// Variant is one representation of a file, its response header prepared
// when the release is loaded.
type Variant struct {
	Hash   string
	Size   int64
	Header http.Header
	// Body holds a small blob in memory; nil means open it from the
	// pinned store, or find it in the memory tier under MemoryKey.
	Body []byte
	// MemoryKey is the blob's key in the edge's memory tier, apart from
	// every cache key (those start with a scheme).
	MemoryKey string
}

// memoryKey is a blob's key in the memory tier.
func memoryKey(hash string) string { return "pinned\x00" + hash }

// DefaultCacheControl is sent for pushed files whose rules set none: any
// cache may keep them, and must check back (cheaply, by ETag) before
// reusing them, since a push can change them at any moment.
const DefaultCacheControl = "public, max-age=0, must-revalidate"

// newIndex prepares m for serving. load reads a small blob whole, or
// returns nil to leave it on disk.
func newIndex(site string, number uint64, manifest string, m *push.Manifest, load func(push.Blob) []byte) *Index {
	x := &Index{Site: site, Number: number, Manifest: manifest, files: make(map[string]*File, len(m.Files)),
		redirects: make(map[string]push.Redirect, len(m.Redirects)), blobs: m.Blobs()}
	for p, f := range m.Files {
		x.files[p] = newFile(f, load)
	}
	for _, r := range m.Redirects {
		if _, dup := x.redirects[r.From]; !dup { // the first rule for a path wins
			x.redirects[r.From] = r
		}
	}
	if m.NotFound != "" {
		x.notFound = x.files[m.NotFound]
	}
	return x
}

func newFile(f push.File, load func(push.Blob) []byte) *File {
	var out File
	for c := contentcoding.Identity; c <= contentcoding.Zstd; c++ {
		b := f.Blob
		if c != contentcoding.Identity {
			var ok bool
			if b, ok = f.Encoded[c.String()]; !ok {
				continue
			}
		}
		h := make(http.Header, len(f.Header)+6)
		maps.Copy(h, f.Header)
		h["Content-Type"] = []string{cmp.Or(f.Type, "application/octet-stream")}
		h["Content-Length"] = []string{strconv.FormatInt(b.Size, 10)}
		// A strong validator per representation (RFC 9110 §8.8.3): the
		// blob's own hash differs per coding.
		h["Etag"] = []string{`"` + b.Hash[:32] + `"`}
		if _, ok := h["Cache-Control"]; !ok {
			h["Cache-Control"] = []string{DefaultCacheControl}
		}
		if len(f.Encoded) > 0 {
			h["Vary"] = []string{"Accept-Encoding"}
		}
		if c != contentcoding.Identity {
			h["Content-Encoding"] = []string{c.String()}
		}
		out.Variants[c] = &Variant{Hash: b.Hash, Size: b.Size, Header: h, Body: load(b), MemoryKey: memoryKey(b.Hash)}
	}
	return &out
}

// heldBodies returns the blob bodies x holds in memory, by hash (none for
// a nil x).
func (x *Index) heldBodies() map[string][]byte {
	if x == nil {
		return nil
	}
	held := make(map[string][]byte, len(x.files))
	for _, f := range x.files {
		for _, v := range f.Variants {
			if v != nil && v.Body != nil {
				held[v.Hash] = v.Body
			}
		}
	}
	return held
}

// Lookup finds what answers urlPath (decoded): a file, then a pretty URL
// ("/about" and "/about/" serve "/about/index.html", "/about" also
// "/about.html"), then a redirect. Both results nil: not in the release.
func (x *Index) Lookup(urlPath string) (*File, *push.Redirect) {
	if f, ok := x.files[urlPath]; ok {
		return f, nil
	}
	if strings.HasSuffix(urlPath, "/") {
		if f, ok := x.files[urlPath+"index.html"]; ok {
			return f, nil
		}
	} else {
		if f, ok := x.files[urlPath+"/index.html"]; ok {
			return f, nil
		}
		if f, ok := x.files[urlPath+".html"]; ok {
			return f, nil
		}
	}
	if r, ok := x.redirects[urlPath]; ok {
		return nil, &r
	}
	return nil, nil
}

// NotFound is the release's 404 page, nil when it has none.
func (x *Index) NotFound() *File { return x.notFound }

// Files is how many paths the release serves.
func (x *Index) Files() int { return len(x.files) }

// Pick returns the variant to send for an Accept-Encoding request field.
func (f *File) Pick(acceptEncoding []string) *Variant {
	if f.Variants[contentcoding.Gzip] == nil && f.Variants[contentcoding.Zstd] == nil {
		return f.Variants[contentcoding.Identity]
	}
	if v := f.Variants[contentcoding.Negotiate(acceptEncoding)]; v != nil {
		return v
	}
	return f.Variants[contentcoding.Identity]
}

// Entry returns v as a cache entry for the response path: its body in
// memory, or opened from pinned. The caller must Release it.
func (v *Variant) Entry(pinned *cache.Pinned) (*cache.Entry, error) {
	if v.Body != nil || v.Size == 0 {
		return v.WithBody(v.Body), nil
	}
	e, err := pinned.Open(v.Hash, 0)
	if err != nil {
		return nil, err
	}
	if e.Disk == nil { // an empty body comes back whole
		return v.WithBody(e.Body), nil
	}
	return &cache.Entry{Status: http.StatusOK, Header: v.Header, Disk: e.Disk}, nil
}

// WithBody returns v as a cache entry whose body is body (v's bytes,
// wherever they were found).
func (v *Variant) WithBody(body []byte) *cache.Entry {
	if body == nil {
		body = []byte{}
	}
	return &cache.Entry{Status: http.StatusOK, Header: v.Header, Body: body}
}
