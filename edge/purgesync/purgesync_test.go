package purgesync

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/selfcdn/cdn/internal/state"
	"github.com/selfcdn/cdn/purge"
)

// fakeLog is a purge log in memory: versions first..last, each a purge of
// one site. FollowPurges delivers what it holds and returns.
type fakeLog struct {
	mu      sync.Mutex // protects the fields
	created time.Time
	first   uint64
	purges  []state.Purge // versions first.. in order
	reports []uint64
}

func (l *fakeLog) add(site string, r purge.Request) uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	v := l.first + uint64(len(l.purges))
	b, _ := json.Marshal(purge.Message{Site: site, Request: r})
	l.purges = append(l.purges, state.Purge{Version: v, Site: site, Data: b, Time: time.Now()})
	return v
}

// drop removes the oldest n purges, as retention does.
func (l *fakeLog) drop(n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.purges = l.purges[n:]
	l.first += uint64(n)
}

func (l *fakeLog) PurgeLog(context.Context) (state.PurgeLogInfo, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return state.PurgeLogInfo{First: l.first, Last: l.first + uint64(len(l.purges)) - 1, Created: l.created}, nil
}

func (l *fakeLog) FollowPurges(_ context.Context, from uint64, f func(state.Purge, uint64) error) error {
	l.mu.Lock()
	ps := slices.Clone(l.purges)
	l.mu.Unlock()
	for i, p := range ps {
		if p.Version < from {
			continue
		}
		if err := f(p, uint64(len(ps)-1-i)); err != nil {
			return err
		}
	}
	return errors.New("end of the fake log")
}

func (l *fakeLog) ReportPurgeApplied(_ context.Context, a state.PurgeApplied) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reports = append(l.reports, a.Version)
	return nil
}

func newFakeLog() *fakeLog { return &fakeLog{created: time.Unix(100, 0), first: 1} }

func open(t *testing.T, dir string, hasCache bool) (*Follower, *purge.Table) {
	t.Helper()
	tbl := purge.NewTable(0, nil, nil)
	f, err := Open(tbl, Config{Edge: "e", Dir: dir, HasCache: hasCache})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f, tbl
}

const key = "http://h/x"

// TestResume: purges applied before a restart are back after it, and the
// follower resumes after the last one.
func TestResume(t *testing.T) {
	dir, log := t.TempDir(), newFakeLog()
	f, tbl := open(t, dir, false)
	old := tbl.Clock()
	f.Run(t.Context(), log) // first contact: starts at the log's end
	log.add("s", purge.Request{URLs: []string{"/x"}})
	log.add("s", purge.Request{Tags: []string{"t"}})
	f.Run(t.Context(), log)
	if f.Applied() != 2 || !f.CaughtUp() {
		t.Fatalf("Applied() = %d, CaughtUp() = %v; want 2, true", f.Applied(), f.CaughtUp())
	}
	if got := log.reports[len(log.reports)-1]; got != 2 {
		t.Errorf("last report = %d, want 2", got)
	}
	f.Close()

	f2, tbl2 := open(t, dir, true)
	if f2.Applied() != 2 {
		t.Errorf("Applied() after a restart = %d, want 2", f2.Applied())
	}
	if v := tbl2.Site("s").Check(old, key, nil); v != purge.Gone {
		t.Errorf("URL purged before the restart: Check = %v, want Gone", v)
	}
	if v := tbl2.Site("s").Check(old, "http://h/y", []string{"t"}); v != purge.Gone {
		t.Errorf("tag purged before the restart: Check = %v, want Gone", v)
	}
	if v := tbl2.Site("s").Check(old, "http://h/y", nil); v != purge.Keep {
		t.Errorf("object no purge named: Check = %v, want Keep", v)
	}
}

// TestTornTail: a crash mid-append leaves half a line; it is dropped and
// the purge comes again from the log.
func TestTornTail(t *testing.T) {
	dir, log := t.TempDir(), newFakeLog()
	f, _ := open(t, dir, false)
	f.Run(t.Context(), log)
	log.add("s", purge.Request{URLs: []string{"/x"}})
	f.Run(t.Context(), log)
	f.Close()
	path := filepath.Join(dir, FileName)
	fh, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	fh.WriteString(`{"v":2,"c":12,"site":"s","req":{"ur`)
	fh.Close()

	f2, tbl := open(t, dir, true)
	if f2.Applied() != 1 {
		t.Fatalf("Applied() after a torn write = %d, want 1", f2.Applied())
	}
	old := tbl.Clock()
	log.add("s", purge.Request{URLs: []string{"/z"}})
	f2.Run(t.Context(), log)
	if f2.Applied() != 2 || tbl.Site("s").Check(old, "http://h/z", nil) != purge.Gone {
		t.Errorf("after resuming: Applied() = %d, /z %v; want 2, Gone", f2.Applied(), tbl.Site("s").Check(old, "http://h/z", nil))
	}
}

