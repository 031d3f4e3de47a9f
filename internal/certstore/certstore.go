// Package certstore is a certmagic.Storage over a JetStream KV bucket, so
// every edge of a site shares one certificate, one ACME account and one
// lock while a certificate is obtained, wherever the edges run.
package certstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Bucket is the KV bucket that holds certificates, keys and locks.
const Bucket = "cdn_certs"

// Storage implements certmagic.Storage. Safe for concurrent use, and across
// processes: every method is one or a few KV operations, and Lock is a
// compare-and-set on a lock key.
type Storage struct {
	kv    jetstream.KeyValue
	owner string // this process, written into the locks it holds
	// lockTTL is how long a lock holds if its owner dies without
	// unlocking; longer than an ACME issuance takes.
	lockTTL time.Duration
	poll    time.Duration
}

var _ certmagic.Storage = (*Storage)(nil)

// New opens (or creates) the bucket. owner names this process in locks.
func New(ctx context.Context, nc *nats.Conn, owner string, replicas int) (*Storage, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("certstore: %w", err)
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: Bucket, History: 1, Replicas: max(replicas, 1)})
	if err != nil {
		return nil, fmt.Errorf("certstore: open bucket: %w", err)
	}
	return &Storage{kv: kv, owner: owner, lockTTL: 5 * time.Minute, poll: 250 * time.Millisecond}, nil
}

// KV keys allow [-/_=.a-zA-Z0-9]; certmagic keys hold e-mail addresses
// and more. Other bytes become "=XX" (and "=" itself "=3D"), which keeps
// "/" as the separator, so listing a prefix stays a prefix match.
const dataPrefix = "d/"

func encodeKey(key string) string {
	var b strings.Builder
	b.WriteString(dataPrefix)
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '/':
			b.WriteByte(c)
		case c == '.' && i > 0 && key[i-1] != '.' && key[i-1] != '/' && i+1 < len(key) && key[i+1] != '/':
			b.WriteByte(c) // KV tokens cannot be empty: keep only inner dots
		default:
			fmt.Fprintf(&b, "=%02X", c)
		}
	}
	return b.String()
}

func decodeKey(k string) (string, bool) {
	k, ok := strings.CutPrefix(k, dataPrefix)
	if !ok {
		return "", false
	}
	var b strings.Builder
	for i := 0; i < len(k); i++ {
		if k[i] == '=' && i+2 < len(k) {
			var c byte
			if _, err := fmt.Sscanf(k[i+1:i+3], "%02X", &c); err != nil {
				return "", false
			}
			b.WriteByte(c)
			i += 2
			continue
		}
		b.WriteByte(k[i])
	}
	return b.String(), true
}

// entry is what a key holds: the value and when it was stored.
type entry struct {
	Value    []byte    `json:"v"`
	Modified time.Time `json:"m"`
}

func (s *Storage) Store(ctx context.Context, key string, value []byte) error {
	b, err := json.Marshal(entry{Value: value, Modified: time.Now()})
	if err != nil {
		return err
	}
	if _, err := s.kv.Put(ctx, encodeKey(key), b); err != nil {
		return fmt.Errorf("certstore: store %s: %w", key, err)
	}
	return nil
}

func (s *Storage) load(ctx context.Context, key string) (entry, error) {
	var e entry
	kve, err := s.kv.Get(ctx, encodeKey(key))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return e, fs.ErrNotExist
	}
	if err != nil {
		return e, fmt.Errorf("certstore: load %s: %w", key, err)
	}
	if err := json.Unmarshal(kve.Value(), &e); err != nil {
		return e, fmt.Errorf("certstore: load %s: %w", key, err)
	}
	return e, nil
}

func (s *Storage) Load(ctx context.Context, key string) ([]byte, error) {
	e, err := s.load(ctx, key)
	return e.Value, err
}

