package certs

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/caddyserver/certmagic"
)

// The development CA: a CA made on first use, kept in a directory, that
// issues certificates for a site's hostnames with no outside service, so
// `cdn up` serves HTTPS that curl --cacert and browsers (once told to
// trust it) accept. Never for production: anyone with the directory can
// mint certificates the machines that trust it believe.

const (
	// CAKeyFile holds the CA's key and, after it, its certificate: one
	// file, so two processes creating the CA at once agree on one.
	CAKeyFile = "ca.key"
	// CACertFile is the CA certificate alone, to hand to clients.
	CACertFile = "ca.pem"

	devCALifetime   = 10 * 365 * 24 * time.Hour
	devLeafLifetime = 30 * 24 * time.Hour
)

// DevCA issues certificates from the development CA.
type DevCA struct {
	cert *x509.Certificate
	key  crypto.Signer
	pem  []byte // the CA certificate, PEM
}

var _ certmagic.Issuer = (*DevCA)(nil)

// OpenDevCA loads the CA in dir, creating it (and dir) if there is none.
// Processes opening the same dir at once end up with the same CA.
func OpenDevCA(dir string) (*DevCA, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("dev CA: %w", err)
	}
	keyPath := filepath.Join(dir, CAKeyFile)
	b, err := os.ReadFile(keyPath)
	if errors.Is(err, os.ErrNotExist) {
		if err := createDevCA(dir); err != nil {
			return nil, fmt.Errorf("dev CA: create in %s: %w", dir, err)
		}
		b, err = os.ReadFile(keyPath)
	}
	if err != nil {
		return nil, fmt.Errorf("dev CA: %w", err)
	}
	ca, err := parseDevCA(b)
	if err != nil {
		return nil, fmt.Errorf("dev CA: %s: %w", keyPath, err)
	}
	// ca.pem is derived from ca.key, so rewriting it is always safe.
	if err := writeFileAtomic(filepath.Join(dir, CACertFile), ca.pem, 0o644); err != nil {
		return nil, fmt.Errorf("dev CA: %w", err)
	}
	return ca, nil
}

// createDevCA writes a new CA to dir/ca.key unless one appears first: the
// file is linked into place, which fails if it exists.
func createDevCA(dir string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := randomSerial()
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "cdn development CA " + serial.Text(16)[:8], Organization: []string{"selfcdn development"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(devCALifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	body := append(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	tmp, err := writeTemp(dir, ".ca-*.key", body, 0o600)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, filepath.Join(dir, CAKeyFile)); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	return nil
}

func parseDevCA(b []byte) (*DevCA, error) {
	ca := &DevCA{}
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		switch block.Type {
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
			if err != nil {
				return nil, err
			}
			signer, ok := k.(crypto.Signer)
			if !ok {
				return nil, errors.New("the key cannot sign")
			}
			ca.key = signer
		case "CERTIFICATE":
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, err
			}
			ca.cert = c
			ca.pem = pem.EncodeToMemory(block)
		}
	}
	if ca.key == nil || ca.cert == nil || !ca.cert.IsCA {
		return nil, errors.New("want a private key and a CA certificate")
	}
	return ca, nil
}

// CertPEM is the CA certificate, for clients to trust.
func (ca *DevCA) CertPEM() []byte { return ca.pem }

// Pool is a pool holding only the CA, for tests and tools.
func (ca *DevCA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// IssuerKey names the CA, so certmagic keeps its certificates apart from
// ACME ones for the same names.
func (ca *DevCA) IssuerKey() string { return "cdn-dev-ca-" + ca.cert.SerialNumber.Text(16) }

// Issue signs csr's names for devLeafLifetime; certmagic renews them
// when a third of that is left.
func (ca *DevCA) Issue(_ context.Context, csr *x509.CertificateRequest) (*certmagic.IssuedCertificate, error) {
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("dev CA: CSR signature: %w", err)
	}
	if len(csr.DNSNames) == 0 && len(csr.IPAddresses) == 0 {
		return nil, errors.New("dev CA: the CSR names no host")
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: firstName(csr)},
		DNSNames:     csr.DNSNames,
		IPAddresses:  csr.IPAddresses,
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(devLeafLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, csr.PublicKey, ca.key)
	if err != nil {
		return nil, fmt.Errorf("dev CA: sign: %w", err)
	}
	chain := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), ca.pem...)
	return &certmagic.IssuedCertificate{Certificate: chain}, nil
}

// IssueFiles mints a key and a certificate for names, PEM-encoded (the
// chain, then the key), as an operator's files would hold them.
func (ca *DevCA) IssueFiles(names ...string) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.CertificateRequest{}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, nil, err
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, nil, err
	}
	issued, err := ca.Issue(context.Background(), csr)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return issued.Certificate, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

func firstName(csr *x509.CertificateRequest) string {
	if len(csr.DNSNames) > 0 {
		return csr.DNSNames[0]
	}
	return csr.IPAddresses[0].String()
}

func randomSerial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

// writeFileAtomic replaces path with b, whole or not at all.
func writeFileAtomic(path string, b []byte, perm os.FileMode) error {
	tmp, err := writeTemp(filepath.Dir(path), "."+filepath.Base(path)+"-*", b, perm)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	return os.Rename(tmp, path)
}

// writeTemp writes b, synced, to a new file in dir and returns its path.
func writeTemp(dir, pattern string, b []byte, perm os.FileMode) (string, error) {
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return "", err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}
