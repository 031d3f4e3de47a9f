package purge

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/selfcdn/cdn/internal/cachekey"
)

// Purges are applied lazily. Every cached object carries a stamp: the
// edge's purge clock when the fetch that made it started. A purge adds a
// rule marked with the next clock value, and a lookup asks whether any
// rule newer than the object's stamp matches it. Applying a purge is
// therefore O(items) whatever the cache holds, a whole-site purge is one
// number, and a fetch that started before a purge stores an object the
// purge still matches: it cannot bring purged content back.

// Verdict is what the purge rules say of a cached object.
type Verdict uint8

const (
	// Keep: no purge newer than the object matches it.
	Keep Verdict = iota
	// Stale: a soft purge matches; serve it only while revalidating, or
	// when the origin fails.
	Stale
	// Gone: a hard purge matches; the object must not be served.
	Gone
)

// Table holds every site's rules and the edge's purge clock. Its methods
// are safe for concurrent use; Apply, Restore and Floor are meant to be
// called from one goroutine, in version order.
type Table struct {
	clock atomic.Uint64
	floor atomic.Uint64 // objects stamped before it are gone, in every site
	// maxRules bounds the rules of one site; past it the site is purged
	// whole, which is safe and frees them all.
	maxRules int
	now      func() time.Time
	keyRules func(site string) cachekey.Rules

	// mu protects sites. Lock order: Table.mu before SiteRules.mu.
	mu    sync.Mutex
	sites map[string]*SiteRules
}

// NewTable returns an empty table. keyRules gives a site's cache-key
// rules, so purge URLs are normalized as the edge normalizes requests; nil
// uses the defaults. The clock starts at now, so objects stored by an
// earlier process without a saved table are older than anything here.
func NewTable(maxRules int, now func() time.Time, keyRules func(site string) cachekey.Rules) *Table {
	if now == nil {
		now = time.Now
	}
	if keyRules == nil {
		keyRules = func(string) cachekey.Rules { return cachekey.Rules{} }
	}
	t := &Table{maxRules: maxRules, now: now, keyRules: keyRules, sites: map[string]*SiteRules{}}
	t.clock.Store(uint64(now().UnixNano()))
	return t
}

// Advance moves the clock forward to c, if it is behind: the start of a
// run, past every stamp an earlier run gave objects still stored.
func (t *Table) Advance(c uint64) {
	for {
		cur := t.clock.Load()
		if c <= cur || t.clock.CompareAndSwap(cur, c) {
			return
		}
	}
}

// Clock is the stamp for an object whose fetch starts now.
func (t *Table) Clock() uint64 { return t.clock.Load() }

// Site returns the rules of the named site, created empty if need be. The
// pointer stays valid for the table's life.
func (t *Table) Site(name string) *SiteRules {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.sites[name]
	if !ok {
		s = newSiteRules(t.floor.Load())
		t.sites[name] = s
	}
	return s
}

// Apply adds the rules of one purge of site, marked with the next clock
// value, which it returns. widened reports a site that held too many rules
// and was purged whole instead.
func (t *Table) Apply(site string, r Request) (clock uint64, widened bool) {
	c := t.next()
	widened = t.Restore(c, site, r)
	return c, widened
}

// next is the clock value for the next purge: past every one before, and
// past now, so objects stored by an earlier process are older.
func (t *Table) next() uint64 { return max(t.clock.Load()+1, uint64(t.now().UnixNano())) }

// Restore adds the rules of a purge applied before, with its clock (from
// the edge's purge log), moving the clock forward to it if need be.
func (t *Table) Restore(clock uint64, site string, r Request) (widened bool) {
	widened = t.Site(site).add(clock, r, t.keyRules(site), t.maxRules)
	// Rules first, then the clock: a fetch stamped with the new clock
	// must find every rule older than it in place.
	if clock > t.clock.Load() {
		t.clock.Store(clock)
	}
	return widened
}

// Floor purges every site hard: objects stamped before the next clock
// value are gone. It is for an edge that may have missed purges it cannot
// name. It returns the clock.
func (t *Table) Floor() uint64 {
	c := t.next()
	t.RestoreFloor(c)
	return c
}

// RestoreFloor sets the floor from the purge log.
func (t *Table) RestoreFloor(clock uint64) {
	t.mu.Lock()
	t.floor.Store(max(t.floor.Load(), clock))
	for _, s := range t.sites {
		s.add(clock, Request{All: true}, cachekey.Rules{}, 0)
	}
	t.mu.Unlock()
	if clock > t.clock.Load() {
		t.clock.Store(clock)
	}
}

// FloorClock is the clock of the last Floor, 0 if none.
func (t *Table) FloorClock() uint64 { return t.floor.Load() }

// Rules counts the rules held over every site.
func (t *Table) Rules() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, s := range t.sites {
		s.mu.RLock()
		n += s.n
		s.mu.RUnlock()
	}
	return n
}

