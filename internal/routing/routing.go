// Package routing maps a request's Host to the site that serves it. A Table
// is immutable: a config change builds a new one and swaps it in whole.
package routing

import "strings"

// Table finds sites of type S by host. A nil *Table routes nothing.
type Table[S any] struct {
	exact    map[string]*S
	suffixes []suffixRoute[S] // "*.example.com" as ".example.com", longest first
	fallback *S               // "*"
}

type suffixRoute[S any] struct {
	suffix string
	site   *S
}

// Route is one host pattern of a site, as given in config.
type Route[S any] struct {
	Host string
	Site *S
}

// New builds a table. Patterns are exact hosts, "*.domain" or "*".
func New[S any](routes []Route[S]) *Table[S] {
	t := &Table[S]{exact: make(map[string]*S)}
	for _, r := range routes {
		h := strings.ToLower(strings.TrimSuffix(r.Host, "."))
		switch {
		case h == "*":
			t.fallback = r.Site
		case strings.HasPrefix(h, "*."):
			t.suffixes = append(t.suffixes, suffixRoute[S]{suffix: h[1:], site: r.Site})
		default:
			t.exact[h] = r.Site
		}
	}
	// Longest suffix first, so *.a.example.com beats *.example.com.
	for i := 1; i < len(t.suffixes); i++ {
		for j := i; j > 0 && len(t.suffixes[j].suffix) > len(t.suffixes[j-1].suffix); j-- {
			t.suffixes[j], t.suffixes[j-1] = t.suffixes[j-1], t.suffixes[j]
		}
	}
	return t
}

// Lookup returns the site for a Host header (port and case ignored), or nil.
func (t *Table[S]) Lookup(host string) *S {
	if t == nil {
		return nil
	}
	host = stripPort(host)
	host = strings.TrimSuffix(host, ".")
	if hasUpper(host) {
		host = strings.ToLower(host)
	}
	if s, ok := t.exact[host]; ok {
		return s
	}
	for _, r := range t.suffixes {
		if len(host) > len(r.suffix) && strings.HasSuffix(host, r.suffix) &&
			!strings.Contains(host[:len(host)-len(r.suffix)], ".") {
			return r.site
		}
	}
	return t.fallback
}

func stripPort(host string) string {
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		host = host[:i]
	}
	return strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
}

func hasUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return true
		}
	}
	return false
}
