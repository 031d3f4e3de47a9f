package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Bucket names.
const (
	SitesBucket      = "cdn_sites"
	EdgesBucket      = "cdn_edges"
	EdgeStatusBucket = "cdn_edge_status"
	TokensBucket     = "cdn_tokens"
	// CertsBucket holds the edges' shared certificates and ACME locks
	// (internal/certstore binds it, not Bind).
	CertsBucket = "cdn_certs"
)

// ErrNotFound is returned for a key that is not in its bucket.
var ErrNotFound = errors.New("not found")

// Options shape the buckets when they are created.
type Options struct {
	// Replicas is the JetStream replica count of every bucket (1 on one
	// server, 3 on a three-node cluster).
	Replicas int
	// PurgeMaxAge, PurgeMaxMsgs and PurgeDupeWindow bound the purge log:
	// how long and how many purges it keeps (an edge away for longer
	// purges its sites whole on return), and how long an idempotency key
	// is remembered. Zero means the Default* values.
	PurgeMaxAge     time.Duration
	PurgeMaxMsgs    int64
	PurgeDupeWindow time.Duration
}

// Store is the shared state over one NATS connection.
type Store struct {
	js                                  jetstream.JetStream
	sites, edges, status, tkns, applied jetstream.KeyValue
	peer                                jetstream.KeyValue // peers.go
	purges                              jetstream.Stream
	// Push releases (releases.go).
	releases, live, edgeRel jetstream.KeyValue
	blobs                   jetstream.ObjectStore
	blobStream              jetstream.Stream          // under blobs, for direct chunk reads
	index                   atomic.Pointer[blobIndex] // set by IndexBlobs
	// pub publishes batched blob puts (blobput.go), made on first use.
	pubOnce sync.Once
	pub     jetstream.JetStream
	pubErr  error
}

// Open creates (or binds to) the buckets. Safe to call from every process:
// creating a bucket that exists with the same settings is a no-op.
func Open(ctx context.Context, nc *nats.Conn, opts Options) (*Store, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	replicas := max(opts.Replicas, 1)
	s := &Store{js: js}
	for _, b := range []struct {
		kv      *jetstream.KeyValue
		name    string
		history uint8
	}{
		{&s.sites, SitesBucket, 5},
		{&s.edges, EdgesBucket, 1},
		{&s.status, EdgeStatusBucket, 1},
		{&s.tkns, TokensBucket, 1},
		{&s.applied, PurgeAppliedBucket, 1},
		{&s.releases, ReleasesBucket, 1},
		{&s.live, LiveBucket, 1},
		{&s.edgeRel, EdgeReleasesBucket, 1},
		{&s.peer, PeerBucket, 1},
	} {
		kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: b.name, History: b.history, Replicas: replicas})
		if err != nil {
			return nil, fmt.Errorf("open bucket %s: %w", b.name, err)
		}
		*b.kv = kv
	}
	if s.purges, err = js.CreateOrUpdateStream(ctx, purgeStreamConfig(opts)); err != nil {
		return nil, fmt.Errorf("open stream %s: %w", PurgeStream, err)
	}
	if err := openReleaseStores(ctx, js, replicas, s); err != nil {
		return nil, err
	}
	return s, nil
}

// Access names the parts of the state a process other than control
// uses. Bind binds only those, so the process's NATS user needs no
// rights beyond them (internal/natsauth derives its permissions from
// the same values).
type Access struct {
	// Reads are KV buckets read whole (watched, listed, got).
	Reads []string
	// Writes are KV buckets written under the process's own key only.
	Writes []string
	// Shared are KV buckets read and written whole, under any key.
	Shared []string
	// Purges and Blobs say whether the purge log and pushed blobs are
	// read.
	Purges, Blobs bool
}

// The accesses of edges and geodns.
var (
	EdgeAccess = Access{
		// The registry and control's verdicts are the membership of the
		// tier inside each region (edge/tier); the peer secret signs
		// edge-to-edge requests.
		Reads:  []string{SitesBucket, LiveBucket, EdgesBucket, EdgeStatusBucket, PeerBucket},
		Writes: []string{EdgesBucket, PurgeAppliedBucket, EdgeReleasesBucket},
		Shared: []string{CertsBucket},
		Purges: true, Blobs: true,
	}
	GeoDNSAccess = Access{Reads: []string{SitesBucket, EdgesBucket, EdgeStatusBucket}}
)

// KVStream is the stream under KV bucket b.
func KVStream(b string) string { return "KV_" + b }

