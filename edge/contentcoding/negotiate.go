package contentcoding

import (
	"strconv"
	"strings"
)

// Coding is a content coding the edge can produce. The zero value is Identity.
type Coding uint8

const (
	// Identity is the body as the origin sent it.
	Identity Coding = iota
	// Gzip is RFC 1952 gzip (Content-Encoding: gzip).
	Gzip
	// Zstd is RFC 8878 Zstandard, limited to an 8 MiB window (RFC 9659).
	Zstd
)

// String is the token for Content-Encoding and cache keys: "", "gzip",
// "zstd". A value outside the three constants prints as "Coding(n)".
func (c Coding) String() string {
	switch c {
	case Identity:
		return ""
	case Gzip:
		return "gzip"
	case Zstd:
		return "zstd"
	}
	return "Coding(" + strconv.Itoa(int(c)) + ")"
}

// qMax is q=1 in thousandths; a qvalue has at most three decimals
// (RFC 9110 §12.4.2), so integers compare weights exactly.
const qMax = 1000

// weight is what the field says about one coding.
type weight struct {
	q     int  // highest q given, in thousandths
	named bool // the coding appeared in a well-formed element
	zero  bool // some element gave it q=0
}

func (w *weight) add(q int) {
	w.named = true
	w.zero = w.zero || q == 0
	w.q = max(w.q, q)
}

// resolve is the coding's q, or -1 if it is not acceptable. A q=0 anywhere
// wins over a repeat with a higher q: the client said no, and identity is
// always a safe answer.
func (w weight) resolve(star weight) int {
	switch {
	case w.named && !w.zero:
		return w.q
	case w.named:
		return -1
	case star.named && !star.zero:
		return star.q // RFC 9110 §12.5.3: "*" covers codings not listed
	}
	return -1
}

// Negotiate picks the coding for a response from the request's
// Accept-Encoding field values (RFC 9110 §12.5.3): the highest q wins among
// gzip, x-gzip (the same as gzip) and zstd, and zstd wins a tie; "*" gives its
// q to those not named; q=0 means not acceptable; names are case-insensitive.
// Malformed elements (a bad q, a parameter other than q, garbage) are skipped.
// No field, or nothing acceptable, gives Identity, even with identity;q=0:
// sending identity beats a 406. It does not allocate.
func Negotiate(acceptEncoding []string) Coding {
	var gz, zs, star weight
	for _, field := range acceptEncoding {
		// Several field lines and commas within one are the same list
		// (RFC 9110 §5.3), and empty elements are allowed (§5.6.1).
		for field != "" {
			var elem string
			elem, field, _ = strings.Cut(field, ",")
			name, q, ok := parseElement(elem)
			if !ok {
				continue
			}
			switch {
			case strings.EqualFold(name, "gzip"), strings.EqualFold(name, "x-gzip"):
				gz.add(q) // RFC 9110 §8.4.1.3: x-gzip is an alias
			case strings.EqualFold(name, "zstd"):
				zs.add(q)
			case name == "*":
				star.add(q)
			}
		}
	}
	gq, zq := gz.resolve(star), zs.resolve(star)
	switch {
	case zq > 0 && zq >= gq:
		return Zstd
	case gq > 0:
		return Gzip
	}
	return Identity
}

// parseElement splits one list element, `coding *( OWS ";" OWS "q=" qvalue )`,
// into its name and q. ok is false for an empty or malformed element.
func parseElement(elem string) (name string, q int, ok bool) {
	name, params, _ := strings.Cut(elem, ";")
	name = strings.Trim(name, " \t")
	if name == "" || strings.ContainsAny(name, " \t") {
		return "", 0, false
	}
	q = qMax
	for params != "" {
		var p string
		p, params, _ = strings.Cut(params, ";")
		p = strings.Trim(p, " \t")
		if p == "" {
			continue // "gzip;;q=1": harmless, tolerate it
		}
		// The weight is the only parameter Accept-Encoding defines, and its
		// name is case-insensitive (RFC 9110 §12.4.2).
		if len(p) < 2 || (p[0] != 'q' && p[0] != 'Q') || p[1] != '=' {
			return "", 0, false
		}
		if q, ok = parseQ(p[2:]); !ok {
			return "", 0, false
		}
	}
	return name, q, true
}

// parseQ parses a qvalue, `( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`
// (RFC 9110 §12.4.2), into thousandths. Anything else, 1.5 or .5 included,
// is not ok.
func parseQ(s string) (int, bool) {
	if s == "" || (s[0] != '0' && s[0] != '1') {
		return 0, false
	}
	whole := int(s[0] - '0')
	frac := s[1:]
	if frac == "" {
		return whole * qMax, true
	}
	if frac[0] != '.' || len(frac) > 4 {
		return 0, false
	}
	q, scale := 0, 100
	for i := 1; i < len(frac); i++ {
		d := frac[i]
		if d < '0' || d > '9' || (whole == 1 && d != '0') {
			return 0, false
		}
		q += int(d-'0') * scale
		scale /= 10
	}
	return whole*qMax + q, true
}
