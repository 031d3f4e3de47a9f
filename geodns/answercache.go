package geodns

import (
	"bytes"
	"encoding/binary"
	"hash/maphash"
	"net/netip"
	"sync"
)

// The answer cache keeps packed UDP responses for reuse. A response is a
// function of the question as sent, the header flags, the EDNS fields,
// where the client was located, and the table (edges, health, hosts): so
// each table has its own cache, and the next query after a change of any
// of those finds an empty one. A hit copies the packed bytes and patches
// the message ID and the echoed ECS address; it skips the library's
// Unpack and Pack and the edge pick, which were most of a query's
// user-space time. A response whose edges were drawn at random among
// several (nearest.Answer.Drawn: a region with more edges than an answer
// holds, or two edges and one record) keeps its pool, and each reuse
// draws again with the same odds and writes the addresses it drew over
// the packed records (they differ only in their four or sixteen address
// bytes). Responses that were rate limited, truncated, or drawn in a way
// that changes their length are not kept. Locking: each shard's mutex
// guards only its own map.

// cacheShards spreads the cache's locks so workers on different CPUs
// seldom meet on one.
const cacheShards = 64

// entryOverhead is what an entry costs beyond its key and body bytes
// (the map slot, the entry struct, the slices' headers), for the bound.
const entryOverhead = 160

// answerCache is a bounded map from fastQuery keys to packed responses.
// The zero value is not usable; a nil *answerCache caches nothing.
type answerCache struct {
	shardBytes int
	seed       maphash.Seed
	shards     [cacheShards]cacheShard
}

type cacheShard struct {
	mu      sync.RWMutex // guards entries and bytes
	entries map[string]*cachedAnswer
	bytes   int // the cost of entries
}

// cachedAnswer is one packed response.
type cachedAnswer struct {
	// body is the response as sent, less the ECS address bytes that end
	// it when the query carried a subnet (every query of the key has as
	// many, and a hit appends its own).
	body []byte
	// res is the query's result without the per-query fields (opt, ecs).
	res      result
	counters *answerCounters
	// draw, for a drawn answer, says where its edges' addresses are.
	draw *slots
}

// slots are the address bytes of a drawn answer's edge records: the
// first at off, each next one stride further.
type slots struct {
	*redraw
	off, stride int
}

// fill draws the edges of a reuse and writes their addresses into out,
// a copy of the entry's body. It reports false if the draw came out
// another length, which the same table cannot do.
func (d *slots) fill(out []byte, t *table) bool {
	var buf [16]int
	got := t.edges.Draw(d.pool, d.fam, d.n, buf[:0])
	if len(got) != len(d.drawn) {
		return false
	}
	for j, ei := range got {
		copy(out[d.off+j*d.stride:], d.addrs[ei][0])
	}
	return true
}

// findSlots finds the drawn edges' records in the packed response b:
// the last records of its answer section, of type qtype, each holding
// the address of the edge drawn in its place, evenly spaced (the same
// owner, compressed the same way). Nil if b is not laid out so.
func findSlots(b []byte, qtype uint16, d *redraw) *slots {
	be := binary.BigEndian
	if len(b) < headerLen || be.Uint16(b[4:]) != 1 {
		return nil
	}
	an := int(be.Uint16(b[6:]))
	i, ok := skipName(b, headerLen)
	if !ok || an < len(d.drawn) {
		return nil
	}
	i += 4 // the question's type and class
	var rdata []int
	for range an {
		if i, ok = skipName(b, i); !ok || i+10 > len(b) {
			return nil
		}
		typ, n := be.Uint16(b[i:]), int(be.Uint16(b[i+8:]))
		i += 10
		if i+n > len(b) {
			return nil
		}
		if typ == qtype {
			rdata = append(rdata, i)
		}
		i += n
	}
	if len(rdata) != len(d.drawn) {
		return nil
	}
	sl := &slots{redraw: d, off: rdata[0]}
	if len(rdata) > 1 {
		sl.stride = rdata[1] - rdata[0]
	}
	for j, off := range rdata {
		want := d.addrs[d.drawn[j]][0]
		if off != sl.off+j*sl.stride || !bytes.Equal(b[off:off+len(want)], want) || len(want) != int(be.Uint16(b[off-2:])) {
			return nil
		}
	}
	return sl
}

