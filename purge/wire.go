package purge

import "time"

// The JSON the control API answers purge calls with; the Client decodes
// the same types.

// Result answers POST /v1/sites/{site}/purge.
type Result struct {
	// Version is the purge's place in the purge log.
	Version uint64 `json:"version"`
	Site    string `json:"site"`
	// Duplicate says the idempotency key was seen before: nothing new was
	// written and Version is the first call's.
	Duplicate bool `json:"duplicate,omitempty"`
	// Status is set when the call waited (?wait=).
	Status *Status `json:"status,omitempty"`
}

// Status answers GET /v1/purges/{version}: which edges have applied it.
type Status struct {
	Version uint64    `json:"version"`
	Site    string    `json:"site"`
	Request Request   `json:"request"`
	Time    time.Time `json:"time"`
	// Applied is true when every healthy edge has applied the purge.
	Applied bool         `json:"applied"`
	Edges   []EdgeStatus `json:"edges"`
	// Pending names the healthy edges that have not applied it yet.
	Pending []string `json:"pending"`
}

// EdgeStatus is one edge's progress through the purge log.
type EdgeStatus struct {
	Edge string `json:"edge"`
	// Health is control's verdict ("up", "down", "unknown"); only edges
	// that are up are waited for.
	Health string `json:"health"`
	// Version is the last purge version the edge reported applying.
	Version uint64 `json:"version"`
	Applied bool   `json:"applied"`
}
