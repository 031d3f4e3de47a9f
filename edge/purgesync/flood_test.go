package purgesync

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/selfcdn/cdn/purge"
)

// floodPurge is a purge of purge.MaxItems URLs, distinct per n when
// distinct is set, else the same each time.
func floodPurge(n int, distinct bool) purge.Request {
	urls := make([]string, purge.MaxItems)
	for i := range urls {
		if distinct {
			urls[i] = fmt.Sprintf("/f/%d/%d", n, i)
		} else {
			urls[i] = fmt.Sprintf("/f/%d", i)
		}
	}
	return purge.Request{URLs: urls}
}

// TestLogBoundedUnderFlood: an edge applying a flood of 10,000-URL purges
// (150 is what control's default write rate lets one token write in 10 s;
// see control/api TestPurgeFlood) keeps its purge log bounded, whether
// the URLs differ (the table widens past maxRules) or repeat (the table
// holds 10,000 rules while every purge is logged), and a site-wide purge
// after it shrinks the file.
func TestLogBoundedUnderFlood(t *testing.T) {
	const purges = 150       // a flood at the default write rate for 10 s
	const maxRules = 100_000 // the edge's default control.max_purge_rules
	const bound = 8 << 20    // the file at any time
	const afterAll = 2 << 20 // the file after a site-wide purge
	tests := []struct {
		name     string
		distinct bool
	}{
		{name: "distinct URLs", distinct: true},
		{name: "the same URLs again and again", distinct: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, log := t.TempDir(), newFakeLog()
			tbl := purge.NewTable(maxRules, nil, nil)
			f, err := Open(tbl, Config{Edge: "e", Dir: dir})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.Close() })
			f.Run(t.Context(), log)
			path := filepath.Join(dir, FileName)
			var largest int64
			for n := range purges {
				log.add("s", floodPurge(n, tt.distinct))
				f.Run(t.Context(), log)
				largest = max(largest, fileSize(t, path))
			}
			rules := tbl.Rules()
			log.add("s", purge.Request{All: true})
			f.Run(t.Context(), log)
			after := fileSize(t, path)
			t.Logf("%s: %d purges of %d URLs: purge log at most %d bytes, %d rules at the end; after a site-wide purge %d bytes",
				tt.name, purges, purge.MaxItems, largest, rules, after)
			if largest > bound {
				t.Errorf("the purge log reached %d bytes during the flood, over %d", largest, bound)
			}
			if after > afterAll {
				t.Errorf("after a site-wide purge the log holds %d bytes, want at most %d", after, afterAll)
			}
		})
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}
