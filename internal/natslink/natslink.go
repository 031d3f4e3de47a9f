// Package natslink is how a long-running part (an edge, geodns) holds its
// link to control's NATS: a connection that reconnects forever and says
// when it has, and a retry pause that doubles up to a ceiling.
package natslink

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// Config says where NATS is and how to authenticate.
type Config struct {
	// URL is the NATS URL (several: comma-separated).
	URL string
	// Creds is a NATS credentials file; CA a PEM file for tls:// URLs.
	Creds, CA string
	// Inbox is the prefix of reply subjects: with auth on, a user may
	// subscribe only under its own (natsauth.InboxPrefix). Empty: NATS's
	// default.
	Inbox string
}

// A link across a WAN can die without a reset (a cut link drops every
// packet): NATS's default pings (every 2 minutes, two missed) would keep
// a part on a dead server for minutes, deaf to every change. With these,
// it moves to another server of the cluster in about 15 s.
const (
	pingInterval = 5 * time.Second
	maxPingsOut  = 3
)

// Options are the nats.Options that cfg asks for. Servers are tried in
// the order the URL lists them, not shuffled: a part lists its own
// region's node first, so its link does not cross the WAN (and a cut in
// another region does not cut it off) while that node is up.
func (cfg Config) Options() []nats.Option {
	opts := []nats.Option{nats.PingInterval(pingInterval), nats.MaxPingsOutstanding(maxPingsOut), nats.DontRandomize()}
	if cfg.Creds != "" {
		opts = append(opts, nats.UserCredentials(cfg.Creds))
	}
	if cfg.CA != "" {
		opts = append(opts, nats.RootCAs(cfg.CA))
	}
	if cfg.Inbox != "" {
		opts = append(opts, nats.CustomInboxPrefix(cfg.Inbox))
	}
	return opts
}

// Connect opens a connection named name that reconnects forever (and
// keeps trying if NATS is not up yet). After every reconnect it sends on
// the returned channel (without blocking): a watch started before should
// start again, as a fresh one re-reads everything missed while away.
func Connect(cfg Config, name string, extra ...nats.Option) (*nats.Conn, <-chan struct{}, error) {
	reconnected := make(chan struct{}, 1)
	opts := []nats.Option{nats.Name(name), nats.MaxReconnects(-1), nats.ReconnectWait(time.Second),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectHandler(func(*nats.Conn) {
			select {
			case reconnected <- struct{}{}:
			default:
			}
		})}
	opts = append(opts, cfg.Options()...)
	nc, err := nats.Connect(cfg.URL, append(opts, extra...)...)
	if err != nil {
		return nil, nil, err
	}
	return nc, reconnected, nil
}

// Backoff is the pause between attempts: 250 ms, doubling to 5 s.
type Backoff struct{ next time.Duration }

const (
	firstWait = 250 * time.Millisecond
	maxWait   = 5 * time.Second
)

// Reset starts the pauses over, after an attempt that worked.
func (b *Backoff) Reset() { b.next = 0 }

// Wait pauses, and reports false if ctx ended first.
func (b *Backoff) Wait(ctx context.Context) bool {
	if b.next == 0 {
		b.next = firstWait
	}
	t := time.NewTimer(b.next)
	defer t.Stop()
	b.next = min(b.next*2, maxWait)
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Hooks are told how a Follow goes; nil fields are skipped.
type Hooks struct {
	// Down is called once per spell of failed sessions, with the first
	// session's error.
	Down func(err error)
	// Up is called when a session links (see Follow) after a spell of
	// failures.
	Up func()
}

// Follow runs session on nc until ctx ends: again at once after NATS
// reconnects (the session's context is cancelled then, since a fresh
// watch re-reads what a stale one missed), or after a backoff pause
// when it fails. A session calls linked, from its own goroutine, once it
// has bound to what it follows; that resets the pauses and ends a spell
// of failures.
// reconnected is the channel Connect returned. The one follow loop of
// edges and geodns.
func Follow(ctx context.Context, reconnected <-chan struct{}, hooks Hooks, session func(ctx context.Context, linked func()) error) {
	var backoff Backoff
	down := false
	for ctx.Err() == nil {
		sctx, stop := context.WithCancel(ctx)
		var again atomic.Bool
		watching := make(chan struct{})
		go func() {
			defer close(watching)
			select {
			case <-reconnected:
				again.Store(true)
				stop()
			case <-sctx.Done():
			}
		}()
		err := session(sctx, func() {
			backoff.Reset()
			if down {
				down = false
				if hooks.Up != nil {
					hooks.Up()
				}
			}
		})
		stop()
		<-watching
		if ctx.Err() != nil {
			return
		}
		if again.Load() {
			continue // follow again at once on the new connection
		}
		if !down {
			down = true
			if hooks.Down != nil {
				hooks.Down(err)
			}
		}
		if !backoff.Wait(ctx) {
			return
		}
	}
}
