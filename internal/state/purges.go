package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The purge log is a stream: one message per purge, on the subject of its
// site; its sequence is the purge's version. Edges report the last version
// they applied in a KV bucket, which control watches to answer ?wait.
const (
	PurgeStream        = "CDN_PURGES"
	PurgeSubjectPrefix = "cdn.purge."
	PurgeAppliedBucket = "cdn_purge_applied"
)

// Defaults of the purge stream's limits (see Options).
const (
	DefaultPurgeMaxAge   = 30 * 24 * time.Hour
	DefaultPurgeMaxMsgs  = 1_000_000
	DefaultPurgeDupeTime = 24 * time.Hour
	// DefaultPurgeMaxBytes bounds the log's bytes (LimitPurgeBytes).
	DefaultPurgeMaxBytes = 1 << 30
)

// PurgeApplied is an edge's report of how far it has applied the purge log.
type PurgeApplied struct {
	Edge    string    `json:"edge"`
	Version uint64    `json:"version"`
	Time    time.Time `json:"time"`
}

// Purge is one message of the purge log.
type Purge struct {
	Version uint64
	Site    string
	Data    []byte
	Time    time.Time
}

func purgeStreamConfig(opts Options) jetstream.StreamConfig {
	cfg := jetstream.StreamConfig{
		Name: PurgeStream, Subjects: []string{PurgeSubjectPrefix + "*"}, Storage: jetstream.FileStorage,
		Retention: jetstream.LimitsPolicy, Discard: jetstream.DiscardOld, Replicas: max(opts.Replicas, 1),
		MaxAge: opts.PurgeMaxAge, MaxMsgs: opts.PurgeMaxMsgs, Duplicates: opts.PurgeDupeWindow,
	}
	if cfg.MaxAge == 0 {
		cfg.MaxAge = DefaultPurgeMaxAge
	}
	if cfg.MaxMsgs == 0 {
		cfg.MaxMsgs = DefaultPurgeMaxMsgs
	}
	if cfg.Duplicates == 0 {
		cfg.Duplicates = DefaultPurgeDupeTime
	}
	cfg.Duplicates = min(cfg.Duplicates, cfg.MaxAge)
	return cfg
}

// LimitPurgeBytes caps the purge log at maxBytes (0: DefaultPurgeMaxBytes).
// Past it the oldest purges are dropped, as past its age or count limits:
// an edge that had not applied them yet purges its sites whole. Control
// calls it after Open, which leaves the log's bytes unbounded rather
// than cut it to a default the operator may have raised.
func (s *Store) LimitPurgeBytes(ctx context.Context, maxBytes int64) error {
	if maxBytes <= 0 {
		maxBytes = DefaultPurgeMaxBytes
	}
	info, err := s.purges.Info(ctx)
	if err != nil {
		return fmt.Errorf("purge stream info: %w", err)
	}
	if info.Config.MaxBytes == maxBytes {
		return nil
	}
	cfg := info.Config
	cfg.MaxBytes = maxBytes
	if _, err := s.js.UpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("cap the purge log at %d bytes: %w", maxBytes, err)
	}
	return nil
}

// PublishPurge appends a purge for site to the log and returns its
// version. A non-empty idempotency key that was used before (within the
// stream's duplicate window) writes nothing and returns the first
// version, with dup set.
func (s *Store) PublishPurge(ctx context.Context, site, idempotencyKey string, data []byte) (version uint64, dup bool, err error) {
	var opts []jetstream.PublishOpt
	opts = append(opts, jetstream.WithExpectStream(PurgeStream))
	if idempotencyKey != "" {
		opts = append(opts, jetstream.WithMsgID(site+"/"+idempotencyKey))
	}
	ack, err := s.js.Publish(ctx, PurgeSubjectPrefix+site, data, opts...)
	if err != nil {
		return 0, false, fmt.Errorf("publish purge of %s: %w", site, err)
	}
	return ack.Sequence, ack.Duplicate, nil
}

// ErrPurgeGone is returned for a version the stream no longer holds (or
// never held).
var ErrPurgeGone = errors.New("purge version not in the log")

// Purge returns the purge with the given version.
func (s *Store) Purge(ctx context.Context, version uint64) (Purge, error) {
	m, err := s.purges.GetMsg(ctx, version)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return Purge{}, ErrPurgeGone
	}
	if err != nil {
		return Purge{}, fmt.Errorf("get purge %d: %w", version, err)
	}
	return Purge{Version: m.Sequence, Site: m.Subject[len(PurgeSubjectPrefix):], Data: m.Data, Time: m.Time}, nil
}

// PurgeLogInfo is where the purge log stands.
type PurgeLogInfo struct {
	// First and Last are the oldest and newest versions it holds; First
	// is Last+1 when it holds none.
	First, Last uint64
	// Created identifies the stream: a stream made anew (its versions
	// starting over) has another.
	Created time.Time
}

// PurgeLog returns where the purge log stands.
func (s *Store) PurgeLog(ctx context.Context) (PurgeLogInfo, error) {
	info, err := s.purges.Info(ctx)
	if err != nil {
		return PurgeLogInfo{}, fmt.Errorf("purge stream info: %w", err)
	}
	return PurgeLogInfo{First: info.State.FirstSeq, Last: info.State.LastSeq, Created: info.Created}, nil
}

// FollowPurges calls f for every purge from version from on, in order,
// until ctx ends, f fails, or the consumer does. pending is how many more
// purges the log held when this one was delivered. Versions may jump when
// the log dropped purges before they could be delivered; f sees the jump.
func (s *Store) FollowPurges(ctx context.Context, from uint64, f func(p Purge, pending uint64) error) error {
	// One attempt to make the consumer again when it is lost: the
	// library's own attempts back off to 10 s apart, each waiting up to
	// 10 s, so an edge whose region was cut off could apply the purges it
	// missed 20 s after the link returned. Failing here, the caller
	// retries on its own schedule.
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy, MaxResetAttempts: 1}
	if from > 1 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, from
	}
	cons, err := s.purges.OrderedConsumer(ctx, cfg)
	if err != nil {
		return fmt.Errorf("follow purges from %d: %w", from, err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("follow purges from %d: %w", from, err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	defer it.Stop()
	for {
		// The context as well as Stop: an ordered consumer that is
		// resetting (its node died) when Stop comes can start a new
		// subscription that Stop never reached.
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("follow purges: %w", err)
		}
		md, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("purge metadata: %w", err)
		}
		p := Purge{Version: md.Sequence.Stream, Site: m.Subject()[len(PurgeSubjectPrefix):], Data: m.Data(), Time: md.Timestamp}
		if err := f(p, md.NumPending); err != nil {
			return err
		}
	}
}

// ReportPurgeApplied records how far an edge has applied the log.
func (s *Store) ReportPurgeApplied(ctx context.Context, a PurgeApplied) error {
	_, err := put(ctx, s.applied, a.Edge, a)
	return err
}

// PurgesApplied returns every edge's last report.
func (s *Store) PurgesApplied(ctx context.Context) ([]PurgeApplied, error) {
	return list[PurgeApplied](ctx, s.applied)
}

// WatchPurgesApplied calls f with every edge's report, then with each new
// one, until ctx ends or the watch fails.
func (s *Store) WatchPurgesApplied(ctx context.Context, f func(PurgeApplied)) error {
	w, err := s.applied.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch purge reports: %w", err)
	}
	defer s.stopWatch(w)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("watch purge reports: closed")
			}
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue // nil marks the end of the initial values
			}
			var a PurgeApplied
			if err := json.Unmarshal(e.Value(), &a); err == nil {
				f(a)
			}
		}
	}
}
