package push

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// symlink makes a link at dir/name to target, skipping the test where
// the system cannot.
func symlink(t *testing.T, target, dir, name string) {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, p); err != nil {
		t.Skipf("symlink: %v", err)
	}
}

// caseInsensitive reports whether dir's file system folds letter case.
func caseInsensitive(t *testing.T, dir string) bool {
	t.Helper()
	p := filepath.Join(dir, "probe-case")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(p)
	_, err := os.Stat(filepath.Join(dir, "PROBE-CASE"))
	return err == nil
}

func TestScanDirBadInput(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		setup func(t *testing.T, dir string)
		// want are substrings of the error; the first names the file.
		want []string
	}{
		{
			name:  "symlink outside the root",
			files: map[string]string{"index.html": "x"},
			setup: func(t *testing.T, dir string) {
				outside := filepath.Join(t.TempDir(), "secret")
				if err := os.WriteFile(outside, []byte("secret"), 0o600); err != nil {
					t.Fatal(err)
				}
				symlink(t, outside, dir, "leak.txt")
			},
			want: []string{"/leak.txt: ", "outside the site directory"},
		},
		{
			name:  "relative symlink out of the root",
			files: map[string]string{"index.html": "x"},
			setup: func(t *testing.T, dir string) { symlink(t, "../../..", dir, "sub/up") },
			want:  []string{"/sub/up: ", "outside the site directory"},
		},
		{
			name:  "dangling symlink",
			files: map[string]string{"index.html": "x"},
			setup: func(t *testing.T, dir string) { symlink(t, "missing.html", dir, "gone.html") },
			want:  []string{"/gone.html: ", "follow symlink"},
		},
		{
			name:  "symlink loop to an ancestor",
			files: map[string]string{"sub/index.html": "x"},
			setup: func(t *testing.T, dir string) { symlink(t, "..", dir, "sub/loop") },
			want:  []string{"/sub/loop: ", "symlink loop"},
		},
		{
			name:  "symlink to the root",
			files: map[string]string{"index.html": "x"},
			setup: func(t *testing.T, dir string) { symlink(t, ".", dir, "self") },
			want:  []string{"/self: ", "symlink loop"},
		},
		{
			name:  "directories linking to each other",
			files: map[string]string{"a/index.html": "x", "b/index.html": "y"},
			setup: func(t *testing.T, dir string) {
				symlink(t, "../b", dir, "a/to-b")
				symlink(t, "../a", dir, "b/to-a")
			},
			want: []string{"/to-", "symlink loop"},
		},
		{
			name:  "link to itself",
			files: map[string]string{"index.html": "x"},
			setup: func(t *testing.T, dir string) { symlink(t, "me", dir, "me") },
			want:  []string{"/me: ", "follow symlink"},
		},
		{
			name:  "_headers symlink outside the root",
			files: map[string]string{"index.html": "x"},
			setup: func(t *testing.T, dir string) { symlink(t, t.TempDir(), dir, "_headers") },
			want:  []string{"/_headers: ", "outside the site directory"},
		},
		{
			name:  "case collision",
			files: map[string]string{"A.html": "upper", "a.html": "lower"},
			setup: func(t *testing.T, dir string) {
				if caseInsensitive(t, dir) {
					t.Skip("the file system folds case")
				}
			},
			want: []string{"/a.html", "only in letter case"},
		},
		{
			name:  "fifo",
			files: map[string]string{"index.html": "x"},
			setup: func(t *testing.T, dir string) {
				if err := syscall.Mkfifo(filepath.Join(dir, "pipe"), 0o644); err != nil {
					t.Skipf("mkfifo: %v", err)
				}
			},
			want: []string{"/pipe: ", "named pipe"},
		},
		{
			name:  "fifo behind a symlink",
			files: map[string]string{"index.html": "x"},
			setup: func(t *testing.T, dir string) {
				if err := syscall.Mkfifo(filepath.Join(dir, ".pipe"), 0o644); err != nil {
					t.Skipf("mkfifo: %v", err)
				}
				symlink(t, ".pipe", dir, "pipe.txt")
			},
			want: []string{"/pipe.txt: ", "named pipe"},
		},
		{
			name:  "fifo as _redirects",
			files: map[string]string{"index.html": "x"},
			setup: func(t *testing.T, dir string) {
				if err := syscall.Mkfifo(filepath.Join(dir, "_redirects"), 0o644); err != nil {
					t.Skipf("mkfifo: %v", err)
				}
			},
			want: []string{"/_redirects: ", "named pipe"},
		},
		{
			name:  "backslash in a name",
			files: map[string]string{`a\b.html`: "x"},
			want:  []string{`/a\b.html: `, "backslash"},
		},
		{
			name:  "newline in a name",
			files: map[string]string{"a\nb.html": "x"},
			want:  []string{`/a\nb.html": `, "control character"},
		},
		{
			name:  "redirect with a bad status",
			files: map[string]string{"index.html": "x", "_redirects": "/a /b\n/c /d 30x\n"},
			want:  []string{"/_redirects: ", "line 2", "status"},
		},
		{
			name:  "redirect with too many fields",
			files: map[string]string{"index.html": "x", "_redirects": "# c\n/a /b 301 extra\n"},
			want:  []string{"/_redirects: ", "line 2", "4 fields"},
		},
		{
			name:  "redirect without a target",
			files: map[string]string{"index.html": "x", "_redirects": "/a\n"},
			want:  []string{"/_redirects: ", "line 1", "FROM TO"},
		},
		{
			name:  "redirect rewrite status 200",
			files: map[string]string{"index.html": "x", "_redirects": "/a /b 200\n"},
			want:  []string{"/_redirects: ", "line 1", "got 200"},
		},
		{
			name:  "redirect to javascript:",
			files: map[string]string{"index.html": "x", "_redirects": "/a javascript:alert(1)\n"},
			want:  []string{"/_redirects: ", "line 1", "http(s) URL"},
		},
		{
			name:  "forbidden header",
			files: map[string]string{"index.html": "x", "_headers": "/*\n  Content-Length: 5\n"},
			want:  []string{"/_headers: ", "rule /*", "Content-Length"},
		},
		{
			name:  "forbidden header in a rule matching nothing",
			files: map[string]string{"index.html": "x", "_headers": "/nothing\n  ETag: \"x\"\n"},
			want:  []string{"/_headers: ", "rule /nothing", "Etag"},
		},
		{
			name:  "malformed _headers",
			files: map[string]string{"index.html": "x", "_headers": "  Cache-Control: no-cache\n"},
			want:  []string{"/_headers: ", "line 1"},
		},
		{
			name:  "empty Content-Type",
			files: map[string]string{"index.html": "x", "_headers": "/*\n  Content-Type:\n"},
			want:  []string{"/_headers: ", "Content-Type"},
		},
		{
			name:  "too many header fields",
			files: map[string]string{"index.html": "x", "_headers": "/*\n" + manyHeaders(MaxHeaders+1)},
			want:  []string{"/index.html", "limit"},
		},
		{
			name:  "empty directory",
			files: map[string]string{},
			want:  []string{"no files to push"},
		},
		{
			name:  "only dotfiles and configuration",
			files: map[string]string{".git/HEAD": "x", "_headers": "", "_redirects": "/a /b\n"},
			want:  []string{"no files to push"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeSite(t, tt.files)
			if tt.setup != nil {
				tt.setup(t, dir)
			}
			done := make(chan struct{})
			var err error
			go func() {
				defer close(done)
				_, err = ScanDir(t.Context(), dir, ScanOptions{})
			}()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				t.Fatal("ScanDir hangs") // a loop or a blocked fifo
			}
			if err == nil {
				t.Fatalf("ScanDir = nil error, want one with %q", tt.want)
			}
			msg := err.Error()
			t.Logf("error: %s", msg)
			if !strings.HasPrefix(msg, "scan site: ") {
				t.Errorf("error %q does not start with \"scan site: \"", msg)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
			if !strings.Contains(msg, strings.TrimPrefix(dir, "/")) {
				t.Errorf("error %q does not name the directory %s", msg, dir)
			}
		})
	}
}

