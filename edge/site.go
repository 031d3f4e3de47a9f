package edge

import (
	"fmt"
	"net/url"
	"strings"
	"sync/atomic"

	"github.com/selfcdn/cdn/edge/freshness"
	"github.com/selfcdn/cdn/edge/release"
	"github.com/selfcdn/cdn/internal/cachekey"
	"github.com/selfcdn/cdn/internal/routing"
	"github.com/selfcdn/cdn/purge"
)

// site is a configured site as the request path needs it.
type site struct {
	name string
	// originPrefix is the origin's base URL without a trailing slash,
	// ready to prepend to a request URI.
	originPrefix string
	// originHost is the Host header for the origin; empty forwards the
	// client's Host.
	originHost string
	// fallbacks are the origins a fill tries next, in order.
	fallbacks []originTarget
	policy    freshness.Policy
	keyRules  cachekey.Rules
	metrics   *siteMetrics
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

// originTarget is one fallback origin: its base URL and the Host to send.
type originTarget struct{ prefix, host string }

// useSites builds the routes for sites and swaps them in.
func (h *Handler) useSites(sites []SiteConfig) error {
	routes, err := buildRoutes(sites, h.metrics, h.purges, h.pushed.holder)
	if err != nil {
		return err
	}
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

// buildRoutes turns the configured sites into a routing table.
func buildRoutes(sites []SiteConfig, m *metrics, purges *purge.Table, releases func(string) *atomic.Pointer[release.Index]) (*routing.Table[site], error) {
	var routes []routing.Route[site]
	for _, sc := range sites {
		u, err := url.Parse(sc.Origin)
		if err != nil {
			return nil, fmt.Errorf("site %s: origin: %w", sc.Name, err)
		}
		s := &site{
			name:         sc.Name,
			originPrefix: strings.TrimSuffix(u.String(), "/"),
			originHost:   u.Host,
			policy:       freshness.Policy{DefaultTTL: sc.TTL.Default, MinTTL: sc.TTL.Min, MaxTTL: sc.TTL.Max},
			keyRules:     sc.CacheKey,
			metrics:      m.forSite(sc.Name),
			purges:       purges.Site(sc.Name),
			// Without a certificate mode there is no HTTPS to send anyone to.
			httpsRedirect: sc.HTTPSRedirect && sc.TLS != "",
			hsts:          sc.HSTS.Header(),
			release:       releases(sc.Name),
			pushOnly:      sc.PushOnly,
			shield:        sc.Shield.Region,
		}
		switch sc.OriginHost {
		case "":
		case "client":
			s.originHost = ""
		default:
			s.originHost = sc.OriginHost
		}
		for _, fo := range sc.FallbackOrigins {
			fu, err := url.Parse(fo)
			if err != nil {
				return nil, fmt.Errorf("site %s: fallback origin: %w", sc.Name, err)
			}
			t := originTarget{prefix: strings.TrimSuffix(fu.String(), "/"), host: fu.Host}
			if sc.OriginHost != "" {
				t.host = s.originHost // an explicit Host (or the client's) goes to every origin
			}
			s.fallbacks = append(s.fallbacks, t)
		}
		for _, h := range sc.Hosts {
			routes = append(routes, routing.Route[site]{Host: h, Site: s})
		}
	}
	return routing.New(routes), nil
}
