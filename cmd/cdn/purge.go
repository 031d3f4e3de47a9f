package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/selfcdn/cdn/purge"
)

// Exit codes of cdn purge, for pipelines; purgeUsage documents them.
const (
	exitPurgeNotApplied = 1 // written, not applied everywhere within --wait
	exitPurgeUsage      = 2 // bad usage or refused: nothing written
	exitPurgeAuth       = 3 // 401 or 403: nothing written
	exitPurgeNoControl  = 4 // not known to be written: re-run with the same key
)

const purgeUsage = `usage: cdn purge --site SITE [flags] [URL ...]
       cdn purge --site SITE [flags] - < urls.txt
       cdn purge [flags] https://HOST/PATH ...

Purge URLs, prefixes, tags or a whole site through control's API, and with
--wait, wait until every edge has applied the purge (every registered edge
not down or draining; one not judged yet is waited for). Arguments are
URLs ("/a.css" for every host of the site, or "https://www.example.com/a.css");
a "-" argument reads more, one per line, from stdin (blank lines and
# comments skipped). Without --site (or $CDN_SITE), the site is the one
serving the full URLs' hosts, as control lists them (a token with scope
read).

--wait alone waits up to --timeout (5m); --wait=30s (or --wait 30s) up
to 30 seconds.

A purge is written once per idempotency key: re-running this step with the
same key (--idempotency-key or $CDN_PURGE_KEY) answers with the first run's
version and writes nothing new. Without one, a key is made and printed to
stderr.

Exit codes:
  0  written; with --wait, applied by every edge
  1  written, but not applied by every edge within the wait (the message
     names the version and the pending edges), or no edge is there to
     apply it (none registered, or every one down or draining)
  2  bad usage, or control refused the request (4xx): nothing written
  3  authentication or permission refused (401, 403): nothing written
  4  control unreachable or unavailable after retries: not known to be
     written; re-running with the same idempotency key is safe

Flags:
`

// runPurge is `cdn purge`.
func runPurge(ctx context.Context, args []string, stderr io.Writer) error {
	c := purgeCmd{stdin: os.Stdin, stdout: os.Stdout, stderr: stderr, getenv: os.Getenv}
	return c.run(ctx, args)
}

// purgeCmd is what cdn purge reads and writes, supplied by tests.
type purgeCmd struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	// maxBackoff, when set, bounds the client's pauses between retries,
	// Retry-After included (tests).
	maxBackoff time.Duration
}

// purgeFlags are cdn purge's flags, after the environment filled the
// ones left unset.
type purgeFlags struct {
	controlURL, token, site, key string
	urls, prefixes, tags         listFlag
	all, soft, json              bool
	waitFlag                     waitFlag
	// wait is how long to wait, from waitFlag; 0 does not.
	wait time.Duration
}

func (c purgeCmd) run(ctx context.Context, args []string) error {
	f, err := c.parse(args)
	if err != nil {
		return err
	}
	keyMade := f.key == ""
	if keyMade {
		f.key = purge.NewIdempotencyKey()
	}
	client := &purge.Client{BaseURL: f.controlURL, Token: f.token, MaxBackoff: c.maxBackoff}
	req := purge.Request{URLs: f.urls, Prefixes: f.prefixes, Tags: f.tags, All: f.all, Soft: f.soft}
	if f.site == "" {
		if f.site, err = findSite(ctx, client, req); err != nil {
			return err
		}
		fmt.Fprintf(c.stderr, "cdn purge: site %s (serves the URLs' hosts)\n", f.site)
	}
	if keyMade {
		// Printed before the call, so a step that dies mid-call can still
		// be re-run under the same key.
		fmt.Fprintf(c.stderr, "cdn purge: idempotency key %s (a re-run with CDN_PURGE_KEY=%s cannot purge twice)\n", f.key, f.key)
	}
	start := time.Now()
	res, err := client.Purge(ctx, f.site, req, purge.Options{Wait: f.wait, IdempotencyKey: f.key})
	took := time.Since(start)
	if err != nil && !errors.Is(err, purge.ErrNotApplied) {
		return purgeFailed(err, f.key)
	}
	if f.json {
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return exitError{exitPurgeNoControl, fmt.Errorf("write result: %w", err)}
		}
	}
	if err != nil || f.wait > 0 && (res.Status == nil || !res.Status.Applied) {
		return exitError{exitPurgeNotApplied, notApplied(f, res)}
	}
	if !f.json {
		fmt.Fprintln(c.stdout, summary(f, res, took))
	}
	return nil
}

