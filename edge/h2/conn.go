package h2

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

const (
	errCodeNo       = http2.ErrCodeNo
	errCodeProtocol = http2.ErrCodeProtocol
	errCodeInternal = http2.ErrCodeInternal
	errCodeFlow     = http2.ErrCodeFlowControl
	errCodeClosed   = http2.ErrCodeStreamClosed
	errCodeFrame    = http2.ErrCodeFrameSize
	errCodeRefused  = http2.ErrCodeRefusedStream

	// maxWindow is the largest flow-control window (RFC 9113 §6.9.1).
	maxWindow = 1<<31 - 1
	// initialWindow is every window before SETTINGS change it.
	initialWindow = 65535
	// readFrameSize is the largest frame accepted: the protocol default,
	// which is all this server advertises.
	readFrameSize = 16 << 10
	// readBufSize is the connection's read buffer: several small frames
	// in one read; a larger payload is read straight into the frame.
	readBufSize = 4 << 10
	// lingerAfterGoAway is how long a connection that sent GOAWAY keeps
	// reading (and discarding) before it closes, so the client reads the
	// GOAWAY instead of a reset.
	lingerAfterGoAway = 250 * time.Millisecond
	maxLingerBytes    = 1 << 20
)

var (
	errClientReset  = errors.New("h2: stream reset by the client")
	errStreamClosed = errors.New("h2: stream closed")
	errConnClosed   = errors.New("h2: connection closed")
	errRefused      = errors.New("h2: stream refused")
)

// flowError is a connection-level flow-control violation.
type flowError struct{}

func (flowError) Error() string { return "h2: connection flow-control window exceeded" }

// conn is one HTTP/2 connection. Its read loop (serve) owns the Framer's
// read side and the stream table's growth; handlers write their own
// frames. mu guards the write side (Framer writes, HPACK encoder,
// buffered writer) and everything the two sides share.
type conn struct {
	srv    *Server
	nc     net.Conn
	br     *bufio.Reader
	fr     *http2.Framer
	ctx    context.Context
	cancel context.CancelFunc
	tls    *tls.ConnectionState
	remote string

	// Read loop only.
	sawSettings     bool
	unackedSettings int
	framesRead      int
	hdec            *hpack.Decoder // calls emitField
	block           headerBlock    // the header block being read

	mu          sync.Mutex
	cond        sync.Cond // windows grew, a stream ended, body data came, or the connection broke
	out         *out
	henc        *hpack.Encoder
	hbuf        bytes.Buffer
	needFlush   bool  // frames are buffered that no handler will flush
	sendWindow  int64 // bytes we may send on the connection
	recvWindow  int64 // bytes the client may send on the connection
	maxFrame    uint32
	peerWindow  int64 // the client's SETTINGS_INITIAL_WINDOW_SIZE
	streams     map[uint32]*stream
	maxClientID uint32 // highest stream the client opened
	handlers    int    // handler goroutines running, reset streams' included
	prefaceSent bool   // our SETTINGS went out: frames may follow
	// The streams this side reset last (a ring): frames the client sent
	// before it saw the reset are ignored, not answered.
	recentResets [32]uint32
	nextReset    int
	goingAway    bool
	goAwayID     uint32
	broken       error
	// blockDeadline ends the wait for an unfinished header block's
	// CONTINUATION frames (ReadHeaderTimeout); zero between blocks.
	blockDeadline time.Time
	deadlineSet   bool // a read deadline is set that armReadLocked may have to clear
	flood         floodMeter
	// held: cut off for a flood, the socket goes to the server's tarpit
	// instead of being closed.
	held bool
}

