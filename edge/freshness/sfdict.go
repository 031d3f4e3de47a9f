package freshness

import (
	"strings"
	"unicode/utf8"
)

// A strict parser of Structured Field Dictionaries (RFC 8941 §4.2.2, with
// the Date and Display String types RFC 9651 adds), for targeted cache
// control fields (RFC 9213 §2.1). It keeps only what cache directives need:
// each member's key, and its value when that value is an Integer. Any
// syntax error fails the whole field, as RFC 8941 §4.2 requires.

// sfKind is the type of a member's value.
type sfKind uint8

const (
	sfOther   sfKind = iota // Decimal, String, Token, Byte Sequence, Date, Display String, Inner List
	sfInteger               // Integer (sfMember.n)
	sfTrue                  // Boolean true, also a member without a value
	sfFalse                 // Boolean false
)

// sfMember is one dictionary member.
type sfMember struct {
	key  string
	kind sfKind
	n    int64
}

// sfParser walks one field value.
type sfParser struct {
	s string
	i int
}

func (p *sfParser) eof() bool  { return p.i >= len(p.s) }
func (p *sfParser) peek() byte { return p.s[p.i] }

// skipSP discards spaces; skipOWS discards spaces and tabs.
func (p *sfParser) skipSP() {
	for !p.eof() && p.peek() == ' ' {
		p.i++
	}
}

func (p *sfParser) skipOWS() {
	for !p.eof() && (p.peek() == ' ' || p.peek() == '\t') {
		p.i++
	}
}

// parseSFDictionary parses v as a Dictionary. Members appear in order of
// first appearance; a key seen again takes the later value (RFC 8941
// §4.2.2). ok is false when v is not a valid Dictionary.
func parseSFDictionary(v string) (members []sfMember, ok bool) {
	p := &sfParser{s: v}
	p.skipSP()
	for !p.eof() {
		key, ok := p.key()
		if !ok {
			return nil, false
		}
		m := sfMember{key: key, kind: sfTrue}
		if !p.eof() && p.peek() == '=' {
			p.i++
			if m.kind, m.n, ok = p.itemOrInnerList(); !ok {
				return nil, false
			}
		} else if !p.params() {
			return nil, false
		}
		if j := indexMember(members, key); j >= 0 {
			members[j] = m
		} else {
			members = append(members, m)
		}
		p.skipOWS()
		if p.eof() {
			break
		}
		if p.peek() != ',' {
			return nil, false
		}
		p.i++
		p.skipOWS()
		if p.eof() {
			return nil, false // a trailing comma
		}
	}
	return members, true
}

func indexMember(ms []sfMember, key string) int {
	for i := range ms {
		if ms[i].key == key {
			return i
		}
	}
	return -1
}

// key parses a key: lcalpha or "*", then lcalpha, DIGIT, "_", "-", "." or
// "*". Upper case is not allowed (RFC 8941 §3.1.2).
func (p *sfParser) key() (string, bool) {
	start := p.i
	if p.eof() || !(isLower(p.peek()) || p.peek() == '*') {
		return "", false
	}
	p.i++
	for !p.eof() {
		c := p.peek()
		if !isLower(c) && !isDigit(c) && c != '_' && c != '-' && c != '.' && c != '*' {
			break
		}
		p.i++
	}
	return p.s[start:p.i], true
}

// itemOrInnerList parses a member value: an Inner List or an Item, each
// with parameters.
func (p *sfParser) itemOrInnerList() (sfKind, int64, bool) {
	if !p.eof() && p.peek() == '(' {
		return sfOther, 0, p.innerList()
	}
	kind, n, ok := p.bareItem()
	if !ok || !p.params() {
		return 0, 0, false
	}
	return kind, n, true
}

// innerList parses "(" items separated by spaces ")" and its parameters.
func (p *sfParser) innerList() bool {
	p.i++ // "("
	for !p.eof() {
		p.skipSP()
		if p.eof() {
			return false
		}
		if p.peek() == ')' {
			p.i++
			return p.params()
		}
		if _, _, ok := p.bareItem(); !ok || !p.params() {
			return false
		}
		if p.eof() || (p.peek() != ' ' && p.peek() != ')') {
			return false
		}
	}
	return false // no closing ")"
}

// params parses any number of ";key[=bare-item]" parameters.
func (p *sfParser) params() bool {
	for !p.eof() && p.peek() == ';' {
		p.i++
		p.skipSP()
		if _, ok := p.key(); !ok {
			return false
		}
		if !p.eof() && p.peek() == '=' {
			p.i++
			if _, _, ok := p.bareItem(); !ok {
				return false
			}
		}
	}
	return true
}

