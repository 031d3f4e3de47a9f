package certs

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"time"

	"github.com/caddyserver/certmagic"
)

// mirrored is the shared storage with a copy on the edge's disk, so an
// edge that restarts while NATS is unreachable still serves the
// certificates it had (DESIGN: edges keep serving without the control
// plane). Writes go to the shared storage, then to the copy, and what is
// loaded from the shared storage is copied too (most edges load a
// certificate another one stored); reads fall back to the copy only when
// the shared storage cannot answer (not bound, or NATS unreachable),
// never when it says a key does not exist.
// Locks are the shared storage's alone: without NATS nothing is ordered.
type mirrored struct {
	shared certmagic.Storage
	local  certmagic.Storage
}

var (
	_ certmagic.Storage          = mirrored{}
	_ certmagic.TryLocker        = mirrored{}
	_ certmagic.LockLeaseRenewer = mirrored{}
	_ lockConfirmer              = mirrored{}
)

// unreachable reports whether err means the shared storage could not
// answer, rather than answered "no such key".
func unreachable(err error) bool { return err != nil && !errors.Is(err, fs.ErrNotExist) }

func (m mirrored) Store(ctx context.Context, key string, value []byte) error {
	if err := m.shared.Store(ctx, key, value); err != nil {
		return err
	}
	return m.local.Store(ctx, key, value)
}

func (m mirrored) Load(ctx context.Context, key string) ([]byte, error) {
	b, err := m.shared.Load(ctx, key)
	if err == nil {
		// Best effort: a copy that cannot be written only matters on a
		// restart without NATS.
		if lb, lerr := m.local.Load(ctx, key); lerr != nil || !bytes.Equal(lb, b) {
			m.local.Store(ctx, key, b)
		}
		return b, nil
	}
	if unreachable(err) {
		if lb, lerr := m.local.Load(ctx, key); lerr == nil {
			return lb, nil
		}
	}
	return b, err
}

func (m mirrored) Delete(ctx context.Context, key string) error {
	if err := m.shared.Delete(ctx, key); err != nil {
		return err
	}
	if err := m.local.Delete(ctx, key); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// Exists asks the shared storage; only when it cannot answer (Exists
// has no error to tell) does the copy speak.
func (m mirrored) Exists(ctx context.Context, key string) bool {
	if _, err := m.shared.Stat(ctx, key); !unreachable(err) {
		return err == nil
	}
	return m.local.Exists(ctx, key)
}

func (m mirrored) List(ctx context.Context, path string, recursive bool) ([]string, error) {
	keys, err := m.shared.List(ctx, path, recursive)
	if unreachable(err) {
		if lk, lerr := m.local.List(ctx, path, recursive); lerr == nil {
			return lk, nil
		}
	}
	return keys, err
}

func (m mirrored) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	info, err := m.shared.Stat(ctx, key)
	if unreachable(err) {
		if li, lerr := m.local.Stat(ctx, key); lerr == nil {
			return li, nil
		}
	}
	return info, err
}

func (m mirrored) Lock(ctx context.Context, name string) error   { return m.shared.Lock(ctx, name) }
func (m mirrored) Unlock(ctx context.Context, name string) error { return m.shared.Unlock(ctx, name) }

func (m mirrored) TryLock(ctx context.Context, name string) (bool, error) {
	if tl, ok := m.shared.(certmagic.TryLocker); ok {
		return tl.TryLock(ctx, name)
	}
	return false, errors.New("certs: shared storage cannot try a lock")
}

func (m mirrored) RenewLockLease(ctx context.Context, name string, d time.Duration) error {
	if r, ok := m.shared.(certmagic.LockLeaseRenewer); ok {
		return r.RenewLockLease(ctx, name, d)
	}
	return nil
}

func (m mirrored) ConfirmLock(ctx context.Context, name string) error {
	if c, ok := m.shared.(lockConfirmer); ok {
		return c.ConfirmLock(ctx, name)
	}
	return nil
}

func (m mirrored) String() string { return "mirrored shared storage" }