// skipName returns the offset just past the packed name at i.
func skipName(b []byte, i int) (int, bool) {
	for i < len(b) {
		switch l := int(b[i]); {
		case l == 0:
			return i + 1, true
		case l&0xC0 == 0xC0:
			return i + 2, i+2 <= len(b)
		case l&0xC0 != 0:
			return 0, false
		default:
			i += 1 + l
		}
	}
	return 0, false
}

// newAnswerCache returns a cache of at most maxBytes (0: nil, no cache).
func newAnswerCache(maxBytes int64) *answerCache {
	if maxBytes <= 0 {
		return nil
	}
	c := &answerCache{shardBytes: int(maxBytes / cacheShards), seed: maphash.MakeSeed()}
	for i := range c.shards {
		c.shards[i].entries = map[string]*cachedAnswer{}
	}
	return c
}

func (c *answerCache) shard(key []byte) *cacheShard {
	return &c.shards[maphash.Bytes(c.seed, key)%cacheShards]
}

// get returns the entry for key, or nil.
func (c *answerCache) get(key []byte) *cachedAnswer {
	sh := c.shard(key)
	sh.mu.RLock()
	e := sh.entries[string(key)]
	sh.mu.RUnlock()
	return e
}

// put stores e under key, first evicting entries chosen at random (Go's
// map order) until it fits the shard's share of the bound.
func (c *answerCache) put(key []byte, e *cachedAnswer) {
	cost := len(key) + len(e.body) + entryOverhead
	if cost > c.shardBytes {
		return
	}
	sh := c.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if _, ok := sh.entries[string(key)]; ok {
		return // another worker filled it meanwhile
	}
	for k, old := range sh.entries {
		if sh.bytes+cost <= c.shardBytes {
			break
		}
		delete(sh.entries, k)
		sh.bytes -= len(k) + len(old.body) + entryOverhead
	}
	sh.entries[string(key)] = e
	sh.bytes += cost
}

// len counts the entries (tests).
func (c *answerCache) len() int {
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.RLock()
		n += len(sh.entries)
		sh.mu.RUnlock()
	}
	return n
}

// newCachedAnswer makes the entry for the packed response b to q, or nil
// when b does not end as the fast path will rebuild it: with an ECS
// subnet in the query, b must end in an OPT record holding only the
// echoed option (same family and source, the query's address), so that
// the address bytes are the last thing in b and the one thing a hit
// changes besides the ID.
func (s *Server) newCachedAnswer(q *fastQuery, b []byte, res result) *cachedAnswer {
	body := b
	if q.ecs {
		n := len(q.ecsAddr)
		optLen := 11 + 8 + n // root, type, class, TTL, rdlength; the option
		if len(b) < headerLen+optLen {
			return nil
		}
		opt := b[len(b)-optLen:]
		be := binary.BigEndian
		if opt[0] != 0 || be.Uint16(opt[1:]) != typeOPT || int(be.Uint16(opt[9:])) != 8+n ||
			be.Uint16(opt[11:]) != optionECS || int(be.Uint16(opt[13:])) != 4+n ||
			be.Uint16(opt[15:]) != q.family || opt[17] != q.source || !bytes.Equal(opt[19:], q.ecsAddr) {
			return nil
		}
		body = b[:len(b)-n]
	}
	var draw *slots
	if res.redraw != nil {
		if draw = findSlots(body, res.qtype, res.redraw); draw == nil {
			return nil
		}
	}
	res.opt, res.ecs, res.redraw = nil, netip.Prefix{}, nil
	return &cachedAnswer{body: bytes.Clone(body), res: res, counters: s.counters(res, false), draw: draw}
}
