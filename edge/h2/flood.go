package h2

import (
	"context"
	"log/slog"
	"time"

	"golang.org/x/net/http2"
)

// Flood accounting (RFC 9113 §10.5). Some frames cost the server work
// but move no request forward: a stream the client resets, a stream
// refused, an empty DATA, HEADERS or CONTINUATION frame, a tiny
// WINDOW_UPDATE, a malformed request, and SETTINGS, PING or PRIORITY
// frames beyond a rate. Each adds one to the connection's score (a
// refused stream ten: a client that got our SETTINGS has no business
// going past SETTINGS_MAX_CONCURRENT_STREAMS, and each refused HEADERS
// is decoded in full); each
// response sent in full takes one off, down to -FloodBudget, so a long
// busy connection that sometimes cancels is never cut off, while one that
// only wastes is cut off after FloodBudget frames: GOAWAY
// ENHANCE_YOUR_CALM, a log line naming the client and a count in
// cdn_edge_h2_flood_closes_total. (This is Tomcat's overhead count, and
// the spirit of nginx's "flood detected".)
//
// A header block is bounded on its own and ends the connection at once:
// more than maxBlockFrames frames, more encoded bytes than
// MaxHeaderListSize allows, more decoded bytes than MaxHeaderListSize
// (a 431 is sent, then GOAWAY, so an HPACK bomb is decoded once, not
// once per request), or not finished within ReadHeaderTimeout.

// waste is a kind of frame that costs work without progress.
type waste uint8

const (
	wasteReset     waste = iota // RST_STREAM from the client
	wasteRefused                // a stream refused: too many open, or handlers of reset ones still running
	wasteEmpty                  // DATA without END_STREAM, HEADERS or CONTINUATION with no payload
	wasteWindow                 // WINDOW_UPDATE of less than tinyWindowUpdate
	wasteControl                // SETTINGS, PING, PRIORITY or unknown frames beyond ControlFrameRate
	wasteMalformed              // a stream error: a malformed request, DATA on a closed stream...
	numWastes
)

// wasteCauses are the cause label of each waste, in
// cdn_edge_h2_flood_closes_total and the log.
var wasteCauses = [numWastes]string{"reset", "refused", "empty_frame", "window_update", "control_frame", "malformed"}

// wasteWeights are what each waste adds to the score.
var wasteWeights = [numWastes]int{wasteRefused: 10, wasteReset: 1, wasteEmpty: 1, wasteWindow: 1, wasteControl: 1, wasteMalformed: 1}

// Causes that end a connection at once.
const (
	causeHeaderList    = "header_list"    // a header block decoded or encoded past MaxHeaderListSize
	causeHeaderFrames  = "header_frames"  // a header block in more than maxBlockFrames frames
	causeHeaderTimeout = "header_timeout" // a header block unfinished after ReadHeaderTimeout
)

// floodCauses lists every cause label, for the metric's children.
var floodCauses = append(wasteCauses[:], causeHeaderList, causeHeaderFrames, causeHeaderTimeout)

// tinyWindowUpdate is the increment below which a WINDOW_UPDATE counts as
// waste: clients open their windows by half of them or by several KiB
// at a time, and each update wakes every writer waiting for window.
const tinyWindowUpdate = 1024

// floodError ends the connection for cause: the read loop's handleError
// sends GOAWAY ENHANCE_YOUR_CALM (or code, when the RFC names another)
// and holds the connection.
type floodError struct {
	cause string
	code  http2.ErrCode // 0: ENHANCE_YOUR_CALM
}

func (e floodError) Error() string { return "h2: flood: " + e.cause }

// floodMeter is one connection's score. Guarded by conn.mu.
type floodMeter struct {
	score  int // wastes minus responses sent in full, floored at -budget
	counts [numWastes]int
	// A token bucket for control frames: ControlFrameRate a second, as
	// many in a burst.
	tokens  float64
	refill  time.Time
	started bool
}

// wasteLocked counts one frame of kind k and reports a floodError once
// the score passes FloodBudget.
func (sc *conn) wasteLocked(k waste) error {
	f := &sc.flood
	f.score += wasteWeights[k]
	f.counts[k]++
	if f.score > sc.srv.FloodBudget {
		return floodError{cause: f.cause()}
	}
	return nil
}

// waste is wasteLocked for the read loop when it does not hold mu.
func (sc *conn) waste(k waste) error {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return sc.wasteLocked(k)
}

// creditLocked counts a response sent in full.
func (sc *conn) creditLocked() {
	if f := &sc.flood; f.score > -sc.srv.FloodBudget {
		f.score--
	}
}

// controlFrame counts a SETTINGS, PING, PRIORITY or unknown frame: free
// within ControlFrameRate, waste beyond it.
func (sc *conn) controlFrame() error {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	f := &sc.flood
	rate := float64(sc.srv.ControlFrameRate)
	// The clock is read only when the bucket looks empty: a flood of
	// PINGs reads it per frame otherwise (an eighth of its cost).
	switch {
	case !f.started:
		f.started, f.tokens, f.refill = true, rate, time.Now()
	case f.tokens < 1:
		now := time.Now()
		f.tokens = min(rate, f.tokens+now.Sub(f.refill).Seconds()*rate)
		f.refill = now
	}
	if f.tokens >= 1 {
		f.tokens--
		return nil
	}
	return sc.wasteLocked(wasteControl)
}

// cause names the waste the connection sent most of.
func (f *floodMeter) cause() string {
	top := waste(0)
	for k := range numWastes {
		if f.counts[k] > f.counts[top] {
			top = k
		}
	}
	return wasteCauses[top]
}

// cutOff ends the connection for a flood: counted, logged once with the
// client's address, GOAWAY ENHANCE_YOUR_CALM (or fe.code), then held.
func (sc *conn) cutOff(fe floodError) {
	cause, code := fe.cause, fe.code
	if code == 0 {
		code = http2.ErrCodeEnhanceYourCalm
	}
	sc.mu.Lock()
	f := sc.flood
	streams := int(sc.maxClientID+1) / 2
	sc.mu.Unlock()
	if m := sc.srv.Metrics; m != nil {
		m.floodCloses[cause].Inc()
	}
	attrs := []slog.Attr{
		slog.String("remote", sc.remote), slog.String("cause", cause),
		slog.Int("frames", sc.framesRead), slog.Int("streams", streams),
	}
	for k, n := range f.counts {
		if n > 0 {
			attrs = append(attrs, slog.Int(wasteCauses[k], n))
		}
	}
	sc.srv.Log.LogAttrs(context.Background(), slog.LevelInfo, "h2 connection cut off", attrs...)
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.broken != nil {
		return // broken already: closed as usual, nothing to hold
	}
	if sc.prefaceSent && !sc.goingAway {
		// Requests in flight end now: a client cut off by mistake
		// learns of it at once, not when the hold ends.
		for id := range sc.streams {
			sc.writeRSTLocked(id, http2.ErrCodeEnhanceYourCalm)
		}
	}
	sc.goAwayLocked(code)
	// No linger, no close: nothing more is read (draining a flood of
	// small frames costs a wakeup per write), and the socket is held
	// open (tarpit.go), so a client that keeps writing blocks instead of
	// reconnecting.
	sc.failLocked(errConnClosed)
	sc.held = true
}