// parse reads flags, positional URLs and stdin, and the environment for
// what the flags left unset.
func (c purgeCmd) parse(args []string) (purgeFlags, error) {
	var f purgeFlags
	fs := flag.NewFlagSet("purge", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), purgeUsage)
		fs.PrintDefaults()
	}
	// Defaults come from the environment after parsing, so -h never
	// prints a token.
	fs.StringVar(&f.controlURL, "control-url", "", "control API base URL, several comma-separated (default $CDN_CONTROL_URL)")
	fs.StringVar(&f.token, "token", "", "API token with scope purge:SITE (default $CDN_TOKEN)")
	fs.StringVar(&f.site, "site", "", "site to purge (default $CDN_SITE)")
	fs.Var(&f.urls, "url", "`URL` or path to purge (repeatable)")
	fs.Var(&f.prefixes, "prefix", "`PREFIX` of URLs or paths to purge, e.g. /assets/ (repeatable)")
	fs.Var(&f.tags, "tag", "`TAG` (from the origin's Surrogate-Key or Cache-Tag) to purge (repeatable)")
	fs.BoolVar(&f.all, "all", false, "purge the whole site")
	fs.BoolVar(&f.soft, "soft", false, "mark stale (served while revalidating) instead of removing")
	f.waitFlag.register(fs, "apply the purge")
	fs.StringVar(&f.key, "idempotency-key", "", "idempotency key (default $CDN_PURGE_KEY, else a new one, printed)")
	fs.BoolVar(&f.json, "json", false, "print the result as JSON on stdout")
	args, err := parseInterleaved(fs, args)
	if err != nil {
		return f, err
	}
	fromEnv(c.getenv, map[*string]string{&f.controlURL: "CDN_CONTROL_URL", &f.token: "CDN_TOKEN", &f.site: "CDN_SITE", &f.key: "CDN_PURGE_KEY"})
	if err := needAccess(f.controlURL, f.token); err != nil {
		return f, err
	}
	if f.wait, err = f.waitFlag.duration(); err != nil {
		return f, err
	}
	stdinRead := false
	for _, a := range args {
		if a != "-" {
			f.urls = append(f.urls, a)
			continue
		}
		if stdinRead {
			return f, usageError{errors.New(`"-" (read URLs from stdin) given more than once`)}
		}
		stdinRead = true
		urls, err := readURLs(c.stdin)
		if err != nil {
			return f, usageError{fmt.Errorf("read URLs from stdin: %w", err)}
		}
		f.urls = append(f.urls, urls...)
	}
	return f, nil
}

// parseInterleaved parses fs from args and returns the positional
// arguments, which may come before, between or after flags; everything
// after "--" is positional.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	args = joinFlagValues(fs, args)
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{err}
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
}

// readURLs reads one URL per line, skipping blank lines and # comments.
func readURLs(r io.Reader) ([]string, error) {
	var urls []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 2*purge.MaxURLLength)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		urls = append(urls, line)
	}
	return urls, sc.Err()
}

// purgeFailed turns a failed purge into its documented exit code.
func purgeFailed(err error, key string) error {
	ae, isAPI := errors.AsType[*purge.APIError](err)
	switch {
	case errors.Is(err, purge.ErrInvalid):
		return exitError{exitPurgeUsage, err}
	case isAPI && (ae.StatusCode == http.StatusUnauthorized || ae.StatusCode == http.StatusForbidden):
		return exitError{exitPurgeAuth, err}
	case isAPI && ae.StatusCode >= 400 && ae.StatusCode < 500:
		return exitError{exitPurgeUsage, err}
	default:
		return exitError{exitPurgeNoControl, fmt.Errorf("%w\nnot known to be written: re-running with --idempotency-key %s is safe", err, key)}
	}
}

// notApplied explains exit code 1: the purge is written, and some edges
// have not applied it, or no edge is there to.
func notApplied(f purgeFlags, res purge.Result) error {
	var pending string
	switch {
	case res.Status == nil:
		pending = "unknown (control sent no status)"
	case res.Status.Expected == 0 && len(res.Status.Pending) == 0:
		// Not "applied by all 0 edges": nothing serves the site.
		return fmt.Errorf("site=%s version=%d written, but not applied: %s",
			f.site, res.Version, cmp.Or(res.Status.Message, "control counts no edge to wait for"))
	case len(res.Status.Pending) == 0:
		pending = "none named"
	default:
		pending = strings.Join(res.Status.Pending, ", ")
	}
	return fmt.Errorf("site=%s version=%d written, but not applied by every edge within %s; pending edges: %s",
		f.site, res.Version, f.wait, pending)
}

