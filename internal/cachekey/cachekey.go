// Package cachekey turns a request URL into the key its response is cached
// under: scheme, host and a normalized path and query, so that spellings of
// one URL that an origin cannot tell apart share one cache entry, while
// anything that could change the answer keeps its own.
package cachekey

import (
	"fmt"
	"net/textproto"
	"net/url"
	"slices"
	"strings"

	"github.com/selfcdn/cdn/internal/headerrules"
)

// QueryMode says what part of the query string goes into the key.
type QueryMode string

const (
	// QuerySorted keeps every parameter, sorted, so ?a=1&b=2 and ?b=2&a=1
	// share an entry. The default.
	QuerySorted QueryMode = "sorted"
	// QueryOrdered keeps parameters in the order the client sent them.
	QueryOrdered QueryMode = "ordered"
	// QueryIgnore drops the query string from the key entirely.
	QueryIgnore QueryMode = "ignore"
)

// Rules is a site's cache-key configuration. The zero value keeps the whole
// query, sorted.
type Rules struct {
	// Query is sorted (default), ordered or ignore.
	Query QueryMode `yaml:"query" json:"query,omitempty"`
	// IgnoreParams are parameter names left out of the key (tracking tags
	// such as utm_source); a trailing * matches a prefix ("utm_*").
	IgnoreParams []string `yaml:"ignore_params" json:"ignore_params,omitempty"`
	// AllowParams, when set, are the only parameter names kept.
	AllowParams []string `yaml:"allow_params" json:"allow_params,omitempty"`
	// VersionParam names a query parameter that is always part of the
	// key ("v" in /app.js?v=42), even with query: ignore or an allow
	// list: a deploy that changes it switches objects without a purge.
	VersionParam string `yaml:"version_param" json:"version_param,omitempty"`
	// Version is a release token put in every key of the site: changing
	// it switches the whole site to fresh objects without a purge (the
	// old ones age out of the cache).
	Version string `yaml:"version" json:"version,omitempty"`
	// PassHeaders are request headers the edge otherwise removes before
	// the origin (OverrideHeaders: they can change what the origin
	// answers) that this site's origin needs. Each joins the key, so a
	// client's value can never answer another's request.
	PassHeaders []string `yaml:"pass_headers" json:"pass_headers,omitempty"`
}

// OverrideHeaders are request headers that some frameworks read as a
// different URL, method, scheme or port than the request's own. The
// edge removes them before the origin unless a site passes them
// (Rules.PassHeaders): unkeyed, one client's value would poison the
// cached answer for everyone.
var OverrideHeaders = []string{
	"X-Original-Url", "X-Rewrite-Url", "X-Http-Method-Override", "X-Http-Method", "X-Method-Override",
	"X-Forwarded-Scheme", "X-Forwarded-Port",
}

// Validate reports rules that cannot work.
func (r Rules) Validate() error {
	switch r.Query {
	case "", QuerySorted, QueryOrdered, QueryIgnore:
	default:
		return fmt.Errorf("query must be sorted, ordered or ignore, got %q", r.Query)
	}
	if strings.ContainsAny(r.VersionParam, "&=*?# ") {
		return fmt.Errorf("version_param must be a parameter name, got %q", r.VersionParam)
	}
	if len(r.Version) > 128 || strings.ContainsFunc(r.Version, func(c rune) bool { return c <= ' ' || c == 0x7f }) {
		return fmt.Errorf("version must be up to 128 printable characters without spaces, got %q", r.Version)
	}
	for _, h := range r.PassHeaders {
		if !headerrules.ValidName(h) {
			return fmt.Errorf("pass_headers: %q is not a header name", h)
		}
		if !slices.Contains(OverrideHeaders, textproto.CanonicalMIMEHeaderKey(h)) {
			// Other headers reach the origin anyway; listing one here
			// would key on it for nothing (use the origin's Vary).
			return fmt.Errorf("pass_headers: %q is not one the edge removes (%s)", h, strings.Join(OverrideHeaders, ", "))
		}
	}
	return nil
}

// WithHeaders returns key with the values of the pass headers names in
// h, placed before the scheme as Version is (what follows "://" stays
// the URL, which purges match against). Without names it is key.
func WithHeaders(key string, names []string, h Header) string {
	if len(names) == 0 {
		return key
	}
	var b strings.Builder
	for _, n := range names {
		b.WriteString(textproto.CanonicalMIMEHeaderKey(n))
		b.WriteByte('=')
		vs := h.Values(n)
		if len(vs) == 0 {
			b.WriteByte(absent)
		}
		for i, v := range vs {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(url.QueryEscape(v)) // never "://", never a NUL
		}
		b.WriteByte(0)
	}
	b.WriteString(key)
	return b.String()
}

