package api

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/selfcdn/cdn/internal/hostclaim"
	"github.com/selfcdn/cdn/internal/state"
)

// hostTaken is a site write naming a host another site has (409).
type hostTaken struct {
	host, site string
}

func (e *hostTaken) Error() string {
	return fmt.Sprintf("host %q already belongs to site %q", e.host, e.site)
}

// checkHosts refuses s when one of its hosts collides with another site's
// (internal/hostclaim says when). The caller holds sitesMu, so two writes
// through this process cannot both pass; two control processes could
// still race, which the edges' routing survives (one site wins the host)
// and the next write of either site reports.
func (a *API) checkHosts(ctx context.Context, s state.Site) error {
	sites, err := a.store.Sites(ctx)
	if err != nil {
		return err
	}
	// Name order, so the site named in the answer does not depend on the
	// bucket's order.
	slices.SortFunc(sites, func(x, y state.Site) int { return strings.Compare(x.Name, y.Name) })
	claims := hostclaim.Claims{}
	for _, o := range sites {
		if o.Name == s.Name {
			continue // the site's own hosts, about to be replaced
		}
		for _, h := range o.Hosts {
			claims.Claim(o.Name, h)
		}
	}
	for _, h := range s.Hosts {
		if owner, ok := claims.Claim(s.Name, h); !ok {
			return &hostTaken{host: hostclaim.Key(h), site: owner}
		}
	}
	return nil
}

// writeHostTaken answers a host collision: 409 naming the other site.
func writeHostTaken(w http.ResponseWriter, e *hostTaken) {
	writeJSON(w, http.StatusConflict, map[string]any{
		"error": map[string]string{"code": "host_taken", "message": e.Error() +
			"; remove it from that site first, or pick another host"},
		"host": e.host, "site": e.site,
	})
}
