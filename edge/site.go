package edge

import (
	"fmt"
	"sync/atomic"

	"github.com/selfcdn/cdn/edge/freshness"
	"github.com/selfcdn/cdn/edge/release"
	"github.com/selfcdn/cdn/internal/cachekey"
	"github.com/selfcdn/cdn/internal/routing"
	sitecfg "github.com/selfcdn/cdn/internal/site"
	"github.com/selfcdn/cdn/origin"
	"github.com/selfcdn/cdn/purge"
)

// site is a configured site as the request path needs it.
type site struct {
	name string
	// origins are the site's origin servers, with their failover,
	// health and breakers (nil for a push-only site without one).
	origins  *origin.Group
	policy   freshness.Policy
	keyRules cachekey.Rules
	metrics  *siteMetrics
	// purges are the site's purge rules; every object served is checked
	// against them.
	purges *purge.SiteRules
	// httpsRedirect sends plain-HTTP requests to HTTPS; hsts is the
	// Strict-Transport-Security value for HTTPS responses (nil: none).
	httpsRedirect bool
	hsts          []string
	// release is the site's live pushed release (nil: none), shared by
	// every rebuild of the site; pushOnly never goes to the origin.
	release  *atomic.Pointer[release.Index]
	pushOnly bool
	// shield is the region whose edges alone fill from the origin ("":
	// every region fills itself).
	shield string
}

// useSites builds the routes for sites and swaps them in.
func (h *Handler) useSites(sites []SiteConfig) error {
	routes, groups, err := buildRoutes(sites, h.metrics, h.purges, h.pushed.holder, h.origins)
	if err != nil {
		return err
	}
	// Origins no site names any more stop their health checks and
	// close their connections; those still named keep their state.
	defer h.origins.Retain(groups...)
	keys := make(map[string]cachekey.Rules, len(sites))
	for _, sc := range sites {
		keys[sc.Name] = sc.CacheKey
	}
	h.keyRules.Store(&keys)
	h.routes.Store(routes)
	return nil
}

// siteKeyRules returns the named site's cache-key rules (the defaults for
// a site the edge does not know), so purge URLs are keyed as requests are.
func (h *Handler) siteKeyRules(name string) cachekey.Rules {
	if m := h.keyRules.Load(); m != nil {
		return (*m)[name]
	}
	return cachekey.Rules{}
}

// buildRoutes turns the configured sites into a routing table, with
// each site's origin group from pool.
func buildRoutes(sites []SiteConfig, m *metrics, purges *purge.Table, releases func(string) *atomic.Pointer[release.Index],
	pool *origin.Pool) (*routing.Table[site], []*origin.Group, error) {
	var routes []routing.Route[site]
	var groups []*origin.Group
	for _, sc := range sites {
		s := &site{
			name:     sc.Name,
			policy:   freshness.Policy{DefaultTTL: sc.TTL.Default, MinTTL: sc.TTL.Min, MaxTTL: sc.TTL.Max},
			keyRules: sc.CacheKey,
			metrics:  m.forSite(sc.Name),
			purges:   purges.Site(sc.Name),
			// Without a certificate mode there is no HTTPS to send anyone to.
			httpsRedirect: sc.HTTPSRedirect && sc.TLS != "",
			hsts:          sc.HSTS.Header(),
			release:       releases(sc.Name),
			pushOnly:      sc.PushOnly,
			shield:        sc.Shield.Region,
		}
		if list := sc.OriginList(); len(list) > 0 {
			g, err := pool.Group(originGroup(sc, list))
			if err != nil {
				return nil, nil, fmt.Errorf("site %s: origins: %w", sc.Name, err)
			}
			s.origins = g
			groups = append(groups, g)
		}
		for _, h := range sc.Hosts {
			routes = append(routes, routing.Route[site]{Host: h, Site: s})
		}
	}
	return routing.New(routes), groups, nil
}

// originGroup is a site's origins as the origin package takes them.
func originGroup(sc SiteConfig, list []sitecfg.Origin) origin.GroupConfig {
	gc := origin.GroupConfig{Site: sc.Name, FailoverStatuses: sc.FailoverStatuses,
		Health: origin.HealthCheck{Path: sc.OriginHealth.Path, Interval: sc.OriginHealth.Interval, Timeout: sc.OriginHealth.Timeout}}
	for _, o := range list {
		t := origin.Target{URL: o.URL, Host: o.Host, SNI: o.SNI, Backup: o.Backup}
		if o.Host == "client" {
			t.Host, t.ClientHost = "", true
		}
		gc.Targets = append(gc.Targets, t)
	}
	return gc
}
