package cache

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
)

// TestScan: every object on disk is listed with its key, stamp and tags;
// a damaged file is skipped; a cancelled scan stops.
func TestScan(t *testing.T) {
	d := openTestDisk(t, t.TempDir(), 64<<20)
	want := map[string]Object{}
	for i, key := range []string{"http://a.test/1", "http://a.test/2", "http://b.test/big"} {
		e := testEntry(randomBody(100 + i*300_000))
		e.Stamp, e.Tags = uint64(10+i), []string{"t" + key[len(key)-1:]}
		if err := d.Put(key, e, nil); err != nil {
			t.Fatal(err)
		}
		want[key] = Object{Key: key, Stamp: e.Stamp, Tags: e.Tags}
	}
	got := map[string]Object{}
	if err := d.Scan(t.Context(), func(o Object) bool { got[o.Key] = o; return true }); err != nil {
		t.Fatal(err)
	}
	for k, w := range want {
		if g := got[k]; g.Key != w.Key || g.Stamp != w.Stamp || !slices.Equal(g.Tags, w.Tags) {
			t.Errorf("%s: scanned %+v, want %+v", k, g, w)
		}
	}
	// A flipped byte in one file's metadata: that object is skipped.
	path := d.path(keyHash("http://a.test/2"))
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(string(b), "a.test/2")
	b[i] ^= 1
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	var keys []string
	d.Scan(t.Context(), func(o Object) bool { keys = append(keys, o.Key); return true })
	slices.Sort(keys)
	if !slices.Equal(keys, []string{"http://a.test/1", "http://b.test/big"}) {
		t.Errorf("after damaging one file: %v", keys)
	}
	n := 0
	d.Scan(t.Context(), func(Object) bool { n++; return false })
	if n != 1 {
		t.Errorf("a scan told to stop went on: %d objects", n)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := d.Scan(ctx, func(Object) bool { return true }); !errors.Is(err, context.Canceled) {
		t.Errorf("a cancelled scan: %v", err)
	}
}
