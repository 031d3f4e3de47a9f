package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/selfcdn/cdn/internal/apiclient"
	"github.com/selfcdn/cdn/push"
)

// Exit codes of cdn push and cdn rollback, for pipelines.
const (
	exitPushNotServed = 1 // committed and live, not served everywhere within --wait
	exitPushUsage     = 2 // bad usage, a bad directory, or refused: no release made
	exitPushAuth      = 3 // 401 or 403
	exitPushNoControl = 4 // control unreachable: re-run; uploaded blobs are not sent again
)

const pushUsage = `usage: cdn push DIR --site SITE [flags]

Deploy the directory DIR as the site's next release: every file is hashed,
only the blobs control lacks are uploaded, then the release is committed and
the site switched to it on every edge at once (atomically per edge).
_headers (Netlify format) adds response headers, _redirects adds redirects,
/404.html is the 404 page of a push-only site. Text files are precompressed
(gzip, zstd) here. An interrupted push can simply be run again.

--wait waits until every edge serves the release: every registered edge
not down or draining (one not judged yet is waited for). --wait alone
waits up to --timeout (5m); --wait=2m (or --wait 2m) up to 2 minutes.

Exit codes:
  0  pushed; with --wait, served by every edge
  1  pushed and live, but not served by every edge within the wait, or
     no edge is there to serve it (none registered, or all down or draining)
  2  bad usage, an unusable directory, or refused by control: no release
  3  authentication or permission refused (401, 403)
  4  control unreachable: no release made; run again (resumes)

Flags:
`

// pushEnv reads the settings every push command shares.
type pushEnv struct {
	controlURL, token, site string
}

func (e *pushEnv) register(fs *flag.FlagSet) {
	fs.StringVar(&e.controlURL, "control-url", "", "control API base URL (default $CDN_CONTROL_URL)")
	fs.StringVar(&e.token, "token", "", "API token with scope push:SITE (default $CDN_TOKEN)")
	fs.StringVar(&e.site, "site", "", "site (default $CDN_SITE)")
}

// fill takes what the flags left unset from the environment.
func (e *pushEnv) fill() (*push.Client, error) {
	fromEnv(os.Getenv, map[*string]string{&e.controlURL: "CDN_CONTROL_URL", &e.token: "CDN_TOKEN", &e.site: "CDN_SITE"})
	if err := needControl(e.controlURL, e.token, e.site); err != nil {
		return nil, err
	}
	return &push.Client{BaseURL: e.controlURL, Token: e.token}, nil
}

// runPush is `cdn push`.
func runPush(ctx context.Context, args []string, stderr io.Writer) error {
	var env pushEnv
	var message string
	var hold, quiet bool
	var scanCache string
	var wf waitFlag
	fs := flag.NewFlagSet("push", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), pushUsage)
		fs.PrintDefaults()
	}
	env.register(fs)
	fs.StringVar(&message, "message", "", "note kept with the release (a commit id)")
	fs.BoolVar(&hold, "hold", false, "commit the release without switching the site to it (activate later with cdn rollback --to N)")
	wf.register(fs, "serve the release")
	fs.BoolVar(&quiet, "quiet", false, "no progress output")
	fs.StringVar(&scanCache, "scan-cache", "auto", "file remembering each file's hashes, so only changed files are read again (auto: in the user cache dir; off: read every file)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{errors.New("give exactly one directory to push")}
	}
	wait, err := wf.duration()
	if err != nil {
		return err
	}
	client, err := env.fill()
	if err != nil {
		return err
	}
	start := time.Now()
	scanOpts := push.ScanOptions{}
	switch scanCache {
	case "off", "":
	case "auto":
		// No cache directory (no $HOME in a bare CI container): read
		// every file, as without the cache.
		scanOpts.Cache, _ = push.DefaultScanCache(pos[0])
	default:
		scanOpts.Cache = scanCache
	}
	scan, err := push.ScanDir(ctx, pos[0], scanOpts)
	if err != nil {
		return exitError{exitPushUsage, err}
	}
	fmt.Fprintf(stderr, "scanned %d files (%s) in %s, %d unchanged since the last scan\n", scan.Files, humanize.IBytes(uint64(scan.Bytes)),
		time.Since(start).Round(time.Millisecond), scan.Unchanged)
	if scan.CacheErr != nil {
		fmt.Fprintf(stderr, "warning: %v (the next push reads every file)\n", scan.CacheErr)
	}
	opts := push.Options{Message: message, Hold: hold, Wait: wait}
	if !quiet {
		opts.Progress = newProgressPrinter(stderr, isTerminal(stderr))
	}
	res, err := client.Push(ctx, env.site, scan, opts)
	if opts.Progress != nil && isTerminal(stderr) {
		fmt.Fprintln(stderr)
	}
	if err != nil && !errors.Is(err, push.ErrNotServed) {
		return pushFailed(err)
	}
	rel := res.Status.Release
	fmt.Fprintf(os.Stdout, "release %d of %s: %d files, %d blobs uploaded (%s), %d already there; %s\n",
		rel.Number, env.site, rel.Files, res.Uploaded, humanize.IBytes(uint64(res.UploadedBytes)), res.Skipped, servedLine(res.Status, hold, wait, time.Since(start)))
	if err != nil {
		return exitError{exitPushNotServed, err}
	}
	return nil
}

