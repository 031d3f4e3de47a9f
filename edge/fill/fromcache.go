package fill

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/selfcdn/cdn/edge/cache"
	"github.com/selfcdn/cdn/edge/freshness"
	"github.com/selfcdn/cdn/internal/cachekey"
	"github.com/selfcdn/cdn/purge"
)

// A fill that had a stored entry to validate may answer from it: the
// upstream said 304 (revalidated), or failed where RFC 5861 lets a
// stale entry stand in (staleIfError).

// revalidated handles a 304 to our conditional request: the stored entry,
// with the 304's header fields, is fresh again.
func (f *Filler) revalidated(j *Job, res *http.Response, sent, got time.Time) {
	hdr := mergeNotModified(j.Stored.Header, f.cfg.Header(res.Header))
	judged := hdr
	if age, ok := res.Header["Age"]; ok {
		// The 304's Age dates the validation; Config.Header dropped it.
		judged = hdr.Clone()
		judged["Age"] = age
	}
	d := freshness.Evaluate(j.Request.Header, j.Stored.Status, judged, sent, got, j.Site.Policy)
	e := j.Stored
	var keep []stored
	if d.Store && !f.invalidatedSince(j) {
		e = cache.NewEntry(j.Stored.Status, hdr, j.Stored.Body, d.Meta, j.Stored.Vary)
		e.Invalidated = j.Stored.Invalidated
		e.Stamp, e.Tags = j.Stamp, j.Stored.Tags
		if tags := purge.Tags(res.Header); tags != nil {
			e.Tags = tags
		}
		if j.Stored.Disk != nil {
			// The body stays where it is, on disk; the entry is rewritten
			// there with the new header.
			e.Disk = j.Stored.Disk
			e.Header["Content-Length"] = j.Stored.Header["Content-Length"]
		}
		f.cfg.Prepare(e, j.Key)
		if j.Stored.Disk == nil {
			f.cfg.Memory.Put(j.Key, e)
		}
		keep = []stored{{key: j.Key, e: e}}
	}
	f.publishEntry(j, e, Head{Revalidated: true})
	f.persist(j, keep)
}

// mergeNotModified applies a 304's header to a stored header (RFC 9111
// §3.2 and §4.3.4): every field the 304 carries replaces the stored one,
// except those that describe the stored body.
func mergeNotModified(stored, fresh http.Header) http.Header {
	out := stored.Clone()
	for k, v := range fresh {
		switch k {
		case "Content-Length", "Content-Encoding", "Content-Range", "Transfer-Encoding", "Via":
			continue
		}
		out[k] = v
	}
	delete(out, "Age")
	return out
}

// staleIfError answers the flight with the stored entry when the upstream
// failed and RFC 5861 stale-if-error allows it.
// A soft-purged entry may always answer so; a hard-purged one never.
func (f *Filler) staleIfError(j *Job) bool {
	if j.Stored == nil {
		return false
	}
	switch j.Site.Purges.Check(j.Stored.Stamp, j.Base, j.Stored.Tags) {
	case purge.Gone:
		return false
	case purge.Keep:
		if !freshness.StaleIfError(j.Stored.Meta, f.cfg.Now()) {
			return false
		}
	}
	f.cfg.Log.LogAttrs(j.Request.Context(), slog.LevelWarn, "serving stale for origin error",
		slog.String("site", j.Site.Name), slog.String("key", j.Key))
	f.publishEntry(j, j.Stored, Head{})
	return true
}

// publishEntry answers a flight from a stored entry. It leaves the group
// first, as every ending of Run does: a client that has read the whole
// answer and asks again at once must not join this flight (a stale answer
// for an origin error would be given again past its stale-if-error time).
func (f *Filler) publishEntry(j *Job, e *cache.Entry, head Head) {
	f.done(j)
	head.Status, head.Header, head.Shareable, head.FromCache = e.Status, e.Header, true, true
	head.Tags = e.Tags
	head.Vary = e.Vary
	if len(e.Vary) > 0 {
		head.VariantKey = cachekey.Variant("", e.Vary, j.ClientHeader)
	}
	head.Decision.Meta = e.Meta
	if e.Disk == nil {
		head.Entry = e // waiters answer from it as from a hit (issue 20)
	}
	j.Flight.Publish(head)
	var err error
	if e.Disk != nil {
		_, err = e.Disk.WriteTo(j.Flight.Body)
	} else {
		_, err = j.Flight.Body.Write(e.Body)
	}
	j.Flight.Body.Finish(err)
}
