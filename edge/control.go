package edge

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/selfcdn/cdn/internal/atomicfile"
	"github.com/selfcdn/cdn/internal/certstore"
	"github.com/selfcdn/cdn/internal/natsauth"
	"github.com/selfcdn/cdn/internal/natslink"
	"github.com/selfcdn/cdn/internal/state"
)

// The control link: an edge with a control config takes its sites from the
// control plane's KV bucket and follows every change without a restart. It
// keeps the last set it saw on disk and starts from it, so an edge serves
// even when NATS is down at boot, and catches up when NATS comes back. It
// also registers itself and heartbeats, for control's health checks and
// GeoDNS.

// sitesFile is the last site set from control, under cache.dir.
const sitesFile = "control-sites.json"

// applySites swaps in the routes for sites. A site that does not validate
// is skipped (and logged), so one bad entry cannot take the others down.
func (s *Server) applySites(sites []state.Site, from string) error {
	var cfgs []SiteConfig
	for _, sc := range sites {
		// Control validated it with the same Validate; a site written
		// by an older control may still fail it.
		if err := sc.Validate(); err != nil {
			s.log.Warn("site from control skipped", "site", sc.Name, "err", err)
			continue
		}
		cfgs = append(cfgs, sc)
	}
	if err := s.handler.useSites(cfgs); err != nil {
		return fmt.Errorf("apply sites from %s: %w", from, err)
	}
	if s.certs != nil {
		if err := s.certs.Update(certSites(cfgs)); err != nil {
			s.log.Warn("certificates of sites from "+from, "err", err)
		}
	}
	s.sitesLoaded.Store(true)
	s.log.Info("sites applied", "from", from, "sites", len(cfgs))
	return nil
}

// loadSitesFile applies the site set saved by the last run, if any.
func (s *Server) loadSitesFile() {
	if s.cfg.Cache.Dir == "" {
		return
	}
	b, err := os.ReadFile(filepath.Join(s.cfg.Cache.Dir, sitesFile))
	if err != nil {
		if !os.IsNotExist(err) {
			s.log.Warn("read saved sites", "err", err)
		}
		return
	}
	var sites []state.Site
	if err := json.Unmarshal(b, &sites); err != nil {
		s.log.Warn("saved sites unreadable; waiting for control", "err", err)
		return
	}
	if err := s.applySites(sites, "disk"); err != nil {
		s.log.Warn("saved sites", "err", err)
	}
}

// saveSitesFile keeps sites for the next start, written whole or not at all.
func (s *Server) saveSitesFile(sites []state.Site) {
	if s.cfg.Cache.Dir == "" {
		return
	}
	b, err := json.Marshal(sites)
	if err == nil {
		err = atomicfile.Write(filepath.Join(s.cfg.Cache.Dir, sitesFile), b, 0o644)
	}
	if err != nil {
		s.log.Warn("save sites for the next start", "err", err)
	}
}

// followControl connects to the control plane and follows it until ctx
// ends: the site watch, restarted whenever it breaks, and the heartbeat.
func (s *Server) followControl(ctx context.Context) {
	c := s.cfg.Control
	if c.Creds != "" {
		if err := natsauth.CheckPrivate(c.Creds); err != nil {
			s.log.Warn("NATS credentials file is not private", "err", err)
		}
	}
	link := natslink.Config{URL: c.NATS, Creds: c.Creds, CA: c.CA, Inbox: natsauth.InboxPrefix(natsauth.RoleEdge, s.cfg.Name)}
	nc, reconnected, err := natslink.Connect(link, "cdn-edge "+s.cfg.Name)
	if err != nil {
		s.log.Error("control link: bad NATS settings", "err", err)
		return
	}
	defer nc.Close()
	natslink.Follow(ctx, reconnected, natslink.Hooks{
		Up: func() { s.log.Info("control link back") },
		Down: func(err error) {
			s.log.Warn("control link down; serving the last sites, retrying", "err", err)
			if s.releases != nil {
				s.releases.Unreachable()
			}
		},
	}, func(ctx context.Context, linked func()) error {
		store, err := bindStore(ctx, nc)
		if err != nil {
			return err
		}
		if s.certStore != nil {
			// Without the bucket the sites are still followed; ACME
			// certificates wait for the next link.
			if err := bindCertStore(ctx, s.certStore, nc); err != nil {
				s.log.Warn("shared certificates unavailable; ACME certificates wait", "err", err)
			}
		}
		linked()
		var running sync.WaitGroup
		defer running.Wait()
		ctx, stop := context.WithCancel(ctx)
		defer stop() // before the Wait: the heartbeat and followers end with the watch
		running.Go(func() { s.heartbeat(ctx, store) })
		running.Go(func() { s.followPurges(ctx, store) })
		running.Go(func() { s.followTier(ctx, store) })
		running.Go(func() { s.reportStats(ctx, nc) })  // report.go
		running.Go(func() { s.answerCounts(ctx, nc) }) // count.go
		if s.releases != nil {
			running.Go(func() { s.releases.Run(ctx, store) })
		}
		return store.WatchSites(ctx, func(sites []state.Site) {
			if err := s.applySites(sites, "control"); err != nil {
				s.log.Warn("control link", "err", err)
				return
			}
			s.saveSitesFile(sites)
		})
	})
}