func newConn(s *Server, nc net.Conn) *conn {
	sc := &conn{
		srv:        s,
		nc:         nc,
		br:         bufio.NewReaderSize(nc, readBufSize),
		out:        newOut(nc),
		remote:     nc.RemoteAddr().String(),
		sendWindow: initialWindow,
		recvWindow: int64(s.ConnWindow),
		maxFrame:   readFrameSize,
		peerWindow: initialWindow,
		streams:    make(map[uint32]*stream),
	}
	sc.cond.L = &sc.mu
	sc.ctx, sc.cancel = context.WithCancel(context.Background())
	if t, ok := nc.(*tls.Conn); ok {
		st := t.ConnectionState()
		sc.tls = &st
	}
	sc.fr = http2.NewFramer(sc.out, sc.br)
	sc.fr.SetMaxReadFrameSize(readFrameSize)
	sc.fr.SetReuseFrames()
	// Header blocks are decoded frame by frame (headers.go), not by the
	// Framer's ReadMetaHeaders, which reads a whole block in one call.
	sc.hdec = hpack.NewDecoder(4096, sc.emitField)
	sc.hdec.SetMaxStringLength(int(s.MaxHeaderListSize))
	sc.henc = hpack.NewEncoder(&sc.hbuf)
	return sc
}

// serve reads and handles frames until the connection ends.
func (sc *conn) serve() {
	defer sc.close()
	// Under the lock: a Shutdown that came first has set the deadline
	// to now, which this one must not push back.
	sc.mu.Lock()
	if sc.broken != nil {
		sc.mu.Unlock()
		return
	}
	sc.nc.SetReadDeadline(time.Now().Add(sc.srv.PrefaceTimeout))
	sc.mu.Unlock()
	var preface [len(http2.ClientPreface)]byte
	if _, err := io.ReadFull(sc.br, preface[:]); err != nil || string(preface[:]) != http2.ClientPreface {
		return
	}
	sc.mu.Lock()
	if sc.broken != nil { // shut down while the preface was on its way
		sc.mu.Unlock()
		return
	}
	sc.fr.WriteSettings(
		http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: sc.srv.MaxConcurrentStreams},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: sc.srv.StreamWindow},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: sc.srv.MaxHeaderListSize},
	)
	if grow := int64(sc.srv.ConnWindow) - initialWindow; grow > 0 {
		sc.fr.WriteWindowUpdate(0, uint32(grow))
	}
	err := sc.flushLocked()
	sc.prefaceSent = true
	sc.nc.SetReadDeadline(time.Time{})
	if sc.srv.IdleTimeout > 0 {
		sc.nc.SetReadDeadline(time.Now().Add(sc.srv.IdleTimeout))
		sc.deadlineSet = true
	}
	sc.mu.Unlock()
	if err != nil {
		return
	}
	sc.unackedSettings = 1
	for {
		f, err := sc.fr.ReadFrame()
		if err == nil || errors.As(err, new(http2.StreamError)) {
			sc.framesRead++ // a frame that is a stream error counts too
		}
		if err == nil {
			err = sc.process(f)
		}
		if err != nil && !sc.handleError(err) {
			return
		}
		if sc.br.Buffered() == 0 {
			// Every frame read so far is handled: send what they made.
			sc.mu.Lock()
			if sc.needFlush {
				sc.flushLocked()
			}
			sc.mu.Unlock()
		}
	}
}

// handleError answers a frame's error and reports whether to go on reading.
func (sc *conn) handleError(err error) bool {
	var se http2.StreamError
	var ce http2.ConnectionError
	var fe floodError
	switch {
	case errors.As(err, &fe):
		sc.cutOff(fe)
		return false
	case errors.As(err, &se):
		if se.Cause != errRefused { // refusals were counted as such
			if err := sc.waste(wasteMalformed); err != nil {
				sc.cutOff(err.(floodError))
				return false
			}
		}
		sc.resetStream(se.StreamID, se.Code, false)
		return true
	case errors.As(err, &ce):
		sc.srv.Log.Debug("h2: connection error", slog.String("remote", sc.remote), slog.Any("err", err))
		sc.abort(http2.ErrCode(ce))
		return false
	case errors.Is(err, flowError{}):
		sc.abort(errCodeFlow)
		return false
	case errors.Is(err, http2.ErrFrameTooLarge):
		sc.abort(errCodeFrame)
		return false
	case errors.Is(err, os.ErrDeadlineExceeded):
		sc.mu.Lock()
		idle := len(sc.streams) == 0
		slowBlock := sc.broken == nil && !sc.blockDeadline.IsZero() && !time.Now().Before(sc.blockDeadline)
		sc.mu.Unlock()
		if slowBlock {
			sc.cutOff(floodError{cause: causeHeaderTimeout})
		} else if idle {
			sc.goAway(errCodeNo) // idle, or done after a GOAWAY: a polite close
		}
		return false
	default:
		return false // the client went away, or the connection broke
	}
}