// summary is the line printed on success.
func summary(f purgeFlags, res purge.Result, took time.Duration) string {
	var b strings.Builder
	if f.wait == 0 || res.Status == nil {
		fmt.Fprintf(&b, "accepted site=%s version=%d (not waiting)", f.site, res.Version)
	} else {
		expected := res.Status.Expected
		if expected == 0 { // a control from before edges were counted
			for _, e := range res.Status.Edges {
				if e.Health == "up" {
					expected++
				}
			}
		}
		fmt.Fprintf(&b, "purged site=%s version=%d applied by %d/%d edges in %s", f.site, res.Version,
			expected-len(res.Status.Pending), expected, took.Round(time.Millisecond))
		if skipped := len(res.Status.Edges) - expected; skipped > 0 {
			fmt.Fprintf(&b, " (%d down or draining, not waited for)", skipped)
		}
	}
	if res.Duplicate {
		b.WriteString(" (key seen before: nothing new written)")
	}
	return b.String()
}

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(s string) error {
	*l = append(*l, s)
	return nil
}

// fromEnv fills each setting a flag left empty from its environment
// variable.
func fromEnv(getenv func(string) string, vars map[*string]string) {
	for dst, env := range vars {
		if *dst == "" {
			*dst = getenv(env)
		}
	}
}

// needControl refuses a CI command that does not know where control is,
// how to authenticate, or which site it acts on.
func needControl(controlURL, token, site string) error {
	if err := needAccess(controlURL, token); err != nil {
		return err
	}
	if site == "" {
		return usageError{errors.New("set --site (or CDN_SITE)")}
	}
	return nil
}

// needAccess refuses a CI command that does not know where control is or
// how to authenticate.
func needAccess(controlURL, token string) error {
	if controlURL == "" || token == "" {
		return usageError{errors.New("set CDN_CONTROL_URL and CDN_TOKEN (or --control-url and --token)")}
	}
	return nil
}

// findSite names the site that serves the hosts of req's full URLs, for a
// purge given no --site. Nothing is written if it fails.
func findSite(ctx context.Context, client *purge.Client, req purge.Request) (string, error) {
	// Refuse a bad request first: its error is the one worth reading.
	if err := req.Validate([]string{"*"}); err != nil {
		return "", exitError{exitPurgeUsage, fmt.Errorf("%w: %w", purge.ErrInvalid, err)}
	}
	var hosts []string
	for _, u := range slices.Concat(req.URLs, req.Prefixes) {
		if host, _, _ := purge.Split(u); host != "" && !slices.Contains(hosts, host) {
			hosts = append(hosts, host)
		}
	}
	if len(hosts) == 0 {
		return "", usageError{errors.New("set --site (or CDN_SITE), or give full URLs (https://host/path) to find the site by host")}
	}
	sites, err := client.Sites(ctx)
	if errors.Is(err, purge.ErrInvalid) {
		return "", exitError{exitPurgeUsage, err}
	}
	if err != nil {
		if ae, ok := errors.AsType[*purge.APIError](err); ok && (ae.StatusCode == http.StatusUnauthorized || ae.StatusCode == http.StatusForbidden) {
			return "", exitError{exitPurgeAuth, fmt.Errorf("%w\nfinding the site by host needs a token that may list sites (scope read); or set --site (or CDN_SITE); nothing was written", err)}
		}
		return "", exitError{exitPurgeNoControl, fmt.Errorf("find the site by host: %w\nnothing was written; re-running is safe", err)}
	}
	bySite := map[string][]string{}
	for _, h := range hosts {
		name, err := purge.SiteFor(sites, h)
		if err != nil {
			return "", exitError{exitPurgeUsage, fmt.Errorf("find the site by host: %w; set --site", err)}
		}
		bySite[name] = append(bySite[name], h)
	}
	if len(bySite) > 1 {
		var parts []string
		for _, name := range slices.Sorted(maps.Keys(bySite)) {
			parts = append(parts, name+": "+strings.Join(bySite[name], ", "))
		}
		return "", exitError{exitPurgeUsage, fmt.Errorf("the URLs' hosts belong to several sites (%s): purge each site on its own, with --site", strings.Join(parts, "; "))}
	}
	for name := range bySite {
		return name, nil
	}
	return "", nil // not reached: hosts is not empty
}
