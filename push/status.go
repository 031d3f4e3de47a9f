package push

import (
	"strings"
	"time"
)

// Commit is the body of POST /v1/sites/{site}/releases.
type Commit struct {
	Manifest *Manifest `json:"manifest"`
	// Message is a note kept with the release ("deploy abc123").
	Message string `json:"message,omitempty"`
	// Activate switches the site to the release once committed (the
	// default); false stores it for a later activation.
	Activate *bool `json:"activate,omitempty"`
}

// Release is a release as the API describes it (in a Status, and in the
// list of GET /v1/sites/{site}/releases). It is the wire form, not what
// control stores: storage can change without breaking a CI tool, and one
// that imports push links nothing of control's. The zero value is no
// release.
type Release struct {
	Site string `json:"site"`
	// Number counts the site's releases from 1.
	Number uint64 `json:"number"`
	// Manifest is the hash of the manifest's blob.
	Manifest string `json:"manifest"`
	// Files, Bytes and Blobs summarize the manifest: paths, their total
	// size uncompressed, and distinct blobs named (variants included).
	Files   int       `json:"files"`
	Bytes   int64     `json:"bytes"`
	Blobs   int       `json:"blobs"`
	Created time.Time `json:"created"`
	// Message is the pusher's note ("deploy abc123").
	Message string `json:"message,omitempty"`
}

// Status is a release and how far the edges are with it, as the API
// answers about it.
//
// A wait counts every registered edge that is not known to be down or
// draining: an edge control has not judged yet is waited for.
type Status struct {
	Release Release `json:"release"`
	// Live says the release is the one the site serves.
	Live  bool         `json:"live"`
	Edges []EdgeStatus `json:"edges"`
	// Expected is how many edges the wait counts: every registered edge
	// not known to be down or draining. Zero means no edge serves the
	// release, and Message says so.
	Expected int `json:"expected"`
	// Pending are the expected edges not serving the release yet; Failed
	// those of them that report why they cannot.
	Pending []string `json:"pending"`
	Failed  []string `json:"failed,omitempty"`
	// Complete is set when the release is live, at least one edge is
	// expected, and every expected edge serves it.
	Complete bool `json:"complete"`
	// Message explains an answer a reader could mistake, such as one
	// with no edge expected; empty otherwise.
	Message string `json:"message,omitempty"`
}

// PendingWhy names the pending edges, each with the error it reports,
// for an operator reading why a release is not served everywhere.
func (s Status) PendingWhy() string {
	why := make(map[string]string, len(s.Edges))
	for _, e := range s.Edges {
		why[e.Edge] = e.Error
	}
	var b strings.Builder
	for i, name := range s.Pending {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(name)
		if why[name] != "" {
			b.WriteString(" (" + why[name] + ")")
		}
	}
	return b.String()
}

// EdgeStatus is one edge's state for a release. Edges that are down or
// draining are listed but not waited for.
type EdgeStatus struct {
	Edge     string `json:"edge"`
	Health   string `json:"health"`
	Draining bool   `json:"draining,omitempty"`
	Serving  uint64 `json:"serving"`
	Error    string `json:"error,omitempty"`
}

// Missing is the body of POST /v1/sites/{site}/blobs/missing and of its
// answer: the blobs asked about, and those control lacks.
type Missing struct {
	Blobs []string `json:"blobs"`
}

// MaxMissingQuery bounds the blobs one missing query names.
const MaxMissingQuery = 2 * MaxFiles
