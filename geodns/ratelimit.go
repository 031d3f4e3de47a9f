package geodns

import (
	"hash/maphash"
	"net/netip"
	"sync"
	"time"
)

// rateLimiter is response rate limiting (RRL) for UDP: a token bucket per
// client network and response (name and type; NXDOMAIN counts per zone).
// A spoofed flood aimed at a victim through us then costs the victim
// little, while one client asking for many names is not slowed. A query's
// EDNS Client Subnet is part of the key: a resolver asks once per client
// subnet and TTL, so a busy resolver's legitimate queries for one name
// would otherwise exceed any sane rate (varying the subnet buys a spoofer
// nothing: edge answers are about the size of the query).
type rateLimiter struct {
	rate           float64 // tokens per second
	burst          float64
	slip           int
	v4bits, v6bits int
	exempt         []netip.Prefix
	now            func() time.Time
	seed           maphash.Seed
	shards         [rlShards]rlShard
}

const (
	rlShards = 16
	// rlMaxPerShard bounds memory under a flood from many sources: a full
	// shard first forgets idle buckets, then everything (limiting stops
	// for an instant rather than memory growing without end).
	rlMaxPerShard = 1 << 16
)

type rlShard struct {
	mu      sync.Mutex // guards buckets
	buckets map[rlKey]*rlBucket
}

type rlKey struct {
	net, ecs netip.Prefix
	name     string
	qtype    uint16
}

type rlBucket struct {
	tokens  float64
	last    time.Time
	limited int // responses limited so far, for the slip count
}

// verdict is what to do with one response.
type verdict uint8

const (
	send verdict = iota
	drop
	slip // send an empty truncated response instead
)

func newRateLimiter(cfg RateLimitConfig, now func() time.Time) *rateLimiter {
	if cfg.ResponsesPerSecond <= 0 {
		return nil
	}
	burst := float64(cfg.Burst)
	if burst == 0 {
		burst = 2 * cfg.ResponsesPerSecond
	}
	rl := &rateLimiter{rate: cfg.ResponsesPerSecond, burst: max(burst, 1), slip: cfg.Slip,
		v4bits: cfg.IPv4Prefix, v6bits: cfg.IPv6Prefix, now: now, seed: maphash.MakeSeed()}
	for _, p := range cfg.Exempt {
		if pre, err := netip.ParsePrefix(p); err == nil {
			rl.exempt = append(rl.exempt, pre.Masked())
		}
	}
	for i := range rl.shards {
		rl.shards[i].buckets = map[rlKey]*rlBucket{}
	}
	return rl
}

// check takes a token for a response to src (for client subnet ecs, if
// valid) about name (lower-case) of qtype; for NXDOMAIN the caller passes
// the zone as the name.
func (rl *rateLimiter) check(src netip.Addr, ecs netip.Prefix, name string, qtype uint16) verdict {
	src = src.Unmap()
	for _, p := range rl.exempt {
		if p.Contains(src) {
			return send
		}
	}
	bits := rl.v6bits
	if src.Is4() {
		bits = rl.v4bits
	}
	network, _ := src.Prefix(bits)
	k := rlKey{net: network, ecs: ecs, name: name, qtype: qtype}
	sh := &rl.shards[maphash.Comparable(rl.seed, k)%rlShards]
	now := rl.now()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	b := sh.buckets[k]
	if b == nil {
		if len(sh.buckets) >= rlMaxPerShard {
			sh.sweep(now, rl.burst/rl.rate)
		}
		b = &rlBucket{tokens: rl.burst, last: now}
		sh.buckets[k] = b
	}
	b.tokens = min(rl.burst, b.tokens+now.Sub(b.last).Seconds()*rl.rate)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return send
	}
	b.limited++
	if rl.slip > 0 && b.limited%rl.slip == 0 {
		return slip
	}
	return drop
}

// sweep forgets buckets idle long enough to have refilled; if that
// leaves the shard over three quarters full, it forgets them all, so the
// next sweep is at least a quarter of the shard's inserts away (a shard
// full of busy buckets must not be scanned on every new key).
func (sh *rlShard) sweep(now time.Time, refill float64) {
	for k, b := range sh.buckets {
		if now.Sub(b.last).Seconds() >= refill {
			delete(sh.buckets, k)
		}
	}
	if len(sh.buckets) > rlMaxPerShard*3/4 {
		clear(sh.buckets)
	}
}
