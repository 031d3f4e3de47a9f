package fill

import (
	"cmp"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/selfcdn/cdn/edge/cache"
	"github.com/selfcdn/cdn/edge/freshness"
	"github.com/selfcdn/cdn/edge/tier"
	"github.com/selfcdn/cdn/internal/cachekey"
	"github.com/selfcdn/cdn/origin"
	"github.com/selfcdn/cdn/purge"
)

// Config is what a Filler fills with and where it stores. Memory is
// required; every other field documents what nil or zero means.
type Config struct {
	// Memory is the memory tier fills store into.
	Memory *cache.Memory
	// Disk is the disk tier; nil: none.
	Disk *cache.Disk
	// Group holds the flights that fills leave when they end; nil only
	// if every job is Solo.
	Group *Group
	// Upstream answers a job's request; nil: FetchOrigin alone.
	Upstream Upstream
	// Lookup finds what the tiers hold under a key, as the request path
	// looks it up (the edge's promotes a disk hit to memory and counts
	// it); nil: Memory, then Disk.
	Lookup func(key string) (*cache.Entry, bool)
	// Header turns an upstream's response header into the one sent to
	// clients and stored (the edge drops hop-by-hop fields and adds its
	// Via); nil: a copy as it came.
	Header func(http.Header) http.Header
	// Prepare readies an entry before it is stored and shared (the edge
	// decides whether it may compress it); nil: nothing.
	Prepare func(e *cache.Entry, key string)
	// Hot counts a miss for a key answered by its home edge and reports
	// whether this edge keeps a copy too (tier.Tier.Hot); nil: always.
	Hot func(key string) bool
	// MaxVariants bounds the variants stored under one Vary index; a
	// header with endless values must not flood memory.
	MaxVariants int
	// HitForMissTTL is how long a URL whose answer could not be shared
	// sends its requests straight upstream; 0: never.
	HitForMissTTL time.Duration
	// Fetched is told of every upstream fetch: the site, the status (0
	// when it failed) and the time to the response header; nil: nothing.
	Fetched func(site string, status int, took time.Duration)
	// Log receives failures and stale answers; nil: discarded.
	Log *slog.Logger
	// Now is the clock; nil: time.Now.
	Now func() time.Time
	// FirstGen is where Vary index generations start, past any an
	// earlier run on the same disk could have used (edge/clockfloor.go);
	// 0: the wall clock in nanoseconds.
	FirstGen uint64
}

// Filler runs fills: it fetches a job's response upstream, publishes its
// head to the flight's waiters, streams its body into the flight, and
// stores what RFC 9111 lets it store. It is safe for concurrent use;
// make one with New.
type Filler struct {
	cfg Config
	// gen numbers Vary indexes; their variants' keys include it.
	gen atomic.Uint64
}

// New returns a Filler with cfg's defaults filled in.
func New(cfg Config) *Filler {
	if cfg.Memory == nil {
		panic("fill: Config.Memory is nil")
	}
	f := &Filler{cfg: cfg}
	if f.cfg.Upstream == nil {
		f.cfg.Upstream = func(j *Job) (*http.Response, tier.Stage, error) {
			res, err := f.FetchOrigin(j)
			return res, tier.StageNone, err
		}
	}
	if f.cfg.Lookup == nil {
		f.cfg.Lookup = f.lookup
	}
	if f.cfg.Header == nil {
		f.cfg.Header = http.Header.Clone
	}
	if f.cfg.Prepare == nil {
		f.cfg.Prepare = func(*cache.Entry, string) {}
	}
	if f.cfg.Hot == nil {
		f.cfg.Hot = func(string) bool { return true }
	}
	if f.cfg.Fetched == nil {
		f.cfg.Fetched = func(string, int, time.Duration) {}
	}
	if f.cfg.Log == nil {
		f.cfg.Log = slog.New(slog.DiscardHandler)
	}
	if f.cfg.Now == nil {
		f.cfg.Now = time.Now
	}
	// Vary index generations go into keys that outlive the process on
	// disk: start past any number an earlier run could have used.
	f.gen.Store(cmp.Or(f.cfg.FirstGen, uint64(time.Now().UnixNano())))
	return f
}

// Upstream answers a fill's request (j.Request for j.URI) and says which
// hop answered: the edge's asks the peers of j.Hops, then FetchOrigin.
// Run closes the response's body.
type Upstream func(j *Job) (*http.Response, tier.Stage, error)

