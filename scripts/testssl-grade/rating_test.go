package main

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// edgeFindings are the findings of testssl.sh 3.0.8 against an edge with
// the intermediate profile, a dev-CA certificate (trusted) and a year of
// HSTS, trimmed to what the rating reads.
var edgeFindings = []finding{
	{"SSLv2", "OK", "not offered"}, {"SSLv3", "OK", "not offered"}, {"TLS1", "INFO", "not offered"},
	{"TLS1_1", "INFO", "not offered"}, {"TLS1_2", "OK", "offered"}, {"TLS1_3", "OK", "offered with final"},
	{"cipherlist_NULL", "OK", "not offered"}, {"cipherlist_aNULL", "OK", "not offered"},
	{"cipherlist_EXPORT", "OK", "not offered"}, {"cipherlist_LOW", "OK", "not offered"},
	{"cipherlist_3DES_IDEA", "INFO", "not offered"}, {"cipherlist_AVERAGE", "INFO", "not offered"},
	{"cipherlist_STRONG", "OK", "offered"}, {"PFS", "OK", "offered"},
	{"cert_keySize", "OK", "EC 256 bits"}, {"cert_signatureAlgorithm", "OK", "ECDSA with SHA256"},
	{"cert_trust", "OK", "Ok via SAN (SNI mandatory)"}, {"cert_chain_of_trust", "OK", "passed."},
	{"cert_expirationStatus", "HIGH", "expires < 30 days (29)"},
	{"HSTS_time", "OK", "365 days (=31536000 seconds) > 15552000 seconds"},
	{"heartbleed", "OK", "not vulnerable"}, {"ROBOT", "OK", "not vulnerable"}, {"fallback_SCSV", "OK", "no protocol below TLS 1.2 offered"},
	{"cipher_x1302", "INFO", "x1302   TLS_AES_256_GCM_SHA384            ECDH 253   AESGCM      256      TLS_AES_256_GCM_SHA384"},
	{"cipher_xc02b", "INFO", "xc02b   ECDHE-ECDSA-AES128-GCM-SHA256     ECDH 253   AESGCM      128      TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"},
}

// with returns edgeFindings with some findings replaced or added.
func with(changes ...finding) []finding {
	out := append([]finding(nil), changes...)
	for _, f := range edgeFindings {
		replaced := false
		for _, c := range changes {
			replaced = replaced || c.ID == f.ID
		}
		if !replaced {
			out = append(out, f)
		}
	}
	return out
}

func TestRate(t *testing.T) {
	tests := []struct {
		name     string
		findings []finding
		want     string
	}{
		{name: "edge", findings: edgeFindings, want: "A+"},
		{name: "short hsts", findings: with(finding{"HSTS_time", "MEDIUM", "30 days is too short"}), want: "A"},
		{name: "no hsts", findings: with(finding{"HSTS_time", "HIGH", "not offered"}), want: "A"},
		{name: "tls 1.0", findings: with(finding{"TLS1", "LOW", "offered (deprecated)"}), want: "B"},
		{name: "sslv3", findings: with(finding{"SSLv3", "HIGH", "offered"}), want: "B"},
		{name: "cbc only lucky13 not rated", findings: with(finding{"LUCKY13", "LOW", "potentially vulnerable"}), want: "A+"},
		{name: "3des", findings: with(finding{"cipherlist_3DES_IDEA", "MEDIUM", "offered"}), want: "C"},
		{name: "untrusted", findings: with(finding{"cert_chain_of_trust", "CRITICAL", "failed (chain incomplete)."}), want: "T"},
		{name: "name mismatch", findings: with(finding{"cert_trust", "HIGH", "certificate does not match supplied URI"}), want: "M"},
		{name: "expired", findings: with(finding{"cert_expirationStatus", "CRITICAL", "expired"}), want: "T"},
		{name: "heartbleed", findings: with(finding{"heartbleed", "CRITICAL", "VULNERABLE"}), want: "F"},
		{name: "no fallback scsv", findings: with(finding{"fallback_SCSV", "MEDIUM", "Downgrade attack prevention NOT supported"}), want: "A-"},
		{name: "rsa 1024", findings: with(finding{"cert_keySize", "MEDIUM", "RSA 1024 bits"}), want: "B"},
		{name: "a 3des suite line alone rates by strength", findings: with(finding{"cipher_x0a", "INFO", "x0a     DES-CBC3-SHA                      RSA        3DES        168      TLS_RSA_WITH_3DES_EDE_CBC_SHA"}), want: "A+"},
		{name: "testssl rated", findings: with(finding{"overall_grade", "OK", "B"}), want: "B"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := rate(tt.findings); got.grade != tt.want {
				t.Errorf("rate() = %s, want %s; notes:\n%s", got.grade, tt.want, strings.Join(got.notes, "\n"))
			}
		})
	}
}

// TestRateFile rates a testssl.sh JSON file given by TESTSSL_JSON, for
// checking the rating against a real scan.
func TestRateFile(t *testing.T) {
	path := os.Getenv("TESTSSL_JSON")
	if path == "" {
		t.Skip("TESTSSL_JSON not set")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var fs []finding
	if err := json.Unmarshal(b, &fs); err != nil {
		t.Fatal(err)
	}
	r := rate(fs)
	t.Logf("grade %s\n%s", r.grade, strings.Join(r.notes, "\n"))
}
