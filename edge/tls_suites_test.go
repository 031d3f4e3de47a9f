package edge

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/selfcdn/cdn/edge/certs"
)

// The edge's TLS listener offers Mozilla's "intermediate" profile (see
// edge/certs/profile.go): TLS 1.2 with ECDHE and AEAD suites only, and TLS
// 1.3; the groups X25519, P-256 and P-384 (and the X25519MLKEM768 hybrid
// on TLS 1.3). These tests probe it as testssl.sh does, one handshake per
// suite, group and version, with crypto/tls clients.

// tlsProbe runs one handshake with tc against addr and reports what was
// negotiated, or the handshake's error.
func tlsProbe(addr string, tc *tls.Config) (tls.ConnectionState, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, tc)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	return c.ConnectionState(), nil
}

// allTLS12Suites are every TLS 1.2 suite crypto/tls implements, the
// insecure ones included: the candidates a scanner offers one at a time.
func allTLS12Suites() []*tls.CipherSuite {
	var out []*tls.CipherSuite
	for _, s := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		if slices.Contains(s.SupportedVersions, tls.VersionTLS12) {
			out = append(out, s)
		}
	}
	return out
}

// writeRSALeaf writes a self-signed RSA certificate for name, so the RSA
// half of the profile can be probed (the dev CA issues ECDSA).
func writeRSALeaf(t *testing.T, name, certFile, keyFile string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
}

// startProfileEdge runs a TLS edge with an ECDSA site (dev CA) and an RSA
// site (certificate files).
func startProfileEdge(t *testing.T) *tlsEdge {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "rsa.crt"), filepath.Join(dir, "rsa.key")
	writeRSALeaf(t, "rsa.test", certFile, keyFile)
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	return startTLSEdge(t, o.URL, func(c *Config) {
		c.TLS.HTTP3 = false
		c.Sites = append(c.Sites, SiteConfig{Name: "rsa", Hosts: []string{"rsa.test"}, Origin: o.URL, TLS: certs.Files, CertFile: certFile, KeyFile: keyFile})
	})
}

// TestTLSOffersIntermediateSuites offers the edge every TLS 1.2 suite Go
// knows, one per handshake, for an ECDSA and an RSA certificate: exactly
// the profile's ECDHE AEAD suites are accepted; every CBC, RC4, 3DES and
// static-RSA suite is refused.
func TestTLSOffersIntermediateSuites(t *testing.T) {
	e := startProfileEdge(t)
	tests := []struct {
		name, host string
		want       []uint16
	}{
		{name: "ecdsa", host: "www.example.test", want: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
		}},
		{name: "rsa", host: "rsa.test", want: []uint16{
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []uint16
			for _, s := range allTLS12Suites() {
				st, err := tlsProbe(e.httpsAddr, &tls.Config{
					ServerName: tt.host, InsecureSkipVerify: true,
					MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12,
					CipherSuites: []uint16{s.ID},
				})
				if err == nil {
					if st.CipherSuite != s.ID {
						t.Errorf("offered only %s, negotiated %s", s.Name, tls.CipherSuiteName(st.CipherSuite))
					}
					got = append(got, s.ID)
				}
			}
			slices.Sort(got)
			want := slices.Sorted(slices.Values(tt.want))
			if !slices.Equal(got, want) {
				t.Errorf("TLS 1.2 suites accepted for %s = %v, want %v", tt.host, suiteNames(got), suiteNames(want))
			}
		})
	}
}

func suiteNames(ids []uint16) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = tls.CipherSuiteName(id)
	}
	return out
}

