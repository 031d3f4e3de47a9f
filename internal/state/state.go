// Package state is the typed access every part of the CDN has to the shared
// state in NATS JetStream: site configuration, the edge registry, edge
// status (health and drain, owned by control), API tokens and edges'
// purge reports, each a KV bucket, and the purge log, a stream
// (purges.go). Control writes; edges and geodns read and watch. Nothing
// here is cached: JetStream is the one copy, so any number of control
// processes can share it.
package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
	purges                              jetstream.Stream
	// Push releases (releases.go).
	releases, live, edgeRel jetstream.KeyValue
	blobs                   jetstream.ObjectStore
	blobStream              jetstream.Stream          // under blobs, for direct chunk reads
	index                   atomic.Pointer[blobIndex] // set by IndexBlobs
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

// Bind binds to buckets that control created, for edges and geodns, which
// must not create them with settings of their own.
func Bind(ctx context.Context, nc *nats.Conn) (*Store, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	s := &Store{js: js}
	for _, b := range []struct {
		kv   *jetstream.KeyValue
		name string
	}{{&s.sites, SitesBucket}, {&s.edges, EdgesBucket}, {&s.status, EdgeStatusBucket}, {&s.tkns, TokensBucket},
		{&s.applied, PurgeAppliedBucket}, {&s.releases, ReleasesBucket}, {&s.live, LiveBucket}, {&s.edgeRel, EdgeReleasesBucket}} {
		kv, err := js.KeyValue(ctx, b.name)
		if err != nil {
			return nil, fmt.Errorf("bind bucket %s: %w", b.name, err)
		}
		*b.kv = kv
	}
	if s.purges, err = js.Stream(ctx, PurgeStream); err != nil {
		return nil, fmt.Errorf("bind stream %s: %w", PurgeStream, err)
	}
	if err := bindReleaseStores(ctx, js, s); err != nil {
		return nil, err
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
