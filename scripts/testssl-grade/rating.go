package main

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// finding is one entry of testssl.sh's flat JSON output.
type finding struct {
	ID       string `json:"id"`
	Severity string `json:"severity"`
	Finding  string `json:"finding"`
}

// result is a rating: the grade and the lines that explain it.
type result struct {
	grade string
	notes []string
}

// grades from best to worst; T (not trusted) and M (name mismatch) stand
// outside the scale and replace any letter.
var grades = []string{"A+", "A", "A-", "B", "C", "D", "E", "F"}

// worse returns the worse of two letter grades.
func worse(a, b string) string {
	if slices.Index(grades, b) > slices.Index(grades, a) {
		return b
	}
	return a
}

// rating collects caps and warnings while the findings are read.
type rating struct {
	byID     map[string]finding
	cap      string // the lowest letter cap so far, "" for none
	trust    string // "T" or "M" once either applies
	warnings []string
	notes    []string
	rated    map[string]bool // ids the guide rates
}

func (r *rating) capAt(g, why string) {
	r.notes = append(r.notes, "cap "+g+": "+why)
	if g == "T" || g == "M" {
		if r.trust == "" {
			r.trust = g
		}
		return
	}
	if r.cap == "" {
		r.cap = g
	}
	r.cap = worse(r.cap, g)
}

func (r *rating) get(id string) (finding, bool) {
	r.rated[id] = true
	f, ok := r.byID[id]
	return f, ok
}

// offered reports whether a protocol or cipher list finding says offered.
func (r *rating) offered(id string) bool {
	f, ok := r.get(id)
	return ok && strings.HasPrefix(f.Finding, "offered")
}

// bad reports whether a finding is a problem by testssl.sh's severity.
func bad(f finding) bool {
	switch f.Severity {
	case "OK", "INFO", "LOW", "WARN", "DEBUG":
		return false
	}
	return true
}

// rate applies the rating guide to fs.
func rate(fs []finding) result {
	r := &rating{byID: map[string]finding{}, rated: map[string]bool{}}
	for _, f := range fs {
		if _, seen := r.byID[f.ID]; !seen {
			r.byID[f.ID] = f
		}
	}
	if g, ok := r.byID["overall_grade"]; ok {
		return result{grade: g.Finding, notes: []string{"testssl.sh rated the server itself"}}
	}

	proto := r.protocolScore()
	kx := r.keyExchangeScore()
	ciph := r.cipherScore()
	score := 0.3*float64(proto) + 0.3*float64(kx) + 0.4*float64(ciph)
	letter := scoreLetter(score)
	r.notes = append(r.notes, fmt.Sprintf("score %.0f (0.3 x %d + 0.3 x %d + 0.4 x %d): %s", score, proto, kx, ciph, letter))

	r.certificateCaps()
	r.cipherCaps()
	r.vulnerabilityCaps()

	grade := letter
	if r.cap != "" {
		grade = worse(grade, r.cap)
	}
	if grade == "A" && len(r.warnings) > 0 {
		grade = "A-"
		r.notes = append(r.notes, "A-: "+strings.Join(r.warnings, "; "))
	}
	if grade == "A" {
		if h, ok := r.get("HSTS_time"); ok && h.Severity == "OK" {
			grade = "A+"
			r.notes = append(r.notes, "A+: HSTS "+h.Finding)
		} else {
			r.notes = append(r.notes, "no A+: no HSTS of at least 180 days")
		}
	}
	if r.trust != "" {
		grade = r.trust
	}
	for _, f := range fs {
		if bad(f) && !r.rated[f.ID] {
			r.notes = append(r.notes, fmt.Sprintf("not rated by the guide: %s %s: %s", f.ID, f.Severity, f.Finding))
		}
	}
	return result{grade: grade, notes: r.notes}
}

