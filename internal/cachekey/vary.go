package cachekey

import (
	"net/http"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
)

// ParseVary returns the canonical, sorted, de-duplicated header names of a
// response's Vary field, and whether it contains "*" (varies on everything,
// so it cannot be cached).
func ParseVary(h http.Header) (names []string, star bool) {
	for _, line := range h["Vary"] {
		for f := range strings.SplitSeq(line, ",") {
			f = strings.TrimSpace(f)
			switch {
			case f == "":
			case f == "*":
				star = true
			default:
				names = append(names, textproto.CanonicalMIMEHeaderKey(f))
			}
		}
	}
	slices.Sort(names)
	return slices.Compact(names), star
}

// Header gives the values of a request header field; http.Header has it.
type Header interface {
	Values(name string) []string
}

// Variant returns the key of the response variant that a request with
// header h selects under base, given the Vary names of the stored response.
// Values are normalized so that requests an origin cannot tell apart share
// a variant: case and spacing of list members, order of Accept-Encoding
// codings, and q-values of codings that are accepted at all.
func Variant(base string, names []string, h Header) string {
	var b strings.Builder
	b.WriteString(base)
	for _, n := range names {
		b.WriteString("\x00")
		b.WriteString(n)
		b.WriteByte('=')
		vs := h.Values(n)
		switch {
		case len(vs) == 0:
			b.WriteByte(absent) // RFC 9111 §4.1: absent is not the same as empty
		case n == "Accept-Encoding":
			b.WriteString(normalizeCodings(vs))
		default:
			b.WriteString(normalizeList(vs, caseInsensitive[n]))
		}
	}
	return b.String()
}

// absent stands for a header the request did not send; it cannot occur in
// a field value.
const absent = '\x01'

// caseInsensitive lists request fields whose values compare without case,
// so their spellings may share a variant; any other field (Cookie, a
// custom header) keeps its case.
var caseInsensitive = map[string]bool{"Accept": true, "Accept-Language": true, "Accept-Charset": true}

// normalizeList joins the values of a header as a list with members
// trimmed, keeping their order (it may matter).
func normalizeList(vs []string, foldCase bool) string {
	var parts []string
	for _, v := range vs {
		for f := range strings.SplitSeq(v, ",") {
			if f = strings.Join(strings.Fields(f), " "); f != "" {
				if foldCase {
					f = strings.ToLower(f)
				}
				parts = append(parts, f)
			}
		}
	}
	return strings.Join(parts, ",")
}

// normalizeCodings reduces Accept-Encoding to the sorted set of codings the
// client accepts (q > 0), so "gzip, br" and "br;q=1.0,gzip" are one variant.
func normalizeCodings(vs []string) string {
	var codings []string
	for _, v := range vs {
		for f := range strings.SplitSeq(v, ",") {
			name, params, _ := strings.Cut(f, ";")
			name = strings.ToLower(strings.TrimSpace(name))
			if name == "" || qZero(params) {
				continue
			}
			codings = append(codings, name)
		}
	}
	slices.Sort(codings)
	return strings.Join(slices.Compact(codings), ",")
}

func qZero(params string) bool {
	for p := range strings.SplitSeq(params, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
		if ok && strings.EqualFold(strings.TrimSpace(k), "q") {
			q, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return err == nil && q <= 0
		}
	}
	return false
}
