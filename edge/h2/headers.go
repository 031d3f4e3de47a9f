package h2

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// headerBlock is one header block (RFC 9113 §4.3), decoded fragment by
// fragment as its HEADERS and CONTINUATION frames arrive. x/net's
// Framer.ReadMetaHeaders would read the whole block inside one ReadFrame
// call, bounded in bytes but not in frames or time; here the read loop
// sees every frame. Read loop only; its fields slice is reused from one
// block to the next.
type headerBlock struct {
	streamID    uint32
	endStream   bool
	hasPriority bool
	priority    http2.PriorityParam
	fields      []hpack.HeaderField // pseudo-header fields first
	npseudo     int
	size        uint32 // decoded, as RFC 9113 §6.5.2 counts it
	wire        int    // encoded bytes
	frames      int
	truncated   bool  // decoded past MaxHeaderListSize: not kept
	invalid     error // a malformed field: a stream error once the block ends
}

// pseudo returns the value of pseudo-header field :name, or "".
func (b *headerBlock) pseudo(name string) string {
	for _, f := range b.fields[:b.npseudo] {
		if f.Name[1:] == name {
			return f.Value
		}
	}
	return ""
}

// regular returns the fields that are not pseudo-header fields.
func (b *headerBlock) regular() []hpack.HeaderField { return b.fields[b.npseudo:] }

var errPseudoAfterRegular = errors.New("pseudo-header field after a regular one")

// emitField is the HPACK decoder's emit function: it validates each
// field as x/net's Framer does and keeps it while the block stays within
// MaxHeaderListSize.
func (sc *conn) emitField(hf hpack.HeaderField) {
	b := &sc.block
	pseudo := strings.HasPrefix(hf.Name, ":")
	switch {
	case !httpguts.ValidHeaderFieldValue(hf.Value):
		b.invalid = fmt.Errorf("invalid value of header field %q", hf.Name)
	case pseudo && b.npseudo < len(b.fields):
		b.invalid = errPseudoAfterRegular
	case !pseudo && !validFieldName(hf.Name):
		b.invalid = fmt.Errorf("invalid header field name %q", hf.Name)
	}
	if b.invalid != nil {
		sc.hdec.SetEmitEnabled(false)
		return
	}
	size := hf.Size()
	if size > sc.srv.MaxHeaderListSize-b.size {
		// The rest is parsed (the dynamic table must stay in step)
		// but neither validated nor kept.
		b.truncated = true
		sc.hdec.SetEmitEnabled(false)
		return
	}
	b.size += size
	b.fields = append(b.fields, hf)
	if pseudo {
		b.npseudo++
	}
}

// validFieldName reports whether v is a lower-case token (RFC 9113
// §8.2.1).
func validFieldName(v string) bool {
	if v == "" {
		return false
	}
	for _, r := range v {
		if !httpguts.IsTokenRune(r) || 'A' <= r && r <= 'Z' {
			return false
		}
	}
	return true
}

// checkPseudos rejects unknown, repeated and mixed request and response
// pseudo-header fields.
func (b *headerBlock) checkPseudos() error {
	var request, response bool
	pf := b.fields[:b.npseudo]
	for i, f := range pf {
		switch f.Name {
		case ":method", ":path", ":scheme", ":authority", ":protocol":
			request = true
		case ":status":
			response = true
		default:
			return fmt.Errorf("invalid pseudo-header field %q", f.Name)
		}
		for _, g := range pf[:i] {
			if f.Name == g.Name {
				return fmt.Errorf("duplicate pseudo-header field %q", f.Name)
			}
		}
	}
	if request && response {
		return errors.New("request and response pseudo-header fields mixed")
	}
	return nil
}

// maxBlockFrames bounds the frames of one header block: a client splits
// a block at the frame size, so more frames than a block of the largest
// size needs at 1 KiB each is a flood of small or empty CONTINUATIONs.
func (s *Server) maxBlockFrames() int {
	return max(16, int(s.MaxHeaderListSize/1024)+2)
}

// blockFrame adds a HEADERS or CONTINUATION frame to the header block
// and returns the block once its last frame came, else nil. Any error
// ends the connection, but a stream error ends only the block's stream.
func (sc *conn) blockFrame(f http2.Frame) (*headerBlock, error) {
	b := &sc.block
	var frag []byte
	var ended bool
	switch f := f.(type) {
	case *http2.HeadersFrame:
		*b = headerBlock{
			streamID: f.StreamID, endStream: f.StreamEnded(), hasPriority: f.HasPriority(), priority: f.Priority,
			fields: b.fields[:0],
		}
		sc.hdec.SetEmitEnabled(true)
		frag, ended = f.HeaderBlockFragment(), f.HeadersEnded()
	case *http2.ContinuationFrame:
		if b.truncated {
			return nil, floodError{cause: causeHeaderList} // nothing more of it is decoded
		}
		frag, ended = f.HeaderBlockFragment(), f.HeadersEnded()
	}
	b.frames++
	b.wire += len(frag)
	if len(frag) == 0 {
		if err := sc.waste(wasteEmpty); err != nil {
			return nil, err
		}
	}
	switch {
	case b.frames > sc.srv.maxBlockFrames():
		return nil, floodError{cause: causeHeaderFrames}
	case b.wire > int(sc.srv.MaxHeaderListSize)+readFrameSize:
		// Encoded, a field is never larger than RFC 9113 §6.5.2 counts
		// it; only table size updates are, and they have no business
		// filling frames.
		return nil, floodError{cause: causeHeaderList}
	}
	if _, err := sc.hdec.Write(frag); err != nil {
		if errors.Is(err, hpack.ErrStringLength) {
			// A string declared or decoded past the limit: the
			// decoder cannot go on, so the error is a compression
			// error (as x/net's Framer answers it), counted and held
			// as a header list past the limit.
			return nil, floodError{cause: causeHeaderList, code: http2.ErrCodeCompression}
		}
		return nil, http2.ConnectionError(http2.ErrCodeCompression)
	}
	if !ended {
		if b.frames == 1 {
			sc.setBlockDeadline(time.Now().Add(sc.srv.ReadHeaderTimeout))
		}
		return nil, nil
	}
	if b.frames > 1 {
		sc.setBlockDeadline(time.Time{})
	}
	if err := sc.hdec.Close(); err != nil {
		return nil, http2.ConnectionError(http2.ErrCodeCompression)
	}
	if b.truncated {
		return b, nil // answered 431, then the connection ends
	}
	if b.invalid != nil {
		return nil, http2.StreamError{StreamID: b.streamID, Code: errCodeProtocol, Cause: b.invalid}
	}
	if err := b.checkPseudos(); err != nil {
		return nil, http2.StreamError{StreamID: b.streamID, Code: errCodeProtocol, Cause: err}
	}
	return b, nil
}