// Site is what a fill needs of the site it fills for.
type Site struct {
	// Name labels logs and metrics.
	Name string
	// Origins is the site's origin group, for FetchOrigin.
	Origins *origin.Group
	// Policy holds the site's TTL bounds.
	Policy freshness.Policy
	// Purges are the site's purge rules, which decide whether a stored
	// entry may answer for a failed upstream; nil: none.
	Purges *purge.SiteRules
}

// Job is one fill. Everything it needs from the client's request is
// copied in before the request's handler returns.
type Job struct {
	// Site is the site the key belongs to.
	Site Site
	// Base is the request's cache key, Key the one being filled (a
	// variant's, under a Vary index).
	Base, Key string
	// Flight is the flight the fill answers, FlightKey its key in the
	// Group. Solo says nobody else may join it (it is not in the Group).
	Flight    *Flight
	FlightKey string
	Solo      bool
	// Request is what upstreams are asked, under the fill's context (the
	// server's lifetime, not the client's), which Cancel ends when the
	// fill is over. The origin group sets its URL and Host per origin.
	Request *http.Request
	Cancel  context.CancelFunc
	// URI is the request URI each origin or peer is asked for.
	URI string
	// Stored is the entry being revalidated, nil if none. The fill owns
	// it: a disk body must be a handle of its own, which it releases.
	Stored *cache.Entry
	// ClientHeader is the client's request header, for the Vary selector:
	// Request.Header has the edge's own X-Forwarded-* and Via.
	ClientHeader http.Header
	// Stamp is the purge clock when the fill started: what it stores is
	// as old as that, so a purge applied meanwhile still matches it.
	Stamp uint64
	// Invalidations is the invalidation count when the fill started (see
	// cache.Entry.Invalidated): an invalidation of the URL after it keeps
	// the fill from storing.
	Invalidations uint64
	// Hops are the peers Upstream asks before the origin (edge/tier), and
	// Host the client's host, which they serve; the fill itself reads
	// neither.
	Hops []tier.Hop
	Host string

	tags []string // the response's purge tags
}

// Run fetches j upstream, publishes the head to the flight's waiters,
// streams the body into the flight, and stores the result. It ends the
// job: it cancels its context, releases Stored and the writer's
// reference on the flight's body, and takes the flight out of the Group.
func (f *Filler) Run(j *Job) {
	defer j.Cancel()
	defer j.Flight.Body.Release()
	defer j.Stored.Release()
	// Every ending below leaves the group (done) before it tells the
	// waiters: a client that got its answer and asks again at once must
	// start a new fetch or find the stored entry, never the old flight.
	sent := f.cfg.Now()
	res, from, err := f.cfg.Upstream(j)
	took := f.cfg.Now().Sub(sent)
	if err != nil {
		f.cfg.Fetched(j.Site.Name, 0, took)
		if f.staleIfError(j) {
			return
		}
		f.cfg.Log.LogAttrs(j.Request.Context(), slog.LevelWarn, "origin fetch failed",
			slog.String("site", j.Site.Name), slog.String("key", j.Key), slog.Any("err", err))
		f.done(j)
		j.Flight.Fail(err)
		return
	}
	defer res.Body.Close()
	f.cfg.Fetched(j.Site.Name, res.StatusCode, took)
	got := f.cfg.Now()

	if res.StatusCode == http.StatusNotModified && j.Stored != nil {
		f.revalidated(j, res, sent, got)
		return
	}
	if res.StatusCode >= 500 && f.staleIfError(j) {
		return
	}
	hdr := f.cfg.Header(res.Header)
	var upstream string
	keepCopy := true
	if from != tier.StageNone {
		fromPeer(hdr)
		upstream = strings.Join(res.Header["Cache-Status"], ", ")
		// A copy of what the region's home holds is kept only for keys
		// asked for often here: the region holds one copy of its long
		// tail. What the shield answered, this edge (a home) keeps.
		keepCopy = from != tier.StageHome || f.cfg.Hot(j.Base)
	}
	j.tags = purge.Tags(res.Header)
	vary, star := cachekey.ParseVary(hdr)
	d := freshness.Evaluate(j.Request.Header, res.StatusCode, res.Header, sent, got, j.Site.Policy)
	head := Head{Status: res.StatusCode, Header: hdr, Shareable: d.Store && !star, Decision: d, Vary: vary, Tags: j.tags,
		Upstream: upstream, NotKept: !keepCopy}
	if len(vary) > 0 {
		head.VariantKey = cachekey.Variant("", vary, j.ClientHeader)
	}
	if age, ok := res.Header["Age"]; ok && !head.Shareable {
		hdr["Age"] = age // passed on as is; a stored response gets it recomputed
	}
	j.Flight.Publish(head)
	if !head.Shareable {
		f.markHitForMiss(j, res.StatusCode, d.Reason)
		// Let new requests bypass this flight at once instead of queueing
		// behind a body they could not share.
		f.done(j)
	}
	j.Flight.Body.Grow(res.ContentLength)
	if err := f.copyBody(j, res.Body, head.Shareable); err != nil {
		f.done(j)
		j.Flight.Body.Finish(err)
		if !errors.Is(err, errAbandoned) {
			f.cfg.Log.LogAttrs(j.Request.Context(), slog.LevelWarn, "origin body failed",
				slog.String("site", j.Site.Name), slog.String("key", j.Key), slog.Any("err", err))
		}
		return
	}
	var keep []stored
	if head.Shareable && keepCopy {
		keep = f.store(j, head, d.Meta)
	}
	// Waiters are answered before the disk write. A body that memory holds
	// leaves the group first (the next request finds it stored); one kept
	// only on disk (too large for memory, or refused by its admission)
	// stays in the group until it is there, so requests join the finished
	// flight instead of fetching it again meanwhile.
	onDiskOnly := len(keep) > 0 && !keep[len(keep)-1].memory
	if !onDiskOnly {
		f.done(j)
	}
	j.Flight.Body.Finish(nil)
	f.persist(j, keep)
	f.done(j)
}

