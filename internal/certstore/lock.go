package certstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrLockLost is returned when this process held a lock and another one
// holds it now (ours expired while we were cut off, or was deleted): a
// fenced write is refused, and a lease cannot be renewed.
var ErrLockLost = errors.New("certstore: lock lost")

// certLockPrefix starts certmagic's lock for obtaining or renewing one
// name's certificate (certmagic's certIssueLockOp + "_" + name), which
// guards the files under certificates/<issuer>/<name>/.
const certLockPrefix = "issue_cert_"

// heldLock is a lock this process holds.
type heldLock struct {
	name, key string
	// domain is the storage component of the certificate it guards, ""
	// for other locks.
	domain string
	stop   chan struct{} // closed to end the keepalive
	done   chan struct{} // closed when the keepalive returned

	// mu protects what follows, and serializes renewals with fenced
	// writes, so a write's fence is the revision it just renewed.
	mu sync.Mutex
	// rev is the revision of our last write of the lock key: the
	// fencing token.
	rev uint64
	// renewed is when rev was written (compared only with time.Now of
	// this process, so other clocks do not matter).
	renewed time.Time
	// lost says why the lock is not ours any more; nil while it is.
	lost error
}

// lockValue is what a lock key holds, for an operator reading it; the
// lock's identity is its revision.
type lockValue struct {
	Owner string    `json:"owner"`
	Since time.Time `json:"since"`
}

func lockKey(name string) string { return "l/" + strings.TrimPrefix(encodeKey(name), dataPrefix) }

// fenceFor returns the held lock that guards writes of key, if any:
// keys of the form certificates/<issuer>/<name>/<file>.
func (s *Storage) fenceFor(key string) *heldLock {
	parts := strings.Split(key, "/")
	if len(parts) < 4 || parts[0] != "certificates" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fences[parts[2]]
}

func (s *Storage) lockValue() []byte {
	b, _ := json.Marshal(lockValue{Owner: s.owner, Since: time.Now().UTC()})
	return b
}

// Lock takes the named lock, waiting while another process holds it. A
// holder that died loses the lock when its key's TTL runs out on the
// server; waiting retries the create until then.
func (s *Storage) Lock(ctx context.Context, name string) error {
	for {
		ok, err := s.TryLock(ctx, name)
		if ok || err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("certstore: lock %s: %w", name, ctx.Err())
		case <-time.After(s.poll):
		}
	}
}

// TryLock takes the named lock if no process holds it.
func (s *Storage) TryLock(ctx context.Context, name string) (bool, error) {
	b, err := s.bucket()
	if err != nil {
		return false, err
	}
	key := lockKey(name)
	rev, err := b.kv.Create(ctx, key, s.lockValue(), jetstream.KeyTTL(s.lockTTL))
	if errors.Is(err, jetstream.ErrKeyExists) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("certstore: lock %s: %w", name, err)
	}
	hl := &heldLock{name: name, key: key, rev: rev, renewed: time.Now(), stop: make(chan struct{}), done: make(chan struct{})}
	if d, ok := strings.CutPrefix(name, certLockPrefix); ok {
		hl.domain = certmagic.StorageKeys.Safe(d)
	}
	s.mu.Lock()
	s.held[name] = hl
	if hl.domain != "" {
		s.fences[hl.domain] = hl
	}
	s.mu.Unlock()
	s.renewers.Go(func() { s.keepalive(hl) })
	return true, nil
}

// keepalive renews hl every third of the TTL until it is released, or
// lost: another process took it, or no renewal got through for a whole
// TTL (the server deleted the key by then).
func (s *Storage) keepalive(hl *heldLock) {
	defer close(hl.done)
	t := time.NewTicker(s.lockTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-hl.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.lockTTL/3)
		err := s.renew(ctx, hl)
		cancel()
		if errors.Is(err, ErrLockLost) {
			s.log.Warn("certificate lock lost", "lock", hl.name, "err", err)
			return
		}
		if err != nil {
			hl.mu.Lock()
			if time.Since(hl.renewed) >= s.lockTTL {
				hl.lost = fmt.Errorf("%w: %s not renewed for %s (%v)", ErrLockLost, hl.name, s.lockTTL, err)
				s.log.Warn("certificate lock lost", "lock", hl.name, "err", hl.lost)
			}
			lost := hl.lost
			hl.mu.Unlock()
			if lost != nil {
				return
			}
		}
	}
}

// renew extends hl's TTL by compare-and-swap on its revision.
func (s *Storage) renew(ctx context.Context, hl *heldLock) error {
	hl.mu.Lock()
	defer hl.mu.Unlock()
	return s.renewLocked(ctx, hl)
}