// setBlockDeadline bounds the wait for the rest of a header block (zero:
// the block is complete) and sets the read deadline the connection's
// state now calls for.
func (sc *conn) setBlockDeadline(t time.Time) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	sc.blockDeadline = t
	sc.armReadLocked()
}

func (sc *conn) processHeaders(b *headerBlock) error {
	id := b.streamID
	if id%2 != 1 {
		return http2.ConnectionError(errCodeProtocol) // clients open odd streams
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.broken != nil {
		// Closed while this block was read: no stream opens, and the
		// read deadline failLocked set stays.
		return sc.broken
	}
	if st := sc.streams[id]; st != nil {
		// Trailers end the request body.
		switch {
		case b.truncated:
			return floodError{cause: causeHeaderList}
		case st.remoteDone:
			return http2.StreamError{StreamID: id, Code: errCodeClosed}
		case !b.endStream:
			return http2.StreamError{StreamID: id, Code: errCodeProtocol, Cause: errors.New("trailers without END_STREAM")}
		case b.npseudo > 0:
			return http2.StreamError{StreamID: id, Code: errCodeProtocol, Cause: errors.New("pseudo-header in trailers")}
		}
		return sc.endRemoteLocked(st)
	}
	if sc.goingAway && id > sc.goAwayID {
		return nil // above the GOAWAY's last stream: not served
	}
	if sc.resetByUs(id) {
		return nil // trailers in flight when our RST_STREAM left
	}
	if id <= sc.maxClientID {
		return http2.ConnectionError(errCodeProtocol) // a closed stream, or ids going down
	}
	sc.maxClientID = id
	if b.truncated {
		// Past MaxHeaderListSize: the client learns why, and the
		// connection ends rather than decode such blocks again.
		sc.headerListTooLargeLocked(id)
		return floodError{cause: causeHeaderList}
	}
	if b.hasPriority && b.priority.StreamDep == id {
		return http2.StreamError{StreamID: id, Code: errCodeProtocol, Cause: errors.New("stream depends on itself")}
	}
	if uint32(len(sc.streams)) >= sc.srv.MaxConcurrentStreams || sc.handlers >= 2*int(sc.srv.MaxConcurrentStreams) {
		return sc.refuseLocked(id)
	}
	req, err := sc.newRequest(b)
	if err != nil {
		return http2.StreamError{StreamID: id, Code: errCodeProtocol, Cause: err}
	}
	st := &stream{id: id, sendWindow: sc.peerWindow, recvWindow: int64(sc.srv.StreamWindow), declared: -1, remoteDone: b.endStream}
	st.ctx, st.cancel = context.WithCancel(sc.ctx)
	if b.endStream {
		req.Body = http.NoBody
	} else {
		st.declared = req.ContentLength
		st.body = &requestBody{sc: sc, st: st}
		req.Body = st.body
	}
	req = req.WithContext(st.ctx)
	if len(sc.streams) == 0 && sc.deadlineSet && sc.blockDeadline.IsZero() {
		sc.nc.SetReadDeadline(time.Time{})
		sc.deadlineSet = false
	}
	sc.streams[id] = st
	sc.handlers++
	w := &responseWriter{sc: sc, st: st, head: req.Method == http.MethodHead, handlerHeader: make(http.Header), contentLength: -1}
	go sc.runHandler(st, w, req, sc.srv.Handler)
	return nil
}

// refuseLocked refuses stream id: too many are open, or handlers of
// streams the client reset are still running, and a reset flood does
// not get more work started. Each refusal is flood waste.
func (sc *conn) refuseLocked(id uint32) error {
	if err := sc.wasteLocked(wasteRefused); err != nil {
		return err
	}
	code := errCodeProtocol
	if sc.unackedSettings > 0 || uint32(len(sc.streams)) < sc.srv.MaxConcurrentStreams {
		code = errCodeRefused // the client may not have our limit yet, or it is the handlers'
	}
	return http2.StreamError{StreamID: id, Code: code, Cause: errRefused}
}

// headerListTooLargeLocked answers stream id with 431 at once, ahead of
// the GOAWAY that follows.
func (sc *conn) headerListTooLargeLocked(id uint32) {
	if sc.broken != nil {
		return
	}
	sc.hbuf.Reset()
	sc.henc.WriteField(hpack.HeaderField{Name: ":status", Value: "431"})
	sc.henc.WriteField(hpack.HeaderField{Name: "content-length", Value: "0"})
	sc.henc.WriteField(hpack.HeaderField{Name: "date", Value: time.Now().UTC().Format(http.TimeFormat)})
	sc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: sc.hbuf.Bytes(), EndStream: true, EndHeaders: true})
	sc.flushLocked()
}