// process handles one frame; an error is a StreamError, ConnectionError
// or flowError for handleError.
func (sc *conn) process(f http2.Frame) error {
	if !sc.sawSettings {
		if _, ok := f.(*http2.SettingsFrame); !ok {
			return http2.ConnectionError(errCodeProtocol) // the preface's SETTINGS must come first
		}
		sc.sawSettings = true
	}
	var block *headerBlock
	switch f.(type) {
	case *http2.HeadersFrame, *http2.ContinuationFrame:
		// Decoded even for a stream not served: HPACK state is shared.
		b, err := sc.blockFrame(f)
		if b == nil || err != nil {
			return err
		}
		block = b
	}
	sc.mu.Lock()
	ignore := sc.goingAway && f.Header().StreamID > sc.goAwayID
	sc.mu.Unlock()
	if ignore {
		// Streams above the GOAWAY's last one are not served; their
		// DATA still counts against the connection's window.
		if d, ok := f.(*http2.DataFrame); ok {
			return sc.discardData(d)
		}
		return nil
	}
	switch f := f.(type) {
	case *http2.SettingsFrame:
		if !f.IsAck() {
			if err := sc.controlFrame(); err != nil {
				return err
			}
		}
		return sc.processSettings(f)
	case *http2.HeadersFrame, *http2.ContinuationFrame:
		return sc.processHeaders(block)
	case *http2.DataFrame:
		return sc.processData(f)
	case *http2.WindowUpdateFrame:
		return sc.processWindowUpdate(f)
	case *http2.PingFrame:
		// We send no PING, so an ACK is as useless as a PING is
		// costly: both count against the control frame rate.
		if err := sc.controlFrame(); err != nil {
			return err
		}
		if !f.IsAck() {
			sc.mu.Lock()
			sc.fr.WritePing(true, f.Data)
			sc.needFlush = true
			sc.mu.Unlock()
		}
		return nil
	case *http2.RSTStreamFrame:
		sc.mu.Lock()
		defer sc.mu.Unlock()
		if f.StreamID > sc.maxClientID {
			return http2.ConnectionError(errCodeProtocol) // RST_STREAM on an idle stream
		}
		if err := sc.wasteLocked(wasteReset); err != nil {
			return err
		}
		if st := sc.streams[f.StreamID]; st != nil {
			sc.closeStreamLocked(st, errClientReset)
		}
		return nil
	case *http2.PriorityFrame:
		if f.StreamDep == f.StreamID {
			return http2.StreamError{StreamID: f.StreamID, Code: errCodeProtocol, Cause: errors.New("stream depends on itself")}
		}
		return sc.controlFrame() // ignored, as RFC 9113 §5.3.2 allows

	case *http2.GoAwayFrame:
		sc.goAway(errCodeNo) // the client is leaving: finish what runs, then close
		return nil
	case *http2.PushPromiseFrame:
		return http2.ConnectionError(errCodeProtocol) // clients do not push
	default:
		return sc.controlFrame() // unknown frame types are ignored (RFC 9113 §4.1)
	}
}

