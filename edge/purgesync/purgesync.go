package purgesync

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/selfcdn/cdn/internal/state"
	"github.com/selfcdn/cdn/purge"
)

// Source is the shared purge log and the place edges report to; the
// internal/state Store is one.
type Source interface {
	PurgeLog(ctx context.Context) (state.PurgeLogInfo, error)
	FollowPurges(ctx context.Context, from uint64, f func(p state.Purge, pending uint64) error) error
	ReportPurgeApplied(ctx context.Context, a state.PurgeApplied) error
}

// Config shapes a Follower.
type Config struct {
	// Edge is the edge's name in its reports.
	Edge string
	// Dir holds the purge log. Empty keeps none: an edge without a disk
	// tier starts empty, and catches up from the log's end.
	Dir string
	// HasCache says objects from an earlier run are on disk. With no
	// purge log beside them, nothing says which purges they missed, so
	// every site is purged.
	HasCache bool
	// Logger receives what an operator should know; nil discards.
	Logger *slog.Logger
	// Registry receives the metrics; nil registers none.
	Registry prometheus.Registerer
	// Now is the clock; nil is time.Now.
	Now func() time.Time
	// BootID returns the machine's boot ID; nil reads Linux's, or makes
	// one up per process where there is none (so every unclean stop
	// counts as a crash of the machine). Tests set it.
	BootID func() string
	// MaxLogItems bounds the URLs, prefixes and tags the purge log holds
	// for one site since its last whole-site purge, repeats included; a
	// purge past it is applied as a whole-site purge, which empties the
	// site's share of the log. 0: 100,000.
	MaxLogItems int
}

// Follower applies the purge log to a table. Run is called once per
// connection, never twice at once.
type Follower struct {
	cfg     Config
	table   *purge.Table
	j       *journal // nil: no log kept
	stream  string   // the stream's identity; "" before the first contact
	applied atomic.Uint64
	// written is the last version the purge log's file holds (in the
	// kernel: a killed edge keeps it), durable the last one fsynced, and
	// reported the last one the source took a report of.
	written, durable, reported atomic.Uint64
	// kick wakes the syncer to fsync what was written; reportKick the
	// reporter to report it.
	kick, reportKick chan struct{}
	// syncErr is the syncer's last failure, which stops Run: the log on
	// disk may lack what it holds in the kernel.
	syncErr atomic.Pointer[error]
	// caughtUp is set once the edge has applied every purge the log held
	// when it first connected.
	caughtUp atomic.Bool
	log      *slog.Logger
	m        *metrics
}

// Open reads the edge's purge log into table and returns a follower that
// resumes from it.
func Open(table *purge.Table, cfg Config) (*Follower, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	f := &Follower{cfg: cfg, table: table, log: cfg.Logger, m: newMetrics(cfg.Registry),
		kick: make(chan struct{}, 1), reportKick: make(chan struct{}, 1)}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	if cfg.Dir == "" {
		return f, nil
	}
	if cfg.BootID == nil {
		cfg.BootID = bootID
	}
	boot := cfg.BootID()
	j, recs, damaged, err := openJournal(filepath.Join(cfg.Dir, FileName), boot)
	if err != nil {
		return nil, err
	}
	f.j = j
	for _, r := range recs {
		switch {
		case r.Floor:
			table.RestoreFloor(r.Clock)
		case r.Req != nil:
			table.Restore(r.Clock, r.Site, *r.Req)
		}
		f.applied.Store(max(f.applied.Load(), r.Version))
		if r.Stream != "" {
			f.stream = r.Stream
		}
	}
	switch {
	case len(recs) == 0 && cfg.HasCache:
		f.log.Warn("cached objects but no purge log: purging every site")
		if err := f.floor(0, ""); err != nil {
			j.close()
			return nil, err
		}
	case len(recs) > 0 && (damaged || !recs[len(recs)-1].Clean) && lastBoot(recs) != "" && lastBoot(recs) != boot:
		// The machine went down while the edge ran: purges it reported
		// applied may have been in the kernel only, and are gone from
		// the log. (A log with no boot record was written by an edge
		// that fsynced before reporting, and lost nothing.)
		f.log.Warn("the machine restarted under the edge: purging every site", "version", f.applied.Load())
		if err := f.floor(f.applied.Load(), ""); err != nil {
			j.close()
			return nil, err
		}
	}
	if err := f.write(record{Version: f.applied.Load(), Boot: boot}); err != nil {
		j.close()
		return nil, err
	}
	if err := j.sync(); err != nil {
		j.close()
		return nil, err
	}
	f.written.Store(f.applied.Load())
	f.durable.Store(f.applied.Load())
	f.m.version.Set(float64(f.applied.Load()))
	f.m.rules.Set(float64(table.Rules()))
	return f, nil
}

