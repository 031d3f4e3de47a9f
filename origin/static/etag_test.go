package static

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

func TestETagKinds(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		size int64
		want *regexp.Regexp
	}{
		{name: "small file: content hash", size: 1000, want: regexp.MustCompile(`^"[0-9a-f]{32}"$`)},
		{name: "large file: mtime and size", size: hashLimit + 1, want: regexp.MustCompile(`^"[0-9a-f]+-800001"$`)},
	}
	var c etagCache
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, tt.name)
			if err := os.WriteFile(path, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(path, tt.size); err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			fi, _ := f.Stat()
			etag, err := c.get(tt.name, f, fi)
			if err != nil || !tt.want.MatchString(etag) {
				t.Errorf("ETag = %q, %v; want one matching %s", etag, err, tt.want)
			}
			if again, _ := c.get(tt.name, f, fi); again != etag {
				t.Errorf("ETag not stable: %q then %q", etag, again)
			}
		})
	}
}