// renewLocked is renew with hl.mu held.
func (s *Storage) renewLocked(ctx context.Context, hl *heldLock) error {
	if hl.lost != nil {
		return hl.lost
	}
	b, err := s.bucket()
	if err != nil {
		return err
	}
	// A renewal that takes half the TTL is as good as lost: do not let
	// a caller without a deadline wait on a cut link.
	ctx, cancel := context.WithTimeout(ctx, s.lockTTL/2)
	defer cancel()
	msg := &nats.Msg{Subject: "$KV." + Bucket + "." + hl.key, Data: s.lockValue()}
	ack, err := b.js.PublishMsg(ctx, msg, jetstream.WithExpectLastSequencePerSubject(hl.rev), jetstream.WithMsgTTL(s.lockTTL))
	if wrongRevision(err) {
		hl.lost = fmt.Errorf("%w: %s is not at revision %d any more", ErrLockLost, hl.name, hl.rev)
		return hl.lost
	}
	if err != nil {
		return fmt.Errorf("certstore: renew lock %s: %w", hl.name, err)
	}
	hl.rev, hl.renewed = ack.Sequence, time.Now()
	return nil
}

// wrongRevision reports whether err is a failed compare-and-swap.
func wrongRevision(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// storeFenced writes a certificate's file under hl: it renews the lock
// first (proving it is still ours, and taking the new revision as the
// fence), then writes only over a file whose fence is not newer.
func (s *Storage) storeFenced(ctx context.Context, b *bucket, hl *heldLock, key string, value []byte) error {
	hl.mu.Lock()
	defer hl.mu.Unlock()
	if err := s.renewLocked(ctx, hl); err != nil {
		return fmt.Errorf("certstore: store %s: %w", key, err)
	}
	fence := hl.rev
	for range 5 {
		cur, rev, err := s.load(ctx, b, key)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if cur.Fence > fence {
			return fmt.Errorf("certstore: store %s: %w: a later holder wrote it (fence %d, ours %d)", key, ErrLockLost, cur.Fence, fence)
		}
		v, err := json.Marshal(entry{Value: value, Modified: time.Now(), Fence: fence})
		if err != nil {
			return err
		}
		if rev == 0 {
			_, err = b.kv.Create(ctx, encodeKey(key), v)
		} else {
			_, err = b.kv.Update(ctx, encodeKey(key), v, rev)
		}
		if err == nil {
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return fmt.Errorf("certstore: store %s: %w", key, err)
		}
		// Written between our read and our write: read the fence again.
	}
	return fmt.Errorf("certstore: store %s: written by others on every try", key)
}

// RenewLockLease makes sure this process holds the lock now, before
// certmagic starts (or retries) an ACME order under it. The lease
// length is ignored: the keepalive holds the lock while we live. If the
// lock was lost, it waits to take it again; certmagic then checks the
// storage and finds the certificate the other holder stored.
func (s *Storage) RenewLockLease(ctx context.Context, name string, _ time.Duration) error {
	s.mu.Lock()
	hl := s.held[name]
	s.mu.Unlock()
	if hl == nil {
		return fmt.Errorf("certstore: renew lock %s: not held by this process", name)
	}
	err := s.renew(ctx, hl)
	if !errors.Is(err, ErrLockLost) {
		return err
	}
	s.log.Info("certificate lock lost; waiting to take it again", "lock", name, "err", err)
	s.release(hl)
	return s.Lock(ctx, name)
}

// ConfirmLock proves this process holds the named lock now, renewing
// it; an error if it was lost or NATS cannot be reached. An edge calls
// it right before placing an ACME order under the lock.
func (s *Storage) ConfirmLock(ctx context.Context, name string) error {
	s.mu.Lock()
	hl := s.held[name]
	s.mu.Unlock()
	if hl == nil {
		return fmt.Errorf("certstore: confirm lock %s: not held by this process", name)
	}
	return s.renew(ctx, hl)
}

// release forgets hl and stops its keepalive.
func (s *Storage) release(hl *heldLock) {
	s.mu.Lock()
	if s.held[hl.name] != hl {
		s.mu.Unlock()
		return // released already
	}
	delete(s.held, hl.name)
	if hl.domain != "" && s.fences[hl.domain] == hl {
		delete(s.fences, hl.domain)
	}
	s.mu.Unlock()
	close(hl.stop)
	<-hl.done
}

// Unlock releases a lock this process holds. A lock lost meanwhile is
// another process's now and is left alone.
func (s *Storage) Unlock(ctx context.Context, name string) error {
	s.mu.Lock()
	hl := s.held[name]
	s.mu.Unlock()
	if hl == nil {
		return fmt.Errorf("certstore: unlock %s: not held by this process", name)
	}
	s.release(hl)
	hl.mu.Lock()
	lost, rev := hl.lost, hl.rev
	hl.mu.Unlock()
	if lost != nil {
		return nil
	}
	b, err := s.bucket()
	if err != nil {
		return err
	}
	err = b.kv.Delete(ctx, hl.key, jetstream.LastRevision(rev))
	if err != nil && !wrongRevision(err) && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("certstore: unlock %s: %w", name, err)
	}
	return nil
}

// Close releases every lock still held (best effort, within ctx) and
// waits for their keepalives.
func (s *Storage) Close(ctx context.Context) {
	s.mu.Lock()
	var names []string
	for name := range s.held {
		names = append(names, name)
	}
	s.mu.Unlock()
	for _, name := range names {
		if err := s.Unlock(ctx, name); err != nil {
			s.log.Warn("certificate lock not released; it expires by itself", "lock", name, "err", err)
		}
	}
	s.renewers.Wait()
}
