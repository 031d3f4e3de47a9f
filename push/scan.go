package push

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/selfcdn/cdn/internal/headerrules"
)

// ErrNoFiles is returned, wrapped, by ScanDir for a directory without a file
// to serve.
var ErrNoFiles = errors.New("no files to push")

// DefaultMinCompress is ScanOptions.MinCompress when unset: below about one
// packet, a compressed variant saves too little to be worth a blob.
const DefaultMinCompress = 1024

// ScanOptions shape a scan; zero values mean the defaults noted.
type ScanOptions struct {
	// MinCompress is the smallest file precompressed, in bytes (default
	// DefaultMinCompress).
	MinCompress int64
	// Workers bounds parallel hashing/compression (default
	// runtime.GOMAXPROCS(0)).
	Workers int
	// Cache, when set, is a file that remembers what each file's scan
	// found, so the next scan reads only the files that changed (see
	// scancache.go for when a file counts as unchanged). "": every file
	// is read. DefaultScanCache gives cdn push's.
	Cache string
}

func (o ScanOptions) withDefaults() ScanOptions {
	if o.MinCompress <= 0 {
		o.MinCompress = DefaultMinCompress
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	return o
}

// Source says where a blob's bytes come from: the file at Path, compressed
// with Coding ("" = as is).
type Source struct {
	Path   string
	Coding string
}

// Scan is a scanned directory: the manifest, the source of every blob it
// names (by hash), and totals. A Scan is not changed after ScanDir returns,
// so Open may be called concurrently.
type Scan struct {
	Manifest *Manifest
	Sources  map[string]Source
	Files    int   // files in the manifest
	Bytes    int64 // sum of the files' sizes (uncompressed)
	// Unchanged counts the files the scan cache had, not read again.
	Unchanged int
	// CacheErr is why the scan cache could not be saved (nil: saved or
	// not asked for); the scan is good all the same.
	CacheErr error

	// sizes are the blob sizes by hash, for Open; nil in a Scan not made
	// by ScanDir, which then searches Manifest.
	sizes map[string]int64
}

// ScanDir builds the manifest of the site in dir: every file, except
// dotfiles (but /.well-known) and the _headers and _redirects files at the
// root, which set the files' header fields and the redirects. Symlinks are
// followed when they lead to a file or directory inside dir. Each file is
// hashed, and those of text types at least opts.MinCompress long get gzip
// and zstd variants when these save 10% or more. Compressed bytes are
// hashed as they are made and not kept; Open makes them again.
//
// The errors name the file: "scan site: /srv/site/a b: path ...".
func ScanDir(ctx context.Context, dir string, opts ScanOptions) (*Scan, error) {
	s, err := scanDir(ctx, dir, opts.withDefaults())
	if err != nil {
		return nil, fmt.Errorf("scan site: %w", err)
	}
	return s, nil
}

func scanDir(ctx context.Context, dir string, opts ScanOptions) (*Scan, error) {
	var cache *scanCache
	if opts.Cache != "" {
		cache = loadScanCache(opts.Cache, time.Now())
	}
	return scanDirCached(ctx, dir, opts, cache)
}

func scanDirCached(ctx context.Context, dir string, opts ScanOptions, cache *scanCache) (*Scan, error) {
	shown, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	// Resolved once, so that every link target can be compared with it:
	// the directory may itself be reached through a symlink.
	root, err := filepath.EvalSymlinks(shown)
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(root); err != nil {
		return nil, err
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("%s: not a directory", shown)
	}
	w := &walker{ctx: ctx, root: root, shown: shown}
	if w.rules, err = w.readHeaders(); err != nil {
		return nil, err
	}
	redirects, err := w.readRedirects()
	if err != nil {
		return nil, err
	}
	if err := w.walk(root, "", nil); err != nil {
		return nil, err
	}
	if len(w.jobs) == 0 {
		return nil, fmt.Errorf("%s: %w", shown, ErrNoFiles)
	}
	files, err := scanFiles(ctx, w, opts, cache)
	if err != nil {
		return nil, err
	}
	s := assemble(w.jobs, files, redirects)
	if err := s.Manifest.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", shown, err)
	}
	if cache != nil {
		s.Unchanged = cache.hits
		s.CacheErr = cache.save()
	}
	return s, nil
}

