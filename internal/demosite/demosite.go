// Package demosite is the small static site `cdn up` serves from its
// reference origin, so a newcomer has something to curl.
package demosite

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

//go:embed all:site
var files embed.FS

// Install writes the demo site into dir unless dir already has files, so an
// operator's edits survive the next `cdn up`.
func Install(dir string) error {
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return nil
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read demo site dir: %w", err)
	}
	root, err := fs.Sub(files, "site")
	if err != nil {
		return err
	}
	return fs.WalkDir(root, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, filepath.FromSlash(path))
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		b, err := fs.ReadFile(root, path)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
}
