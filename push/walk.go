package push

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/selfcdn/cdn/internal/headerrules"
)

// The files at the root of a site directory that configure it rather than
// being served, as on Netlify.
const (
	headersFile   = "_headers"
	redirectsFile = "_redirects"
)

// job is one file found by the walk, to be hashed and compressed.
type job struct {
	urlPath string
	// src is the file to read, with every symlink resolved.
	src string
	// typ is the Content-Type set by _headers, or "" to detect it.
	typ string
	// header holds the other fields _headers sets, or nil.
	header http.Header
}

// walker lists the files of a site directory, following the symlinks that
// stay inside it.
type walker struct {
	ctx context.Context
	// root is the site directory, absolute with every symlink resolved:
	// each link target is checked against it.
	root string
	// shown is the site directory as absolute as the user named it, for
	// messages: an error names the file as the user sees it.
	shown string
	rules *headerrules.Rules
	jobs  []job
}

// walk lists the files under realDir, a resolved directory whose URL path
// is urlDir ("" for the root). chain holds the resolved parent directory of
// every symlink followed to get here: a link to a directory that holds one
// of them would lead back to itself.
func (w *walker) walk(realDir, urlDir string, chain []string) error {
	return filepath.WalkDir(realDir, func(p string, d fs.DirEntry, err error) error {
		if p == realDir {
			if err != nil { // the directory itself: nothing to list unless it failed
				return w.fail(urlDir, withoutPath(err, p))
			}
			return nil
		}
		rel, relErr := filepath.Rel(realDir, p)
		if relErr != nil {
			return relErr // p comes from walking realDir; not expected
		}
		urlPath := urlDir + "/" + filepath.ToSlash(rel)
		if err != nil {
			return w.fail(urlPath, withoutPath(err, p))
		}
		if cerr := w.ctx.Err(); cerr != nil {
			return cerr
		}
		if hidden(d.Name(), urlPath) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if urlPath == "/"+headersFile || urlPath == "/"+redirectsFile {
			return nil // read before the walk; configuration, not content
		}
		switch mode := d.Type(); {
		case mode&fs.ModeSymlink != 0:
			return w.follow(p, urlPath, chain)
		case mode.IsDir():
			return nil
		case mode.IsRegular():
			return w.add(urlPath, p)
		default:
			return w.fail(urlPath, fmt.Errorf("not a regular file, directory or symlink but %s", kind(mode)))
		}
	})
}

// hidden reports whether the entry name at urlPath is skipped: dotfiles
// such as .git or .DS_Store are rarely meant to be published, but
// /.well-known (RFC 8615) is.
func hidden(name, urlPath string) bool {
	return strings.HasPrefix(name, ".") && urlPath != "/.well-known"
}

// follow serves the target of the symlink at p if it is a file inside the
// root, or walks it if it is a directory there.
func (w *walker) follow(p, urlPath string, chain []string) error {
	target, err := filepath.EvalSymlinks(p)
	if err != nil {
		// Dangling, or a cycle of links ("too many links").
		return w.fail(urlPath, fmt.Errorf("follow symlink: %w", err))
	}
	if !within(w.root, target) {
		return w.fail(urlPath, fmt.Errorf("symlink points outside the site directory, to %s", target))
	}
	fi, err := os.Stat(target)
	if err != nil {
		return w.fail(urlPath, fmt.Errorf("follow symlink: %w", err))
	}
	switch {
	case fi.Mode().IsRegular():
		return w.add(urlPath, target)
	case fi.IsDir():
		chain = append(chain[:len(chain):len(chain)], filepath.Dir(p))
		for _, c := range chain {
			if within(target, c) {
				return w.fail(urlPath, fmt.Errorf("symlink loop: the link to %s is inside it", target))
			}
		}
		return w.walk(target, urlPath, chain)
	default:
		return w.fail(urlPath, fmt.Errorf("symlink to %s, not a regular file or directory but %s", target, kind(fi.Mode())))
	}
}

// add lists the file at urlPath, read from src, with its _headers fields.
func (w *walker) add(urlPath, src string) error {
	if err := CheckPath(urlPath); err != nil {
		return w.fail(urlPath, err)
	}
	// Checked here, not only by Validate, so that a tree made huge by
	// symlinks to directories stops early.
	if len(w.jobs) >= MaxFiles {
		return w.fail(urlPath, fmt.Errorf("more than %d files", MaxFiles))
	}
	j := job{urlPath: urlPath, src: src, header: w.rules.Headers(urlPath)}
	if ct, ok := j.header["Content-Type"]; ok {
		// Users expect Content-Type in _headers to override the detected
		// type; the manifest keeps it as the file's type, not a field.
		j.typ = ct[len(ct)-1]
		delete(j.header, "Content-Type")
	}
	if len(j.header) == 0 {
		j.header = nil
	}
	w.jobs = append(w.jobs, j)
	return nil
}

// fail names the file at urlPath in err, as the user sees it: under the
// directory they named, through any symlinks.
func (w *walker) fail(urlPath string, err error) error {
	return fmt.Errorf("%s: %w", showPath(filepath.Join(w.shown, filepath.FromSlash(urlPath))), err)
}

// showPath returns p for a message, quoted if it holds what a terminal
// would not show as is: a name with a newline must not split the message.
func showPath(p string) string {
	if !utf8.ValidString(p) || strings.ContainsFunc(p, unicode.IsControl) {
		return strconv.Quote(p)
	}
	return p
}

// withoutPath drops p from err when err is an *fs.PathError about p, so that
// a message that names the file already does not name it twice.
func withoutPath(err error, p string) error {
	if pe, ok := errors.AsType[*fs.PathError](err); ok && pe.Path == p {
		return fmt.Errorf("%s: %w", pe.Op, pe.Err)
	}
	return err
}

// within reports whether path p is dir or inside it; both are clean and
// absolute.
func within(dir, p string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}

// kind names the type of a file mode for a message.
func kind(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return "a regular file"
	case m.IsDir():
		return "a directory"
	case m&fs.ModeSymlink != 0:
		return "a symlink"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe (fifo)"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return "an irregular file (" + m.Type().String() + ")"
}