// scanFiles hashes and compresses the files of jobs on opts.Workers
// goroutines, or takes them from cache (nil: none) when unchanged;
// files[i] is jobs[i]'s. The first error stops the rest.
func scanFiles(ctx context.Context, w *walker, opts ScanOptions, cache *scanCache) ([]File, error) {
	files := make([]File, len(w.jobs))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(opts.Workers)
	for i, j := range w.jobs {
		if gctx.Err() != nil {
			break // a job failed or ctx ended: start no more
		}
		g.Go(func() error {
			if f, ok := cache.find(j, opts.MinCompress); ok {
				files[i] = f
				return nil
			}
			sc, err := scanFile(gctx, j, opts.MinCompress)
			if err != nil {
				return w.fail(j.urlPath, withoutPath(err, j.src))
			}
			if cache != nil && sc.idOK {
				cache.add(j, sc.id, sc.file, sc.compressed, sc.sniffed)
			}
			files[i] = sc.file
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	// The loop may have stopped early with no job failing.
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return files, nil
}

// assemble builds the Scan of the scanned files. When files share a blob,
// the first in walk order is its source, so two scans agree.
func assemble(jobs []job, files []File, redirects []Redirect) *Scan {
	s := &Scan{
		Manifest: &Manifest{Files: make(map[string]File, len(jobs)), Redirects: redirects},
		Sources:  make(map[string]Source, len(jobs)),
		sizes:    make(map[string]int64, len(jobs)),
	}
	add := func(b Blob, src Source) {
		if _, ok := s.Sources[b.Hash]; !ok {
			s.Sources[b.Hash] = src
			s.sizes[b.Hash] = b.Size
		}
	}
	for i, j := range jobs {
		f := files[i]
		s.Manifest.Files[j.urlPath] = f
		s.Bytes += f.Size
		add(f.Blob, Source{Path: j.src})
		for _, c := range slices.Sorted(maps.Keys(f.Encoded)) {
			add(f.Encoded[c], Source{Path: j.src, Coding: c})
		}
	}
	s.Files = len(s.Manifest.Files)
	if _, ok := s.Manifest.Files["/404.html"]; ok {
		s.Manifest.NotFound = "/404.html"
	}
	return s
}

// readHeaders parses the root's _headers file, if any, and refuses a rule
// that sets a field the edge sets itself. Content-Type is allowed: it
// replaces the detected type of the files it matches.
func (w *walker) readHeaders() (*headerrules.Rules, error) {
	f, err := w.openConfig(headersFile)
	if f == nil || err != nil {
		return nil, err
	}
	defer f.Close()
	rs, err := headerrules.Parse(f)
	if err != nil {
		return nil, w.fail("/"+headersFile, err)
	}
	for _, r := range rs.All() {
		for _, name := range slices.Sorted(maps.Keys(r.Header)) {
			switch {
			case name == "Content-Type" && slices.Contains(r.Header[name], ""):
				return nil, w.fail("/"+headersFile, fmt.Errorf("rule %s: Content-Type: empty value", r.Pattern))
			case name != "Content-Type" && slices.Contains(forbiddenHeaders, name):
				return nil, w.fail("/"+headersFile, fmt.Errorf("rule %s: %s is set by the edge from the file, not by _headers", r.Pattern, name))
			}
		}
	}
	return rs, nil
}

// readRedirects parses the root's _redirects file, if any.
func (w *walker) readRedirects() ([]Redirect, error) {
	f, err := w.openConfig(redirectsFile)
	if f == nil || err != nil {
		return nil, err
	}
	defer f.Close()
	rs, err := parseRedirects(f)
	if err != nil {
		return nil, w.fail("/"+redirectsFile, err)
	}
	return rs, nil
}

// openConfig opens the root's file name, or returns nil, nil when there is
// none. Like a served file, it may be a symlink to a file inside the root.
func (w *walker) openConfig(name string) (*os.File, error) {
	p := filepath.Join(w.root, name)
	fi, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, w.fail("/"+name, withoutPath(err, p))
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		if p, err = filepath.EvalSymlinks(p); err != nil {
			return nil, w.fail("/"+name, fmt.Errorf("follow symlink: %w", err))
		}
		if !within(w.root, p) {
			return nil, w.fail("/"+name, fmt.Errorf("symlink points outside the site directory, to %s", p))
		}
		if fi, err = os.Stat(p); err != nil {
			return nil, w.fail("/"+name, err)
		}
	}
	// Opening a fifo would block; a directory cannot be parsed.
	if !fi.Mode().IsRegular() {
		return nil, w.fail("/"+name, fmt.Errorf("not a regular file but %s", kind(fi.Mode())))
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, w.fail("/"+name, withoutPath(err, p))
	}
	return f, nil
}