// keys lists every stored key under prefix (all keys for "").
func (s *Storage) keys(ctx context.Context, prefix string) ([]string, error) {
	lister, err := s.kv.ListKeys(ctx)
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return nil, nil
		}
		return nil, fmt.Errorf("certstore: list: %w", err)
	}
	var out []string
	for k := range lister.Keys() {
		key, ok := decodeKey(k)
		if ok && (prefix == "" || key == prefix || strings.HasPrefix(key, prefix+"/")) {
			out = append(out, key)
		}
	}
	slices.Sort(out)
	return out, nil
}

func (s *Storage) Delete(ctx context.Context, key string) error {
	keys, err := s.keys(ctx, key)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if err := s.kv.Delete(ctx, encodeKey(k)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("certstore: delete %s: %w", k, err)
		}
	}
	return nil
}

func (s *Storage) Exists(ctx context.Context, key string) bool {
	keys, err := s.keys(ctx, key)
	return err == nil && len(keys) > 0
}

func (s *Storage) List(ctx context.Context, path string, recursive bool) ([]string, error) {
	keys, err := s.keys(ctx, path)
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, fs.ErrNotExist
	}
	seen := map[string]bool{}
	var out []string
	add := func(k string) {
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	base := path
	if base != "" {
		base += "/"
	}
	for _, k := range keys {
		rest := strings.TrimPrefix(k, base)
		if k == path {
			continue
		}
		parts := strings.Split(rest, "/")
		if !recursive {
			add(base + parts[0])
			continue
		}
		for i := range parts { // directories on the way, then the file
			add(base + strings.Join(parts[:i+1], "/"))
		}
	}
	return out, nil
}

func (s *Storage) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	e, err := s.load(ctx, key)
	if err == nil {
		return certmagic.KeyInfo{Key: key, Modified: e.Modified, Size: int64(len(e.Value)), IsTerminal: true}, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return certmagic.KeyInfo{}, err
	}
	if s.Exists(ctx, key) {
		return certmagic.KeyInfo{Key: key, IsTerminal: false}, nil
	}
	return certmagic.KeyInfo{}, fs.ErrNotExist
}

// lock is a lock key's value.
type lock struct {
	Owner   string    `json:"owner"`
	Expires time.Time `json:"expires"`
}

func lockKey(name string) string { return "l/" + strings.TrimPrefix(encodeKey(name), dataPrefix) }

// Lock takes the named lock, waiting while another holder has it. A lock
// whose holder vanished expires after the lock TTL and is taken over.
func (s *Storage) Lock(ctx context.Context, name string) error {
	key := lockKey(name)
	for {
		val, _ := json.Marshal(lock{Owner: s.owner, Expires: time.Now().Add(s.lockTTL)})
		_, err := s.kv.Create(ctx, key, val)
		if err == nil {
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("certstore: lock %s: %w", name, err)
		}
		// Held: take it over only if it expired, and only if nobody else
		// did first (compare-and-set on the revision we read).
		if cur, gerr := s.kv.Get(ctx, key); gerr == nil {
			var l lock
			if json.Unmarshal(cur.Value(), &l) != nil || time.Now().After(l.Expires) {
				if _, err := s.kv.Update(ctx, key, val, cur.Revision()); err == nil {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("certstore: lock %s: %w", name, ctx.Err())
		case <-time.After(s.poll):
		}
	}
}

// Unlock releases a lock this process holds.
func (s *Storage) Unlock(ctx context.Context, name string) error {
	key := lockKey(name)
	cur, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("certstore: unlock %s: %w", name, err)
	}
	var l lock
	if json.Unmarshal(cur.Value(), &l) == nil && l.Owner != s.owner {
		return fmt.Errorf("certstore: unlock %s: held by %s, not %s", name, l.Owner, s.owner)
	}
	if err := s.kv.Delete(ctx, key, jetstream.LastRevision(cur.Revision())); err != nil {
		return fmt.Errorf("certstore: unlock %s: %w", name, err)
	}
	return nil
}
