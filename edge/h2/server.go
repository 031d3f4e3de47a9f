package h2

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// Server serves HTTP/2 connections whose client preface has not been read
// yet (h2c with prior knowledge, or TLS after ALPN chose "h2").
type Server struct {
	// Handler answers every request.
	Handler http.Handler
	// MaxConcurrentStreams is the number of streams a client may have
	// open at once (SETTINGS_MAX_CONCURRENT_STREAMS). Default 100.
	MaxConcurrentStreams uint32
	// MaxHeaderListSize bounds a request's header fields, as RFC 9113
	// §6.5.2 counts them. Default 64 KiB.
	MaxHeaderListSize uint32
	// StreamWindow and ConnWindow are the request body bytes a client may
	// send ahead on one stream and on the whole connection. Defaults
	// 1 MiB and 4 MiB.
	StreamWindow, ConnWindow uint32
	// IdleTimeout closes a connection that has had no open stream for
	// this long. 0: never.
	IdleTimeout time.Duration
	// PrefaceTimeout bounds the wait for the client preface and its
	// SETTINGS. Default 10s.
	PrefaceTimeout time.Duration
	// StallTimeout resets a stream whose response has waited this long
	// for the client to open its flow-control window, or whose request
	// body has not moved for this long. Default 60s.
	StallTimeout time.Duration
	// ReadHeaderTimeout bounds a header block from its HEADERS frame to
	// its last CONTINUATION; a client slower than that is cut off.
	// Default 10s.
	ReadHeaderTimeout time.Duration
	// FloodBudget is how many frames that cost work without progress
	// (client resets, refused streams, which count ten, empty frames, tiny
	// WINDOW_UPDATEs, malformed requests, control frames beyond
	// ControlFrameRate) a connection may send, net of the responses it
	// received in full,
	// before it is cut off with GOAWAY ENHANCE_YOUR_CALM (flood.go).
	// Default 1000.
	FloodBudget int
	// ControlFrameRate is how many SETTINGS, PING, PRIORITY and unknown
	// frames a second (and in a burst) a connection may send before each
	// counts against FloodBudget. Default 100.
	ControlFrameRate int
	// CutOffHold is how long a connection cut off for a flood is held
	// open after its GOAWAY, unread, before it is closed (tarpit.go): a
	// flood client that keeps writing blocks on the full TCP window
	// instead of reconnecting at once. Default 10s; negative: closed at
	// once.
	CutOffHold time.Duration
	// MaxHeld bounds the connections held at once; past it the oldest is
	// closed. Default 1024.
	MaxHeld int
	// Metrics counts connections cut off and held; nil: not counted.
	Metrics *Metrics
	// Log receives connection errors at debug level, and one line at
	// info level per connection cut off for a flood; nil discards them.
	Log *slog.Logger

	once      sync.Once  // fills in the defaults
	held      tarpit     // connections cut off for a flood, held open
	mu        sync.Mutex // protects conns, listeners, closing
	conns     map[*conn]struct{}
	listeners map[net.Listener]struct{}
	closing   bool
	wg        sync.WaitGroup // connections being served
}

// ErrServerClosed is returned by Serve after Shutdown or Close: net/http's,
// so callers serving both treat them alike.
var ErrServerClosed = http.ErrServerClosed

func (s *Server) defaults() {
	if s.MaxConcurrentStreams == 0 {
		s.MaxConcurrentStreams = 100
	}
	if s.MaxHeaderListSize == 0 {
		s.MaxHeaderListSize = 64 << 10
	}
	if s.StreamWindow == 0 {
		s.StreamWindow = 1 << 20
	}
	if s.ConnWindow == 0 {
		s.ConnWindow = 4 << 20
	}
	if s.PrefaceTimeout == 0 {
		s.PrefaceTimeout = 10 * time.Second
	}
	if s.StallTimeout == 0 {
		s.StallTimeout = 60 * time.Second
	}
	if s.ReadHeaderTimeout == 0 {
		s.ReadHeaderTimeout = 10 * time.Second
	}
	if s.FloodBudget == 0 {
		s.FloodBudget = 1000
	}
	if s.ControlFrameRate == 0 {
		s.ControlFrameRate = 100
	}
	if s.CutOffHold == 0 {
		s.CutOffHold = 10 * time.Second
	}
	if s.MaxHeld == 0 {
		s.MaxHeld = 1024
	}
	if s.Log == nil {
		s.Log = slog.New(slog.DiscardHandler)
	}
	s.held.configure(s.CutOffHold, s.MaxHeld, s.Metrics)
}

// Serve serves every connection l accepts until l is closed or the
// server shuts down.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return ErrServerClosed
	}
	if s.listeners == nil {
		s.listeners = make(map[net.Listener]struct{})
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()
	for {
		c, err := l.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing {
				return ErrServerClosed
			}
			return err
		}
		go s.ServeConn(c)
	}
}

// ServeConn serves one connection until it ends, and closes it.
func (s *Server) ServeConn(c net.Conn) {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		c.Close()
		return
	}
	s.once.Do(s.defaults)
	sc := newConn(s, c)
	if s.conns == nil {
		s.conns = make(map[*conn]struct{})
	}
	s.conns[sc] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, sc)
		s.mu.Unlock()
		s.wg.Done()
	}()
	sc.serve()
}

// Shutdown stops accepting connections, tells every client with GOAWAY
// that no new streams will be served, and waits until the streams in
// progress are done or ctx ends; then it closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	for _, sc := range s.stop() {
		go sc.goAway(errCodeNo) // a connection stuck writing does not hold up the rest
	}
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.Close()
		<-done
		return ctx.Err()
	}
}

// Close closes the listeners and every connection at once, held ones
// included.
func (s *Server) Close() error {
	for _, sc := range s.stop() {
		sc.nc.Close()
	}
	return nil
}

// stop closes the listeners and the held connections, and returns the
// connections being served.
func (s *Server) stop() []*conn {
	s.held.closeAll() // a connection cut off from now on is closed at once
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closing = true
	for l := range s.listeners {
		l.Close()
	}
	conns := make([]*conn, 0, len(s.conns))
	for sc := range s.conns {
		conns = append(conns, sc)
	}
	return conns
}