// CaughtUp reports whether the edge has applied every purge the log held
// when the edge first reached it: until then it may hold objects purged
// while it was away.
func (f *Follower) CaughtUp() bool { return f.caughtUp.Load() }

// Applied is the last version applied.
func (f *Follower) Applied() uint64 { return f.applied.Load() }

// Close makes the purge log durable, marks it closed cleanly and closes
// it. Run must have returned.
func (f *Follower) Close() error {
	if f.j == nil {
		return nil
	}
	err := f.j.sync()
	if err == nil {
		err = f.write(record{Version: f.applied.Load(), Clean: true})
	}
	if err == nil {
		err = f.j.sync()
	}
	if errors.Is(err, errClosed) {
		err = nil // closed before
	}
	return errors.Join(err, f.j.close())
}

// Run follows the log from where the edge left it until ctx ends or the
// connection fails; the caller runs it again after a reconnect.
func (f *Follower) Run(ctx context.Context, src Source) error {
	info, err := src.PurgeLog(ctx)
	if err != nil {
		return err
	}
	id := strconv.FormatInt(info.Created.UnixNano(), 10)
	switch applied := f.applied.Load(); {
	case f.stream == "":
		// First contact: nothing cached here predates the log's end
		// (or it was floored in Open), so start from there.
		f.applied.Store(info.Last)
		f.stream = id
		if err := f.write(record{Version: info.Last, Stream: id}); err != nil {
			return err
		}
	case id != f.stream || info.Last < applied:
		f.log.Warn("the purge log was made anew: purging every site", "version", applied, "log_last", info.Last)
		if err := f.floor(info.Last, id); err != nil {
			return err
		}
	case info.First > applied+1:
		if err := f.lost(info.First - 1); err != nil {
			return err
		}
	}
	if err := f.sync(); err != nil {
		return err
	}
	target := info.Last
	if f.applied.Load() >= target {
		f.caughtUp.Store(true)
	}
	reports, stopReports := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stopReports()
	wg.Go(func() { f.reportLoop(reports, src) })
	wg.Go(func() { f.syncLoop(reports) })
	pendingSync := 0
	return src.FollowPurges(ctx, f.applied.Load()+1, func(p state.Purge, pending uint64) error {
		if err := f.syncErr.Load(); err != nil {
			return *err
		}
		applied := f.applied.Load()
		if p.Version <= applied {
			return nil // delivered again after a reconnect
		}
		if p.Version > applied+1 {
			if err := f.lost(p.Version - 1); err != nil {
				return err
			}
		}
		if err := f.apply(p); err != nil {
			return err
		}
		// A burst is persisted and reported once, at its end.
		if pendingSync++; pending == 0 || pendingSync >= 256 {
			pendingSync = 0
			if err := f.sync(); err != nil {
				return err
			}
			if p.Version >= target {
				f.caughtUp.Store(true)
			}
		}
		return nil
	})
}

// apply applies one purge and appends it to the log.
func (f *Follower) apply(p state.Purge) error {
	var m purge.Message
	req := &m.Request
	if err := json.Unmarshal(p.Data, &m); err != nil || m.Site != p.Site {
		// Not ours to judge what it meant: the safe reading is the most.
		f.log.Error("unreadable purge: purging its site whole", "version", p.Version, "site", p.Site, "err", err)
		req = &purge.Request{All: true}
	}
	if f.j != nil && !req.All && f.j.siteItems(p.Site)+reqItems(req) > cmp.Or(f.cfg.MaxLogItems, 100_000) {
		// The table may hold few rules (the same URLs purged again and
		// again) while the log holds every purge: bound the log too.
		f.log.Warn("site's purge log holds too many items: purged whole", "site", p.Site, "version", p.Version)
		f.m.widened.Inc()
		req = &purge.Request{All: true}
	}
	clock, widened := f.table.Apply(p.Site, *req)
	if widened {
		f.log.Warn("site holds too many purge rules: purged whole", "site", p.Site, "version", p.Version)
		f.m.widened.Inc()
		req = &purge.Request{All: true}
	}
	f.applied.Store(p.Version)
	f.m.applied.Inc()
	if !p.Time.IsZero() {
		f.m.lag.Observe(f.cfg.Now().Sub(p.Time).Seconds())
	}
	f.log.Debug("purge applied", "version", p.Version, "site", p.Site)
	return f.write(record{Version: p.Version, Clock: clock, Site: p.Site, Req: req})
}

