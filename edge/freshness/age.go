package freshness

import (
	"strings"
	"time"
)

// parseAge reads the Age field's age_value (RFC 9111 §5.1). Age is a
// singleton, but "a cache encountering a message with a list-based Age
// field value SHOULD use the first member of the field value, discarding
// subsequent ones": the first member of the first field line counts. "If
// the field value (after discarding additional members...) is invalid
// (e.g., it contains something other than a non-negative integer), a
// cache SHOULD ignore the field": 0, as if no Age had come. Age is
// delta-seconds: digits only (no sign, no quotes, no fraction),
// saturating at 2^31 seconds (§1.2.2).
func parseAge(lines []string) time.Duration {
	for _, line := range lines {
		for member := range strings.SplitSeq(line, ",") {
			member = strings.Trim(member, " \t")
			if member == "" {
				continue // empty list elements are not members (RFC 9110 §5.6.1)
			}
			if strings.IndexFunc(member, func(r rune) bool { return r < '0' || r > '9' }) >= 0 {
				return 0
			}
			d, _ := parseDelta(member)
			return d
		}
	}
	return 0
}
