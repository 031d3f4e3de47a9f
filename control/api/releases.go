package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/selfcdn/cdn/internal/state"
	"github.com/selfcdn/cdn/push"
)

// Push releases. A push asks which blobs control lacks, uploads them one
// by one (each checked against its hash), then commits the manifest: only
// when every blob it names is stored does the release exist, and only then
// is the site switched to it, by one write that every edge follows.

// ReleaseStore is the part of the shared state releases use.
type ReleaseStore interface {
	Blob(ctx context.Context, hash string) (state.BlobInfo, error)
	BlobInfos(ctx context.Context, hashes []string) (map[string]state.BlobInfo, error)
	PutBlob(ctx context.Context, hash string, r io.Reader) (int64, bool, error)
	PutBlobs(ctx context.Context, blobs []state.NewBlob) ([]bool, error)
	OpenBlob(ctx context.Context, hash string) (io.ReadCloser, int64, error)
	CreateRelease(ctx context.Context, r state.Release) (state.Release, error)
	Release(ctx context.Context, site string, n uint64) (state.Release, error)
	Releases(ctx context.Context, site string) ([]state.Release, error)
	SetLive(ctx context.Context, l state.Live) error
	Live(ctx context.Context, site string) (state.Live, error)
	EdgeReleases(ctx context.Context) ([]state.EdgeReleases, error)
	TouchPush(ctx context.Context) error
}

// Limits of the push endpoints' bodies.
const (
	maxManifestBody = 128 << 20
)

// missingBlobs answers which of the named blobs control lacks.
func (a *API) missingBlobs(w http.ResponseWriter, r *http.Request) error {
	if _, err := a.pushSite(r); err != nil {
		return err
	}
	var q push.Missing
	if err := decode(r, &q); err != nil {
		return err
	}
	if len(q.Blobs) > push.MaxMissingQuery {
		return &badRequest{fmt.Sprintf("blobs: %d named, limit %d per query", len(q.Blobs), push.MaxMissingQuery)}
	}
	for _, h := range q.Blobs {
		if !push.ValidHash(h) {
			return &badRequest{fmt.Sprintf("blobs: %q is not a SHA-256 in lower-case hex", h)}
		}
	}
	// A push is under way: garbage collection leaves unreferenced blobs
	// alone for a while, so what this answer calls present stays present.
	if err := a.touchPush(r.Context()); err != nil {
		return err
	}
	missing, err := a.findMissing(r.Context(), q.Blobs, nil)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, push.Missing{Blobs: missing})
	return nil
}

// touchPush records push activity, at most once a second.
func (a *API) touchPush(ctx context.Context) error {
	now := a.now().UnixNano()
	last := a.lastTouch.Load()
	if now-last < int64(time.Second) || !a.lastTouch.CompareAndSwap(last, now) {
		return nil
	}
	return a.store.TouchPush(ctx)
}

// findMissing returns the hashes (sorted) that are not stored, or that
// are stored with another size than sizes says.
func (a *API) findMissing(ctx context.Context, hashes []string, sizes map[string]int64) ([]string, error) {
	stored, err := a.store.BlobInfos(ctx, hashes)
	if err != nil {
		return nil, err
	}
	missing := []string{}
	for _, h := range slices.Compact(slices.Sorted(slices.Values(hashes))) {
		info, ok := stored[h]
		if !ok || sizes != nil && info.Size != sizes[h] {
			missing = append(missing, h)
		}
	}
	return missing, nil
}

// putBlob stores one blob, checked against its name as it streams in.
func (a *API) putBlob(w http.ResponseWriter, r *http.Request) error {
	if _, err := a.pushSite(r); err != nil {
		return err
	}
	hash := r.PathValue("hash")
	if !push.ValidHash(hash) {
		return &badRequest{fmt.Sprintf("%q is not a SHA-256 in lower-case hex", hash)}
	}
	if err := a.limitBlob(w, r); err != nil {
		return err
	}
	// Uploading is pushing: keep garbage collection off the blobs this
	// push already sent, however long it takes.
	if err := a.touchPush(r.Context()); err != nil {
		return err
	}
	size, created, err := a.store.PutBlob(r.Context(), hash, r.Body)
	if errors.Is(err, state.ErrBlobMismatch) {
		writeError(w, http.StatusUnprocessableEntity, "hash_mismatch", "the uploaded bytes do not hash to "+hash+"; nothing was stored")
		return nil
	}
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, push.Blob{Hash: hash, Size: size})
	return nil
}

