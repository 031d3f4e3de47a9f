package state

import (
	"encoding/json"
	"time"
)

// The live feeds: plain NATS messages, not JetStream, for what is worth
// seeing now and nothing later (the operator dashboard's per-second
// figures and its questions to edges and geodns). internal/natsauth
// gives each role exactly its own subjects: an edge publishes only its
// stats subject and answers only its own count subject; geodns answers
// the explain subject; control subscribes to every edge's stats and asks.
const (
	// StatsSubjectPrefix + edge name: an edge's EdgeStats, once a second.
	StatsSubjectPrefix = "cdn.stats."
	// CountSubjectPrefix + edge name: a CountRequest to that edge,
	// answered with a CountAnswer.
	CountSubjectPrefix = "cdn.count."
	// ExplainSubject: an ExplainRequest to any geodns, answered with an
	// Explanation.
	ExplainSubject = "cdn.geodns.explain"
)

// StatsSubject is where edge publishes its figures.
func StatsSubject(edge string) string { return StatsSubjectPrefix + edge }

// CountSubject is where edge answers purge counts.
func CountSubject(edge string) string { return CountSubjectPrefix + edge }

// EdgeStats is what an edge served during one second, by site. Every
// request is counted (the counters behind the edge's metrics), none
// sampled.
type EdgeStats struct {
	Edge   string `json:"edge"`
	Region string `json:"region"`
	// Time is the end of the second the figures cover, by the edge.
	Time time.Time `json:"time"`
	// Seconds is the span the figures cover (about 1; more after a
	// publish was skipped).
	Seconds float64               `json:"seconds"`
	Sites   map[string]SiteFigure `json:"sites"`
}

// SiteFigure counts one site's requests over a span.
type SiteFigure struct {
	// Requests answered; Hits of them from cache or a pushed release
	// (fresh, stale or revalidated), Misses fetched from the origin,
	// Passes sent to the origin uncached.
	Requests uint64 `json:"requests"`
	Hits     uint64 `json:"hits"`
	Misses   uint64 `json:"misses"`
	Passes   uint64 `json:"passes"`
	// Bytes of bodies sent; HitBytes of them served without the origin.
	Bytes    uint64 `json:"bytes"`
	HitBytes uint64 `json:"hit_bytes"`
	// Status4xx and Status5xx count error answers.
	Status4xx uint64 `json:"status_4xx"`
	Status5xx uint64 `json:"status_5xx"`
}

// Add adds o to f.
func (f *SiteFigure) Add(o SiteFigure) {
	f.Requests += o.Requests
	f.Hits += o.Hits
	f.Misses += o.Misses
	f.Passes += o.Passes
	f.Bytes += o.Bytes
	f.HitBytes += o.HitBytes
	f.Status4xx += o.Status4xx
	f.Status5xx += o.Status5xx
}

// CountRequest asks an edge how many of its cached objects a purge of
// site would match (the purge's blast radius), before it is issued.
type CountRequest struct {
	Site string `json:"site"`
	// Purge is the purge request as the API takes it (purge.Request).
	Purge json.RawMessage `json:"purge"`
}

// CountAnswer is an edge's count.
type CountAnswer struct {
	Edge string `json:"edge"`
	// Matched objects of Scanned on the edge's disk tier (where every
	// stored object is written); Error says why none were counted.
	Matched int    `json:"matched"`
	Scanned int    `json:"scanned"`
	Error   string `json:"error,omitempty"`
}

// ExplainRequest asks geodns how it would answer a client at Client (an
// IP address, or a subnet as a resolver's EDNS Client Subnet gives it).
type ExplainRequest struct {
	Client string `json:"client"`
}

// Explanation is how geodns answers a client and why.
type Explanation struct {
	Client string `json:"client"`
	// Location is what the lookup found.
	Location ExplainLocation `json:"location"`
	// Region answered (empty when failing open or for a client of
	// unknown place, which every region serves alike).
	Region   string `json:"region,omitempty"`
	FailOpen bool   `json:"fail_open,omitempty"`
	// Chosen are the edges of one answer, best first (the draw is
	// weighted and random: another query may pick others of Region).
	Chosen []string `json:"chosen"`
	// Regions are every region, in the order tried for this client.
	Regions []ExplainRegion `json:"regions"`
	Error   string          `json:"error,omitempty"`
}

// ExplainLocation is a client's place as geodns found it.
type ExplainLocation struct {
	// Region is the operator's CIDR map's answer, if any.
	Region    string  `json:"region,omitempty"`
	Lat       float64 `json:"lat,omitempty"`
	Lon       float64 `json:"lon,omitempty"`
	HasPoint  bool    `json:"has_point"`
	Country   string  `json:"country,omitempty"`
	Continent string  `json:"continent,omitempty"`
	// Bits is the prefix length the location holds for (the ECS scope).
	Bits int `json:"bits"`
}

// ExplainRegion is one region as ranked for a client.
type ExplainRegion struct {
	Name string `json:"name"`
	// DistanceKM from the client (when located).
	DistanceKM float64       `json:"distance_km"`
	Edges      []ExplainEdge `json:"edges"`
}

// ExplainEdge is one edge with what the ranking weighs.
type ExplainEdge struct {
	Name     string  `json:"name"`
	Health   string  `json:"health"`
	Draining bool    `json:"draining"`
	Eligible bool    `json:"eligible"`
	Weight   float64 `json:"weight"`
	Load     float64 `json:"load"`
	Capacity float64 `json:"capacity"`
}