func bindCertStore(ctx context.Context, st *certstore.Storage, nc *nats.Conn) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return st.Bind(ctx, nc)
}

func bindStore(ctx context.Context, nc *nats.Conn) (*state.Store, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return state.Bind(ctx, nc, state.EdgeAccess)
}

// followPurges applies the purge log until ctx ends, starting again after
// a failure (the log's consumer lost, a purge log that cannot be written).
func (s *Server) followPurges(ctx context.Context, store *state.Store) {
	// Every second at most: each missed attempt is time a returning edge
	// may serve what was purged while it was away.
	retry(ctx, s.log, "following the purge log", time.Second, func() error {
		err := s.purges.Run(ctx, store)
		if err != nil {
			err = fmt.Errorf("at version %d: %w", s.purges.Applied(), err)
		}
		return err
	})
}

// heartbeat registers the edge now and again every period until ctx ends.
func (s *Server) heartbeat(ctx context.Context, store *state.Store) {
	c := s.cfg.Control
	period := c.Heartbeat
	if period <= 0 {
		period = 2 * time.Second
	}
	e := state.Edge{
		Name: s.cfg.Name, Region: s.cfg.Region, Lat: c.Lat, Lon: c.Lon, Capacity: c.Capacity,
		HTTP: c.PublicURL, Admin: c.AdminURL, Addrs: c.PublicAddrs, Started: s.started, Version: version(),
	}
	if e.HTTP == "" {
		e.HTTP = "http://" + s.addr
	}
	if e.Admin == "" && s.adminAddr != "" {
		e.Admin = "http://" + s.adminAddr
	}
	// Peers reach the edge at tier.peer_url, else at its public URL when
	// that is plain HTTP (an https one names the edge, not the sites
	// whose certificates it serves).
	e.Peer = c.Tier.PeerURL
	if e.Peer == "" && strings.HasPrefix(e.HTTP, "http://") {
		e.Peer = e.HTTP
	}
	if !reachable(e.Peer) {
		// "http://:8080" (listen on every address) would send peers to
		// their own port: better no home here than a wrong one.
		if e.Peer != "" {
			s.log.Warn("no address other edges can reach this one at: not a home in its region's tier (set control.tier.peer_url)", "url", e.Peer)
		}
		e.Peer = ""
	}
	if e.Capacity == 0 {
		e.Capacity = 1
	}
	e.HTTP, e.Admin, e.Peer = strings.TrimSuffix(e.HTTP, "/"), strings.TrimSuffix(e.Admin, "/"), strings.TrimSuffix(e.Peer, "/")
	t := time.NewTicker(period)
	defer t.Stop()
	failing := false
	var load loadMeter
	for {
		hctx, cancel := context.WithTimeout(ctx, period)
		e.Seen = time.Now()
		e.Load = load.sample(e.Seen)
		err := store.Heartbeat(hctx, e)
		cancel()
		switch {
		case err != nil && !failing && ctx.Err() == nil:
			failing = true // said once per spell: NATS may be gone for a while
			s.log.LogAttrs(ctx, slog.LevelWarn, "heartbeats to control fail", slog.Any("err", err))
		case err == nil && failing:
			failing = false
			s.log.LogAttrs(ctx, slog.LevelInfo, "heartbeats to control work again")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// reachable reports whether base names a host another machine can dial:
// not empty and not an unspecified address (0.0.0.0, ::).
func reachable(base string) bool {
	u, err := url.Parse(base)
	if err != nil || u.Hostname() == "" {
		return false
	}
	ip, err := netip.ParseAddr(u.Hostname())
	return err != nil || !ip.IsUnspecified()
}

// version is the binary's module version ("(devel)" from a source tree).
func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		return bi.Main.Version
	}
	return "unknown"
}