// TestTLSRefusesCBCClient is the LUCKY13 case testssl.sh reported: a
// client that offers only the ECDHE CBC suites Go enables by default gets
// no connection, while a default client connects with an AEAD suite and a
// verified certificate, over TLS 1.2 and TLS 1.3.
func TestTLSRefusesCBCClient(t *testing.T) {
	e := startProfileEdge(t)
	cbc := []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
		tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256,
	}
	tests := []struct {
		name     string
		tc       *tls.Config
		wantOK   bool
		wantVers uint16
	}{
		{name: "cbc only", tc: &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: cbc}},
		{name: "tls 1.1", tc: &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}},
		{name: "tls 1.0", tc: &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS10}},
		{name: "default tls 1.2", tc: &tls.Config{MaxVersion: tls.VersionTLS12}, wantOK: true, wantVers: tls.VersionTLS12},
		{name: "default tls 1.3", tc: &tls.Config{}, wantOK: true, wantVers: tls.VersionTLS13},
		{name: "cbc offered first", tc: &tls.Config{MaxVersion: tls.VersionTLS12,
			CipherSuites: append(slices.Clone(cbc), tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)}, wantOK: true, wantVers: tls.VersionTLS12},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc := tt.tc.Clone()
			tc.ServerName, tc.RootCAs = "www.example.test", e.roots
			st, err := tlsProbe(e.httpsAddr, tc)
			if !tt.wantOK {
				if err == nil {
					t.Fatalf("handshake succeeded with %s %s, want refused", tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite))
				}
				return
			}
			if err != nil {
				t.Fatalf("handshake: %v, want a connection", err)
			}
			info := tlsSuiteInfo(st.CipherSuite)
			if st.Version != tt.wantVers || info == nil || slices.Contains(cbc, st.CipherSuite) {
				t.Errorf("negotiated %s %s, want %s with an AEAD suite", tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite), tls.VersionName(tt.wantVers))
			}
		})
	}
}

// tlsSuiteInfo returns the secure suite id, or nil for an insecure one.
func tlsSuiteInfo(id uint16) *tls.CipherSuite {
	for _, s := range tls.CipherSuites() {
		if s.ID == id {
			return s
		}
	}
	return nil
}

// TestTLSOffersIntermediateGroups offers one key exchange group per
// handshake: X25519, P-256 and P-384 work over TLS 1.2 and 1.3, P-521 is
// refused, and the X25519MLKEM768 hybrid is taken over TLS 1.3.
func TestTLSOffersIntermediateGroups(t *testing.T) {
	e := startProfileEdge(t)
	tests := []struct {
		name    string
		group   tls.CurveID
		version uint16
		wantOK  bool
	}{
		{name: "x25519 tls12", group: tls.X25519, version: tls.VersionTLS12, wantOK: true},
		{name: "p256 tls12", group: tls.CurveP256, version: tls.VersionTLS12, wantOK: true},
		{name: "p384 tls12", group: tls.CurveP384, version: tls.VersionTLS12, wantOK: true},
		{name: "p521 tls12", group: tls.CurveP521, version: tls.VersionTLS12},
		{name: "x25519 tls13", group: tls.X25519, version: tls.VersionTLS13, wantOK: true},
		{name: "p256 tls13", group: tls.CurveP256, version: tls.VersionTLS13, wantOK: true},
		{name: "p384 tls13", group: tls.CurveP384, version: tls.VersionTLS13, wantOK: true},
		{name: "p521 tls13", group: tls.CurveP521, version: tls.VersionTLS13},
		{name: "x25519mlkem768 tls13", group: tls.X25519MLKEM768, version: tls.VersionTLS13, wantOK: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := tlsProbe(e.httpsAddr, &tls.Config{
				ServerName: "www.example.test", RootCAs: e.roots,
				MinVersion: tt.version, MaxVersion: tt.version,
				CurvePreferences: []tls.CurveID{tt.group},
			})
			switch {
			case tt.wantOK && err != nil:
				t.Errorf("handshake with only %v: %v, want a connection", tt.group, err)
			case tt.wantOK && st.CurveID != tt.group:
				t.Errorf("offered only %v, negotiated %v", tt.group, st.CurveID)
			case !tt.wantOK && err == nil:
				t.Errorf("handshake with only %v succeeded (%v), want refused", tt.group, st.CurveID)
			}
		})
	}
}
