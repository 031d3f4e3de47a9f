// Package authtest runs a throwaway NATS server with JetStream that admits
// only the users of a new natsauth.Authority, and connects to it as a
// role, for tests of who may do what.
package authtest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/selfcdn/cdn/internal/natsauth"
	"github.com/selfcdn/cdn/internal/natsembed"
	"github.com/selfcdn/cdn/internal/natstest"
)

// Start runs a server that admits only the users of a new authority
// (kept in the test's temp dir), returned with it; cfg's Listen, Dir,
// Name and Auth are filled in when empty.
func Start(t testing.TB, cfg natsembed.Config) (*natstest.Server, *natsauth.Authority) {
	t.Helper()
	auth, _ := cfg.Auth.(*natsauth.Authority)
	if auth == nil {
		var err error
		if auth, err = natsauth.Open(filepath.Join(t.TempDir(), "auth")); err != nil {
			t.Fatalf("nats authority: %v", err)
		}
		cfg.Auth = auth
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	if cfg.Name == "" {
		cfg.Name = "test"
	}
	ns, err := natsembed.Start(cfg)
	if err != nil {
		t.Fatalf("start nats: %v", err)
	}
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	return &natstest.Server{Server: ns, URL: ns.ClientURL()}, auth
}

// CredsFile mints creds of role and name from auth into a 0600 file in
// the test's temp dir and returns its path.
func CredsFile(t testing.TB, auth *natsauth.Authority, role natsauth.Role, name string, opts natsauth.CredsOptions) string {
	t.Helper()
	creds, err := auth.Creds(role, name, opts)
	if err != nil {
		t.Fatalf("mint %s creds: %v", role, err)
	}
	path := filepath.Join(t.TempDir(), string(role)+".creds")
	if err := os.WriteFile(path, creds, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Connect opens a connection as a new user of role and name (with its
// own inbox prefix, as the parts use), closed with the test.
func Connect(t testing.TB, url string, auth *natsauth.Authority, role natsauth.Role, name string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	opts = append([]nats.Option{nats.UserCredentials(CredsFile(t, auth, role, name, natsauth.CredsOptions{})),
		nats.CustomInboxPrefix(natsauth.InboxPrefix(role, name))}, opts...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatalf("connect nats as %s %s: %v", role, name, err)
	}
	t.Cleanup(nc.Close)
	return nc
}
