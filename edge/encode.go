package edge

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"

	"github.com/selfcdn/cdn/edge/cache"
	"github.com/selfcdn/cdn/edge/contentcoding"
	"github.com/selfcdn/cdn/edge/fill"
	"github.com/selfcdn/cdn/edge/freshness"
	"github.com/selfcdn/cdn/internal/cachekey"
)

// The edge compresses a stored identity body once per coding and keeps the
// result as one more entry, keyed by the entry's key, the coding, and the
// version of the body it came from. Clients are sorted by the coding they
// would get (zstd, gzip or identity), not by their Accept-Encoding text, so
// the cache holds at most three copies however many header values it sees.
//
// Every answer takes the same rule, not only hits (issue 20): a response
// revalidated with the origin or kept stale for an origin error is served
// from its stored entry through encoded, as a hit is; a miss is compressed
// as it streams from the origin (writeCoded), while the identity body is
// stored, and its compressed copy is made by the first hit. A miss larger
// than max_object (known from its Content-Length) streams through as
// identity, as its hits from disk do; one of unknown length is compressed
// whatever size it turns out to be.

// markEncodable decides, once per stored entry, whether the edge may
// compress it, and if so says Vary: Accept-Encoding on its responses and
// prepares the keys of its compressed copies: the entry's key, the coding,
// and the version of the body. Call it before the entry is shared.
func markEncodable(e *cache.Entry, key string, maxObject int64) {
	e.Encodable = e.Disk == nil && !e.VaryIndex && encodable(e.Status, e.Header, int64(len(e.Body)), maxObject)
	if !e.Encodable {
		return
	}
	addVaryAcceptEncoding(e.Header)
	version := strconv.FormatInt(e.Meta.ResponseTime.UnixNano(), 36)
	for _, c := range []contentcoding.Coding{contentcoding.Gzip, contentcoding.Zstd} {
		e.CodedKeys[c] = key + "\x00ce=" + c.String() + "\x00" + version
	}
}

// encodable reports whether a response may be compressed by the edge.
func encodable(status int, h http.Header, size, maxObject int64) bool {
	return status == http.StatusOK && size >= contentcoding.MinSize && size <= maxObject &&
		len(h["Content-Encoding"]) == 0 && contentcoding.Compressible(h.Get("Content-Type")) &&
		!freshness.ParseHeader(h, "Cache-Control").Is(freshness.NoTransform)
}

// flightEncodable reports whether a response streamed from a fill may be
// compressed: shareable, fresh from the origin (answers from a stored
// entry go through encoded), and encodable as its stored entry will be. A
// length not known yet counts as small enough.
func flightEncodable(head fill.Head, maxObject int64) bool {
	size := contentLength(head.Header)
	if size < 0 {
		size = contentcoding.MinSize
	}
	return head.Shareable && !head.FromCache && encodable(head.Status, head.Header, size, maxObject)
}

// setCoded turns an identity response header into the header of its c
// variant, as compress does for a stored copy: Content-Encoding, the
// coding's own ETag, and no Content-Length (the coded length is known
// only at the end). Identity leaves h alone.
func setCoded(h http.Header, c contentcoding.Coding) {
	if c == contentcoding.Identity {
		return
	}
	delete(h, "Content-Length")
	h["Content-Encoding"] = []string{c.String()}
	if etag := h.Get("Etag"); etag != "" {
		h["Etag"] = []string{contentcoding.ETag(etag, c)}
	}
}

// writeCoded streams body to w compressed with c as it arrives, flushing
// the encoder and w whenever it waits for the origin, so a slow body
// still reaches the client as it comes. A body that breaks is left
// unfinished (no gzip trailer, no zstd frame end), so the client cannot
// take it for whole. It returns the compressed bytes written.
func writeCoded(ctx context.Context, w http.ResponseWriter, body *fill.Body, c contentcoding.Coding) (int64, error) {
	cw := &countingWriter{w: w}
	zw, err := contentcoding.NewWriter(c, cw)
	if err != nil {
		return 0, err
	}
	rc := http.NewResponseController(w)
	flush := func() {
		if zw.Flush() == nil {
			rc.Flush()
		}
	}
	if _, err := body.WriteTo(ctx, zw, flush); err != nil {
		zw.Abandon()
		return cw.n, err
	}
	err = zw.Close()
	return cw.n, err
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// addVaryAcceptEncoding adds Accept-Encoding to h's Vary, without writing
// into a Vary slice h may share with another header.
func addVaryAcceptEncoding(h http.Header) {
	if names, _ := cachekey.ParseVary(h); !slices.Contains(names, "Accept-Encoding") {
		h["Vary"] = append(h["Vary"][:len(h["Vary"]):len(h["Vary"])], "Accept-Encoding")
	}
}

// encoded returns the entry to send for e to a client whose
// Accept-Encoding values are accept: e itself, or its compressed copy,
// made now if none is stored yet.
func (h *Handler) encoded(e *cache.Entry, accept []string) *cache.Entry {
	if !e.Encodable || len(accept) == 0 {
		return e
	}
	c := contentcoding.Negotiate(accept)
	if c == contentcoding.Identity {
		return e
	}
	ckey := e.CodedKeys[c]
	if ce, ok := h.mem.Get(ckey); ok {
		return ce
	}
	v, err, _ := h.compressing.Do(ckey, func() (any, error) {
		// The result is shared by every caller: only an entry held in
		// memory may be, never an open disk body.
		if ce, ok := h.get(ckey); ok {
			if ce.Disk == nil {
				return ce, nil
			}
			ce.Release()
		}
		return h.compress(e, ckey, c)
	})
	if err != nil {
		h.log.Warn("compress a cached body", slog.String("key", ckey), slog.Any("err", err))
		return e
	}
	return v.(*cache.Entry)
}

// compress stores and returns e's body encoded with c under ckey.
func (h *Handler) compress(e *cache.Entry, ckey string, c contentcoding.Coding) (*cache.Entry, error) {
	body, err := contentcoding.Compress(c, e.Body)
	if err != nil {
		return nil, err
	}
	hdr := e.Header.Clone()
	hdr["Content-Encoding"] = []string{c.String()}
	if etag := hdr.Get("Etag"); etag != "" {
		// Another representation needs its own strong validator.
		hdr["Etag"] = []string{contentcoding.ETag(etag, c)}
	}
	ce := cache.NewEntry(e.Status, hdr, body, e.Meta, e.Vary)
	ce.Invalidated = e.Invalidated
	h.metrics.compressed[c].Inc()
	h.mem.Put(ckey, ce)
	if h.disk != nil {
		h.goBackground(func() { h.disk.Put(ckey, ce, nil) })
	}
	return ce, nil
}