// protocolScore is the average of the best and worst protocol offered.
func (r *rating) protocolScore() int {
	scores := map[string]int{"SSLv2": 0, "SSLv3": 80, "TLS1": 90, "TLS1_1": 95, "TLS1_2": 100, "TLS1_3": 100}
	best, worst, names := -1, 101, []string{}
	for _, id := range []string{"SSLv2", "SSLv3", "TLS1", "TLS1_1", "TLS1_2", "TLS1_3"} {
		if r.offered(id) {
			best, worst = max(best, scores[id]), min(worst, scores[id])
			names = append(names, id)
		}
	}
	if best < 0 {
		r.capAt("F", "no protocol offered")
		return 0
	}
	switch {
	case slices.Contains(names, "SSLv2"):
		r.capAt("F", "SSLv2 offered")
	case slices.Contains(names, "SSLv3"):
		r.capAt("B", "SSLv3 offered")
	}
	if slices.Contains(names, "TLS1") || slices.Contains(names, "TLS1_1") {
		r.capAt("B", "TLS 1.0 or 1.1 offered")
	}
	if !slices.Contains(names, "TLS1_2") {
		r.capAt("C", "TLS 1.2 not offered")
	}
	score := (best + worst) / 2
	r.notes = append(r.notes, fmt.Sprintf("protocols %s: %d", strings.Join(names, " "), score))
	return score
}

// keyExchangeScore rates the weakest of the certificate's key and the key
// exchanges offered, in RSA-equivalent bits (NIST SP 800-57).
func (r *rating) keyExchangeScore() int {
	weakest := 1 << 20
	var what []string
	if f, ok := r.get("cert_keySize"); ok {
		// "EC 256 bits", "RSA 2048 bits"
		if fields := strings.Fields(f.Finding); len(fields) >= 2 {
			bits, _ := strconv.Atoi(fields[1])
			eq := bits
			if fields[0] == "EC" || fields[0] == "EdDSA" {
				eq = ecEquivalent(bits)
			}
			if fields[0] == "RSA" && bits < 2048 {
				if bits < 1024 {
					r.capAt("F", "RSA key under 1024 bits")
				} else {
					r.capAt("B", "RSA key under 2048 bits")
				}
			}
			weakest = min(weakest, eq)
			what = append(what, f.Finding)
		}
	}
	for _, c := range r.ciphers() {
		if c.kxBits == 0 {
			continue
		}
		eq := c.kxBits
		if c.kx == "ECDH" {
			eq = ecEquivalent(c.kxBits)
		}
		if eq < weakest {
			weakest = eq
			what = append(what, c.kx+" "+strconv.Itoa(c.kxBits))
		}
	}
	if weakest == 1<<20 {
		r.notes = append(r.notes, "key exchange: nothing reported")
		return 0
	}
	score := 100
	switch {
	case weakest < 512:
		score = 20
	case weakest < 1024:
		score = 40
	case weakest < 2048:
		score = 80
	case weakest < 4096:
		score = 90
	}
	r.notes = append(r.notes, fmt.Sprintf("key exchange %s (weakest as RSA: %d bits): %d", strings.Join(what, ", "), weakest, score))
	return score
}

// ecEquivalent is the RSA key size of the same strength as an EC key.
func ecEquivalent(bits int) int {
	switch {
	case bits >= 512:
		return 15360
	case bits >= 384:
		return 7680
	case bits >= 250: // P-256, X25519 (253)
		return 3072
	case bits >= 224:
		return 2048
	case bits >= 160:
		return 1024
	}
	return 512
}

// cipher is one suite testssl.sh found offered.
type cipher struct {
	name   string
	kx     string // "ECDH", "DH", "RSA"...
	kxBits int
	bits   int
}

// ciphers reads the cipher_x* findings: "xc02b ECDHE-ECDSA-AES128-GCM-SHA256
// ECDH 253 AESGCM 128 TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256".
func (r *rating) ciphers() []cipher {
	var out []cipher
	for id, f := range r.byID {
		if !strings.HasPrefix(id, "cipher_x") {
			continue
		}
		r.rated[id] = true
		fields := strings.Fields(f.Finding)
		if len(fields) < 5 {
			continue
		}
		c := cipher{name: fields[1], kx: fields[2]}
		rest := fields[3:]
		if n, err := strconv.Atoi(rest[0]); err == nil {
			c.kxBits, rest = n, rest[1:]
		}
		if len(rest) >= 2 {
			c.bits, _ = strconv.Atoi(rest[1])
		}
		out = append(out, c)
	}
	return out
}