// lost handles purges up to version upTo that the log dropped before the
// edge saw them. Which sites they named is gone with them, so every site
// is purged whole, those the edge does not know yet included.
func (f *Follower) lost(upTo uint64) error {
	f.log.Warn("purges dropped from the log before this edge applied them: purged every site",
		"version", f.applied.Load(), "resumed_at", upTo+1)
	return f.floor(upTo, "")
}

// floor purges every site and moves the version to v.
func (f *Follower) floor(v uint64, stream string) error {
	clock := f.table.Floor()
	f.applied.Store(v)
	if stream != "" {
		f.stream = stream
	}
	f.m.lost.Inc()
	if err := f.write(record{Version: v, Clock: clock, Floor: true, Stream: stream}); err != nil {
		return err
	}
	if f.j == nil {
		return nil
	}
	if err := f.j.sync(); err != nil {
		return err
	}
	f.written.Store(v)
	f.durable.Store(v)
	return nil
}

func (f *Follower) write(r record) error {
	if f.j == nil {
		return nil
	}
	return f.j.append(r)
}

// sync writes the applied purges to the log's file, and has the
// reporter report them and the syncer fsync them. A killed edge loses
// nothing written; a crashed machine can, and the edge then purges every
// site when it comes back (Open).
func (f *Follower) sync() error {
	if f.j != nil {
		if err := f.j.flush(); err != nil {
			// Not reported applied while not written: a crash now
			// would come back without them and apply them again.
			return err
		}
	}
	v := f.applied.Load()
	f.written.Store(v)
	f.m.version.Set(float64(v))
	f.m.rules.Set(float64(f.table.Rules()))
	for _, k := range []chan struct{}{f.reportKick, f.kick} {
		select {
		case k <- struct{}{}:
		default: // a kick is pending, which covers v too
		}
	}
	return nil
}

// syncGather is how long the syncer lets writes gather before an fsync.
// The fsync decides nothing: a killed edge keeps what it wrote without
// one, and a crashed machine purges every site whatever was synced (Open).
// It keeps the log's file whole on disk for a clean start, so it may come
// late and cover many purges: one per purge cost more CPU than the
// purge's application (issue 25).
const syncGather = 100 * time.Millisecond

// syncLoop fsyncs the log after sync writes to it, syncGather later,
// until ctx ends (and once more then).
func (f *Follower) syncLoop(ctx context.Context) {
	if f.j == nil {
		return
	}
	for {
		select {
		case <-ctx.Done():
			f.syncNow()
			return
		case <-f.kick:
		}
		select {
		case <-ctx.Done():
		case <-time.After(syncGather):
		}
		f.syncNow()
	}
}

func (f *Follower) syncNow() {
	v := f.written.Load()
	if v <= f.durable.Load() {
		return
	}
	if err := f.j.sync(); err != nil {
		f.log.Error("purge log not durable", "version", v, "err", err)
		f.syncErr.Store(&err)
		return
	}
	f.syncErr.Store(nil)
	f.durable.Store(v)
}

func (f *Follower) report(ctx context.Context, src Source, v uint64) {
	err := src.ReportPurgeApplied(ctx, state.PurgeApplied{Edge: f.cfg.Edge, Version: v, Time: f.cfg.Now()})
	if err != nil {
		f.log.Debug("report purge version", "version", v, "err", err)
		return
	}
	for {
		old := f.reported.Load()
		if old >= v || f.reported.CompareAndSwap(old, v) {
			return
		}
	}
}

// reportLoop reports what sync wrote, apart from the applying: a report
// waits on the purge-applied bucket (seconds, when its stream has no
// leader), and the next purge must not. It retries a report that failed
// every 2 s, so a waiting purge call learns of the version even if the
// report after it was lost, and tries once more (for up to a second)
// when ctx ends.
func (f *Follower) reportLoop(ctx context.Context, src Source) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	reportWritten := func(ctx context.Context) {
		if v := f.written.Load(); v > f.reported.Load() {
			f.report(ctx, src, v)
		}
	}
	for {
		select {
		case <-ctx.Done():
			last, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			defer cancel()
			reportWritten(last)
			return
		case <-t.C:
		case <-f.reportKick:
		}
		reportWritten(ctx)
	}
}
