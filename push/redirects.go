package push

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/selfcdn/cdn/internal/headerrules"
)

// maxRedirectLine is the longest _redirects line accepted, line ending
// excluded; the same bound as a _headers line.
const maxRedirectLine = 8 << 10

// parseRedirects reads a Netlify-style _redirects file:
//
//	# a comment
//	/old        /new
//	/blog/*     https://blog.example.com/   302
//
// Each line is FROM TO [STATUS], separated by spaces or tabs; STATUS
// defaults to 301. Blank lines and lines starting with "#" are skipped.
// Netlify's extensions (rewrites with 200, "301!", query and country
// conditions) are refused rather than silently ignored: a rule that does
// something other than what its author meant is worse than a failed push.
// Errors name the line: "line 3: status "30x": not a number".
func parseRedirects(r io.Reader) ([]Redirect, error) {
	var out []Redirect
	err := headerrules.ScanLines(r, maxRedirectLine, func(line string) error {
		r, ok, err := parseRedirect(line)
		if err != nil || !ok {
			return err
		}
		if len(out) >= MaxRedirects {
			return fmt.Errorf("more than %d redirects", MaxRedirects)
		}
		out = append(out, r)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// parseRedirect parses one line; ok is false for a blank line or comment.
// The redirect is checked as the manifest will check it, so that a bad
// one is reported with its line number rather than its index.
func parseRedirect(line string) (r Redirect, ok bool, err error) {
	fields := strings.Fields(line)
	if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
		return Redirect{}, false, nil
	}
	switch len(fields) {
	case 1:
		return Redirect{}, false, fmt.Errorf("want FROM TO [STATUS], got only %q", truncate(fields[0]))
	case 2, 3:
	default:
		return Redirect{}, false, fmt.Errorf("want FROM TO [STATUS], got %d fields", len(fields))
	}
	r = Redirect{From: fields[0], To: fields[1], Status: http.StatusMovedPermanently}
	if len(fields) == 3 {
		// Atoi alone would take "+301"; a status is three digits.
		s, err := strconv.Atoi(fields[2])
		if err != nil || len(fields[2]) != 3 || fields[2][0] < '1' || fields[2][0] > '9' {
			return Redirect{}, false, fmt.Errorf("status %q: want a 3-digit number such as 301 or 302", truncate(fields[2]))
		}
		r.Status = s
	}
	if err := r.check(); err != nil {
		return Redirect{}, false, err
	}
	return r, true, nil
}

// truncate shortens s for an error message.
func truncate(s string) string {
	const maxLen = 64
	if len(s) <= maxLen {
		return s
	}
	return s[:maxLen] + "..."
}