// cipherScore is the average of the strongest and weakest cipher's score.
func (r *rating) cipherScore() int {
	cs := r.ciphers()
	if len(cs) == 0 {
		r.notes = append(r.notes, "cipher strength: no cipher list (run testssl.sh with its cipher tests)")
		return 0
	}
	best, worst := 0, 100
	lo, hi := 1<<20, 0
	for _, c := range cs {
		s := 100
		switch {
		case c.bits == 0:
			s = 0
		case c.bits < 128:
			s = 20
		case c.bits < 256:
			s = 80
		}
		best, worst = max(best, s), min(worst, s)
		lo, hi = min(lo, c.bits), max(hi, c.bits)
	}
	score := (best + worst) / 2
	r.notes = append(r.notes, fmt.Sprintf("cipher strength %d to %d bits over %d suites: %d", lo, hi, len(cs), score))
	return score
}

func (r *rating) certificateCaps() {
	if f, ok := r.get("cert_chain_of_trust"); ok && bad(f) {
		r.capAt("T", "certificate not trusted: "+f.Finding)
	}
	if f, ok := r.get("cert_trust"); ok && bad(f) {
		r.capAt("M", "certificate does not match the name: "+f.Finding)
	}
	// Only an expired certificate is rated; "expires < 30 days" is listed.
	if f, ok := r.byID["cert_expirationStatus"]; ok && strings.Contains(f.Finding, "expired") {
		r.rated[f.ID] = true
		r.capAt("T", "certificate expired")
	}
	if f, ok := r.get("cert_signatureAlgorithm"); ok {
		switch {
		case strings.Contains(f.Finding, "MD5"):
			r.capAt("F", "certificate signed with MD5")
		case strings.Contains(f.Finding, "SHA1"):
			r.capAt("T", "certificate signed with SHA-1")
		}
	}
}

func (r *rating) cipherCaps() {
	for id, why := range map[string]string{"cipherlist_NULL": "NULL ciphers", "cipherlist_aNULL": "anonymous ciphers", "cipherlist_EXPORT": "export ciphers"} {
		if r.offered(id) {
			r.capAt("F", why+" offered")
		}
	}
	if r.offered("cipherlist_LOW") {
		r.capAt("C", "64-bit, DES or RC4 ciphers offered")
	}
	if r.offered("cipherlist_3DES_IDEA") {
		r.capAt("C", "3DES or IDEA ciphers offered")
	}
	if _, ok := r.byID["PFS"]; ok && !r.offered("PFS") {
		r.capAt("B", "no forward secrecy")
	}
	if _, ok := r.byID["cipherlist_STRONG"]; ok && !r.offered("cipherlist_STRONG") {
		r.capAt("B", "no AEAD cipher offered")
	}
	r.get("cipherlist_AVERAGE") // CBC suites: no cap in the guide
}

func (r *rating) vulnerabilityCaps() {
	caps := map[string]string{
		"heartbleed": "F", "CCS": "F", "ticketbleed": "F", "ROBOT": "F", "DROWN": "F", "FREAK": "F", "LOGJAM": "F",
		"POODLE_SSL": "C", "SWEET32": "C", "CRIME_TLS": "C", "RC4": "C",
		"secure_renego": "C", "secure_client_renego": "C",
	}
	for id, g := range caps {
		if f, ok := r.get(id); ok && bad(f) {
			r.capAt(g, id+": "+f.Finding)
		}
	}
	for _, id := range []string{"BREACH", "BEAST", "LUCKY13", "LOGJAM-common_primes", "DROWN_hint"} {
		r.get(id) // reported by testssl.sh, not rated by the guide
	}
	if f, ok := r.get("fallback_SCSV"); ok && bad(f) {
		r.warnings = append(r.warnings, "no TLS_FALLBACK_SCSV: "+f.Finding)
	}
}

func scoreLetter(s float64) string {
	switch {
	case s >= 80:
		return "A"
	case s >= 65:
		return "B"
	case s >= 50:
		return "C"
	case s >= 35:
		return "D"
	case s >= 20:
		return "E"
	}
	return "F"
}