func (sc *conn) processSettings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		if sc.unackedSettings--; sc.unackedSettings < 0 {
			return http2.ConnectionError(errCodeProtocol)
		}
		return nil
	}
	if f.NumSettings() > 100 {
		return http2.ConnectionError(errCodeProtocol)
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	// Applied in order: a parameter that repeats takes its last value.
	err := f.ForeachSetting(func(s http2.Setting) error {
		if err := s.Valid(); err != nil {
			return err
		}
		switch s.ID {
		case http2.SettingHeaderTableSize:
			sc.henc.SetMaxDynamicTableSize(s.Val)
		case http2.SettingInitialWindowSize:
			grow := int64(s.Val) - sc.peerWindow
			sc.peerWindow = int64(s.Val)
			for _, st := range sc.streams {
				if st.sendWindow += grow; st.sendWindow > maxWindow {
					return http2.ConnectionError(errCodeFlow)
				}
			}
		case http2.SettingMaxFrameSize:
			sc.maxFrame = s.Val
		}
		return nil
	})
	if err != nil {
		return err
	}
	sc.fr.WriteSettingsAck()
	sc.needFlush = true
	sc.cond.Broadcast()
	return nil
}

func (sc *conn) processWindowUpdate(f *http2.WindowUpdateFrame) error {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if f.Increment < tinyWindowUpdate {
		if err := sc.wasteLocked(wasteWindow); err != nil {
			return err
		}
	}
	inc := int64(f.Increment)
	if f.StreamID == 0 {
		if sc.sendWindow += inc; sc.sendWindow > maxWindow {
			return flowError{}
		}
	} else {
		st := sc.streams[f.StreamID]
		if st == nil {
			if f.StreamID > sc.maxClientID {
				return http2.ConnectionError(errCodeProtocol) // WINDOW_UPDATE on an idle stream
			}
			return nil // closed: late, harmless
		}
		if st.sendWindow += inc; st.sendWindow > maxWindow {
			return http2.StreamError{StreamID: f.StreamID, Code: errCodeFlow}
		}
	}
	sc.cond.Broadcast()
	return nil
}

// discardData takes a DATA frame nobody reads off the connection's window
// and gives it straight back.
func (sc *conn) discardData(f *http2.DataFrame) error {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	n := int64(f.Length)
	if n > sc.recvWindow {
		return flowError{}
	}
	if n > 0 {
		sc.fr.WriteWindowUpdate(0, uint32(n))
		sc.needFlush = true
	}
	return nil
}

func (sc *conn) processData(f *http2.DataFrame) error {
	id := f.StreamID
	sc.mu.Lock()
	if id > sc.maxClientID {
		sc.mu.Unlock()
		return http2.ConnectionError(errCodeProtocol) // DATA on an idle stream
	}
	if len(f.Data()) == 0 && !f.StreamEnded() {
		if err := sc.wasteLocked(wasteEmpty); err != nil {
			sc.mu.Unlock()
			return err
		}
	}
	st := sc.streams[id]
	if st == nil || st.remoteDone {
		weReset := st == nil && sc.resetByUs(id)
		sc.mu.Unlock()
		if err := sc.discardData(f); err != nil {
			return err
		}
		if weReset {
			return nil // in flight when our RST_STREAM left: ignored (RFC 9113 §5.1)
		}
		return http2.StreamError{StreamID: id, Code: errCodeClosed}
	}
	defer sc.mu.Unlock()
	data := f.Data()
	n := int64(f.Length)
	if n > sc.recvWindow {
		return flowError{}
	}
	if n > st.recvWindow {
		return http2.StreamError{StreamID: id, Code: errCodeFlow}
	}
	sc.recvWindow -= n
	st.recvWindow -= n
	if st.declared >= 0 && st.received+int64(len(data)) > st.declared {
		sc.giveBackLocked(nil, n)
		return http2.StreamError{StreamID: id, Code: errCodeProtocol, Cause: errors.New("body longer than its Content-Length")}
	}
	st.received += int64(len(data))
	if pad := n - int64(len(data)); pad > 0 {
		sc.giveBackLocked(st, pad)
	}
	if len(data) > 0 {
		if st.body.closed {
			sc.giveBackLocked(nil, int64(len(data)))
		} else {
			st.body.buf.Write(data)
			sc.cond.Broadcast()
		}
	}
	if f.StreamEnded() {
		return sc.endRemoteLocked(st)
	}
	return nil
}