// SiteRules are one site's purge rules. The zero value is not usable; get
// one from Table.Site.
type SiteRules struct {
	// latest is the clock of the newest rule: an object stamped at or
	// after it matches nothing, which a hit learns without a lock.
	latest atomic.Uint64

	mu       sync.RWMutex     // protects the fields below
	all      marks            // whole-site purges
	urls     map[string]marks // "host/path?query", or "/path?query" for every host
	prefixes map[string]marks // the same two forms, literal prefixes
	lens     []int            // the distinct lengths of prefixes, ascending
	tags     map[string]marks
	n        int // rules in the maps
}

// marks are the clocks of the newest hard and soft purge of one target.
type marks struct{ hard, soft uint64 }

func (m marks) verdict(stamp uint64) Verdict {
	switch {
	case m.hard > stamp:
		return Gone
	case m.soft > stamp:
		return Stale
	}
	return Keep
}

func (m *marks) set(clock uint64, soft bool) {
	if soft {
		m.soft = max(m.soft, clock)
	} else {
		m.hard = max(m.hard, clock)
	}
}

func newSiteRules(floor uint64) *SiteRules {
	s := &SiteRules{urls: map[string]marks{}, prefixes: map[string]marks{}, tags: map[string]marks{}}
	s.all.hard = floor
	s.latest.Store(floor)
	return s
}

// Check judges a cached object: its stamp, its cache key
// ("scheme://host/path?query", as internal/cachekey builds it) and its tags.
// Small enough to inline: an object newer than every rule, which is most
// hits, costs one atomic load.
func (s *SiteRules) Check(stamp uint64, key string, tags []string) Verdict {
	if s == nil || stamp >= s.latest.Load() {
		return Keep
	}
	return s.match(stamp, key, tags)
}

// match is Check for an object older than some rule.
func (s *SiteRules) match(stamp uint64, key string, tags []string) Verdict {
	rest := key
	if _, after, ok := strings.Cut(key, "://"); ok {
		rest = after
	}
	pathQuery := rest
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		pathQuery = rest[i:]
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	v := s.all.verdict(stamp)
	if v == Gone {
		return v
	}
	v = max(v, s.urls[rest].verdict(stamp), s.urls[pathQuery].verdict(stamp))
	for _, l := range s.lens {
		if l <= len(rest) {
			v = max(v, s.prefixes[rest[:l]].verdict(stamp))
		}
		if l <= len(pathQuery) {
			v = max(v, s.prefixes[pathQuery[:l]].verdict(stamp))
		}
	}
	for _, t := range tags {
		v = max(v, s.tags[t].verdict(stamp))
	}
	return v
}

// add puts the rules of r in place, marked with clock. A site past
// maxRules (0: no bound) is purged whole instead; add reports that.
func (s *SiteRules) add(clock uint64, r Request, kr cachekey.Rules, maxRules int) (widened bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.All || maxRules > 0 && s.n+len(r.URLs)+len(r.Prefixes)+len(r.Tags) > maxRules {
		widened = !r.All
		s.all.set(clock, r.Soft && !widened)
		if !r.Soft || widened {
			// Everything older is gone already: the older rules can go.
			clear(s.urls)
			clear(s.prefixes)
			clear(s.tags)
			s.lens, s.n = nil, 0
		}
		s.latest.Store(max(s.latest.Load(), clock))
		return widened
	}
	mark := func(m map[string]marks, k string) {
		old, ok := m[k]
		if !ok {
			s.n++
		}
		old.set(clock, r.Soft)
		m[k] = old
	}
	for _, u := range r.URLs {
		if k, ok := normalize(u, kr, false); ok {
			mark(s.urls, k)
		}
	}
	for _, p := range r.Prefixes {
		if k, ok := normalize(p, kr, true); ok {
			mark(s.prefixes, k)
			if i, found := slices.BinarySearch(s.lens, len(k)); !found {
				s.lens = slices.Insert(s.lens, i, len(k))
			}
		}
	}
	for _, t := range r.Tags {
		mark(s.tags, t)
	}
	s.latest.Store(max(s.latest.Load(), clock))
	return false
}

// normalize turns a purge URL or prefix into the form Check compares:
// host (empty for every host), then the path and query normalized as the
// cache key normalizes them. A prefix keeps its query text as given.
func normalize(s string, kr cachekey.Rules, prefix bool) (string, bool) {
	host, pq, err := Split(s)
	if err != nil {
		return "", false // Validate let it through only if it parses
	}
	path, query, hasQuery := strings.Cut(pq, "?")
	path = cachekey.Path(path)
	switch {
	case prefix && hasQuery:
		return host + path + "?" + query, true
	case prefix:
		return host + path, true
	}
	if q := cachekey.Query(query, kr); q != "" {
		return host + path + "?" + q, true
	}
	return host + path, true
}
