package cache

import (
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/selfcdn/cdn/edge/freshness"
)

// Entry is one stored response, or one of two markers: a Vary index (the
// request headers a URL's responses vary on) or a hit-for-miss note (the
// URL's last answer could not be shared, so do not make clients queue for it).
type Entry struct {
	// Status is the response status code.
	Status int
	// Header is the response header as sent to clients: hop-by-hop fields
	// removed and Via added at store time. Never modified after Put.
	Header http.Header
	// Body is the complete response body, unless Disk holds it.
	Body []byte
	// Disk is a body too large to load, read from the disk tier as it is
	// served. Such an entry belongs to one request, which must Close it;
	// it is never put in the memory tier.
	Disk *DiskBody
	// Meta judges the entry's freshness.
	Meta freshness.Meta
	// LastModified is the parsed Last-Modified, zero when absent.
	LastModified time.Time
	// Vary holds the canonical request header names the response varies
	// on; on a Vary index it is the whole point of the entry.
	Vary []string
	// VaryIndex marks an entry that only names Vary; its variants live
	// under cachekey.Variant keys.
	VaryIndex bool
	// Variants counts the variants stored under a Vary index, to bound
	// them; shared by every copy of the index.
	Variants *Counter
	// Gen names a Vary index's generation; its variants' keys include it,
	// so deleting the index (an invalidation) orphans every variant at once.
	Gen uint64
	// Encodable says the edge may compress the body (see edge's
	// markEncodable); decided once, before the entry is shared.
	Encodable bool
	// CodedKeys are the keys of the body's compressed copies, indexed by
	// contentcoding.Coding, prepared with Encodable so a hit builds no key.
	CodedKeys [3]string
	// HitForMiss marks a URL whose last response was not shareable.
	HitForMiss bool
	// Tombstone marks a URL invalidated by an unsafe request.
	Tombstone bool
	// Stamp is the purge clock when the fetch that made the entry started
	// (purge.Table.Clock): purges newer than it apply to it.
	Stamp uint64
	// Tags are the origin's Surrogate-Key and Cache-Tag values, for purges
	// by tag.
	Tags []string
	// Invalidated is the number of the URL's latest invalidation (kept by
	// the entries that replace a tombstone): a fill that started before it
	// must not store what it fetched.
	Invalidated uint64
	// Front holds what a protocol front prepared once from this entry's
	// constant parts (its status and header as one front writes them), for
	// every later hit; nil on entries made for one request (read from
	// disk, pushed files), which are not worth preparing for. Copies of
	// the entry share it: they have the same header.
	Front *Front
}

// Front is a front's prepared rendering of an entry, set once. The zero
// value is empty.
type Front struct{ v atomic.Value }

// Load returns what was stored, or nil.
func (f *Front) Load() any { return f.v.Load() }

// Store keeps x (always of one type) for later hits; racing stores keep
// one of them, all alike.
func (f *Front) Store(x any) { f.v.Store(x) }

// NewEntry builds an entry for a response, preparing at store time the
// header values every hit would otherwise compute.
func NewEntry(status int, h http.Header, body []byte, m freshness.Meta, vary []string) *Entry {
	e := &Entry{Status: status, Header: h, Body: body, Meta: m, Vary: vary, Front: new(Front)}
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	if lm, err := http.ParseTime(h.Get("Last-Modified")); err == nil {
		e.LastModified = lm
	}
	return e
}

// cost is what the entry counts against the memory budget: body, header
// bytes, and a fixed overhead for the structs and the index.
func (e *Entry) cost(key string) int64 {
	n := int64(len(e.Body) + len(key) + 256)
	for _, t := range e.Tags {
		n += int64(len(t) + 16)
	}
	for k, vs := range e.Header {
		n += int64(len(k))
		for _, v := range vs {
			n += int64(len(v) + 16)
		}
	}
	return n
}

// expiry is how long the entry is worth keeping: past its lifetime and
// stale windows an entry without validators can never be used again.
func (e *Entry) expiry() time.Duration {
	if e.VaryIndex || e.Header.Get("Etag") != "" || !e.LastModified.IsZero() {
		return 0 // keep while space allows; it can be revalidated
	}
	keep := e.Meta.Lifetime + max(e.Meta.StaleWhileRevalidate, e.Meta.StaleIfError) - e.Meta.InitialAge
	return max(keep, time.Second)
}

// Counter is a counter shared by the copies of an entry.
type Counter = atomic.Int64

// VariantKey is the key of the variant that selector (cachekey.Variant with
// an empty base) names under the Vary index idx stored at base.
func VariantKey(base string, idx *Entry, selector string) string {
	return base + "\x00g" + strconv.FormatUint(idx.Gen, 10) + selector
}

// Size is the body length.
func (e *Entry) Size() int64 {
	if e.Disk != nil {
		return e.Disk.Size()
	}
	return int64(len(e.Body))
}

// Release frees what a looked-up entry holds for its request: the open
// file of a disk body. Safe to call on any entry, and on nil.
func (e *Entry) Release() {
	if e != nil && e.Disk != nil {
		e.Disk.Close()
	}
}
