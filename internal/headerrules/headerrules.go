// Package headerrules parses a Netlify-style `_headers` file and returns the
// response headers that apply to a URL path.
//
// The format is line based:
//
//	# a comment
//	/assets/*
//	  Cache-Control: public, max-age=31536000, immutable
//	  Surrogate-Key: assets static
//
// A line that starts with "/" (no leading whitespace) opens a rule for that
// path pattern; the indented "Name: value" lines after it are its headers.
// In a pattern "*" matches any run of characters, "/" included; every other
// byte is literal. Every matching rule applies in file order, and a later
// rule's header replaces an earlier header of the same name.
package headerrules

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"os"
	"strings"
)

// Limits on the input, so a hostile or broken file cannot exhaust memory.
const (
	// MaxLineBytes is the longest line accepted, line ending excluded.
	MaxLineBytes = 8 << 10
	// MaxRules is the most rules (path patterns) one file may hold.
	MaxRules = 10000
)

// Rule is one path pattern and the headers it sets.
type Rule struct {
	// Pattern is the path pattern, starting with "/"; "*" matches any run of
	// characters, "/" included.
	Pattern string
	// Header holds the headers with canonical names. A name repeated within
	// one rule keeps every value in order.
	Header http.Header
}

// rule is a Rule with its pattern precompiled for matching.
type rule struct {
	Rule
	// segs is Pattern split on "*": a path matches when it starts with
	// segs[0], ends with segs[len-1] and holds the others in order between.
	// A pattern without "*" has exactly one segment and must equal the path.
	segs []string
}

// Rules is a parsed rules file. The zero value (and a nil *Rules) holds no
// rules. A Rules is immutable after Parse and safe for concurrent use.
type Rules struct {
	rules []rule
}

// ParseFile reads and parses the rules file at path.
func ParseFile(path string) (*Rules, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open rules: %w", err)
	}
	defer f.Close()
	rs, err := Parse(f)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	return rs, nil
}

// Parse reads a rules file from r. Errors name the offending line:
// "line 3: header line before any path".
func Parse(r io.Reader) (*Rules, error) {
	rs := &Rules{}
	if err := ScanLines(r, MaxLineBytes, rs.parseLine); err != nil {
		return nil, err
	}
	return rs, nil
}

// ScanLines calls f with each line of a Netlify-style rules file
// (_headers, _redirects): a leading byte-order mark and "\r" line ends
// removed, lines longer than maxLine refused. An error, f's included,
// names its line ("line 3: ...").
func ScanLines(r io.Reader, maxLine int, f func(line string) error) error {
	sc := bufio.NewScanner(r)
	// Room for the longest allowed line plus "\r\n"; longer lines stop the
	// scanner with bufio.ErrTooLong, reported below with their number.
	sc.Buffer(make([]byte, 0, 4096), maxLine+2)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSuffix(sc.Text(), "\r")
		if n == 1 {
			line = strings.TrimPrefix(line, "\ufeff") // a UTF-8 byte-order mark
		}
		if len(line) > maxLine {
			return fmt.Errorf("line %d: longer than %d bytes", n, maxLine)
		}
		if err := f(line); err != nil {
			return fmt.Errorf("line %d: %w", n, err)
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return fmt.Errorf("line %d: longer than %d bytes", n+1, maxLine)
		}
		return fmt.Errorf("read rules: %w", err)
	}
	return nil
}

// parseLine adds one line to rs: a new rule, a header of the last rule, or
// nothing (blank lines and comments).
func (rs *Rules) parseLine(line string) error {
	trimmed := strings.TrimSpace(line)
	switch {
	case trimmed == "" || trimmed[0] == '#':
		return nil
	case line[0] == ' ' || line[0] == '\t':
		if len(rs.rules) == 0 {
			return errors.New("header line before any path")
		}
		return addHeader(rs.rules[len(rs.rules)-1].Header, trimmed)
	case line[0] != '/':
		return fmt.Errorf("path pattern %q does not start with \"/\"", truncate(trimmed))
	}
	for i := 0; i < len(trimmed); i++ {
		if c := trimmed[i]; c <= ' ' || c == 0x7f {
			return fmt.Errorf("path pattern %q contains whitespace or a control character", truncate(trimmed))
		}
	}
	if len(rs.rules) >= MaxRules {
		return fmt.Errorf("more than %d rules", MaxRules)
	}
	rs.rules = append(rs.rules, rule{
		Rule: Rule{Pattern: trimmed, Header: http.Header{}},
		segs: strings.Split(trimmed, "*"),
	})
	return nil
}

// addHeader parses "Name: value" into h.
func addHeader(h http.Header, line string) error {
	name, value, ok := strings.Cut(line, ":")
	if !ok {
		return fmt.Errorf("header line %q has no \":\"", truncate(line))
	}
	name = strings.TrimSpace(name)
	if !ValidName(name) {
		return fmt.Errorf("header name %q is not a valid token", truncate(name))
	}
	value = strings.TrimSpace(value)
	if !validValue(value) {
		return fmt.Errorf("header %s: value contains a control character", name)
	}
	key := textproto.CanonicalMIMEHeaderKey(name)
	h[key] = append(h[key], value)
	return nil
}

// ValidName reports whether s is an RFC 9110 §5.6.2 token, as a field
// name must be: the one check of the module (cache key pass headers and
// the edge's request checks use it too).
func ValidName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// validValue reports whether s is a field value without control characters
// other than tab (RFC 9110 §5.5): in particular no CR, LF or NUL, which
// would let a rules file split or truncate a response.
func validValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// truncate shortens s for an error message.
func truncate(s string) string {
	const maxLen = 64
	if len(s) <= maxLen {
		return s
	}
	return s[:maxLen] + "..."
}

// Len returns the number of rules; nil-safe.
func (rs *Rules) Len() int {
	if rs == nil {
		return 0
	}
	return len(rs.rules)
}

// All returns a copy of the rules in file order; nil-safe.
func (rs *Rules) All() []Rule {
	if rs == nil {
		return nil
	}
	out := make([]Rule, len(rs.rules))
	for i, r := range rs.rules {
		out[i] = Rule{Pattern: r.Pattern, Header: r.Header.Clone()}
	}
	return out
}

// Headers returns the merged headers of every rule that matches path, a URL
// path such as "/assets/app.js", or nil when none match. The caller owns
// the result. A nil *Rules returns nil.
func (rs *Rules) Headers(path string) http.Header {
	if rs == nil {
		return nil
	}
	var h http.Header
	for i := range rs.rules {
		r := &rs.rules[i]
		if len(r.Header) == 0 || !match(r.segs, path) {
			continue
		}
		if h == nil {
			h = make(http.Header, len(r.Header))
		}
		for k, v := range r.Header {
			// Replace, not append: a later rule overrides an earlier one.
			h[k] = append([]string(nil), v...)
		}
	}
	return h
}

// match reports whether path matches the pattern split on "*" into segs.
// Matching each middle segment at its leftmost position is enough: with
// only "*" wildcards, the leftmost choice leaves the most room for the rest.
func match(segs []string, path string) bool {
	if len(segs) == 1 {
		return path == segs[0]
	}
	first, last := segs[0], segs[len(segs)-1]
	if len(path) < len(first)+len(last) ||
		!strings.HasPrefix(path, first) || !strings.HasSuffix(path, last) {
		return false
	}
	rest := path[len(first) : len(path)-len(last)]
	for _, s := range segs[1 : len(segs)-1] {
		i := strings.Index(rest, s)
		if i < 0 {
			return false
		}
		rest = rest[i+len(s):]
	}
	return true
}
