package control

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/selfcdn/cdn/control/api"
	"github.com/selfcdn/cdn/internal/natsauth"
	"github.com/selfcdn/cdn/internal/natslink"
)

// AuthDir is where control keeps the NATS authority (seeds, 0600) and the
// creds files it minted for itself and local tools, under DataDir.
const AuthDir = "nats-auth"

// The creds files control mints once into AuthDir: its own, the
// operator's (for the `nats` CLI) and the system user's (revocations).
const (
	ControlCredsFile  = "control.creds"
	OperatorCredsFile = "operator.creds"
	SystemCredsFile   = "system.creds"
)

// OpenAuthority opens (creating on first use) the NATS authority kept in
// dataDir, and makes sure control's own creds files are there.
func OpenAuthority(dataDir string) (*natsauth.Authority, error) {
	dir := filepath.Join(dataDir, AuthDir)
	auth, err := natsauth.Open(dir)
	if err != nil {
		return nil, err
	}
	for file, mint := range map[string]func() ([]byte, error){
		ControlCredsFile:  func() ([]byte, error) { return auth.Creds(natsauth.RoleControl, "", natsauth.CredsOptions{}) },
		OperatorCredsFile: func() ([]byte, error) { return auth.Creds(natsauth.RoleOperator, "", natsauth.CredsOptions{}) },
		SystemCredsFile:   auth.SystemCreds,
	} {
		path := filepath.Join(dir, file)
		if _, err := os.Stat(path); err == nil {
			continue
		}
		creds, err := mint()
		if err != nil {
			return nil, err
		}
		if err := natsauth.WriteCreds(path, creds); err != nil {
			return nil, err
		}
	}
	return auth, nil
}

// hasAuthority reports whether dataDir holds an authority's seeds.
func hasAuthority(dataDir string) bool {
	_, err := os.Stat(filepath.Join(dataDir, AuthDir, "account.nk"))
	return err == nil
}

// edgeCreds mints edges' creds from the authority and sends revocations
// to the servers over a system-account connection, made when first
// needed and kept.
type edgeCreds struct {
	auth *natsauth.Authority
	url  string
	opts []nats.Option
	log  *slog.Logger

	mu  sync.Mutex // guards sys
	sys *nats.Conn
}

var _ api.EdgeCreds = (*edgeCreds)(nil)

func (e *edgeCreds) Creds(name string) ([]byte, error) {
	if err := natsauth.CheckName(natsauth.RoleEdge, name); err != nil {
		return nil, fmt.Errorf("%w: %v", api.ErrBadEdgeName, err)
	}
	return e.auth.Creds(natsauth.RoleEdge, name, natsauth.CredsOptions{})
}

func (e *edgeCreds) Revoke(ctx context.Context, name string) (int, error) {
	token, n, err := e.auth.Revoke(natsauth.RoleEdge, name)
	if err != nil {
		return 0, fmt.Errorf("revoke edge %s: %w", name, err)
	}
	if n == 0 {
		return 0, nil
	}
	sys, err := e.conn()
	if err != nil {
		return 0, fmt.Errorf("revoke edge %s: %w", name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := natsauth.Publish(ctx, sys, token); err != nil {
		return 0, fmt.Errorf("revoke edge %s: %w", name, err)
	}
	return n, nil
}

func (e *edgeCreds) conn() (*nats.Conn, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.sys != nil {
		return e.sys, nil
	}
	if len(e.opts) == 0 {
		return nil, errors.New("no system-account credentials (nats.system_creds) to send revocations with")
	}
	nc, err := nats.Connect(e.url, append([]nats.Option{nats.Name("cdn-control-system"), nats.MaxReconnects(-1)}, e.opts...)...)
	if err != nil {
		return nil, fmt.Errorf("connect as the system user: %w", err)
	}
	e.sys = nc
	return nc, nil
}

func (e *edgeCreds) close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.sys != nil {
		e.sys.Close()
	}
}

// systemLink is how control reaches the servers as the system user.
func systemLink(credsFile, ca string) []nats.Option {
	if credsFile == "" {
		return nil
	}
	return natslink.Config{Creds: credsFile, CA: ca}.Options()
}
