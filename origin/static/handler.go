package static

import (
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"mime"
	"net/http"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/selfcdn/cdn/internal/httpstats"
)

// notFoundPage is the site's custom 404 body, served with status 404.
const notFoundPage = "404.html"

// ServeHTTP serves the file at r.URL.Path: GET and HEAD only, a directory
// through its index.html, conditional and range requests per RFC 9110.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	cw := &httpstats.Writer{ResponseWriter: w}
	s.serve(cw, r)
	status := cw.Status
	if status == 0 {
		status = http.StatusOK // nothing written: net/http sends an empty 200
	}
	s.metrics.observe(status, cw.Bytes)
	s.log.LogAttrs(r.Context(), slog.LevelDebug, "request",
		slog.String("path", r.URL.Path), slog.Int("status", status), slog.Duration("dur", time.Since(start)))
}

// serve answers r; ServeHTTP wraps it with metrics and logging.
func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	name, ok := cleanPath(r.URL.Path)
	if !ok {
		http.Error(w, "invalid URL path", http.StatusBadRequest)
		return
	}
	if !s.cfg.ServeDotfiles && dotted(name) {
		s.notFound(w, r) // as if it were not there: a 403 would confirm it is
		return
	}
	urlPath := "/" + strings.TrimPrefix(name, ".") // name "." is the root, "/"
	f, fi, err := s.open(name)
	if err != nil {
		s.openFailed(w, r, err)
		return
	}
	defer func() { f.Close() }() // f changes below when a directory becomes its index

	trailing := strings.HasSuffix(r.URL.Path, "/")
	switch {
	case fi.IsDir() && !trailing:
		// Relative links in the index resolve against "/dir/", not "/".
		redirect(w, r, strings.TrimSuffix(urlPath, "/")+"/")
		return
	case fi.IsDir():
		f.Close()
		if f, fi, err = s.open(path.Join(name, "index.html")); err != nil {
			s.openFailed(w, r, err)
			return
		}
		if name != "." {
			urlPath += "/"
		}
	case trailing:
		redirect(w, r, urlPath) // "/a.txt/" names a file: drop the slash
		return
	}
	if !fi.Mode().IsRegular() {
		s.notFound(w, r) // a directory named index.html, a FIFO, a device
		return
	}

	etag, err := s.etags.get(f.Name(), f, fi)
	if err != nil {
		s.log.LogAttrs(r.Context(), slog.LevelError, "read file failed", slog.String("path", urlPath), slog.Any("err", err))
		http.Error(w, "internal server error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	if ct := mime.TypeByExtension(path.Ext(fi.Name())); ct != "" {
		h.Set("Content-Type", ct) // else ServeContent sniffs the first 512 bytes
	}
	h.Set("Etag", etag)
	if s.cfg.DefaultCacheControl != "" {
		h.Set("Cache-Control", s.cfg.DefaultCacheControl)
	}
	maps.Copy(h, s.rules.Headers(urlPath)) // rules replace the defaults above
	// ServeContent handles If-Match, If-None-Match, If-Modified-Since,
	// If-Unmodified-Since, If-Range and Range (RFC 9110 §13, §14), and
	// streams from f, with sendfile where the connection allows it.
	http.ServeContent(w, r, fi.Name(), fi.ModTime(), f)
}

// cleanPath turns a URL path into a name for os.Root: no leading slash,
// "." for the root. It rejects paths that are not absolute, hold a NUL, or
// have a ".." segment (also when it arrived percent-encoded as "%2e%2e").
func cleanPath(p string) (string, bool) {
	if !strings.HasPrefix(p, "/") || strings.IndexByte(p, 0) >= 0 {
		return "", false
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg == ".." {
			return "", false
		}
	}
	name := strings.TrimPrefix(path.Clean(p), "/")
	if name == "" {
		name = "."
	}
	return name, true
}

// wellKnown is the one dot directory served by default (RFC 8615).
const wellKnown = ".well-known"

// dotted reports whether name, as cleanPath returns it, has a segment
// that starts with a dot, other than a leading ".well-known".
func dotted(name string) bool {
	for i := 0; i < len(name); {
		seg, _, _ := strings.Cut(name[i:], "/")
		if strings.HasPrefix(seg, ".") && seg != "." && !(i == 0 && seg == wellKnown) {
			return true
		}
		i += len(seg) + 1
	}
	return false
}

// open opens name inside the site root and stats it. Hidden files (the
// rules file) are reported as not existing.
func (s *Server) open(name string) (*os.File, fs.FileInfo, error) {
	if s.hidden[name] {
		return nil, nil, fs.ErrNotExist
	}
	f, err := s.root.Open(name)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, fi, nil
}

// openFailed maps an open error to a response: 403 for permission, else
// 404. Not-exist, not-a-directory and os.Root's "path escapes" all mean
// "no such file in this site"; a 404 also reveals nothing about the host.
func (s *Server) openFailed(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, fs.ErrPermission) {
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	if !errors.Is(err, fs.ErrNotExist) {
		s.log.LogAttrs(r.Context(), slog.LevelDebug, "open failed", slog.String("path", r.URL.Path), slog.Any("err", err))
	}
	s.notFound(w, r)
}

// notFound answers 404 with the site's 404.html when it has one. It uses
// DefaultCacheControl, never a rule's: a rule for "/assets/*" may say
// "immutable", and a missing asset must not be cached for a year.
func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	if s.cfg.DefaultCacheControl != "" {
		h.Set("Cache-Control", s.cfg.DefaultCacheControl)
	}
	f, fi, err := s.open(notFoundPage)
	if err != nil {
		http.Error(w, "404 page not found", http.StatusNotFound)
		return
	}
	defer f.Close()
	if !fi.Mode().IsRegular() {
		http.Error(w, "404 page not found", http.StatusNotFound)
		return
	}
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Length", strconv.FormatInt(fi.Size(), 10))
	w.WriteHeader(http.StatusNotFound)
	if r.Method != http.MethodHead {
		io.Copy(w, f) // the status is sent; a short copy can only end the connection
	}
}

// redirect answers 301 to target, an absolute path, keeping the query.
func redirect(w http.ResponseWriter, r *http.Request, target string) {
	if r.URL.RawQuery != "" {
		target += "?" + r.URL.RawQuery
	}
	// target is cleaned and starts with a single "/", so it can never be a
	// protocol-relative "//host" redirect.
	http.Redirect(w, r, target, http.StatusMovedPermanently)
}