// bareItem parses one bare item and returns its kind; n is set for an
// Integer.
func (p *sfParser) bareItem() (sfKind, int64, bool) {
	if p.eof() {
		return 0, 0, false
	}
	switch c := p.peek(); {
	case c == '-' || isDigit(c):
		return p.number()
	case c == '"':
		return sfOther, 0, p.str()
	case c == '*' || isAlpha(c):
		p.token()
		return sfOther, 0, true
	case c == ':':
		return sfOther, 0, p.byteSeq()
	case c == '?':
		if p.i+1 >= len(p.s) || (p.s[p.i+1] != '0' && p.s[p.i+1] != '1') {
			return 0, 0, false
		}
		p.i += 2
		if p.s[p.i-1] == '1' {
			return sfTrue, 0, true
		}
		return sfFalse, 0, true
	case c == '@': // RFC 9651 §3.3.7: a Date is "@" and an Integer
		p.i++
		kind, _, ok := p.number()
		return sfOther, 0, ok && kind == sfInteger
	case c == '%': // RFC 9651 §3.3.8: a Display String
		return sfOther, 0, p.displayString()
	}
	return 0, 0, false
}

// number parses an Integer (up to 15 digits) or a Decimal (up to 12
// integer and 3 fraction digits).
func (p *sfParser) number() (sfKind, int64, bool) {
	neg := false
	if !p.eof() && p.peek() == '-' {
		neg = true
		p.i++
	}
	var n int64
	digits, intDigits, decimal := 0, 0, false
	for !p.eof() {
		c := p.peek()
		switch {
		case isDigit(c):
			n = n*10 + int64(c-'0') // at most 15 digits: no overflow
			digits++
		case c == '.' && !decimal:
			if digits > 12 || digits == 0 {
				return 0, 0, false
			}
			decimal, intDigits = true, digits
		default:
			goto end
		}
		p.i++
		if digits > 15 { // 15 for an Integer; 12+3 for a Decimal
			return 0, 0, false
		}
	}
end:
	switch {
	case digits == 0:
		return 0, 0, false
	case decimal && (digits == intDigits || digits-intDigits > 3):
		return 0, 0, false // "1." or more than three fraction digits
	case decimal:
		return sfOther, 0, true
	}
	if neg {
		n = -n
	}
	return sfInteger, n, true
}

// str parses a String: printable ASCII in quotes, with \" and \\.
func (p *sfParser) str() bool {
	p.i++ // the opening quote
	for !p.eof() {
		c := p.peek()
		p.i++
		switch {
		case c == '\\':
			if p.eof() || (p.peek() != '"' && p.peek() != '\\') {
				return false
			}
			p.i++
		case c == '"':
			return true
		case c < 0x20 || c > 0x7e:
			return false
		}
	}
	return false // unterminated
}

// token parses a Token: ALPHA or "*", then tchar, ":" or "/".
func (p *sfParser) token() {
	p.i++
	for !p.eof() && (isTchar(p.peek()) || p.peek() == ':' || p.peek() == '/') {
		p.i++
	}
}

// byteSeq parses a Byte Sequence: base64 between colons.
func (p *sfParser) byteSeq() bool {
	p.i++
	for !p.eof() {
		c := p.peek()
		p.i++
		switch {
		case c == ':':
			return true
		case isAlpha(c) || isDigit(c) || c == '+' || c == '/' || c == '=':
		default:
			return false
		}
	}
	return false
}

// displayString parses %"..." with %xx escapes of lowercase hex.
func (p *sfParser) displayString() bool {
	p.i++
	if p.eof() || p.peek() != '"' {
		return false
	}
	p.i++
	var b strings.Builder
	for !p.eof() {
		c := p.peek()
		p.i++
		switch {
		case c == '%':
			if p.i+2 > len(p.s) || !isLowerHex(p.s[p.i]) || !isLowerHex(p.s[p.i+1]) {
				return false
			}
			b.WriteByte(unhex(p.s[p.i])<<4 | unhex(p.s[p.i+1]))
			p.i += 2
		case c == '"':
			return utf8.ValidString(b.String())
		case c < 0x20 || c > 0x7e:
			return false
		default:
			b.WriteByte(c)
		}
	}
	return false
}

func isLower(c byte) bool    { return 'a' <= c && c <= 'z' }
func isAlpha(c byte) bool    { return isLower(c) || 'A' <= c && c <= 'Z' }
func isDigit(c byte) bool    { return '0' <= c && c <= '9' }
func isLowerHex(c byte) bool { return isDigit(c) || 'a' <= c && c <= 'f' }

func unhex(c byte) byte {
	if isDigit(c) {
		return c - '0'
	}
	return c - 'a' + 10
}

// isTchar reports whether c is a tchar (RFC 9110 §5.6.2).
func isTchar(c byte) bool {
	if isAlpha(c) || isDigit(c) {
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
