package static

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/selfcdn/cdn/internal/headerrules"
)

// rulesName is the headers rules file looked up in the site root when
// Config.RulesFile is empty. It is never served.
const rulesName = "_headers"

// Deps holds what the caller owns and lends to the Server.
type Deps struct {
	// Logger receives request (Debug) and lifecycle (Info) logs. Nil
	// discards them.
	Logger *slog.Logger
	// Metrics registers the origin's collectors. Nil registers nothing.
	Metrics prometheus.Registerer
}

// Server is the static-site origin: an http.Handler over one directory,
// plus Serve and Run to put it on the network. Create it with New; it is
// safe for concurrent use.
type Server struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	root    *os.Root
	rules   *headerrules.Rules
	hidden  map[string]bool // root-relative names never served (rules files)
	etags   etagCache
}

// New opens cfg.Dir and loads the headers rules. It does no network I/O.
// The caller must Close the Server.
func New(cfg Config, deps Deps) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("check config: %w", err)
	}
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(deps.Metrics)
	if err != nil {
		return nil, fmt.Errorf("register metrics: %w", err)
	}
	root, err := os.OpenRoot(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("open site: %w", err)
	}
	s := &Server{
		cfg:     cfg,
		log:     log.With("component", "origin"),
		metrics: m,
		root:    root,
		hidden:  map[string]bool{rulesName: true},
	}
	if s.rules, err = s.loadRules(); err != nil {
		root.Close()
		return nil, err
	}
	return s, nil
}

// loadRules parses cfg.RulesFile, or DIR/_headers when that is empty and
// the file exists. A rules file inside Dir is added to s.hidden.
func (s *Server) loadRules() (*headerrules.Rules, error) {
	if s.cfg.RulesFile == "" {
		f, err := s.root.Open(rulesName)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("open rules: %w", err)
		}
		defer f.Close()
		rules, err := headerrules.Parse(f)
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", f.Name(), err)
		}
		return rules, nil
	}
	if name, ok := within(s.cfg.Dir, s.cfg.RulesFile); ok {
		s.hidden[name] = true
	}
	return headerrules.ParseFile(s.cfg.RulesFile) // its errors say "open rules" or "parse FILE"
}

// within returns file's slash-separated name relative to dir when file lies
// inside dir.
func within(dir, file string) (string, bool) {
	absDir, err1 := filepath.Abs(dir)
	absFile, err2 := filepath.Abs(file)
	if err1 != nil || err2 != nil {
		return "", false
	}
	rel, err := filepath.Rel(absDir, absFile)
	if err != nil || !filepath.IsLocal(rel) {
		return "", false
	}
	return filepath.ToSlash(rel), true
}

// Close releases the site directory.
func (s *Server) Close() error {
	return s.root.Close()
}

// Run listens on cfg.Listen and serves until ctx ends; see Serve.
func (s *Server) Run(ctx context.Context) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Listen)
	if err != nil {
		return err // *net.OpError already names the address
	}
	return s.Serve(ctx, ln)
}

// Serve serves HTTP on ln until ctx ends, then shuts down gracefully within
// cfg.ShutdownTimeout, closing ln. It returns nil after a clean shutdown.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "listening", slog.String("addr", ln.Addr().String()))

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("serve http: %w", err)
	case <-ctx.Done():
	}

	// The parent ctx is done; the shutdown gets its own deadline.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if err != nil {
		srv.Close() // drop the connections that outlived the timeout
	}
	<-served // http.ErrServerClosed once Shutdown or Close has begun
	if err != nil {
		return fmt.Errorf("shut down: %w", err)
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "stopped")
	return nil
}
