package certstore

import (
	"context"
	"errors"
	"io/fs"
	"slices"
	"testing"
	"time"

	"github.com/selfcdn/cdn/internal/natstest"
)

func newStorage(t *testing.T, owner string, url string) *Storage {
	t.Helper()
	s, err := New(t.Context(), natstest.Connect(t, url), owner, 1)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestKeyEncoding(t *testing.T) {
	for _, k := range []string{"certificates/acme-v02.api.letsencrypt.org-directory/www.example.com/www.example.com.crt",
		"accounts/ca/ops@example.com/ops.json", "a=b", "locks/*.example.com", "trailing.", "..", ".hidden", "ünï"} {
		enc := encodeKey(k)
		if dec, ok := decodeKey(enc); !ok || dec != k {
			t.Errorf("decode(encode(%q)) = %q, %v", k, dec, ok)
		}
	}
}

// TestStorage checks the certmagic.Storage contract: files, implicit
// directories, listing, stat, delete of a directory, fs.ErrNotExist.
func TestStorage(t *testing.T) {
	srv := natstest.Start(t, "", "")
	s := newStorage(t, "edge-a", srv.URL)
	ctx := t.Context()
	files := map[string]string{
		"certificates/ca/www.example.com/www.example.com.crt": "CERT",
		"certificates/ca/www.example.com/www.example.com.key": "KEY",
		"accounts/ca/ops@example.com/ops.json":                "ACCOUNT",
	}
	for k, v := range files {
		if err := s.Store(ctx, k, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	for k, v := range files {
		if got, err := s.Load(ctx, k); err != nil || string(got) != v {
			t.Errorf("Load(%s) = %q, %v", k, got, err)
		}
	}
	if _, err := s.Load(ctx, "certificates/none"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load of a missing key = %v, want fs.ErrNotExist", err)
	}
	if !s.Exists(ctx, "certificates/ca") || s.Exists(ctx, "certificates/c") {
		t.Error("Exists: directory not found, or a partial component matched")
	}
	got, err := s.List(ctx, "certificates", false)
	if err != nil || !slices.Equal(got, []string{"certificates/ca"}) {
		t.Errorf("List(certificates, false) = %v, %v", got, err)
	}
	got, _ = s.List(ctx, "certificates/ca", true)
	want := []string{"certificates/ca/www.example.com", "certificates/ca/www.example.com/www.example.com.crt", "certificates/ca/www.example.com/www.example.com.key"}
	if !slices.Equal(got, want) {
		t.Errorf("List(certificates/ca, true) = %v, want %v", got, want)
	}
	info, err := s.Stat(ctx, "certificates/ca/www.example.com/www.example.com.crt")
	if err != nil || !info.IsTerminal || info.Size != 4 || time.Since(info.Modified) > time.Minute {
		t.Errorf("Stat(file) = %+v, %v", info, err)
	}
	if info, err := s.Stat(ctx, "certificates/ca"); err != nil || info.IsTerminal {
		t.Errorf("Stat(dir) = %+v, %v; want a directory", info, err)
	}
	if err := s.Delete(ctx, "certificates"); err != nil {
		t.Fatal(err)
	}
	if s.Exists(ctx, "certificates/ca/www.example.com/www.example.com.crt") {
		t.Error("Delete of a directory left a file under it")
	}
	if !s.Exists(ctx, "accounts/ca/ops@example.com/ops.json") {
		t.Error("Delete of one directory removed another")
	}
}

// TestLock: a second holder waits until the first unlocks; a lock whose
// holder vanished is taken over after it expires.
func TestLock(t *testing.T) {
	srv := natstest.Start(t, "", "")
	a, b := newStorage(t, "edge-a", srv.URL), newStorage(t, "edge-b", srv.URL)
	ctx := t.Context()
	if err := a.Lock(ctx, "issue_cert_www.example.com"); err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() { got <- b.Lock(ctx, "issue_cert_www.example.com") }()
	select {
	case err := <-got:
		t.Fatalf("second Lock returned %v while the first holds it", err)
	case <-time.After(600 * time.Millisecond):
	}
	if err := b.Unlock(ctx, "issue_cert_www.example.com"); err == nil {
		t.Error("a non-holder unlocked the lock")
	}
	if err := a.Unlock(ctx, "issue_cert_www.example.com"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("second Lock still waiting after Unlock")
	}
	// b holds it and "dies"; with a short TTL, a takes it over.
	a.lockTTL, b.lockTTL = 200*time.Millisecond, 200*time.Millisecond
	b.Unlock(ctx, "issue_cert_www.example.com")
	b.Lock(ctx, "x")
	tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := a.Lock(tctx, "x"); err != nil {
		t.Errorf("taking over an expired lock: %v", err)
	}
}