// giveBackLocked returns n consumed bytes of flow-control window to the
// client: on the connection, and on st unless it is nil or done sending.
func (sc *conn) giveBackLocked(st *stream, n int64) {
	sc.recvWindow += n
	sc.fr.WriteWindowUpdate(0, uint32(n))
	if st != nil && !st.remoteDone && !st.closed {
		st.recvWindow += n
		sc.fr.WriteWindowUpdate(st.id, uint32(n))
	}
	sc.needFlush = true
}

// endRemoteLocked records the client's END_STREAM on st.
func (sc *conn) endRemoteLocked(st *stream) error {
	st.remoteDone = true
	if st.body != nil {
		if st.declared >= 0 && st.received != st.declared {
			err := fmt.Errorf("h2: request body of %d bytes, Content-Length said %d", st.received, st.declared)
			st.body.err = err
			sc.cond.Broadcast()
			return http2.StreamError{StreamID: st.id, Code: errCodeProtocol, Cause: err}
		}
		st.body.err = io.EOF
		sc.cond.Broadcast()
	}
	if st.localDone {
		sc.closeStreamLocked(st, nil)
	}
	return nil
}

// runHandler runs h for one stream and ends the stream when it returns.
func (sc *conn) runHandler(st *stream, w *responseWriter, r *http.Request, h http.Handler) {
	defer func() {
		if e := recover(); e != nil {
			if e != http.ErrAbortHandler {
				sc.srv.Log.Error("h2: handler panicked", slog.String("remote", sc.remote), slog.Any("panic", e))
			}
			sc.resetStream(st.id, errCodeInternal, true)
		} else {
			w.finish()
		}
		if st.body != nil {
			// Whoever still reads it (a transport copying it to an
			// origin) stops now, and its window comes back.
			st.body.Close()
		}
		st.cancel()
		sc.mu.Lock()
		sc.handlers--
		sc.mu.Unlock()
	}()
	h.ServeHTTP(w, r)
}

// resetStream sends RST_STREAM and forgets the stream; the read loop
// leaves the flush to its next idle moment (flush false), a handler
// flushes at once.
func (sc *conn) resetStream(id uint32, code http2.ErrCode, flush bool) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	sc.resetStreamLocked(id, code)
	if flush {
		sc.flushLocked()
	}
}

func (sc *conn) resetStreamLocked(id uint32, code http2.ErrCode) {
	if sc.broken != nil {
		return
	}
	sc.writeRSTLocked(id, code)
	sc.needFlush = true
	if st := sc.streams[id]; st != nil {
		sc.closeStreamLocked(st, errStreamClosed)
	}
}

// writeRSTLocked sends RST_STREAM and remembers the stream among the last
// ones this side reset, whose late frames are then ignored.
func (sc *conn) writeRSTLocked(id uint32, code http2.ErrCode) {
	sc.fr.WriteRSTStream(id, code)
	sc.recentResets[sc.nextReset%len(sc.recentResets)] = id
	sc.nextReset++
}

// resetByUs reports whether this side recently reset stream id.
func (sc *conn) resetByUs(id uint32) bool {
	for _, r := range sc.recentResets {
		if r == id {
			return true
		}
	}
	return false
}

// closeStreamLocked forgets st: its handler's writes fail from now on,
// and its body reads fail with err (nil: the body ended normally).
func (sc *conn) closeStreamLocked(st *stream, err error) {
	if st.closed {
		return
	}
	st.closed = true
	delete(sc.streams, st.id)
	if err != nil {
		st.cancel()
		if st.body != nil && st.body.err == nil {
			st.body.err = err
		}
	}
	if b := st.body; b != nil && b.buf.Len() > 0 && err != nil {
		// Read by nobody now: the connection window comes back.
		sc.giveBackLocked(nil, int64(b.buf.Len()))
		b.buf.Reset()
	}
	if err == nil {
		sc.creditLocked() // a response sent in full
	}
	sc.cond.Broadcast()
	if len(sc.streams) == 0 {
		sc.armReadLocked()
	}
}