// servedLine says where the release stands.
func servedLine(st push.Status, hold bool, wait, took time.Duration) string {
	switch {
	case hold:
		return "held (not live)"
	case st.Complete:
		expected := st.Expected
		if expected == 0 { // a control from before edges were counted
			expected = len(st.Edges) - countNotUp(st)
		}
		line := fmt.Sprintf("served by every edge (%d) after %s", expected, took.Round(time.Millisecond))
		if skipped := len(st.Edges) - expected; skipped > 0 {
			line += fmt.Sprintf(" (%d down or draining, not waited for)", skipped)
		}
		return line
	case wait > 0 && st.Expected == 0 && len(st.Pending) == 0:
		// Never "served by every edge (0)": nothing serves it.
		return "not served: " + cmp.Or(st.Message, "control counts no edge to wait for")
	case wait > 0:
		return "not served everywhere yet, pending: " + strings.Join(st.Pending, ", ")
	}
	return "live; edges are switching"
}

// countNotUp counts the edges st lists that are not up.
func countNotUp(st push.Status) int {
	n := 0
	for _, e := range st.Edges {
		if e.Health != "up" {
			n++
		}
	}
	return n
}

// pushFailed maps an error to cdn push's exit codes.
func pushFailed(err error) error {
	ae, isAPI := errors.AsType[*push.APIError](err)
	switch {
	case errors.Is(err, apiclient.ErrBadBaseURL): // nothing was sent
		return exitError{exitPushUsage, err}
	case isAPI && (ae.StatusCode == http.StatusUnauthorized || ae.StatusCode == http.StatusForbidden):
		return exitError{exitPushAuth, err}
	case isAPI && ae.StatusCode >= 400 && ae.StatusCode < 500:
		return exitError{exitPushUsage, err}
	default:
		return exitError{exitPushNoControl, fmt.Errorf("%w\nno release was made; run the push again (uploaded blobs are not sent again)", err)}
	}
}

// isTerminal reports whether w is a terminal, for a progress bar instead
// of lines.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// newProgressPrinter draws a bar on a terminal, and a line per 10% (or
// every 5 seconds) elsewhere, so CI logs stay short.
func newProgressPrinter(w io.Writer, tty bool) func(push.Progress) {
	var mu sync.Mutex // protects lastPct and lastLine
	lastPct, lastLine := -1, time.Now()
	return func(p push.Progress) {
		mu.Lock()
		defer mu.Unlock()
		pct := 100
		if p.BytesTotal > 0 {
			pct = int(100 * p.Bytes / p.BytesTotal)
		}
		text := fmt.Sprintf("uploaded %d/%d blobs, %s/%s", p.Blobs, p.BlobsTotal, humanize.IBytes(uint64(p.Bytes)), humanize.IBytes(uint64(p.BytesTotal)))
		if tty {
			const width = 30
			bar := strings.Repeat("=", pct*width/100) + strings.Repeat(" ", width-pct*width/100)
			fmt.Fprintf(w, "\r[%s] %3d%% %s", bar, pct, text)
			return
		}
		if pct/10 != lastPct/10 || time.Since(lastLine) > 5*time.Second || p.Blobs == p.BlobsTotal {
			lastPct, lastLine = pct, time.Now()
			fmt.Fprintln(w, text)
		}
	}
}

// runReleases is `cdn releases`.
func runReleases(ctx context.Context, args []string, stderr io.Writer) error {
	var env pushEnv
	fs := flag.NewFlagSet("releases", flag.ContinueOnError)
	fs.SetOutput(stderr)
	env.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	client, err := env.fill()
	if err != nil {
		return err
	}
	rels, live, err := client.Releases(ctx, env.site)
	if err != nil {
		return pushFailed(err)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RELEASE\tLIVE\tCREATED\tFILES\tSIZE\tMESSAGE")
	for _, r := range rels {
		mark := ""
		if r.Number == live {
			mark = "*"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%s\n", r.Number, mark, r.Created.Format(time.RFC3339), r.Files, humanize.IBytes(uint64(r.Bytes)), r.Message)
	}
	return tw.Flush()
}

// runRollback is `cdn rollback`.
func runRollback(ctx context.Context, args []string, stderr io.Writer) error {
	var env pushEnv
	var to uint64
	var wf waitFlag
	fs := flag.NewFlagSet("rollback", flag.ContinueOnError)
	fs.SetOutput(stderr)
	env.register(fs)
	fs.Uint64Var(&to, "to", 0, "release number to switch the site to (see cdn releases)")
	wf.register(fs, "serve it")
	if err := parse(fs, joinFlagValues(fs, args)); err != nil {
		return err
	}
	if to == 0 {
		return usageError{errors.New("--to N is required")}
	}
	wait, err := wf.duration()
	if err != nil {
		return err
	}
	client, err := env.fill()
	if err != nil {
		return err
	}
	start := time.Now()
	st, err := client.Activate(ctx, env.site, to, wait)
	if err != nil && !errors.Is(err, push.ErrNotServed) {
		return pushFailed(err)
	}
	fmt.Fprintf(os.Stdout, "%s now serves release %d; %s\n", env.site, to, servedLine(st, false, wait, time.Since(start)))
	if err != nil {
		return exitError{exitPushNotServed, err}
	}
	return nil
}
