package cache

import (
	"fmt"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// Config sizes the memory tier.
type Config struct {
	// MemoryBytes bounds the memory tier. Default 256 MiB.
	MemoryBytes int64
	// MaxObjectBytes is the largest body kept in memory. Default 16 MiB.
	MaxObjectBytes int64
}

// Memory is the in-memory tier: a ristretto cache bounded by bytes, with
// TinyLFU admission so one scan of cold URLs cannot flush the hot set.
type Memory struct {
	c      *ristretto.Cache[string, *Entry]
	maxObj int64
}

// NewMemory returns an empty memory tier. Close releases its goroutines.
func NewMemory(cfg Config, reg prometheus.Registerer) (*Memory, error) {
	if cfg.MemoryBytes <= 0 {
		return nil, fmt.Errorf("memory tier: size must be > 0, got %d", cfg.MemoryBytes)
	}
	m := &Memory{maxObj: cfg.MaxObjectBytes}
	// ristretto wants ~10 counters per expected item; guess items at 4 KiB.
	counters := max(cfg.MemoryBytes/4096*10, 10_000)
	c, err := ristretto.NewCache(&ristretto.Config[string, *Entry]{
		NumCounters:        counters,
		MaxCost:            cfg.MemoryBytes,
		BufferItems:        64,
		Metrics:            true,
		IgnoreInternalCost: true,
	})
	if err != nil {
		return nil, fmt.Errorf("memory tier: %w", err)
	}
	m.c = c
	registerMetrics(reg, c)
	return m, nil
}

// Get returns the entry under key.
func (m *Memory) Get(key string) (*Entry, bool) { return m.c.Get(key) }

// Put stores e under key and waits until it is visible to Get, so a fill
// that ends with Put leaves no window in which the next request misses.
// It reports whether e is visible: not when it was too big, or ristretto
// dropped the set (its buffer full) or its admission refused the key.
func (m *Memory) Put(key string, e *Entry) bool {
	if int64(len(e.Body)) > m.maxObj {
		return false
	}
	return m.put(key, e, e.cost(key))
}

func (m *Memory) put(key string, e *Entry, cost int64) bool {
	if !m.c.SetWithTTL(key, e, cost, e.expiry()) {
		return false
	}
	m.c.Wait()
	return m.Has(key) // admission is decided in Wait
}

// Has reports whether key is stored, without counting an access.
func (m *Memory) Has(key string) bool {
	_, ok := m.c.GetTTL(key)
	return ok
}

// Fits reports whether a body of n bytes may be kept.
func (m *Memory) Fits(n int64) bool { return n <= m.maxObj }

// PutBody offers an immutable body (a pinned blob, read and verified) to
// the tier under key, kept while space allows and admission agrees; it
// does not wait for the body to become visible.
func (m *Memory) PutBody(key string, body []byte) {
	if !m.Fits(int64(len(body))) {
		return
	}
	e := &Entry{Body: body}
	m.c.SetWithTTL(key, e, e.cost(key), 0)
}

// PutMarker stores a small marker entry that expires after ttl.
func (m *Memory) PutMarker(key string, e *Entry, ttl time.Duration) {
	m.c.SetWithTTL(key, e, e.cost(key), ttl)
	m.c.Wait()
}

// Delete removes key.
func (m *Memory) Delete(key string) { m.c.Del(key) }

// Close stops the tier's background work.
func (m *Memory) Close() { m.c.Close() }