// armReadLocked sets the read deadline the connection's state calls for:
// the end of an unfinished header block's time, none while streams are
// open, else the linger after a GOAWAY or the idle timeout.
func (sc *conn) armReadLocked() {
	var t time.Time
	switch {
	case sc.broken != nil:
		return // failLocked set it
	case !sc.blockDeadline.IsZero():
		t = sc.blockDeadline
	case len(sc.streams) > 0:
	case sc.goingAway:
		t = time.Now().Add(lingerAfterGoAway)
	case sc.srv.IdleTimeout > 0:
		t = time.Now().Add(sc.srv.IdleTimeout)
	}
	if !t.IsZero() || sc.deadlineSet {
		sc.nc.SetReadDeadline(t)
		sc.deadlineSet = !t.IsZero()
	}
}

// goAway tells the client no stream above the last it opened will be
// served (code NO: a graceful close once the open streams are done).
func (sc *conn) goAway(code http2.ErrCode) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	sc.goAwayLocked(code)
}

func (sc *conn) goAwayLocked(code http2.ErrCode) {
	if sc.goingAway || sc.broken != nil {
		return
	}
	if !sc.prefaceSent {
		// Nothing was served: no GOAWAY may precede our SETTINGS, so
		// the connection just ends.
		sc.failLocked(errConnClosed)
		return
	}
	sc.goingAway, sc.goAwayID = true, sc.maxClientID
	sc.fr.WriteGoAway(sc.maxClientID, code, nil)
	sc.flushLocked()
	sc.armReadLocked()
}

// abort ends the connection for a connection error: GOAWAY with code,
// then a short linger so the client reads it, then close.
func (sc *conn) abort(code http2.ErrCode) {
	sc.goAway(code)
	sc.mu.Lock()
	sc.failLocked(errConnClosed)
	sc.mu.Unlock()
	if cw, ok := sc.nc.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	sc.nc.SetReadDeadline(time.Now().Add(lingerAfterGoAway))
	io.CopyN(io.Discard, sc.br, maxLingerBytes)
}

// close ends the connection: handlers' contexts are cancelled, their
// writes and body reads fail.
func (sc *conn) close() {
	sc.cancel()
	sc.mu.Lock()
	sc.failLocked(errConnClosed)
	for _, st := range sc.streams {
		sc.closeStreamLocked(st, errConnClosed)
	}
	held := sc.held
	sc.mu.Unlock()
	if held {
		sc.srv.held.add(sc.nc)
		return
	}
	sc.nc.Close()
}

// waitLocked waits (mu released) for a Broadcast, or until deadline; it
// reports false once deadline has passed.
func (sc *conn) waitLocked(deadline time.Time) bool {
	d := time.Until(deadline)
	if d <= 0 {
		return false
	}
	t := time.AfterFunc(d, func() {
		sc.mu.Lock()
		sc.cond.Broadcast()
		sc.mu.Unlock()
	})
	sc.cond.Wait()
	t.Stop()
	return true
}

// failLocked marks the connection broken; every write fails from now on.
func (sc *conn) failLocked(err error) {
	if sc.broken == nil {
		sc.broken = err
		sc.out.reset() // nothing more goes out; hold on to no payload
		sc.cond.Broadcast()
		sc.nc.SetReadDeadline(time.Now()) // the read loop ends too
	}
}

func (sc *conn) flushLocked() error {
	if sc.broken != nil {
		return sc.broken
	}
	sc.needFlush = false
	if err := sc.out.flush(); err != nil {
		sc.failLocked(err)
		sc.cancel()
		return err
	}
	return nil
}
