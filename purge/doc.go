// Package purge is the purge model shared by control, edges and CI: a
// Request (URLs, prefixes, tags or the whole site; hard or soft), its
// validation, the Message written to the purge stream, the rule Table an
// edge matches cached objects against, and the Client pipelines use.
//
// A purge's version is its sequence in the stream. Edges apply purges in
// version order into their Table; see rules.go for why applying is lazy
// and why a fetch racing a purge cannot resurrect what it purged.
//
// Locks: Table.mu (the map of sites) before SiteRules.mu (one site's
// rules), never the other way; a hit takes only its site's read lock,
// and none at all when the object is newer than every rule.
package purge