// New returns the cache key for a request to scheme://host/path?query.
// host may carry a port; the scheme's default port is dropped.
func New(scheme, host, path, rawQuery string, r Rules) string {
	host = Host(scheme, host)
	path = Path(path)
	q := Query(rawQuery, r)
	var b strings.Builder
	b.Grow(len(r.Version) + 1 + len(scheme) + 3 + len(host) + len(path) + 1 + len(q))
	if r.Version != "" {
		// Before the scheme: what follows "://" stays the URL, which
		// purges match against.
		b.WriteString(r.Version)
		b.WriteByte(0)
	}
	b.WriteString(scheme)
	b.WriteString("://")
	b.WriteString(host)
	b.WriteString(path)
	if q != "" {
		b.WriteByte('?')
		b.WriteString(q)
	}
	return b.String()
}

// Host lower-cases host, drops a trailing dot and the scheme's default port.
func Host(scheme, host string) string {
	if p, ok := strings.CutSuffix(host, ":80"); ok && scheme == "http" {
		host = p
	} else if p, ok := strings.CutSuffix(host, ":443"); ok && scheme == "https" {
		host = p
	}
	host = strings.TrimSuffix(host, ".")
	for i := 0; i < len(host); i++ {
		if c := host[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(host)
		}
	}
	return host
}

// Path normalizes an escaped URL path (RFC 3986 §6.2.2): percent-encodings
// of unreserved characters are decoded, other encodings upper-cased, dot
// segments removed, and an empty path becomes "/". Paths that need none of
// this are returned as they are, without allocating.
func Path(p string) string {
	if p == "" || p[0] != '/' {
		p = "/" + p
	}
	if !needsWork(p) {
		return p
	}
	return removeDots(normalizeEscapes(p))
}

func needsWork(p string) bool {
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '%':
			return true
		case '.':
			// A dot starts a segment "." or ".." only right after a slash.
			if p[i-1] == '/' && (i+1 == len(p) || p[i+1] == '/' || p[i+1] == '.') {
				return true
			}
		}
	}
	return false
}

// normalizeEscapes decodes %XX of unreserved characters, upper-cases the
// hex of the rest, and escapes a stray '%' that starts no valid escape.
func normalizeEscapes(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
			b.WriteString("%25")
			continue
		}
		v := unhex(s[i+1])<<4 | unhex(s[i+2])
		if unreserved(v) {
			b.WriteByte(v)
		} else {
			b.WriteByte('%')
			b.WriteByte(upperHex[v>>4])
			b.WriteByte(upperHex[v&15])
		}
		i += 2
	}
	return b.String()
}

// removeDots applies RFC 3986 §5.2.4 to an absolute path, keeping a
// trailing slash; ".." never climbs above the root.
func removeDots(p string) string {
	segs := strings.Split(p[1:], "/")
	out := make([]string, 0, len(segs))
	for i, s := range segs {
		last := i == len(segs)-1
		switch s {
		case ".":
			if last {
				out = append(out, "")
			}
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			if last {
				out = append(out, "")
			}
		default:
			out = append(out, s)
		}
	}
	return "/" + strings.Join(out, "/")
}

// Query returns the key's query string under r.
func Query(raw string, r Rules) string {
	if raw == "" || r.Query == QueryIgnore && r.VersionParam == "" {
		return ""
	}
	if r.Query != QueryOrdered && r.Query != QueryIgnore && len(r.IgnoreParams) == 0 && len(r.AllowParams) == 0 &&
		!strings.ContainsAny(raw, "&%;+") {
		return raw // one parameter, nothing to sort or decode
	}
	params := strings.Split(raw, "&")
	kept := params[:0]
	for _, p := range params {
		if p == "" {
			continue
		}
		p = normalizeEscapes(p)
		name, _, _ := strings.Cut(p, "=")
		if !r.keep(name) {
			continue
		}
		kept = append(kept, p)
	}
	if r.Query != QueryOrdered {
		// By name only, keeping the order of a repeated name's values:
		// ?a=2&a=1 and ?a=1&a=2 may mean different things to an origin.
		slices.SortStableFunc(kept, func(a, b string) int {
			an, _, _ := strings.Cut(a, "=")
			bn, _, _ := strings.Cut(b, "=")
			return strings.Compare(an, bn)
		})
	}
	return strings.Join(kept, "&")
}

func (r Rules) keep(name string) bool {
	if r.VersionParam != "" && name == r.VersionParam {
		return true
	}
	if r.Query == QueryIgnore {
		return false
	}
	if len(r.AllowParams) > 0 && !matchAny(r.AllowParams, name) {
		return false
	}
	return !matchAny(r.IgnoreParams, name)
}

func matchAny(patterns []string, name string) bool {
	for _, p := range patterns {
		if prefix, ok := strings.CutSuffix(p, "*"); ok {
			if strings.HasPrefix(name, prefix) {
				return true
			}
		} else if p == name {
			return true
		}
	}
	return false
}

const upperHex = "0123456789ABCDEF"

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	default:
		return c - 'a' + 10
	}
}

func unreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}
