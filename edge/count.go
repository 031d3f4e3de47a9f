package edge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/selfcdn/cdn/edge/cache"
	"github.com/selfcdn/cdn/internal/state"
	"github.com/selfcdn/cdn/purge"
)

// The blast radius of a purge: before an operator confirms one, control
// asks every edge how many of its cached objects it would match
// (state.CountRequest on the edge's own count subject), since a wide
// purge turns into an origin surge.

// countTimeout bounds one count: a scan of a large disk tier is cut
// short rather than keep the operator waiting.
const countTimeout = 5 * time.Second

// answerCounts answers count requests on nc until ctx ends.
func (s *Server) answerCounts(ctx context.Context, nc *nats.Conn) {
	sub, err := nc.Subscribe(state.CountSubject(s.cfg.Name), func(m *nats.Msg) {
		a := state.CountAnswer{Edge: s.cfg.Name}
		var req state.CountRequest
		var r purge.Request
		if err := json.Unmarshal(m.Data, &req); err != nil {
			a.Error = "bad count request: " + err.Error()
		} else if err := json.Unmarshal(req.Purge, &r); err != nil {
			a.Error = "bad purge: " + err.Error()
		} else {
			cctx, cancel := context.WithTimeout(ctx, countTimeout)
			a.Matched, a.Scanned, err = s.handler.countPurge(cctx, req.Site, r)
			cancel()
			if err != nil {
				a.Error = err.Error()
			}
		}
		b, _ := json.Marshal(a)
		m.Respond(b)
	})
	if err != nil {
		s.log.Warn("purge counts not answered", "err", err)
		return
	}
	<-ctx.Done()
	sub.Unsubscribe()
}

// errNoDisk is a count on an edge without a disk tier: the memory tier
// cannot be listed.
var errNoDisk = errors.New("no disk tier: the memory tier cannot be counted")

// countPurge counts the URLs stored on disk (every stored object is
// written there) that a purge r of site would newly match: a match of r
// not purged already. Variants and compressed copies of a URL count once.
func (h *Handler) countPurge(ctx context.Context, siteName string, r purge.Request) (matched, scanned int, err error) {
	if h.disk == nil {
		return 0, 0, errNoDisk
	}
	routes := h.routes.Load()
	if routes == nil {
		return 0, 0, errors.New("no sites yet")
	}
	probe := purge.NewTable(0, h.now, h.siteKeyRules)
	probe.Apply(siteName, r)
	rules := probe.Site(siteName)
	seen := map[string]bool{}
	err = h.disk.Scan(ctx, func(o cache.Object) bool {
		base, _, _ := strings.Cut(o.Key, "\x00")
		if o.VaryIndex || seen[base] {
			return true
		}
		seen[base] = true
		scanned++
		rest := base
		if _, after, ok := strings.Cut(base, "://"); ok {
			rest = after
		}
		host, _, _ := strings.Cut(rest, "/")
		st := routes.Lookup(host)
		if st == nil || st.name != siteName || st.purges.Check(o.Stamp, base, o.Tags) == purge.Gone {
			return true
		}
		if rules.Check(o.Stamp, base, o.Tags) != purge.Keep {
			matched++
		}
		return true
	})
	if err != nil {
		return matched, scanned, fmt.Errorf("count cut short after %d objects: %w", scanned, err)
	}
	return matched, scanned, nil
}
