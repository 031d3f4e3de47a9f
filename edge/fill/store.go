package fill

import (
	"errors"
	"io"
	"log/slog"
	"slices"
	"strconv"

	"github.com/selfcdn/cdn/edge/cache"
	"github.com/selfcdn/cdn/edge/freshness"
)

// stored is an entry stored in memory (or meant for disk only) that the
// disk tier should keep too.
type stored struct {
	key    string
	e      *cache.Entry
	spool  bool // the body is the flight's spool file, not e.Body
	memory bool // the memory tier holds e (visible to the next request)
}

// KeepsOnDisk reports whether a body of n bytes, too large for memory,
// can be kept on disk.
func (f *Filler) KeepsOnDisk(n int64) bool {
	return f.cfg.Disk != nil && n <= f.cfg.Disk.MaxObjectBytes()
}

// store puts a complete, shareable response into the memory tier: under its
// variant key with a Vary index at the base key, or under the base key. It
// returns what the disk tier should keep: the same entries, and a body too
// large for memory.
func (f *Filler) store(j *Job, head Head, m freshness.Meta) []stored {
	if f.invalidatedSince(j) {
		return nil // fetched before an unsafe request changed the URL
	}
	body, err := j.Flight.Body.Bytes()
	spool := errors.Is(err, ErrTooLarge)
	switch {
	case spool && !f.KeepsOnDisk(j.Flight.Body.Size()):
		return nil // streamed through, not kept
	case err != nil && !spool:
		return nil
	}
	e := cache.NewEntry(head.Status, head.Header.Clone(), body, m, head.Vary)
	e.Stamp, e.Tags = j.Stamp, j.tags
	if spool {
		e.Header["Content-Length"] = []string{strconv.FormatInt(j.Flight.Body.Size(), 10)}
	}
	put := func(key string, e *cache.Entry, spool bool) []stored {
		f.cfg.Prepare(e, key)
		inMemory := !spool && f.cfg.Memory.Put(key, e)
		return []stored{{key: key, e: e, spool: spool, memory: inMemory}}
	}
	inval := f.lastInvalidation(j.Base)
	if len(head.Vary) == 0 {
		e.Invalidated = inval
		return put(j.Base, e, spool)
	}
	var keep []stored
	idx, ok := f.cfg.Lookup(j.Base)
	if !ok || !idx.VaryIndex || !slices.Equal(idx.Vary, head.Vary) {
		idx.Release()
		idx = &cache.Entry{VaryIndex: true, Vary: head.Vary, Variants: new(cache.Counter), Gen: f.gen.Add(1), Invalidated: inval}
		keep = put(j.Base, idx, false)
	}
	key := cache.VariantKey(j.Base, idx, head.VariantKey)
	if !f.held(key) && idx.Variants.Add(1) > int64(f.cfg.MaxVariants) {
		return keep // bounded: a header with endless values must not flood memory
	}
	return append(keep, put(key, e, spool)...)
}

// lookup is the default Config.Lookup: memory, then disk, where a body
// comes back open (nothing is promoted).
func (f *Filler) lookup(key string) (*cache.Entry, bool) {
	if e, ok := f.cfg.Memory.Get(key); ok {
		return e, true
	}
	if f.cfg.Disk == nil {
		return nil, false
	}
	return f.cfg.Disk.Get(key, 0)
}

// held reports whether key is stored in either tier.
func (f *Filler) held(key string) bool {
	if _, ok := f.cfg.Memory.Get(key); ok {
		return true
	}
	return f.cfg.Disk != nil && f.cfg.Disk.Has(key)
}

// persist writes stored entries to the disk tier. It runs after the
// waiters got their answer; a failure only costs a later miss.
func (f *Filler) persist(j *Job, keep []stored) {
	if f.cfg.Disk == nil {
		return
	}
	for _, s := range keep {
		var body io.Reader
		if s.spool {
			body = j.Flight.Body.Reader()
		} else if s.e.Disk != nil {
			body = s.e.Disk.Reader()
		}
		if err := f.cfg.Disk.Put(s.key, s.e, body); err != nil {
			if errors.Is(err, cache.ErrNotAdmitted) {
				continue // nothing older is held: admission lets new versions in
			}
			// Whatever older version is on disk must not outlive this one.
			f.cfg.Disk.Delete(s.key)
			if !errors.Is(err, cache.ErrTooLarge) {
				f.cfg.Log.LogAttrs(j.Request.Context(), slog.LevelDebug, "disk tier write failed", slog.String("key", s.key), slog.Any("err", err))
			}
			continue
		}
		if f.invalidatedSince(j) {
			// An unsafe request for the URL ran while we wrote: its
			// tombstone was set before its own disk delete, so checking
			// after the write closes the race either way.
			f.cfg.Disk.Delete(s.key)
		}
	}
}

// markHitForMiss remembers for a while that the URL's answer cannot be
// shared, so later requests go straight to the origin instead of queueing
// behind one another. Reasons that come from the request, not the
// response, say nothing about the URL.
// An origin failing (5xx) is not a property of the URL either, and during
// an outage coalescing matters most.
func (f *Filler) markHitForMiss(j *Job, status int, reason string) {
	if j.Solo || f.cfg.HitForMissTTL <= 0 || status >= 500 || reason == "request no-store" || reason == "authorization" {
		return
	}
	e, ok := f.cfg.Lookup(j.Base)
	e.Release()
	if ok && e.VaryIndex {
		// One variant that cannot be shared (a Set-Cookie for one
		// language) must not evict every variant of the URL.
		return
	}
	f.cfg.Memory.PutMarker(j.Base, &cache.Entry{HitForMiss: true, Invalidated: f.lastInvalidation(j.Base)}, f.cfg.HitForMissTTL)
	if f.cfg.Disk != nil {
		// The marker replaces the URL's object; it must not come back
		// from disk when the marker expires.
		f.cfg.Disk.Delete(j.Base)
	}
}

// invalidatedSince reports whether the job's URL was invalidated after the
// job started (RFC 9111 §4.4): storing its response would bring back what
// the unsafe request changed.
func (f *Filler) invalidatedSince(j *Job) bool {
	return f.lastInvalidation(j.Base) > j.Invalidations
}

// lastInvalidation is the number of the latest invalidation the entry at
// base remembers, 0 if none.
func (f *Filler) lastInvalidation(base string) uint64 {
	if e, ok := f.cfg.Memory.Get(base); ok {
		return e.Invalidated
	}
	return 0
}

// Gen is the last Vary index generation handed out (the start, before
// any): a restart must begin past it.
func (f *Filler) Gen() uint64 { return f.gen.Load() }