func manyHeaders(n int) string {
	var b strings.Builder
	for i := range n {
		b.WriteString("  X-H" + strings.Repeat("a", i) + ": v\n")
	}
	return b.String()
}

func TestScanDirEmptyIsErrNoFiles(t *testing.T) {
	if _, err := ScanDir(t.Context(), t.TempDir(), ScanOptions{}); !errors.Is(err, ErrNoFiles) {
		t.Errorf("ScanDir(empty) = %v, want ErrNoFiles", err)
	}
	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ScanDir(t.Context(), file, ScanOptions{}); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("ScanDir(file) = %v, want not a directory", err)
	}
	if _, err := ScanDir(t.Context(), filepath.Join(t.TempDir(), "missing"), ScanOptions{}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ScanDir(missing) = %v, want os.ErrNotExist", err)
	}
}

// TestScanDirSymlinksInside checks that links inside the root are followed:
// a file link serves its target's bytes, a directory link is walked, and
// the root itself may be reached through a link.
func TestScanDirSymlinksInside(t *testing.T) {
	dir := writeSite(t, map[string]string{
		"real/page.html":      "<p>page",
		"real/deep/data.json": `{"x":1}`,
		"hidden/.target.txt":  "behind a dotfile", // a link may name a skipped file
	})
	symlink(t, "real/page.html", dir, "alias.html")
	symlink(t, "real", dir, "mirror")
	symlink(t, filepath.Join(dir, "real", "deep"), dir, "other/abs-deep")
	symlink(t, "../hidden/.target.txt", dir, "sub/shown.txt")
	symlink(t, "../sub", dir, "via/link-to-sub") // a link to a directory with a link
	rootLink := filepath.Join(t.TempDir(), "site")
	if err := os.Symlink(dir, rootLink); err != nil {
		t.Skipf("symlink: %v", err)
	}

	s, err := ScanDir(t.Context(), rootLink, ScanOptions{})
	if err != nil {
		t.Fatalf("ScanDir: %v", err)
	}
	want := map[string]string{
		"/real/page.html":            "<p>page",
		"/real/deep/data.json":       `{"x":1}`,
		"/alias.html":                "<p>page",
		"/mirror/page.html":          "<p>page",
		"/mirror/deep/data.json":     `{"x":1}`,
		"/other/abs-deep/data.json":  `{"x":1}`,
		"/sub/shown.txt":             "behind a dotfile",
		"/via/link-to-sub/shown.txt": "behind a dotfile",
	}
	if len(s.Manifest.Files) != len(want) {
		t.Errorf("files = %v, want %d", slices.Sorted(maps.Keys(s.Manifest.Files)), len(want))
	}
	for p, content := range want {
		f, ok := s.Manifest.Files[p]
		if !ok || f.Hash != HashOf([]byte(content)) {
			t.Errorf("%s: %+v, %t; want the hash of %q", p, f.Blob, ok, content)
		}
	}
	realDir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	// The source is the resolved target, so a shared blob is read from
	// the file itself.
	if src := s.Sources[HashOf([]byte("<p>page"))]; src.Path != filepath.Join(realDir, "real", "page.html") {
		t.Errorf("source of the page = %q, want %q", src.Path, filepath.Join(realDir, "real", "page.html"))
	}
}