// TestLogGap: purges gone from the log before the edge applied them purge
// whole every site the edge serves; the purges after the gap apply.
func TestLogGap(t *testing.T) {
	dir, log := t.TempDir(), newFakeLog()
	f, tbl := open(t, dir, false)
	f.Run(t.Context(), log)
	log.add("quiet", purge.Request{URLs: []string{"/q"}})
	f.Run(t.Context(), log)
	old := tbl.Clock()
	log.add("lost", purge.Request{URLs: []string{"/a"}})
	log.add("lost", purge.Request{URLs: []string{"/b"}})
	log.add("lost", purge.Request{URLs: []string{"/c"}})
	log.drop(3) // versions 1-3 gone; 4 (lost, /c) stays
	f.Run(t.Context(), log)
	if f.Applied() != 4 {
		t.Errorf("Applied() = %d, want 4", f.Applied())
	}
	for _, site := range []string{"lost", "quiet"} {
		if got := tbl.Site(site).Check(old, "http://h/unnamed", nil); got != purge.Gone {
			t.Errorf("site %s after the gap: Check = %v, want Gone", site, got)
		}
	}
	// Purged after the gap, so an object stored then is kept...
	now := tbl.Clock()
	if got := tbl.Site("quiet").Check(now, "http://h/unnamed", nil); got != purge.Keep {
		t.Errorf("object stored after the gap: Check = %v, want Keep", got)
	}
	// ...and the purge delivered after the gap applies to it.
	log.add("lost", purge.Request{URLs: []string{"/d"}})
	f.Run(t.Context(), log)
	if got := tbl.Site("lost").Check(now, "http://h/d", nil); got != purge.Gone {
		t.Errorf("purge after the gap: Check = %v, want Gone", got)
	}
}

// TestCacheWithoutLog: objects on disk with no purge log beside them
// cannot say which purges they missed: every site is purged.
func TestCacheWithoutLog(t *testing.T) {
	tbl := purge.NewTable(0, nil, nil)
	old := tbl.Clock()
	f, err := Open(tbl, Config{Dir: t.TempDir(), HasCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if v := tbl.Site("any").Check(old, key, nil); v != purge.Gone {
		t.Errorf("Check = %v, want Gone", v)
	}
}

// TestLogRemade: a purge log made anew (its versions started over) purges
// every site and follows the new one from its end.
func TestLogRemade(t *testing.T) {
	dir, log := t.TempDir(), newFakeLog()
	f, tbl := open(t, dir, false)
	f.Run(t.Context(), log)
	for range 5 {
		log.add("s", purge.Request{Tags: []string{"t"}})
	}
	f.Run(t.Context(), log)
	old := tbl.Clock()
	remade := newFakeLog()
	remade.created = time.Unix(200, 0)
	remade.add("s", purge.Request{Tags: []string{"u"}})
	f.Run(t.Context(), remade)
	if f.Applied() != 1 {
		t.Errorf("Applied() = %d, want 1 (the new log's end)", f.Applied())
	}
	if v := tbl.Site("s").Check(old, key, nil); v != purge.Gone {
		t.Errorf("Check after the log was remade = %v, want Gone", v)
	}
}

// TestCompaction: a whole-site purge frees the records before it, and the
// file read back holds the same rules.
func TestCompaction(t *testing.T) {
	dir, log := t.TempDir(), newFakeLog()
	f, _ := open(t, dir, false)
	f.Run(t.Context(), log)
	for range 50 {
		log.add("s", purge.Request{URLs: []string{"/x"}})
	}
	log.add("s", purge.Request{All: true})
	log.add("s", purge.Request{Tags: []string{"after"}})
	f.Run(t.Context(), log)
	f.Close()
	recs, err := readRecords(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	live := compact(recs)
	if len(live) > 5 {
		t.Errorf("compacted log holds %d records, want the start and stream marks, the whole-site purge, the one after and the clean close", len(live))
	}
	f2, tbl := open(t, dir, true)
	if f2.Applied() != 52 || tbl.Rules() != 1 {
		t.Errorf("after reopening: Applied() = %d, Rules() = %d; want 52, 1", f2.Applied(), tbl.Rules())
	}
}

// stuckReports is a purge log whose reports wait until released, as a
// report does while the purge-applied bucket's stream has no leader; it
// delivers each purge on its own (pending 0), as purges come one by one.
type stuckReports struct {
	*fakeLog
	release chan struct{}
}

func (l stuckReports) ReportPurgeApplied(ctx context.Context, a state.PurgeApplied) error {
	select {
	case <-l.release:
		return l.fakeLog.ReportPurgeApplied(ctx, a)
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (l stuckReports) FollowPurges(ctx context.Context, from uint64, f func(state.Purge, uint64) error) error {
	l.mu.Lock()
	ps := slices.Clone(l.purges)
	l.mu.Unlock()
	for _, p := range ps {
		if p.Version >= from {
			if err := f(p, 0); err != nil {
				return err
			}
		}
	}
	<-ctx.Done()
	return ctx.Err()
}

// TestReportsDoNotHoldPurges: while reports wait, purges are still
// applied; once reports go through, the last version is reported.
func TestReportsDoNotHoldPurges(t *testing.T) {
	log := stuckReports{fakeLog: newFakeLog(), release: make(chan struct{})}
	f, _ := open(t, t.TempDir(), false)
	first, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	f.Run(first, log) // first contact
	cancel()
	for range 3 {
		log.add("s", purge.Request{URLs: []string{"/x"}})
	}
	ctx, stop := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx, log) }()
	for deadline := time.Now().Add(3 * time.Second); f.Applied() < 3; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			n := f.Applied()
			stop()
			<-done
			t.Fatalf("applied %d of 3 purges in 3 s while reports waited", n)
		}
	}
	close(log.release)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		log.mu.Lock()
		last := uint64(0)
		if n := len(log.reports); n > 0 {
			last = log.reports[n-1]
		}
		log.mu.Unlock()
		if last == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("last report %d 5 s after reports went through, want 3", last)
		}
	}
	stop()
	<-done
}
