// Package accesslog writes the edge's access log: one JSON line per
// request, in the fields and format of the process's slog JSON lines
// (time, level, msg "request", then the request's), without a write(2)
// per request. Lines are appended to a buffer that a background goroutine
// writes out when it holds BufferBytes or every FlushInterval, as nginx's
// access_log buffer= flush= do; the request path never waits for the pipe
// or disk. When the writer falls behind by MaxPending bytes, lines are
// dropped and counted (cdn_edge_access_log_dropped_total), never
// silently. Close writes out everything held.
package accesslog

import (
	"errors"
	"io"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
)

// Config tunes the buffering. Zero fields take the defaults.
type Config struct {
	// BufferBytes is how much is gathered before a write. Default 64 KiB.
	BufferBytes int
	// FlushInterval bounds how long a line waits. Default 1s.
	FlushInterval time.Duration
	// MaxPending is how much may wait while a write is slow before lines
	// are dropped. Default 8 MiB.
	MaxPending int
}

func (c Config) withDefaults() Config {
	if c.BufferBytes <= 0 {
		c.BufferBytes = 64 << 10
	}
	if c.FlushInterval <= 0 {
		c.FlushInterval = time.Second
	}
	if c.MaxPending <= 0 {
		c.MaxPending = 8 << 20
	}
	return c
}

// Record is one request.
type Record struct {
	Time                                           time.Time
	Site, Method, Host, Path, Proto, Cache, Remote string
	// RemoteAddr, when valid, is written instead of Remote: formatting
	// it here costs no allocation.
	RemoteAddr netip.AddrPort
	Status     int
	Bytes      int64
	Dur        time.Duration
}

// Log is an access log. It is safe for concurrent use.
type Log struct {
	cfg     Config
	w       io.Writer
	kick    chan struct{} // a buffer is full: write now
	done    chan struct{} // closed by Close
	stopped chan struct{} // closed when the writer has written all
	dropped prometheus.Counter
	written prometheus.Counter

	mu      sync.Mutex // protects pending, closed
	pending []byte
	closed  bool

	// stamp is the last time written, formatted: every line of the same
	// millisecond (dozens at a busy edge) reuses it.
	stamp atomic.Pointer[stamp]
}

type stamp struct {
	milli int64
	text  []byte
}

// New starts a log writing to w.
func New(w io.Writer, cfg Config, reg prometheus.Registerer) *Log {
	l := &Log{
		cfg: cfg.withDefaults(), w: w, kick: make(chan struct{}, 1), done: make(chan struct{}), stopped: make(chan struct{}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "cdn_edge_access_log_dropped_total",
			Help: "Access log lines dropped because writing them fell behind."}),
		written: prometheus.NewCounter(prometheus.CounterOpts{Name: "cdn_edge_access_log_lines_total",
			Help: "Access log lines handed to the writer."}),
	}
	if reg != nil {
		reg.MustRegister(l.dropped, l.written)
	}
	l.pending = make([]byte, 0, l.cfg.BufferBytes)
	go l.run()
	return l
}

var lines = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// Write logs r.
func (l *Log) Write(r Record) {
	bp := lines.Get().(*[]byte)
	line := l.appendTime((*bp)[:0], r.Time)
	line = appendFields(line, &r)
	l.mu.Lock()
	switch {
	case l.closed, len(l.pending)+len(line) > l.cfg.MaxPending:
		l.mu.Unlock()
		l.dropped.Inc()
	default:
		l.pending = append(l.pending, line...)
		full := len(l.pending) >= l.cfg.BufferBytes
		l.mu.Unlock()
		l.written.Inc()
		if full {
			select {
			case l.kick <- struct{}{}:
			default:
			}
		}
	}
	*bp = line
	lines.Put(bp)
}

// run writes out what is pending when a buffer fills, every flush
// interval, and once more at Close.
func (l *Log) run() {
	defer close(l.stopped)
	t := time.NewTicker(l.cfg.FlushInterval)
	defer t.Stop()
	spare := make([]byte, 0, l.cfg.BufferBytes)
	for {
		var last bool
		select {
		case <-l.kick:
		case <-t.C:
		case <-l.done:
			last = true
		}
		l.mu.Lock()
		out := l.pending
		l.pending = spare[:0]
		l.mu.Unlock()
		if len(out) > 0 {
			l.w.Write(out) // a failed write loses these lines; stderr has no better place to say so
		}
		spare = out
		if last {
			return
		}
	}
}

// Close writes out every line logged before it and stops the log; lines
// logged after it are dropped (and counted).
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return errors.New("access log closed twice")
	}
	l.closed = true
	l.mu.Unlock()
	close(l.done)
	<-l.stopped
	return nil
}

// appendRecord appends r as one JSON line, as slog's JSON handler writes
// a record with these attributes (a duration in nanoseconds).
func appendRecord(b []byte, r *Record) []byte {
	return appendFields(appendTime(b, r.Time), r)
}

// appendTime starts a line with t as slog writes it (milliseconds).
func appendTime(b []byte, t time.Time) []byte {
	b = append(b, `{"time":"`...)
	return t.AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
}

// appendTime is appendTime through the log's last stamp.
func (l *Log) appendTime(b []byte, t time.Time) []byte {
	ms := t.UnixMilli()
	if st := l.stamp.Load(); st != nil && st.milli == ms {
		return append(b, st.text...)
	}
	start := len(b)
	b = appendTime(b, t)
	l.stamp.Store(&stamp{milli: ms, text: append([]byte(nil), b[start:]...)})
	return b
}

// appendFields appends the rest of r's line after its time.
func appendFields(b []byte, r *Record) []byte {
	b = append(b, `","level":"INFO","msg":"request","site":`...)
	b = appendString(b, r.Site)
	b = append(b, `,"method":`...)
	b = appendString(b, r.Method)
	b = append(b, `,"host":`...)
	b = appendString(b, r.Host)
	b = append(b, `,"path":`...)
	b = appendString(b, r.Path)
	b = append(b, `,"proto":`...)
	b = appendString(b, r.Proto)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(r.Status), 10)
	b = append(b, `,"cache":`...)
	b = appendString(b, r.Cache)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, r.Bytes, 10)
	b = append(b, `,"remote":`...)
	if r.RemoteAddr.IsValid() {
		b = append(b, '"')
		b = r.RemoteAddr.AppendTo(b)
		b = append(b, '"')
	} else {
		b = appendString(b, r.Remote)
	}
	b = append(b, `,"dur":`...)
	b = strconv.AppendInt(b, int64(r.Dur), 10)
	return append(b, "}\n"...)
}

const hex = "0123456789abcdef"

// appendString appends s as a JSON string. Clients write most of these
// fields: quotes, backslashes, control characters and invalid UTF-8
// (as U+FFFD) are escaped so every line stays one valid JSON object.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			// Valid JSON, but not in JavaScript strings: escaped as
			// encoding/json does.
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
