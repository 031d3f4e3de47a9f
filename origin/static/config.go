package static

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// Config is the origin's configuration (`cdn origin --dir DIR --listen ADDR`).
// The zero value is not valid: start from DefaultConfig.
type Config struct {
	// Dir is the site root; only files under it are served. Required.
	Dir string `yaml:"dir"`
	// Listen is the TCP address to serve on. Default "127.0.0.1:9000".
	Listen string `yaml:"listen"`
	// RulesFile is a Netlify-style `_headers` file of per-path response
	// headers. Empty means DIR/_headers when that file exists, else no rules.
	RulesFile string `yaml:"rules_file"`
	// DefaultCacheControl is the Cache-Control of every file response that
	// no rule sets one for, and of 404 responses. Empty sends none.
	// Default "public, max-age=60".
	DefaultCacheControl string `yaml:"default_cache_control"`
	// ServeDotfiles serves files and directories whose name starts with a
	// dot (/.env, /.git/config, /a/.hidden/x). Default false: they get 404
	// as if they did not exist, since a site root checked out from git or
	// built by a tool often holds secrets there. /.well-known/ (RFC 8615)
	// is served either way; dot names inside it are not.
	ServeDotfiles bool `yaml:"serve_dotfiles"`
	// ShutdownTimeout bounds the graceful shutdown once the context ends.
	// Default 10s.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
}

// DefaultConfig returns a Config with every default filled in; only Dir
// remains to be set.
func DefaultConfig() Config {
	return Config{
		Listen:              "127.0.0.1:9000",
		DefaultCacheControl: "public, max-age=60",
		ShutdownTimeout:     10 * time.Second,
	}
}

// Validate reports every problem at once, each naming its YAML field.
func (c Config) Validate() error {
	var errs []error
	if c.Dir == "" {
		errs = append(errs, errors.New("dir is required"))
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("listen must be host:port, got %q", c.Listen))
	}
	if strings.ContainsFunc(c.DefaultCacheControl, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		errs = append(errs, fmt.Errorf("default_cache_control must not contain control characters, got %q", c.DefaultCacheControl))
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, fmt.Errorf("shutdown_timeout must be > 0, got %s", c.ShutdownTimeout))
	}
	return errors.Join(errs...)
}