// FetchOrigin sends the job's request to the site's origin group:
// primaries, then backups, while the answer is a failure another origin
// can fix (no connection, a timeout, a failover status).
func (f *Filler) FetchOrigin(j *Job) (*http.Response, error) {
	res, answered, err := j.Site.Origins.Do(j.Request, j.URI)
	if answered.Attempts > 1 {
		f.cfg.Log.LogAttrs(j.Request.Context(), slog.LevelWarn, "origin failed over",
			slog.String("site", j.Site.Name), slog.String("answered", answered.Origin), slog.Int("attempts", answered.Attempts), slog.Any("err", err))
	}
	return res, err
}

// done takes the job's flight out of the group.
func (f *Filler) done(j *Job) {
	if !j.Solo {
		f.cfg.Group.Done(j.FlightKey, j.Flight)
	}
}

// errAbandoned ends a download nobody reads and nothing will store.
var errAbandoned = errors.New("abandoned: no reader left and nothing to store")

// copyBody streams the upstream body into the flight. An unshareable body
// nobody reads any more is abandoned rather than downloaded for no one.
func (f *Filler) copyBody(j *Job, body io.Reader, shareable bool) error {
	buf := make([]byte, 32<<10)
	for {
		n, err := body.Read(buf)
		if n > 0 {
			if _, werr := j.Flight.Body.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		// Nobody reads it and it will not be stored: stop downloading.
		if (!shareable || j.Flight.Body.Spilled() && !f.KeepsOnDisk(j.Flight.Body.Size())) && j.Flight.Body.Readers() == 0 {
			return errAbandoned
		}
	}
}

// fromPeer adjusts the header of a peer's answer. Peers are asked for
// identity; a Vary: Accept-Encoding on an identity body is the peer's
// own compression on offer, which this edge does itself, and keeping it
// would store one copy per client coding.
func fromPeer(hdr http.Header) {
	if len(hdr["Content-Encoding"]) > 0 || len(hdr["Vary"]) == 0 {
		return
	}
	var keep []string
	for _, v := range hdr["Vary"] {
		for f := range strings.SplitSeq(v, ",") {
			if f = strings.TrimSpace(f); f != "" && !strings.EqualFold(f, "Accept-Encoding") {
				keep = append(keep, f)
			}
		}
	}
	if len(keep) == 0 {
		delete(hdr, "Vary")
		return
	}
	hdr["Vary"] = []string{strings.Join(keep, ", ")}
}