// ReadStreams lists the streams a reads whole.
func (a Access) ReadStreams() []string {
	var out []string
	for _, b := range append(slices.Clone(a.Reads), a.Shared...) {
		out = append(out, KVStream(b))
	}
	if a.Purges {
		out = append(out, PurgeStream)
	}
	if a.Blobs {
		out = append(out, blobStreamName)
	}
	return out
}

// Bind binds to the buckets and streams a names, which control created;
// edges and geodns must not create them with settings of their own. The
// store's other parts are left unbound: using them is a programmer's
// error.
func Bind(ctx context.Context, nc *nats.Conn, a Access) (*Store, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	s := &Store{js: js}
	fields := map[string]*jetstream.KeyValue{
		SitesBucket: &s.sites, EdgesBucket: &s.edges, EdgeStatusBucket: &s.status, TokensBucket: &s.tkns,
		PurgeAppliedBucket: &s.applied, ReleasesBucket: &s.releases, LiveBucket: &s.live, EdgeReleasesBucket: &s.edgeRel,
		PeerBucket: &s.peer,
	}
	for _, name := range slices.Compact(slices.Sorted(slices.Values(append(slices.Clone(a.Reads), a.Writes...)))) {
		field, ok := fields[name]
		if !ok {
			return nil, fmt.Errorf("bind bucket %s: not a bucket of the state", name)
		}
		if *field, err = js.KeyValue(ctx, name); err != nil {
			return nil, fmt.Errorf("bind bucket %s: %w", name, err)
		}
	}
	if a.Purges {
		if s.purges, err = js.Stream(ctx, PurgeStream); err != nil {
			return nil, fmt.Errorf("bind stream %s: %w", PurgeStream, err)
		}
	}
	if a.Blobs {
		if err := bindReleaseStores(ctx, js, s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func get[T any](ctx context.Context, kv jetstream.KeyValue, key string) (T, uint64, error) {
	v, e, err := getEntry[T](ctx, kv, key)
	if err != nil {
		return v, 0, err
	}
	return v, e.Revision(), nil
}

func getEntry[T any](ctx context.Context, kv jetstream.KeyValue, key string) (T, jetstream.KeyValueEntry, error) {
	var v T
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return v, nil, ErrNotFound
	}
	if err != nil {
		return v, nil, fmt.Errorf("get %s/%s: %w", kv.Bucket(), key, err)
	}
	if err := json.Unmarshal(e.Value(), &v); err != nil {
		return v, nil, fmt.Errorf("decode %s/%s: %w", kv.Bucket(), key, err)
	}
	return v, e, nil
}

func put(ctx context.Context, kv jetstream.KeyValue, key string, v any) (uint64, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return 0, fmt.Errorf("encode %s/%s: %w", kv.Bucket(), key, err)
	}
	rev, err := kv.Put(ctx, key, b)
	if err != nil {
		return 0, fmt.Errorf("put %s/%s: %w", kv.Bucket(), key, err)
	}
	return rev, nil
}

func list[T any](ctx context.Context, kv jetstream.KeyValue, filters ...string) ([]T, error) {
	return listEntries(ctx, kv, func(v T, _ jetstream.KeyValueEntry) T { return v }, filters...)
}

// listEntries lists a bucket (only the keys matching filters, when there
// are any), letting each value see its KV entry.
func listEntries[T any](ctx context.Context, kv jetstream.KeyValue, f func(T, jetstream.KeyValueEntry) T, filters ...string) ([]T, error) {
	var lister jetstream.KeyLister
	var err error
	if len(filters) > 0 {
		lister, err = kv.ListKeysFiltered(ctx, filters...)
	} else {
		lister, err = kv.ListKeys(ctx)
	}
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return nil, nil
		}
		return nil, fmt.Errorf("list %s: %w", kv.Bucket(), err)
	}
	defer lister.Stop()
	var out []T
	for key := range lister.Keys() {
		v, e, err := getEntry[T](ctx, kv, key)
		if errors.Is(err, ErrNotFound) {
			continue // deleted since listed
		}
		if err != nil {
			return nil, err
		}
		out = append(out, f(v, e))
	}
	return out, nil
}

func del(ctx context.Context, kv jetstream.KeyValue, key string) error {
	if _, err := kv.Get(ctx, key); errors.Is(err, jetstream.ErrKeyNotFound) {
		return ErrNotFound
	}
	if err := kv.Delete(ctx, key); err != nil {
		return fmt.Errorf("delete %s/%s: %w", kv.Bucket(), key, err)
	}
	return nil
}
