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
//
// A wait counts every registered edge that is not known to be down or
// draining: an edge control has not judged yet is waited for.
type Status struct {
	Version uint64    `json:"version"`
	Site    string    `json:"site"`
	Request Request   `json:"request"`
	Time    time.Time `json:"time"`
	// Applied is true when at least one edge is expected to apply the
	// purge and every one of them has. With no edge expected it is false:
	// nothing applied it.
	Applied bool `json:"applied"`
	// Expected is how many edges the wait counts: every registered edge
	// not known to be down or draining. Zero means no edge applies the
	// purge now, and Message says so.
	Expected int          `json:"expected"`
	Edges    []EdgeStatus `json:"edges"`
	// Pending names the expected edges that have not applied it yet.
	Pending []string `json:"pending"`
	// Message explains an answer a reader could mistake, such as one
	// with no edge expected; empty otherwise.
	Message string `json:"message,omitempty"`
}

// EdgeStatus is one edge's progress through the purge log.
type EdgeStatus struct {
	Edge string `json:"edge"`
	// Health is control's verdict ("up", "down", "unknown"). Edges that
	// are down or draining are listed but not waited for; an edge not
	// judged yet ("unknown") is.
	Health   string `json:"health"`
	Draining bool   `json:"draining,omitempty"`
	// Version is the last purge version the edge reported applying.
	Version uint64 `json:"version"`
	Applied bool   `json:"applied"`
}

// Site is a site as GET /v1/sites lists it, reduced to what a purge
// client needs to find a URL's site: its name and hosts.
type Site struct {
	Name  string   `json:"name"`
	Hosts []string `json:"hosts"`
}
