package purgesync

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/selfcdn/cdn/internal/state"
	"github.com/selfcdn/cdn/purge"
)

// The purge log is fsynced after the report, not before (issue 25). These
// tests show what that leaves safe: a killed edge loses nothing it
// reported, since the report comes after the write to the file; a crashed
// machine may lose the unsynced tail, and the edge then purges every site.

// checkingLog is a fakeLog whose reports check that the reported version
// is in the purge log's file at that moment: what a kill -9 right after
// the report would leave.
type checkingLog struct {
	*fakeLog
	t    *testing.T
	path string
}

func (l checkingLog) ReportPurgeApplied(ctx context.Context, a state.PurgeApplied) error {
	recs, err := readRecords(l.path)
	if err != nil {
		l.t.Errorf("read the purge log at the report of %d: %v", a.Version, err)
	}
	if !slices.ContainsFunc(recs, func(r record) bool { return r.Version >= a.Version }) {
		l.t.Errorf("version %d reported applied before the purge log's file held it (%d records)", a.Version, len(recs))
	}
	return l.fakeLog.ReportPurgeApplied(ctx, a)
}

// TestReportedIsWritten: every version reported is in the file when the
// report goes, and a follower opened on the file without a clean close
// (a kill -9 of the edge) has every reported purge, on the same boot.
func TestReportedIsWritten(t *testing.T) {
	dir := t.TempDir()
	log := checkingLog{fakeLog: newFakeLog(), t: t, path: filepath.Join(dir, FileName)}
	boot := func() string { return "boot-1" }
	tbl := purge.NewTable(0, nil, nil)
	old := tbl.Clock()
	f, err := Open(tbl, Config{Edge: "e", Dir: dir, BootID: boot})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	f.Run(t.Context(), log)
	for i := range 20 {
		log.add("s", purge.Request{URLs: []string{"/x" + string(rune('a'+i))}})
		f.Run(t.Context(), log) // one at a time: a report per purge
	}
	if n := len(log.reports); n < 20 || log.reports[n-1] != 20 {
		t.Fatalf("reports = %v, want one per purge up to 20", log.reports)
	}

	// The old follower is never closed: the process died.
	tbl2 := purge.NewTable(0, nil, nil)
	f2, err := Open(tbl2, Config{Edge: "e", Dir: dir, BootID: boot, HasCache: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f2.Close() })
	if f2.Applied() != 20 {
		t.Errorf("Applied() after a kill = %d, want 20", f2.Applied())
	}
	if v := tbl2.Site("s").Check(old, "http://h/xt", nil); v != purge.Gone {
		t.Errorf("last purged URL after a kill: Check = %v, want Gone", v)
	}
	if v := tbl2.Site("s").Check(old, "http://h/other", nil); v != purge.Keep {
		t.Errorf("URL no purge named, after a kill on the same boot: Check = %v, want Keep (no floor)", v)
	}
}

