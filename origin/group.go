package origin

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Group sends a site's requests to its origins, failing over from one to
// the next. Build it with Pool.Group; it is safe for concurrent use.
type Group struct {
	site     string
	pool     *Pool
	targets  []groupTarget // in configuration order
	failover [200]bool     // statuses 400-599 that fail over
}

// groupTarget is a target as one group uses it.
type groupTarget struct {
	*member
	index   int
	backup  bool
	results [numResults]prometheus.Counter // cdn_origin_requests_total, resolved once
}

// Answered says which target Do's result came from: the one that
// answered (possibly with a failover status, when all failed), or the
// last one that failed.
type Answered struct {
	// Origin is the target's label (its Name or URL host), as in metrics.
	Origin string
	// Index is the target's position in GroupConfig.Targets.
	Index int
	// Backup is set when a backup answered.
	Backup bool
	// Attempts counts the origins tried, this one included (a retry on
	// the same origin is not another attempt).
	Attempts int
}

// Do sends req (its method, header, body and context; its URL is ignored)
// for uri, a path with an optional query, to the group's origins:
// primaries first (healthy ones first, in order), then backups, then
// targets that health checks mark down. The first answer that is not a
// failure wins; a redirect is an answer, never followed.
//
// A failure is no connection, a TLS error, a timeout (connect or
// response header), a broken or oversize response header, or one of
// FailoverStatuses. After one, a safe request (GET, HEAD, OPTIONS, TRACE)
// goes to the next origin; any other only when nothing was sent (the
// connection was never made) and req.GetBody can rebuild its body, since
// the first origin may have acted on it. A request that failed on a
// reused connection before any response is retried once on the same
// origin, if it is a safe method without a body; a timeout is not.
//
// Do returns the response, whose body must be closed and whose reads are
// cut off after Config.ReadTimeout of silence; when every origin failed,
// the last failover-status response if there was one, else the last
// error, an *Error (errors.Is(err, ErrTimeout) tells a 504 from a 502).
func (g *Group) Do(req *http.Request, uri string) (*http.Response, Answered, error) {
	if !strings.HasPrefix(uri, "/") {
		return nil, Answered{}, fmt.Errorf("origin group %s: uri %q does not start with /", g.site, uri)
	}
	d := dispatch{g: g, req: req, uri: uri}
	defer d.discard()
	now := g.pool.now()
	ranks := g.rank(now)
	// Ranks 0-3: primaries, backups, then those health checks mark down.
	for rank := range uint8(rankOpen) {
		for i := range g.targets {
			if ranks[i] != rank {
				continue
			}
			t := &g.targets[i]
			ok, probe := t.br.allow(now)
			if !ok {
				ranks[i] = rankOpen + b2u(t.backup) // raced to open, or its probe is out
				continue
			}
			if d.try(t, probe) {
				return d.result()
			}
		}
	}
	if d.attempts == 0 {
		// Every breaker is open. They are a guess from recent requests,
		// and failing without trying would turn that guess into an
		// outage (origins that all restarted at once, a network blip):
		// try them anyway, primaries first. A success closes the breaker.
		for rank := uint8(rankOpen); rank <= rankOpen+1; rank++ {
			for i := range g.targets {
				if ranks[i] == rank && d.try(&g.targets[i], false) {
					return d.result()
				}
			}
		}
	}
	return d.result()
}

// Target ranks for one request, tried in this order.
const (
	rankUp   = 0 // primaries, then backups (rankUp+1)
	rankDown = 2 // marked down by health checks: primaries, then backups
	rankOpen = 4 // breaker open: tried only if nothing else could be
)

// rank orders the targets for a request sent at now.
func (g *Group) rank(now time.Time) []uint8 {
	ranks := make([]uint8, len(g.targets))
	for i := range g.targets {
		t := &g.targets[i]
		switch {
		case !t.br.ready(now):
			ranks[i] = rankOpen
		case !t.healthy():
			ranks[i] = rankDown
		default:
			ranks[i] = rankUp
		}
		ranks[i] += b2u(t.backup)
	}
	return ranks
}

