package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// watchBucket calls f with every value of kv (by key) once the current set
// is known, and again after every change, until ctx ends or the watch
// fails; the caller restarts it. fix lets a value see its entry (the
// server's time of a heartbeat). f must not keep the map: it is the
// watch's own, changed after f returns.
func watchBucket[T any](ctx context.Context, s *Store, kv jetstream.KeyValue, fix func(key string, v T, e jetstream.KeyValueEntry) T,
	f func(map[string]T)) error {
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch %s: %w", kv.Bucket(), err)
	}
	defer s.stopWatch(w)
	current := map[string]T{}
	initial := true
	var seen uint64 // the latest revision delivered
	// A watch can stall without an error (its consumer lived on a cluster
	// node that died), before or after the current values are in: compare
	// with the bucket now and then, and give up on a watch that stays
	// behind with nothing arriving, so the caller starts a fresh one.
	check := time.NewTicker(stallCheck)
	defer check.Stop()
	behind, arrived := 0, false
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-check.C:
			if !arrived && stalled(ctx, kv, seen) {
				if behind++; behind >= 2 {
					return fmt.Errorf("watch %s: stalled at revision %d", kv.Bucket(), seen)
				}
			} else {
				behind = 0
			}
			arrived = false
		case e, ok := <-w.Updates():
			if !ok {
				return fmt.Errorf("watch %s: %w", kv.Bucket(), errors.New("closed"))
			}
			if e == nil { // the current values have all been delivered
				initial, arrived = false, true
				f(current)
				continue
			}
			arrived = true
			seen = max(seen, e.Revision())
			if e.Operation() != jetstream.KeyValuePut {
				delete(current, e.Key())
			} else {
				var v T
				if err := json.Unmarshal(e.Value(), &v); err != nil {
					continue // written by something else; not ours to apply
				}
				current[e.Key()] = fix(e.Key(), v, e)
			}
			if !initial {
				f(current)
			}
		}
	}
}

// stallCheck is how often a watch compares itself with its bucket.
const stallCheck = time.Second

// stalled reports whether kv holds a revision newer than seen; its
// newest message is always one a watch delivers. An error says nothing
// either way.
func stalled(ctx context.Context, kv jetstream.KeyValue, seen uint64) bool {
	ctx, cancel := context.WithTimeout(ctx, stallCheck)
	defer cancel()
	st, err := kv.Status(ctx)
	if err != nil {
		return false
	}
	bs, ok := st.(*jetstream.KeyValueBucketStatus)
	if !ok {
		return false
	}
	state := bs.StreamInfo().State
	return state.Msgs > 0 && state.LastSeq > seen
}

// stopWatch stops w. Stopping deletes the watch's consumer with a request
// to the server, which on a connection that is down waits out the
// JetStream timeout (5 s) and fails anyway (the server drops an ephemeral
// consumer left without interest by itself). Then the stop is left to
// finish on its own, so that whoever stopped watching (a shutdown, a
// watch about to start again) does not wait for it.
func (s *Store) stopWatch(w interface{ Stop() error }) {
	if s.js.Conn().IsConnected() {
		w.Stop()
		return
	}
	go w.Stop()
}