// TestMachineCrash: the machine went down after purges were reported but
// (say) before any was fsynced, so the file comes back as it was before
// them. Booted again, the edge cannot know what it reported: it purges
// every site. A clean close, or a log an older edge wrote (which fsynced
// before reporting, and has no boot records), is trusted as it is.
func TestMachineCrash(t *testing.T) {
	tests := []struct {
		name      string
		clean     bool // closed cleanly before the machine went down
		oldFormat bool // the log has no boot records
		wantFloor bool
	}{
		{name: "crash loses the unsynced tail", wantFloor: true},
		{name: "clean close then reboot", clean: true},
		{name: "log of an edge that fsynced first", oldFormat: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, log := t.TempDir(), newFakeLog()
			path := filepath.Join(dir, FileName)
			tbl := purge.NewTable(0, nil, nil)
			old := tbl.Clock()
			f, err := Open(tbl, Config{Edge: "e", Dir: dir, BootID: func() string { return "boot-1" }})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.Close() })
			f.Run(t.Context(), log) // first contact, durable
			durable, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			log.add("s", purge.Request{URLs: []string{"/x"}})
			f.Run(t.Context(), log)
			if f.Applied() != 1 || log.reports[len(log.reports)-1] != 1 {
				t.Fatalf("Applied() = %d, reports %v; want 1 applied and reported", f.Applied(), log.reports)
			}
			if tt.clean {
				f.Close()
			} else {
				// The unsynced tail is lost with the machine; an older
				// edge had fsynced it before it reported.
				after := durable
				if tt.oldFormat {
					now, err := os.ReadFile(path)
					if err != nil {
						t.Fatal(err)
					}
					after = withoutBoots(t, now)
				}
				if err := os.WriteFile(path, after, 0o644); err != nil {
					t.Fatal(err)
				}
			}

			tbl2 := purge.NewTable(0, nil, nil)
			f2, err := Open(tbl2, Config{Edge: "e", Dir: dir, BootID: func() string { return "boot-2" }, HasCache: true})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f2.Close() })
			// An object stored before the purge, on disk across the crash.
			purged := tbl2.Site("s").Check(old, key, nil)
			other := tbl2.Site("s").Check(old, "http://h/other", nil)
			switch {
			case purged != purge.Gone:
				t.Errorf("URL reported purged before the crash: Check = %v, want Gone", purged)
			case tt.wantFloor && other != purge.Gone:
				t.Errorf("URL no purge named, after a crash that lost the log's tail: Check = %v, want Gone (every site purged)", other)
			case !tt.wantFloor && other != purge.Keep:
				t.Errorf("URL no purge named: Check = %v, want Keep (no floor)", other)
			}
		})
	}
}

// withoutBoots rewrites a log as an edge before boot records wrote it.
func withoutBoots(t *testing.T, b []byte) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), FileName)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	recs, err := readRecords(path)
	if err != nil {
		t.Fatal(err)
	}
	j := &journal{path: path, items: map[string]int{}}
	for _, r := range recs {
		if r.Boot != "" && r.Req == nil && !r.Floor && r.Stream == "" {
			continue
		}
		r.Boot = ""
		j.live = append(j.live, r)
	}
	j.syncMu.Lock()
	j.mu.Lock()
	err = j.rewrite()
	j.mu.Unlock()
	j.syncMu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	j.close()
	out, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestDamagedMiddle: a crash of the machine can leave blocks of the log
// that were never synced unwritten (zeros) inside it. Under another boot
// the edge opens it and purges every site; under the same boot (no crash
// of the machine could explain it) the damage is an error, as before.
func TestDamagedMiddle(t *testing.T) {
	for _, tt := range []struct {
		name    string
		boot    string
		wantErr bool
	}{
		{name: "after a crash of the machine", boot: "boot-2"},
		{name: "on the same boot", boot: "boot-1", wantErr: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir, log := t.TempDir(), newFakeLog()
			path := filepath.Join(dir, FileName)
			f, err := Open(purge.NewTable(0, nil, nil), Config{Edge: "e", Dir: dir, BootID: func() string { return "boot-1" }})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.Close() })
			f.Run(t.Context(), log)
			log.add("s", purge.Request{URLs: []string{"/x"}})
			log.add("s", purge.Request{URLs: []string{"/y"}})
			f.Run(t.Context(), log)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			// Zeros where the next to last line was, as an unwritten block reads.
			lines := bytes.SplitAfter(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))
			lines[len(lines)-2] = append(make([]byte, len(lines[len(lines)-2])-1), '\n')
			if err := os.WriteFile(path, bytes.Join(lines, nil), 0o644); err != nil {
				t.Fatal(err)
			}

			tbl := purge.NewTable(0, nil, nil)
			old := tbl.Clock() - 1
			f2, err := Open(tbl, Config{Edge: "e", Dir: dir, BootID: func() string { return tt.boot }, HasCache: true})
			if tt.wantErr {
				if err == nil {
					f2.Close()
					t.Fatal("Open of a log damaged in the middle on the same boot succeeded, want an error")
				}
				return
			}
			if err != nil {
				t.Fatalf("Open after a crash of the machine: %v", err)
			}
			t.Cleanup(func() { f2.Close() })
			if v := tbl.Site("s").Check(old, "http://h/other", nil); v != purge.Gone {
				t.Errorf("after opening a damaged log under a new boot: Check = %v, want Gone (every site purged)", v)
			}
		})
	}
}
