package purge

import (
	"net/http"
	"slices"
	"strings"
)

// MaxTagsPerObject bounds the tags kept for one cached object; an origin
// that sends more has the rest ignored (a purge by them misses).
const MaxTagsPerObject = 64

// TagHeaders are the response header fields that tag an object: Fastly's
// Surrogate-Key (space-separated) and Cloudflare's Cache-Tag
// (comma-separated). The edge keeps them for purging and does not pass
// them to clients.
var TagHeaders = []string{"Surrogate-Key", "Cache-Tag"}

// Tags returns the tags a response header names, without duplicates, in
// the order first seen; nil if none. Tags that no purge request could name
// (too long, or holding a space or control character) are skipped.
func Tags(h http.Header) []string {
	var tags []string
	add := func(t string) {
		if checkTag(t) == nil && len(tags) < MaxTagsPerObject && !slices.Contains(tags, t) {
			tags = append(tags, t)
		}
	}
	for _, v := range h["Surrogate-Key"] {
		for t := range strings.FieldsSeq(v) {
			add(t)
		}
	}
	for _, v := range h["Cache-Tag"] {
		for t := range strings.SplitSeq(v, ",") {
			add(strings.TrimSpace(t))
		}
	}
	return tags
}
