package origin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// Config tunes the origin client. Zero fields take the defaults.
type Config struct {
	// ConnectTimeout bounds dialing the origin. Default 5s.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// HeaderTimeout bounds the wait for the response header. Default 30s.
	HeaderTimeout time.Duration `yaml:"header_timeout"`
	// ReadTimeout bounds the wait for each read of the body, so an origin
	// that stalls mid-body is cut off without capping large downloads.
	// Default 30s.
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// MaxIdleConns is the idle connection pool per origin. Default 256.
	MaxIdleConns int `yaml:"max_idle_conns"`
	// MaxHeaderBytes bounds an origin's response header block; a bigger
	// one fails the fetch (a 502), so a hostile origin cannot make the
	// edge hold megabytes per request nor store them. Default 64KiB
	// (nginx and Varnish cap each header line at 4-8 KiB).
	MaxHeaderBytes int64 `yaml:"max_header_bytes"`
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = 5 * time.Second
	}
	if c.HeaderTimeout == 0 {
		c.HeaderTimeout = 30 * time.Second
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = 30 * time.Second
	}
	if c.MaxIdleConns == 0 {
		c.MaxIdleConns = 256
	}
	if c.MaxHeaderBytes == 0 {
		c.MaxHeaderBytes = 64 << 10
	}
	return c
}

// Validate reports negative settings.
func (c Config) Validate() error {
	var errs []error
	for name, d := range map[string]time.Duration{"connect_timeout": c.ConnectTimeout, "header_timeout": c.HeaderTimeout, "read_timeout": c.ReadTimeout} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s must be >= 0, got %s", name, d))
		}
	}
	if c.MaxIdleConns < 0 {
		errs = append(errs, fmt.Errorf("max_idle_conns must be >= 0, got %d", c.MaxIdleConns))
	}
	if c.MaxHeaderBytes != 0 && (c.MaxHeaderBytes < 4<<10 || c.MaxHeaderBytes > 1<<20) {
		errs = append(errs, fmt.Errorf("max_header_bytes must be 4KiB-1MiB (0: 64KiB), got %d", c.MaxHeaderBytes))
	}
	return errors.Join(errs...)
}

// ErrTimeout marks an origin that did not answer in time (a 504).
var ErrTimeout = errors.New("origin timed out")

// Error is an origin fetch that failed. Callers tell a timeout from other
// failures with errors.Is(err, ErrTimeout).
type Error struct {
	URL string
	Err error
}

func (e *Error) Error() string { return fmt.Sprintf("fetch %s: %v", e.URL, e.Err) }
func (e *Error) Unwrap() error { return e.Err }

// Fetcher sends requests to origins. It is safe for concurrent use.
type Fetcher struct {
	cfg    Config
	client *http.Client
}

// NewFetcher returns a fetcher with its own connection pool.
func NewFetcher(cfg Config) *Fetcher {
	cfg = cfg.WithDefaults()
	return &Fetcher{cfg: cfg, client: newClient(newTransport(cfg, nil))}
}

// Do sends req. The returned body enforces ReadTimeout between reads and
// must be closed. Idempotent requests without a body are retried once when
// the connection failed before a response began.
func (f *Fetcher) Do(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancel(req.Context())
	req = req.WithContext(ctx)
	res, err := f.client.Do(req)
	if err != nil && retryable(req, err) {
		res, err = f.client.Do(req)
	}
	if err != nil {
		cancel()
		if isTimeout(err) {
			err = fmt.Errorf("%w: %w", ErrTimeout, err)
		}
		return nil, &Error{URL: req.URL.Redacted(), Err: err}
	}
	res.Body = newIdleBody(res.Body, f.cfg.ReadTimeout, cancel, req.URL.Redacted())
	return res, nil
}

// Close drops idle connections.
func (f *Fetcher) Close() { f.client.CloseIdleConnections() }

func retryable(req *http.Request, err error) bool {
	if req.Context().Err() != nil || isTimeout(err) {
		return false
	}
	return (req.Method == http.MethodGet || req.Method == http.MethodHead) && (req.Body == nil || req.Body == http.NoBody)
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// idleBody cancels the request when one Read waits longer than timeout.
// The clock runs only inside Read: time the caller spends writing to a slow
// client is not the origin's fault.
type idleBody struct {
	rc      io.ReadCloser
	timer   *time.Timer
	timeout time.Duration
	cancel  context.CancelFunc
	url     string
	once    sync.Once
	expired chan struct{} // closed when the timer cancelled the request
}

func newIdleBody(rc io.ReadCloser, timeout time.Duration, cancel context.CancelFunc, url string) *idleBody {
	b := &idleBody{rc: rc, timeout: timeout, cancel: cancel, url: url, expired: make(chan struct{})}
	b.timer = time.AfterFunc(timeout, func() {
		b.once.Do(func() { close(b.expired) })
		cancel()
	})
	b.timer.Stop()
	return b
}

func (b *idleBody) Read(p []byte) (int, error) {
	b.timer.Reset(b.timeout)
	n, err := b.rc.Read(p)
	b.timer.Stop()
	if err != nil && err != io.EOF {
		select {
		case <-b.expired:
			err = &Error{URL: b.url, Err: fmt.Errorf("%w: body stalled for %s", ErrTimeout, b.timeout)}
		default:
			err = &Error{URL: b.url, Err: err}
		}
	}
	return n, err
}

func (b *idleBody) Close() error {
	b.timer.Stop()
	err := b.rc.Close()
	b.cancel()
	return err
}
