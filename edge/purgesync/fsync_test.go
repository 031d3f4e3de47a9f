package purgesync

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/selfcdn/cdn/purge"
)

// TestFsyncFailureRewrites: after an fsync of the purge log fails, the
// kernel may have dropped the unwritten pages and will report the next
// fsync a success; so the log is written again whole from the records
// held, and appends go on into the new file. When even that cannot be
// made durable, sync says so with both errors.
func TestFsyncFailureRewrites(t *testing.T) {
	eio := &os.PathError{Op: "fsync", Path: "purges.log", Err: syscall.EIO}
	for _, tc := range []struct {
		name     string
		failures int // fsyncs that fail, from the first in sync
		wantErr  bool
	}{
		{"one failed fsync", 1, false},
		{"the rewrite fails too", 2, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "purges.log")
			j, _, _, err := openJournal(path, "boot-1")
			if err != nil {
				t.Fatal(err)
			}
			defer j.close()
			for v := uint64(1); v <= 3; v++ {
				if err := j.append(record{Version: v, Site: "www", Req: &purge.Request{URLs: []string{"/a"}}}); err != nil {
					t.Fatal(err)
				}
			}
			if err := j.flush(); err != nil {
				t.Fatal(err)
			}
			// What a kernel that lost the pages would leave: the file
			// cut short, while fsync reports the failure.
			if err := os.Truncate(path, 10); err != nil {
				t.Fatal(err)
			}
			left := tc.failures
			j.fsync = func(f *os.File) error {
				if left > 0 {
					left--
					return eio
				}
				return f.Sync()
			}
			err = j.sync()
			if tc.wantErr {
				if !errors.Is(err, syscall.EIO) {
					t.Fatalf("sync with every fsync failing: %v, want the EIO", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("sync after one failed fsync: %v, want the log written again", err)
			}
			if err := j.append(record{Version: 4, Site: "www", Req: &purge.Request{URLs: []string{"/b"}}}); err != nil {
				t.Fatal(err)
			}
			if err := j.sync(); err != nil {
				t.Fatal(err)
			}
			recs, err := readRecords(path)
			if err != nil {
				t.Fatal(err)
			}
			var versions []uint64
			for _, r := range recs {
				if r.Req != nil {
					versions = append(versions, r.Version)
				}
			}
			if len(versions) != 4 || versions[0] != 1 || versions[3] != 4 {
				t.Errorf("the log holds purges %v, want 1-4", versions)
			}
		})
	}
}
