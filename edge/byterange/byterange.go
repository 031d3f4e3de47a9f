// Package byterange answers HTTP Range requests (RFC 9110 §14) from cached
// objects of known size: Parse turns a Range header into byte ranges, IfRange
// checks the If-Range precondition, and Write and Unsatisfiable send the 206
// or 416.
//
// Every range Parse returns lies inside [0,size) and is at least one byte
// long; there are at most MaxRanges of them and together they never exceed
// the object, so a request cannot make the edge send more than about one copy
// of the object plus multipart framing.
package byterange

import (
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Range is the byte range [Start, Start+Length) of a representation.
// The zero value is an empty range, which Parse never returns.
type Range struct{ Start, Length int64 }

// ContentRange is the Content-Range value for r in a representation of size bytes: "bytes 0-499/1234".
func (r Range) ContentRange(size int64) string {
	var b [64]byte // "bytes " plus three int64s fit
	s := append(b[:0], "bytes "...)
	s = strconv.AppendInt(s, r.Start, 10)
	s = append(s, '-')
	s = strconv.AppendInt(s, r.end()-1, 10)
	s = append(s, '/')
	s = strconv.AppendInt(s, size, 10)
	return string(s)
}

// end is the first byte after r.
func (r Range) end() int64 { return r.Start + r.Length }

// MaxRanges bounds how many ranges one request may name.
const MaxRanges = 64

var (
	// ErrUnknownUnit means the header is not "bytes=": the caller ignores
	// the Range header (RFC 9110 §14.2).
	ErrUnknownUnit = errors.New("byterange: unknown range unit")
	// ErrInvalid means a malformed bytes= spec: the caller answers 416.
	ErrInvalid = errors.New("byterange: invalid range")
	// ErrUnsatisfiable means no range overlaps [0,size): the caller answers
	// 416 with Content-Range: bytes */size (see Unsatisfiable).
	ErrUnsatisfiable = errors.New("byterange: range not satisfiable")
	// ErrTooMany means more than MaxRanges ranges, or ranges that add up to
	// more than the whole: the caller ignores Range and sends the whole 200.
	ErrTooMany = errors.New("byterange: too many ranges")
)

// Parse parses a Range header value against a representation of size bytes.
//
// If any two ranges overlap or touch, all are sorted by start and the
// overlapping or adjacent ones merged (RFC 9110 §14.2 allows it); otherwise
// the client's order is kept. The
// header is read left to right and the first problem found is returned, so
// "bytes=x,<64 more>" is ErrInvalid while "bytes=<65 ranges>,x" is ErrTooMany.
// A negative size is treated like 0: nothing is satisfiable.
func Parse(header string, size int64) ([]Range, error) {
	unit, spec, ok := strings.Cut(header, "=")
	unit = trimOWS(unit)
	if !strings.EqualFold(unit, "bytes") {
		return nil, fmt.Errorf("parse range unit %q: %w", clip(unit), ErrUnknownUnit)
	}
	if !ok {
		return nil, fmt.Errorf("parse range %q: no \"=\": %w", clip(header), ErrInvalid)
	}
	var out []Range
	// One allocation for the result: it never holds more than one range per
	// list element.
	hint := min(strings.Count(spec, ",")+1, MaxRanges)
	n := 0 // non-empty list elements seen, satisfiable or not
	for rest := spec; rest != ""; {
		var elem string
		elem, rest, _ = strings.Cut(rest, ",")
		elem = trimOWS(elem)
		if elem == "" {
			continue // RFC 9110 §5.6.1: empty list elements are allowed
		}
		if n++; n > MaxRanges {
			return nil, fmt.Errorf("parse range: more than %d ranges: %w", MaxRanges, ErrTooMany)
		}
		r, ok, err := parseElem(elem, size)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue // unsatisfiable on its own; the others may still be served
		}
		if out == nil {
			out = make([]Range, 0, hint)
		}
		out = append(out, r)
	}
	if n == 0 {
		return nil, fmt.Errorf("parse range %q: no range: %w", clip(header), ErrInvalid)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("parse range %q for %d bytes: %w", clip(header), size, ErrUnsatisfiable)
	}
	out = coalesce(out)
	// Disjoint ranges inside [0,size) cannot add up to more than size, so
	// after coalesce this never fires; it keeps the promise in the package
	// doc if the merge rule ever changes.
	var total int64
	for _, r := range out {
		total += r.Length
	}
	if total > size {
		return nil, fmt.Errorf("parse range: %d bytes of %d: %w", total, size, ErrTooMany)
	}
	return out, nil
}

