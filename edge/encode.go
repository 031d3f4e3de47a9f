package edge

import (
	"log/slog"
	"net/http"
	"slices"
	"strconv"

	"github.com/selfcdn/cdn/edge/cache"
	"github.com/selfcdn/cdn/edge/cachekey"
	"github.com/selfcdn/cdn/edge/contentcoding"
	"github.com/selfcdn/cdn/edge/freshness"
)

// The edge compresses a stored identity body once per coding and keeps the
// result as one more entry, keyed by the entry's key, the coding, and the
// version of the body it came from. Clients are sorted by the coding they
// would get (zstd, gzip or identity), not by their Accept-Encoding text, so
// the cache holds at most three copies however many header values it sees.

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
