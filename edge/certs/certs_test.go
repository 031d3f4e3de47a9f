package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/selfcdn/cdn/internal/syncbuf"
)

func TestHostTableLookup(t *testing.T) {
	table := newHostTable([]Site{
		{Name: "www", Hosts: []string{"www.example.com", "*.img.example.com"}, Mode: ACME},
		{Name: "dev", Hosts: []string{"dev.test", "*"}, Mode: Dev},
		{Name: "plain", Hosts: []string{"plain.test"}},
	})
	for _, tt := range []struct {
		name string
		mode Mode
		ok   bool
	}{
		{"www.example.com", ACME, true},
		{"a.img.example.com", acmeOnDemand, true}, // obtained in the handshake
		{"a.b.img.example.com", None, false},      // a wildcard covers one label
		{"img.example.com", None, false},
		{"example.com", None, false},
		{"dev.test", Dev, true},
		{"anything.else", None, false}, // "*" never covers a name asked for
		{"127.0.0.2", Dev, true},       // ...only a handshake without SNI
		{"plain.test", None, true},
		{"", None, false},
	} {
		mode, ok := table.route(tt.name)
		if mode != tt.mode || ok != tt.ok {
			t.Errorf("route(%q) = %q, %v; want %q, %v", tt.name, mode, ok, tt.mode, tt.ok)
		}
	}
}

// TestDevCAOpenedOnceByRacers opens one CA directory from many goroutines
// at once (as edges starting together do): all end up with the same CA.
func TestDevCAOpenedOnceByRacers(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	var wg sync.WaitGroup
	cas := make([]*DevCA, 8)
	for i := range cas {
		wg.Go(func() {
			ca, err := OpenDevCA(dir)
			if err != nil {
				t.Error(err)
				return
			}
			cas[i] = ca
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for _, ca := range cas[1:] {
		if !ca.cert.Equal(cas[0].cert) {
			t.Fatal("two processes opening one directory got different CAs")
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, CACertFile))
	if err != nil || string(b) != string(cas[0].CertPEM()) {
		t.Errorf("ca.pem does not hold the CA: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, CAKeyFile), []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenDevCA(dir); err == nil {
		t.Error("a damaged ca.key was accepted")
	}
}

// serve runs a TLS listener with m's config and returns its address.
func serve(t *testing.T, m *Manager) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", m.TLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				c.(*tls.Conn).Handshake()
				c.Close()
			}()
		}
	}()
	return ln.Addr().String()
}

func handshake(addr, name string, roots *x509.CertPool) (*x509.Certificate, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{ServerName: name, RootCAs: roots})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0], nil
}

// TestFilesReloaded serves a site from certificate files, swaps the files,
// and sees the new certificate within the check period; a broken pair
// keeps the one before.
func TestFilesReloaded(t *testing.T) {
	dir := t.TempDir()
	ca, err := OpenDevCA(filepath.Join(dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "site.crt"), filepath.Join(dir, "site.key")
	write := func(c, k []byte) {
		t.Helper()
		// As an operator's tooling does: new files renamed into place.
		for path, b := range map[string][]byte{certFile: c, keyFile: k} {
			if err := os.WriteFile(path+".new", b, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(path+".new", path); err != nil {
				t.Fatal(err)
			}
		}
	}
	c1, k1, err := ca.IssueFiles("files.test")
	if err != nil {
		t.Fatal(err)
	}
	write(c1, k1)
	var logs syncbuf.Buffer
	m, err := New(Config{Storage: filepath.Join(dir, "storage"), FileCheck: 20 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.Update([]Site{{Name: "f", Hosts: []string{"files.test"}, Mode: Files, CertFile: certFile, KeyFile: keyFile}}); err != nil {
		t.Fatal(err)
	}
	defer runManager(t, m)()
	addr := serve(t, m)
	first, err := handshake(addr, "files.test", ca.Pool())
	if err != nil {
		t.Fatal(err)
	}

	c2, k2, err := ca.IssueFiles("files.test")
	if err != nil {
		t.Fatal(err)
	}
	write(c2, k2)
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, err := handshake(addr, "files.test", ca.Pool())
		if err == nil && got.SerialNumber.Cmp(first.SerialNumber) != 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("new certificate files not served within 5s (err %v)", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	second, _ := handshake(addr, "files.test", ca.Pool())

	write([]byte("garbage"), k2) // a broken pair: the loaded one stays
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(logs.String(), "not reloaded"); {
		if time.Now().After(deadline) {
			t.Fatalf("the broken files were not tried within 5s; log:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	got, err := handshake(addr, "files.test", ca.Pool())
	if err != nil || got.SerialNumber.Cmp(second.SerialNumber) != 0 {
		t.Errorf("after broken files: %v, want the certificate loaded before", err)
	}
}

// runManager runs m's background work (renewals, file checks) until the
// stop it returns is called, or the test ends; stop waits for Run to
// return. Call it before m.Close.
func runManager(t *testing.T, m *Manager) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Run(ctx)
	}()
	stop = sync.OnceFunc(func() {
		cancel()
		<-done
	})
	t.Cleanup(stop)
	return stop
}