// parseElem parses one "a-b", "a-" or "-n" against size. ok is false for a
// well-formed range that does not overlap [0,size).
func parseElem(elem string, size int64) (r Range, ok bool, err error) {
	first, last, found := strings.Cut(elem, "-")
	if !found {
		return Range{}, false, fmt.Errorf("parse range %q: no \"-\": %w", clip(elem), ErrInvalid)
	}
	if first == "" {
		// suffix-range: the last n bytes (RFC 9110 §14.1.1).
		n, ok := parseDigits(last)
		if !ok {
			return Range{}, false, fmt.Errorf("parse range %q: bad suffix length: %w", clip(elem), ErrInvalid)
		}
		if n == 0 || size <= 0 {
			return Range{}, false, nil
		}
		n = min(n, size) // longer than the object means all of it
		return Range{Start: size - n, Length: n}, true, nil
	}
	start, ok := parseDigits(first)
	if !ok {
		return Range{}, false, fmt.Errorf("parse range %q: bad first position: %w", clip(elem), ErrInvalid)
	}
	end := size - 1
	if last != "" {
		e, ok := parseDigits(last)
		if !ok {
			return Range{}, false, fmt.Errorf("parse range %q: bad last position: %w", clip(elem), ErrInvalid)
		}
		if e < start {
			return Range{}, false, fmt.Errorf("parse range %q: last before first: %w", clip(elem), ErrInvalid)
		}
		end = min(e, end)
	}
	if start >= size {
		return Range{}, false, nil
	}
	return Range{Start: start, Length: end - start + 1}, true, nil
}

// parseDigits parses 1*DIGIT into a non-negative int64. Unlike
// strconv.ParseInt it refuses signs, and it does not allocate an error.
func parseDigits(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		d := int64(c - '0')
		if n > (1<<63-1-d)/10 {
			return 0, false // does not fit in int64
		}
		n = n*10 + d
	}
	return n, true
}

// coalesce merges ranges that overlap or touch. If none do, rs is returned
// as is, in the client's order; otherwise sorted by start and merged, in place.
func coalesce(rs []Range) []Range {
	if !touching(rs) {
		return rs
	}
	slices.SortFunc(rs, func(a, b Range) int { return cmp.Compare(a.Start, b.Start) })
	out := rs[:1]
	for _, r := range rs[1:] {
		last := &out[len(out)-1]
		if r.Start <= last.end() {
			last.Length = max(last.end(), r.end()) - last.Start
			continue
		}
		out = append(out, r)
	}
	return out
}

// touching reports whether any two ranges overlap or are adjacent.
// Quadratic, but len(rs) <= MaxRanges and it needs no sorted copy.
func touching(rs []Range) bool {
	for i, a := range rs {
		for _, b := range rs[i+1:] {
			if a.Start <= b.end() && b.Start <= a.end() {
				return true
			}
		}
	}
	return false
}

// IfRange reports whether an If-Range value lets the range apply (RFC 9110 §13.1.5): a strong
// entity-tag equal to etag (weak tags never match, and a weak etag never matches), or an HTTP-date
// exactly equal to lastModified (zero lastModified never matches). An empty ifRange returns true.
//
// lastModified is compared at whole seconds, the precision of the
// Last-Modified header the client saw. Whether that date is a strong
// validator (RFC 9110 §8.8.2.2) is left to the caller.
func IfRange(ifRange, etag string, lastModified time.Time) bool {
	v := trimOWS(ifRange)
	if v == "" {
		return true
	}
	if strings.HasPrefix(v, "W/") {
		return false // a weak tag never passes, even against the same weak tag
	}
	if v[0] == '"' {
		// A weak etag starts with W/, so it cannot equal a strong tag.
		return strongTag(v) && v == trimOWS(etag)
	}
	t, err := http.ParseTime(v)
	if err != nil || lastModified.IsZero() {
		return false
	}
	return t.Equal(lastModified.Truncate(time.Second))
}

// strongTag reports whether s is a whole strong entity-tag: DQUOTE *etagc DQUOTE.
func strongTag(s string) bool {
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return false
	}
	for i := 1; i < len(s)-1; i++ {
		// etagc = %x21 / %x23-7E / obs-text (RFC 9110 §8.8.3)
		if c := s[i]; c < 0x21 || c == '"' || c == 0x7f {
			return false
		}
	}
	return true
}

// trimOWS trims optional whitespace (SP and HTAB, RFC 9110 §5.6.3).
func trimOWS(s string) string { return strings.Trim(s, " \t") }

// clip keeps error messages short when a client sends a huge header.
func clip(s string) string {
	const n = 40
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