func b2u(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// dispatch is one call of Do: what its attempts so far left.
type dispatch struct {
	g        *Group
	req      *http.Request
	uri      string
	attempts int
	last     *groupTarget
	sent     bool           // the last attempt may have reached its origin
	res      *http.Response // the last failover-status answer, or the answer
	resFrom  *groupTarget   // who sent res
	err      error
	done     bool // res is the answer: discard must keep it
}

// try sends the request to t and reports whether Do is over: an answer
// that is not a failure, a failure that may not go on to another origin,
// or the caller gone. probe says the breaker admitted it as its probe.
func (d *dispatch) try(t *groupTarget, probe bool) bool {
	if d.attempts > 0 && !d.resendable() {
		t.br.record(outcomeIgnored, probe, d.g.pool.now())
		return true
	}
	if d.attempts > 0 {
		d.g.pool.m.failovers.WithLabelValues(d.g.site, d.last.label, t.label).Inc()
		d.g.pool.log.LogAttrs(d.req.Context(), slog.LevelDebug, "origin failover",
			slog.String("site", d.g.site), slog.String("origin", d.last.label), slog.String("to", t.label),
			slog.Any("err", d.failure()))
	}
	d.attempts++
	d.last = t
	res, sent, err := d.send(t)
	d.sent = sent
	o := outcomeSuccess
	switch {
	case d.req.Context().Err() != nil:
		o = outcomeIgnored // the caller left: it says nothing of the origin
	case err != nil:
		o = outcomeFailure
	case d.g.failsOver(res.StatusCode) && res.StatusCode >= 500:
		o = outcomeFailure
	}
	t.br.record(o, probe, d.g.pool.now())
	if err != nil {
		d.err = err
		return d.req.Context().Err() != nil
	}
	if d.res != nil {
		d.closeRes() // an earlier failover answer, superseded
	}
	d.res, d.resFrom, d.err = res, t, nil
	if d.g.failsOver(res.StatusCode) {
		return d.req.Context().Err() != nil
	}
	d.done = true
	return true
}

// resendable reports whether the request may go to another origin after
// the last attempt failed.
func (d *dispatch) resendable() bool {
	r := d.req
	noBody := r.Body == nil || r.Body == http.NoBody
	if !noBody && r.GetBody == nil {
		return false
	}
	return safeMethod(r.Method) || !d.sent
}

// send makes one attempt at t, retrying once on the same origin a safe,
// bodyless request that failed on a reused connection before any
// response (the origin closed an idle connection as we used it).
func (d *dispatch) send(t *groupTarget) (*http.Response, bool, error) {
	first := d.attempts == 1
	res, info, err := d.roundTrip(t, first)
	if err != nil && info.reused.Load() && !isTimeout(err) && d.req.Context().Err() == nil &&
		safeMethod(d.req.Method) && (d.req.Body == nil || d.req.Body == http.NoBody) {
		t.results[resultOf(0, err)].Inc()
		res, info, err = d.roundTrip(t, false)
	}
	sent := info.gotConn.Load()
	if err != nil {
		t.results[resultOf(0, err)].Inc()
		return nil, sent, err
	}
	t.results[resultOf(res.StatusCode, nil)].Inc()
	return res, sent, nil
}

// connInfo is what the transport said of an attempt's connection.
type connInfo struct {
	gotConn atomic.Bool // a connection was made: the request may have been sent
	reused  atomic.Bool
}

// roundTrip sends one request to t. first says req's own body may be
// sent; later attempts rebuild it with GetBody.
func (d *dispatch) roundTrip(t *groupTarget, first bool) (*http.Response, *connInfo, error) {
	info := new(connInfo)
	target := t.prefix + d.uri
	u, err := url.Parse(target)
	if err != nil {
		return nil, info, &Error{URL: target, Err: err}
	}
	ctx, cancel := context.WithCancel(d.req.Context())
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(ci httptrace.GotConnInfo) {
		info.gotConn.Store(true)
		info.reused.Store(ci.Reused)
	}})
	out := d.req.Clone(ctx)
	out.URL, out.RequestURI = u, ""
	switch {
	case t.key.clientHost:
		out.Host = d.req.Host
	default:
		out.Host = t.key.host // "" = the URL's host
	}
	if !first && out.Body != nil && out.Body != http.NoBody {
		if out.Body, err = d.req.GetBody(); err != nil {
			cancel()
			return nil, info, &Error{URL: u.Redacted(), Err: fmt.Errorf("rebuild the request body: %w", err)}
		}
	}
	res, err := t.conn.client.Do(out)
	if err != nil {
		cancel()
		if isTimeout(err) {
			err = fmt.Errorf("%w: %w", ErrTimeout, err)
		}
		return nil, info, &Error{URL: u.Redacted(), Err: err}
	}
	// Closing the body cancels ctx, whatever becomes of the response.
	res.Body = newIdleBody(res.Body, d.g.pool.cfg.ReadTimeout, cancel, u.Redacted())
	return res, info, nil
}

// result is what Do returns once the attempts are over.
func (d *dispatch) result() (*http.Response, Answered, error) {
	from := d.last
	if d.res != nil {
		from = d.resFrom
	}
	var a Answered
	if from != nil {
		a = Answered{Origin: from.label, Index: from.index, Backup: from.backup, Attempts: d.attempts}
	}
	if d.res != nil {
		d.done = true
		return d.res, a, nil
	}
	if d.err == nil {
		d.err = fmt.Errorf("origin group %s: no origin was tried", d.g.site) // unreachable: one primary at least
	}
	return nil, a, d.err
}

// failure describes the last failed attempt, for logs.
func (d *dispatch) failure() error {
	if d.err != nil {
		return d.err
	}
	if d.res != nil {
		return fmt.Errorf("status %d", d.res.StatusCode)
	}
	return nil
}

// discard closes a response Do does not return.
func (d *dispatch) discard() {
	if !d.done && d.res != nil {
		d.closeRes()
	}
}

func (d *dispatch) closeRes() {
	d.res.Body.Close() // cancels its request too
	d.res = nil
}

// failsOver reports whether status is one of the group's FailoverStatuses.
func (g *Group) failsOver(status int) bool {
	return status >= 400 && status <= 599 && g.failover[status-400]
}

// safeMethod reports whether m is safe (RFC 9110 §9.2.1): sending it to a
// second origin after the first may have seen it cannot change anything.
func safeMethod(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}