// putBlobs stores a batch of small blobs (push.ReadBlobBatch): all of it
// is read and checked against the names before any is stored, so a bad
// batch is refused whole and stores nothing.
func (a *API) putBlobs(w http.ResponseWriter, r *http.Request) error {
	if _, err := a.pushSite(r); err != nil {
		return err
	}
	if ct := r.Header.Get("Content-Type"); ct != push.BlobBatchType {
		writeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", fmt.Sprintf("a blob batch is sent as %s, not %q", push.BlobBatchType, ct))
		return nil
	}
	if r.ContentLength > push.MaxBatchBytes {
		return &overLimit{fmt.Sprintf("the batch is %d bytes, over the %d-byte limit of one batch", r.ContentLength, push.MaxBatchBytes)}
	}
	if err := a.touchPush(r.Context()); err != nil {
		return err
	}
	maxBlob := min(a.maxBlob, push.BatchBlobMax)
	if a.limits.SiteBytes > 0 {
		maxBlob = min(maxBlob, a.limits.SiteBytes)
	}
	blobs, err := push.ReadBlobBatch(r.Body, push.MaxBatchBytes, maxBlob)
	var bad *push.BatchError
	switch {
	case errors.As(err, &bad) && bad.Mismatch:
		writeError(w, http.StatusUnprocessableEntity, "hash_mismatch", bad.Msg+"; nothing of the batch was stored")
		return nil
	case errors.As(err, &bad) && bad.TooLarge:
		return &overLimit{bad.Msg + "; nothing of the batch was stored"}
	case errors.As(err, &bad):
		return &badRequest{bad.Msg + "; nothing of the batch was stored"}
	case err != nil:
		return err
	}
	put := make([]state.NewBlob, len(blobs))
	for i, b := range blobs {
		put[i] = state.NewBlob{Hash: b.Hash, Data: b.Data}
	}
	created, err := a.store.PutBlobs(r.Context(), put)
	if err != nil {
		return err
	}
	out := push.BatchStored{Blobs: make([]push.Blob, len(blobs))}
	for i, b := range blobs {
		out.Blobs[i] = push.Blob{Hash: b.Hash, Size: int64(len(b.Data))}
		if created[i] {
			out.Created++
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// createRelease commits a manifest as the site's next release and, unless
// asked not to, switches the site to it.
func (a *API) createRelease(w http.ResponseWriter, r *http.Request) error {
	site, err := a.pushSite(r)
	if err != nil {
		return err
	}
	wait, err := waitParam(r)
	if err != nil {
		return err
	}
	var c push.Commit
	if err := decode(r, &c); err != nil {
		return err
	}
	if c.Manifest == nil {
		return &badRequest{"manifest: required"}
	}
	if err := c.Manifest.Validate(); err != nil {
		return &badRequest{"manifest: " + err.Error()}
	}
	if len(c.Message) > 1024 {
		return &badRequest{"message: longer than 1024 bytes"}
	}
	blobs := c.Manifest.Blobs()
	if err := a.checkSiteBytes(site, blobs); err != nil {
		return err
	}
	hashes := make([]string, len(blobs))
	sizes := make(map[string]int64, len(blobs))
	for i, b := range blobs {
		hashes[i], sizes[b.Hash] = b.Hash, b.Size
	}
	missing, err := a.findMissing(r.Context(), hashes, sizes)
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{
			"error":   map[string]string{"code": "missing_blobs", "message": fmt.Sprintf("%d blobs the manifest names are not stored (or differ in size); upload them and commit again; no release was made", len(missing))},
			"missing": missing,
		})
		return nil
	}
	body, err := c.Manifest.Encode()
	if err != nil {
		return err
	}
	manifest := push.HashOf(body)
	if _, _, err := a.store.PutBlob(r.Context(), manifest, bytes.NewReader(body)); err != nil {
		return fmt.Errorf("store manifest: %w", err)
	}
	var total int64
	for _, f := range c.Manifest.Files {
		total += f.Size
	}
	rel, err := a.store.CreateRelease(r.Context(), state.Release{
		Site: site, Manifest: manifest, Files: len(c.Manifest.Files), Bytes: total, Blobs: len(blobs),
		Created: a.now().UTC(), Message: c.Message,
	})
	if err != nil {
		return err
	}
	if c.Activate == nil || *c.Activate {
		if err := a.store.SetLive(r.Context(), state.Live{Site: site, Release: rel.Number, Manifest: manifest, Since: a.now().UTC()}); err != nil {
			return err
		}
	}
	a.log.Info("release committed", "site", site, "release", rel.Number, "files", rel.Files, "bytes", rel.Bytes)
	w.Header().Set("Location", "/v1/sites/"+site+"/releases/"+strconv.FormatUint(rel.Number, 10))
	return a.answerRelease(w, r, rel, wait, http.StatusCreated, c.Activate == nil || *c.Activate)
}

// answerRelease writes rel's status, after waiting up to wait for the
// edges to serve it. activated says this request just made rel live.
func (a *API) answerRelease(w http.ResponseWriter, r *http.Request, rel state.Release, wait time.Duration, status int, activated bool) error {
	st, err := a.waitRelease(r.Context(), rel, wait, activated)
	if err != nil {
		return err
	}
	writeJSON(w, status, st)
	return nil
}

// releaseWire is r as the API answers it: what control stores and what a
// client reads are two types, so storage can change without breaking
// clients (STYLE.md §12).
func releaseWire(r state.Release) push.Release {
	return push.Release{Site: r.Site, Number: r.Number, Manifest: r.Manifest, Files: r.Files,
		Bytes: r.Bytes, Blobs: r.Blobs, Created: r.Created, Message: r.Message}
}

// listReleases lists a site's releases, newest first, and the live one.
func (a *API) listReleases(w http.ResponseWriter, r *http.Request) error {
	site := r.PathValue("site")
	if _, _, err := a.store.Site(r.Context(), site); err != nil {
		return err
	}
	rels, err := a.store.Releases(r.Context(), site)
	if err != nil {
		return err
	}
	var live uint64
	if l, err := a.store.Live(r.Context(), site); err == nil {
		live = l.Release
	} else if !errors.Is(err, state.ErrNotFound) {
		return err
	}
	wire := make([]push.Release, len(rels))
	for i, rel := range rels {
		wire[i] = releaseWire(rel)
	}
	writeJSON(w, http.StatusOK, map[string]any{"site": site, "live": live, "releases": wire})
	return nil
}

// releaseStatus answers how far the edges are with a release, waiting
// (with ?wait=) for every healthy edge to serve it.
func (a *API) releaseStatus(w http.ResponseWriter, r *http.Request) error {
	rel, err := a.releaseOf(r)
	if err != nil {
		return err
	}
	wait, err := waitParam(r)
	if err != nil {
		return err
	}
	return a.answerRelease(w, r, rel, wait, http.StatusOK, false)
}

// activate switches a site to one of its releases: a deploy held back, or
// a rollback. The blobs must still be stored (a collected release cannot
// come back).
func (a *API) activate(w http.ResponseWriter, r *http.Request) error {
	if _, err := a.pushSite(r); err != nil {
		return err
	}
	rel, err := a.releaseOf(r)
	if err != nil {
		return err
	}
	wait, err := waitParam(r)
	if err != nil {
		return err
	}
	if _, err := a.store.Blob(r.Context(), rel.Manifest); err != nil {
		if errors.Is(err, state.ErrNotFound) {
			return &gone{fmt.Sprintf("release %d's manifest is no longer stored", rel.Number)}
		}
		return err
	}
	if err := a.store.SetLive(r.Context(), state.Live{Site: rel.Site, Release: rel.Number, Manifest: rel.Manifest, Since: a.now().UTC()}); err != nil {
		return err
	}
	a.log.Info("release activated", "site", rel.Site, "release", rel.Number)
	return a.answerRelease(w, r, rel, wait, http.StatusOK, true)
}

// gone is a request for something that was collected (410).
type gone struct{ msg string }

func (e *gone) Error() string { return e.msg }

// pushSite returns the request's site, which must exist.
func (a *API) pushSite(r *http.Request) (string, error) {
	site := r.PathValue("site")
	if _, _, err := a.store.Site(r.Context(), site); err != nil {
		if errors.Is(err, state.ErrNotFound) {
			return "", fmt.Errorf("site %q: %w", site, err)
		}
		return "", err
	}
	return site, nil
}

// releaseOf returns the release the request's path names.
func (a *API) releaseOf(r *http.Request) (state.Release, error) {
	n, err := strconv.ParseUint(r.PathValue("n"), 10, 64)
	if err != nil || n == 0 {
		return state.Release{}, &badRequest{fmt.Sprintf("release: want a positive number, got %q", r.PathValue("n"))}
	}
	rel, err := a.store.Release(r.Context(), r.PathValue("site"), n)
	if errors.Is(err, state.ErrNotFound) {
		return rel, fmt.Errorf("release %d of site %s: %w", n, r.PathValue("site"), err)
	}
	return rel, err
}

// releasePoll is how often a wait reads the edges' reports when nothing
// wakes it sooner.
const releasePoll = 200 * time.Millisecond

// edgeReleaseWatcher is a store that tells when an edge reports: a wait
// reads the reports again at once instead of at its next poll, which took
// up to 200 ms of a one-file push (issue 25).
type edgeReleaseWatcher interface {
	WatchEdgeReleases(ctx context.Context, f func(map[string]state.EdgeReleases)) error
}

// watchReports returns a channel that receives when an edge reports
// something, until ctx ends; stop waits for the watch to end. A store that
// cannot watch gives a channel that never receives.
func (a *API) watchReports(ctx context.Context) (changed <-chan struct{}, stop func()) {
	w, ok := a.store.(edgeReleaseWatcher)
	if !ok || ctx.Err() != nil { // no watch for an answer without a wait
		return nil, func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	ch := make(chan struct{}, 1)
	var wg sync.WaitGroup
	wg.Go(func() {
		// A failed watch leaves the poll to do its work.
		w.WatchEdgeReleases(ctx, func(map[string]state.EdgeReleases) {
			select {
			case ch <- struct{}{}:
			default:
			}
		})
	})
	return ch, func() { cancel(); wg.Wait() }
}

// waitRelease returns rel's status, waiting up to wait for it to be
// complete, or for every pending edge to have failed. It counts the edges
// a purge wait counts (see census): down and draining ones are listed but
// not waited for; with none counted it waits on, for one to register.
// A release that is not live ends the wait, unless this request just made
// it live (activated): a read of the live key may come from a replica that
// has not applied that write yet (KV gets go to any replica), and a push
// whose wait ended on such a read said "not served" for a release that
// every edge switched to a moment later (test-regions, a NATS node down).
func (a *API) waitRelease(ctx context.Context, rel state.Release, wait time.Duration, activated bool) (push.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	changed, stop := a.watchReports(ctx)
	defer stop()
	var edges map[string]verdict
	for {
		var err error
		// Read past the wait's end: the answer says how far it got.
		if edges, err = a.census(context.WithoutCancel(ctx), edges); err != nil {
			return push.Status{}, err
		}
		st, err := a.releaseState(context.WithoutCancel(ctx), rel, edges)
		if err != nil || st.Complete || !st.Live && !activated || len(st.Failed) == len(st.Pending) && len(st.Failed) > 0 {
			return st, err
		}
		select {
		case <-ctx.Done():
			return st, nil // st says how far it got
		case <-changed:
		case <-time.After(releasePoll):
		}
	}
}

// releaseState reads rel's status once, over the edges of a census.
func (a *API) releaseState(ctx context.Context, rel state.Release, edges map[string]verdict) (push.Status, error) {
	st := push.Status{Release: releaseWire(rel), Edges: []push.EdgeStatus{}, Pending: []string{}}
	live, err := a.store.Live(ctx, rel.Site)
	if err != nil && !errors.Is(err, state.ErrNotFound) {
		return st, err
	}
	st.Live = err == nil && live.Release == rel.Number
	reports, err := a.store.EdgeReleases(ctx)
	if err != nil {
		return st, err
	}
	byEdge := make(map[string]state.SiteRelease, len(reports))
	for _, rep := range reports {
		byEdge[rep.Edge] = rep.Sites[rel.Site]
	}
	for name, v := range edges {
		sr := byEdge[name]
		es := push.EdgeStatus{Edge: name, Health: v.health, Draining: v.draining, Serving: sr.Serving}
		if sr.Wanted == rel.Number {
			es.Error = sr.Error
		}
		st.Edges = append(st.Edges, es)
		if !v.counted() {
			continue
		}
		st.Expected++
		if sr.Serving != rel.Number {
			st.Pending = append(st.Pending, name)
			if es.Error != "" {
				st.Failed = append(st.Failed, name)
			}
		}
	}
	slices.SortFunc(st.Edges, func(x, y push.EdgeStatus) int { return strings.Compare(x.Edge, y.Edge) })
	slices.Sort(st.Pending)
	slices.Sort(st.Failed)
	// No edge serves it when there is none: never "served by all 0".
	st.Complete = st.Live && st.Expected > 0 && len(st.Pending) == 0
	if st.Expected == 0 {
		st.Message = noEdgeMessage
	}
	return st, nil
}
