package natsauth

import (
	"fmt"
	"regexp"
	"time"

	"github.com/nats-io/jwt/v2"

	"github.com/selfcdn/cdn/internal/state"
)

// Role is what a NATS user is for; its permissions follow from it.
type Role string

// The roles.
const (
	// RoleControl runs the API: it creates the buckets and streams and
	// writes them all.
	RoleControl Role = "control"
	// RoleEdge reads what an edge serves (sites, releases, blobs, the
	// purge log) and writes only its own keys.
	RoleEdge Role = "edge"
	// RoleGeoDNS reads sites, edges and their status, and writes nothing.
	RoleGeoDNS Role = "geodns"
	// RoleOperator is an administrator with the `nats` CLI: no limits
	// inside the account.
	RoleOperator Role = "operator"
)

// Roles lists every role, for flags and errors.
var Roles = []Role{RoleControl, RoleEdge, RoleGeoDNS, RoleOperator}

// nameRE is what an edge name may be: one subject token with no
// wildcard, so "$KV.cdn_edges.<name>" names exactly one key.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// CheckName reports whether name can name a NATS user of role: an edge
// needs one (it is the key it may write), the others take none.
func CheckName(role Role, name string) error {
	switch role {
	case RoleEdge:
		if !nameRE.MatchString(name) {
			return fmt.Errorf("edge name %q: want 1-64 letters, digits, '-' or '_'", name)
		}
	case RoleControl, RoleGeoDNS, RoleOperator:
		if name != "" && !nameRE.MatchString(name) {
			return fmt.Errorf("%s name %q: want 1-64 letters, digits, '-' or '_'", role, name)
		}
	default:
		return fmt.Errorf("unknown role %q (want one of %v)", role, Roles)
	}
	return nil
}

// InboxPrefix is where a user of role and name gets replies; it may
// subscribe nowhere else, so it cannot read the replies control gets
// (token records among them).
func InboxPrefix(role Role, name string) string {
	if name == "" {
		return "_INBOX." + string(role)
	}
	return "_INBOX." + string(role) + "." + name
}

// permissions returns what a user of role and name may publish and
// subscribe to; nil for the operator (no limits).
func permissions(role Role, name string) *jwt.Permissions {
	var p jwt.Permissions
	switch role {
	case RoleOperator:
		return nil
	case RoleControl:
		// Control creates and writes every bucket and stream.
		p.Pub.Allow.Add("$JS.API.>", "$KV.>", "$O.>", state.PurgeSubjectPrefix+">", "$JS.FC.>", "$JS.ACK.>")
		liveFeeds(&p, role, name)
	case RoleEdge:
		readStreams(&p, state.EdgeAccess)
		for _, b := range state.EdgeAccess.Writes {
			p.Pub.Allow.Add("$KV." + b + "." + name)
		}
		for _, b := range state.EdgeAccess.Shared {
			p.Pub.Allow.Add("$KV." + b + ".>")
		}
		liveFeeds(&p, role, name)
	case RoleGeoDNS:
		readStreams(&p, state.GeoDNSAccess)
		liveFeeds(&p, role, name)
	}
	p.Sub.Allow.Add(InboxPrefix(role, name) + ".>")
	return &p
}

// readStreams allows what reading a's streams takes: binding (stream
// info), watching and following (consumers, their flow control) and
// getting single messages, for the streams a may read whole. The
// buckets it writes to are bound too, so their info is allowed, nothing
// more.
func readStreams(p *jwt.Permissions, a state.Access) {
	for _, s := range a.ReadStreams() {
		p.Pub.Allow.Add(
			"$JS.API.STREAM.INFO."+s,
			"$JS.API.CONSUMER.CREATE."+s, "$JS.API.CONSUMER.CREATE."+s+".>",
			"$JS.API.CONSUMER.INFO."+s+".*", "$JS.API.CONSUMER.DELETE."+s+".*",
			"$JS.API.CONSUMER.MSG.NEXT."+s+".*",
			"$JS.API.DIRECT.GET."+s, "$JS.API.DIRECT.GET."+s+".>",
			"$JS.API.STREAM.MSG.GET."+s,
			"$JS.FC."+s+".>",
		)
	}
	for _, b := range a.Writes {
		p.Pub.Allow.Add("$JS.API.STREAM.INFO." + state.KVStream(b))
	}
}

// liveFeeds allows a role its part of the dashboard's live feeds
// (state/feeds.go): an edge publishes its own stats and answers counts
// asked of it alone; geodns answers explanations; control reads every
// edge's stats and asks both. Answers go to the asker's inbox through
// the response permission, valid for one reply within a few seconds.
func liveFeeds(p *jwt.Permissions, role Role, name string) {
	answers := func() { p.Resp = &jwt.ResponsePermission{MaxMsgs: 1, Expires: 10 * time.Second} }
	switch role {
	case RoleControl:
		p.Sub.Allow.Add(state.StatsSubjectPrefix + "*")
		p.Pub.Allow.Add(state.CountSubjectPrefix+"*", state.ExplainSubject)
	case RoleEdge:
		p.Pub.Allow.Add(state.StatsSubject(name))
		p.Sub.Allow.Add(state.CountSubject(name))
		answers()
	case RoleGeoDNS:
		p.Sub.Allow.Add(state.ExplainSubject)
		answers()
	}
}
