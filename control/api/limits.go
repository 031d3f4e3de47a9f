package api

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/selfcdn/cdn/internal/state"
	"github.com/selfcdn/cdn/push"
)

// Abuse limits (issue 19): whatever one token holds, it cannot make control
// write without bound. Writes are rate-limited per token; what a write may
// carry is bounded per request (purge.MaxItems, maxPurgeMessage, the body
// limits New takes) and per release (Limits.SiteBytes); the purge log as a
// whole is bounded in bytes by the stream (state.Store.LimitPurgeBytes).

// Limits bound what one token can make control do. The zero value bounds
// nothing beyond what New's arguments do.
type Limits struct {
	// WriteRate is how many writes per second one token may sustain: POST,
	// PUT, PATCH and DELETE under /v1, except blob uploads and the
	// missing-blobs question (a push of 10,000 new files makes 10,000 of
	// those; bytes bound them, see SiteBytes). 0 disables the limit.
	WriteRate float64
	// WriteBurst is how many writes a token may make at once, above the
	// rate; at least 1 when WriteRate is set.
	WriteBurst int
	// SiteBytes bounds the bytes of blobs one release of a site
	// references, and so any one blob; 0: no bound.
	SiteBytes int64
}

// SetLimits applies l. Call it before the API serves.
func (a *API) SetLimits(l Limits) {
	a.limits = l
	a.writes = nil
	if l.WriteRate > 0 {
		a.writes = newWriteLimiter(rate.Limit(l.WriteRate), max(l.WriteBurst, 1))
	}
}

// NewRateLimitedMetric is the counter of writes refused with 429.
func NewRateLimitedMetric() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cdn_control_rate_limited_total",
		Help: "API writes refused with 429 because their token was over its write rate, by the kind of the token's first scope.",
	}, []string{"scope"})
}

// writeLimited reports whether a route's calls count against the token's
// write rate: every write but those of a push's upload, which one push
// makes per new file.
func writeLimited(pattern string) bool {
	switch pattern {
	case "PUT /v1/sites/{site}/blobs/{hash}", "POST /v1/sites/{site}/blobs", "POST /v1/sites/{site}/blobs/missing":
		return false
	}
	method, _, _ := strings.Cut(pattern, " ")
	return method != http.MethodGet && method != http.MethodHead
}

// rateLimit takes one write from t's bucket. Over the rate, it answers 429
// with Retry-After and returns false.
func (a *API) rateLimit(w http.ResponseWriter, t state.Token) bool {
	ok, retry := a.writes.allow(t.ID, a.now())
	if ok {
		return true
	}
	if a.RateLimited != nil {
		a.RateLimited.WithLabelValues(scopeKind(t)).Inc()
	}
	// Whole seconds, rounded up (RFC 9110 §10.2.3), never 0: a client
	// that retries at once would only be refused again.
	secs := max(1, int(math.Ceil(retry.Seconds())))
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	writeError(w, http.StatusTooManyRequests, "rate_limited", fmt.Sprintf(
		"this token is over its write rate (%g per second, bursts of %d); retry in %ds",
		a.limits.WriteRate, max(a.limits.WriteBurst, 1), secs))
	return false
}

// scopeKind names t's first scope without its site ("purge:blog" is
// "purge"): a metric label from a bounded set.
func scopeKind(t state.Token) string {
	if len(t.Scopes) == 0 {
		return "none"
	}
	kind, _, _ := strings.Cut(t.Scopes[0], ":")
	switch kind {
	case ScopeAdmin, ScopeRead, "purge", "push":
		return kind
	}
	return "other"
}

// writeLimiter is a token bucket per API token. A bucket unused for as long
// as it takes to fill again is forgotten: a new one starts full, so
// forgetting it changes no answer, and memory holds only the tokens that
// wrote recently. The zero value is not usable; use newWriteLimiter.
type writeLimiter struct {
	rate  rate.Limit
	burst int
	idle  time.Duration // how long an empty bucket takes to fill

	mu      sync.Mutex         // protects buckets and swept
	buckets map[string]*bucket // by token ID
	swept   time.Time          // when idle buckets were last dropped
}

type bucket struct {
	lim  *rate.Limiter
	last time.Time // the last write taken
}

func newWriteLimiter(r rate.Limit, burst int) *writeLimiter {
	idle := time.Duration(float64(burst) / float64(r) * float64(time.Second))
	return &writeLimiter{rate: r, burst: burst, idle: max(idle, time.Second), buckets: map[string]*bucket{}}
}

// allow takes a write from id's bucket at now. When the bucket is empty it
// takes nothing and returns how long until it holds one.
func (l *writeLimiter) allow(id string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweep(now)
	b, ok := l.buckets[id]
	if !ok {
		b = &bucket{lim: rate.NewLimiter(l.rate, l.burst)}
		l.buckets[id] = b
	}
	b.last = now
	res := b.lim.ReserveN(now, 1)
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now) // refused: it takes nothing
		return false, d
	}
	return true, 0
}

// sweep drops the buckets that are full again, at most once per idle
// period, so its cost spreads over the writes in that period.
func (l *writeLimiter) sweep(now time.Time) {
	if now.Sub(l.swept) < l.idle {
		return
	}
	l.swept = now
	for id, b := range l.buckets {
		if now.Sub(b.last) >= l.idle {
			delete(l.buckets, id)
		}
	}
}

// size is how many buckets are held.
func (l *writeLimiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

// overLimit is a write past one of the byte or count limits (413); its
// message names the limit.
type overLimit struct{ msg string }

func (e *overLimit) Error() string { return e.msg }

// maxPurgeMessage bounds one purge as written to the log: one NATS
// message, whose payload and headers NATS caps at 1 MiB by default
// (max_payload). A request under the body limit can still grow past it,
// since JSON escapes '&' and '<' in URLs as six bytes each.
const maxPurgeMessage = 1<<20 - 4<<10

// checkPurgeSize refuses a purge of n bytes as stored past maxPurgeMessage.
func checkPurgeSize(n int) error {
	if n <= maxPurgeMessage {
		return nil
	}
	return &overLimit{fmt.Sprintf("the purge is %d bytes as stored, over the %d-byte limit of one purge; split it into several requests", n, maxPurgeMessage)}
}

// checkSiteBytes refuses a release of site whose blobs (each counted once)
// add up past Limits.SiteBytes.
func (a *API) checkSiteBytes(site string, blobs []push.Blob) error {
	if a.limits.SiteBytes <= 0 {
		return nil
	}
	var total int64
	for _, b := range blobs {
		total += b.Size
	}
	if total <= a.limits.SiteBytes {
		return nil
	}
	return &overLimit{fmt.Sprintf("the release of site %s references %d bytes of blobs, over the %d-byte limit of one site (control's push.max_site_bytes); no release was made",
		site, total, a.limits.SiteBytes)}
}

// limitBlob bounds an upload by Limits.SiteBytes when that is below the
// blob limit: a blob larger than a site may hold could never be committed.
func (a *API) limitBlob(w http.ResponseWriter, r *http.Request) error {
	n := a.limits.SiteBytes
	if n <= 0 || n >= a.maxBlob {
		return nil
	}
	if r.ContentLength > n {
		return &overLimit{fmt.Sprintf("the blob is %d bytes, over the %d-byte limit of one site (control's push.max_site_bytes)", r.ContentLength, n)}
	}
	r.Body = http.MaxBytesReader(w, r.Body, n)
	return nil
}
