package certstore

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/selfcdn/cdn/internal/state"
)

// Bucket is the KV bucket that holds certificates, keys, ACME accounts
// and locks. Control creates it (CreateBucket); edges bind it.
const Bucket = state.CertsBucket

// markerTTL is how long the bucket keeps the marker JetStream leaves
// where a lock key expired; watchers see the expiry through it.
const markerTTL = time.Minute

// ErrNotBound is returned by every method of a Storage whose bucket is
// not bound yet (the edge's control link is not up).
var ErrNotBound = errors.New("certstore: bucket not bound yet")

// Config configures a Storage.
type Config struct {
	// Owner names this process in its locks (for an operator reading the
	// bucket); New adds a random suffix, so two processes given the same
	// name still hold distinct locks.
	Owner string
	// LockTTL is how long a lock outlives its holder: JetStream deletes
	// a lock key that was not renewed for this long, and the holder
	// renews it every LockTTL/3. Default 30s; JetStream counts TTLs in
	// whole seconds, so it is rounded up to one.
	LockTTL time.Duration
	// Poll is how often a waiting Lock tries again. Default 250ms.
	Poll time.Duration
	// Logger gets lock losses; nil discards.
	Logger *slog.Logger
}

// Storage implements certmagic.Storage over the JetStream KV bucket, so
// every edge shares certificates, the ACME account, challenge tokens
// and locks. Safe for concurrent use, and across processes (see
// lock.go). New makes one unbound; Bind attaches the bucket once the
// NATS connection is up, and until then every method fails with
// ErrNotBound. The zero value is not usable.
type Storage struct {
	owner   string
	lockTTL time.Duration
	poll    time.Duration
	log     *slog.Logger

	b         atomic.Pointer[bucket] // nil until Bind
	bound     chan struct{}          // closed by the first Bind
	boundOnce sync.Once

	mu sync.Mutex // protects held and fences
	// held are the locks this process holds, by lock name.
	held map[string]*heldLock
	// fences are the held certificate locks by the storage component of
	// the name they guard (certmagic.StorageKeys.Safe of it).
	fences map[string]*heldLock
	// renewers are the held locks' keepalive goroutines.
	renewers sync.WaitGroup
}

// bucket is a bound KV bucket and the JetStream context under it (lock
// renewals publish with a TTL, which the KV API cannot).
type bucket struct {
	kv jetstream.KeyValue
	js jetstream.JetStream
}

var (
	_ certmagic.Storage          = (*Storage)(nil)
	_ certmagic.TryLocker        = (*Storage)(nil)
	_ certmagic.LockLeaseRenewer = (*Storage)(nil)
)

// New returns an unbound Storage. It does no I/O.
func New(cfg Config) *Storage {
	if cfg.LockTTL <= 0 {
		cfg.LockTTL = 30 * time.Second
	}
	cfg.LockTTL = (cfg.LockTTL + time.Second - 1).Truncate(time.Second)
	if cfg.Poll <= 0 {
		cfg.Poll = 250 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Storage{
		owner: cfg.Owner + "#" + rand.Text()[:8], lockTTL: cfg.LockTTL, poll: cfg.Poll, log: cfg.Logger,
		bound: make(chan struct{}), held: map[string]*heldLock{}, fences: map[string]*heldLock{},
	}
}

// CreateBucket creates the bucket, or updates it to these settings:
// control does this once, with the cluster's replica count. Lock keys
// expire on the server (per-key TTL), which needs NATS 2.11 or later.
func CreateBucket(ctx context.Context, nc *nats.Conn, replicas int) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("certstore: %w", err)
	}
	_, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: Bucket, History: 1, Replicas: max(replicas, 1), LimitMarkerTTL: markerTTL,
	})
	if err != nil {
		return fmt.Errorf("certstore: create bucket %s: %w", Bucket, err)
	}
	return nil
}

// Bind attaches the bucket control created. It fails if the bucket is
// missing or lets no key expire (a control older than shared locks).
// Binding again replaces the handle; the locks held stay held.
func (s *Storage) Bind(ctx context.Context, nc *nats.Conn) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("certstore: %w", err)
	}
	kv, err := js.KeyValue(ctx, Bucket)
	if err != nil {
		return fmt.Errorf("certstore: bind bucket %s: %w", Bucket, err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		return fmt.Errorf("certstore: bind bucket %s: %w", Bucket, err)
	}
	if kvs, ok := st.(*jetstream.KeyValueBucketStatus); ok && kvs.LimitMarkerTTL() <= 0 {
		return fmt.Errorf("certstore: bucket %s has no per-key TTL, so a dead holder's lock would never expire: start a current control to update it", Bucket)
	}
	s.b.Store(&bucket{kv: kv, js: js})
	s.boundOnce.Do(func() { close(s.bound) })
	return nil
}

// Bound is closed once the bucket is bound.
func (s *Storage) Bound() <-chan struct{} { return s.bound }

func (s *Storage) bucket() (*bucket, error) {
	b := s.b.Load()
	if b == nil {
		return nil, ErrNotBound
	}
	return b, nil
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

// entry is what a key holds: the value, when it was stored, and the
// fencing token of the lock it was written under (0 for none).
type entry struct {
	Value    []byte    `json:"v"`
	Modified time.Time `json:"m"`
	Fence    uint64    `json:"f,omitempty"`
}

// Store writes value at key. A certificate's files written while this
// process holds the certificate's lock are fenced (see lock.go): the
// write fails with ErrLockLost if the lock is no longer ours.
func (s *Storage) Store(ctx context.Context, key string, value []byte) error {
	b, err := s.bucket()
	if err != nil {
		return err
	}
	if hl := s.fenceFor(key); hl != nil {
		return s.storeFenced(ctx, b, hl, key, value)
	}
	v, err := json.Marshal(entry{Value: value, Modified: time.Now()})
	if err != nil {
		return err
	}
	if _, err := b.kv.Put(ctx, encodeKey(key), v); err != nil {
		return fmt.Errorf("certstore: store %s: %w", key, err)
	}
	return nil
}

// load reads key's entry and revision.
func (s *Storage) load(ctx context.Context, b *bucket, key string) (entry, uint64, error) {
	var e entry
	kve, err := b.kv.Get(ctx, encodeKey(key))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return e, 0, fs.ErrNotExist
	}
	if err != nil {
		return e, 0, fmt.Errorf("certstore: load %s: %w", key, err)
	}
	if err := json.Unmarshal(kve.Value(), &e); err != nil {
		return e, 0, fmt.Errorf("certstore: load %s: %w", key, err)
	}
	return e, kve.Revision(), nil
}

// Load reads key; fs.ErrNotExist if it is not stored.
func (s *Storage) Load(ctx context.Context, key string) ([]byte, error) {
	b, err := s.bucket()
	if err != nil {
		return nil, err
	}
	e, _, err := s.load(ctx, b, key)
	return e.Value, err
}

// keys lists every stored key under prefix (all keys for "").
func (s *Storage) keys(ctx context.Context, b *bucket, prefix string) ([]string, error) {
	lister, err := b.kv.ListKeys(ctx)
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

// Delete removes key, or every key under it when it is a directory.
func (s *Storage) Delete(ctx context.Context, key string) error {
	b, err := s.bucket()
	if err != nil {
		return err
	}
	keys, err := s.keys(ctx, b, key)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if err := b.kv.Delete(ctx, encodeKey(k)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("certstore: delete %s: %w", k, err)
		}
	}
	return nil
}

// Exists reports whether key is stored, as a file or a directory.
func (s *Storage) Exists(ctx context.Context, key string) bool {
	b, err := s.bucket()
	if err != nil {
		return false
	}
	keys, err := s.keys(ctx, b, key)
	return err == nil && len(keys) > 0
}

// List returns the keys under path: its direct children, or with
// recursive every directory and file below it.
func (s *Storage) List(ctx context.Context, path string, recursive bool) ([]string, error) {
	b, err := s.bucket()
	if err != nil {
		return nil, err
	}
	keys, err := s.keys(ctx, b, path)
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

// Stat describes key: a file with its size and time, or a directory.
func (s *Storage) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	b, err := s.bucket()
	if err != nil {
		return certmagic.KeyInfo{}, err
	}
	e, _, err := s.load(ctx, b, key)
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

// String names the storage in certmagic's logs.
func (s *Storage) String() string { return "certstore:" + Bucket }
