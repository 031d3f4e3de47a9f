package contentcoding

import (
	"fmt"
	"strings"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// MinSize is the smallest body worth compressing, in bytes: below it the
// saving is a fraction of one packet and not worth a second cache entry.
const MinSize = 1024

// Compressible reports whether a response of this Content-Type is worth
// compressing: text, JSON, JavaScript, XML, SVG, WebAssembly, icons and
// uncompressed fonts. Formats that are compressed already (images, audio,
// video, zip, gzip, woff/woff2, pdf) and unknown bytes (octet-stream) are
// not. Parameters and case are ignored; an empty type gives false.
func Compressible(contentType string) bool {
	mt, _, _ := strings.Cut(contentType, ";")
	mt = strings.ToLower(strings.Trim(mt, " \t")) // no copy when already lower case
	typ, sub, ok := strings.Cut(mt, "/")
	if !ok || sub == "" {
		return false
	}
	// Structured-syntax suffixes (RFC 6839, RFC 9512) name text formats
	// whatever the type: application/ld+json, image/svg+xml, application/rss+xml.
	if strings.HasSuffix(sub, "+json") || strings.HasSuffix(sub, "+xml") || strings.HasSuffix(sub, "+yaml") {
		return true
	}
	switch typ {
	case "text":
		// An event stream is consumed as it arrives; compressing it whole
		// would hold every event back until the end.
		return sub != "event-stream"
	case "application":
		switch sub {
		case "json", "javascript", "x-javascript", "ecmascript", "xml", "wasm",
			"yaml", "x-yaml", "toml", "graphql", "x-sh", "rtf", "postscript",
			"vnd.ms-fontobject", "x-font-ttf", "x-font-otf", "x-font-opentype", "font-sfnt":
			return true
		}
	case "image":
		switch sub {
		case "x-icon", "vnd.microsoft.icon", "bmp":
			return true
		}
	case "font":
		switch sub {
		case "ttf", "otf", "sfnt", "collection":
			return true
		}
	}
	return false
}

// ETag returns the entity tag for the c variant of a response whose identity
// tag is etag: `"abc"` becomes `"abc-gzip"` and `W/"abc"` becomes
// `W/"abc-gzip"`. Each coding needs its own strong tag, since the variants
// differ byte for byte (RFC 9110 §8.8.3). An empty etag, or Identity, returns
// etag unchanged.
func ETag(etag string, c Coding) string {
	if etag == "" || c == Identity {
		return etag
	}
	if len(etag) >= 2 && etag[len(etag)-1] == '"' {
		return etag[:len(etag)-1] + "-" + c.String() + `"`
	}
	// Unquoted, so not a valid entity-tag; keep it distinct per coding anyway
	// so no conditional request matches the wrong variant.
	return etag + "-" + c.String()
}

// gzipLevel trades compression time for size. Static content is compressed
// once and served many times, so one level above klauspost's default (5)
// pays off.
const gzipLevel = 6

// maxPooledScratch bounds the scratch buffers kept for reuse, so that one
// huge body does not pin its output size in memory for good.
const maxPooledScratch = 4 << 20

// gzipWriters holds reset gzip writers: a writer carries about 1 MiB of
// compressor state, too much to build per call.
var gzipWriters = sync.Pool{
	New: func() any {
		w, err := gzip.NewWriterLevel(nil, gzipLevel)
		if err != nil {
			panic(fmt.Sprintf("contentcoding: gzip level %d: %v", gzipLevel, err))
		}
		return w
	},
}

// scratch holds output buffers for reuse; Compress copies the result out to
// an exactly sized slice, since the result lives on in the cache.
var scratch = sync.Pool{New: func() any { return new(appendWriter) }}

// appendWriter is an io.Writer that appends to b; unlike bytes.Buffer it can
// adopt the slice zstd's EncodeAll returns.
type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

// zstdEncoder is one encoder shared by every call: EncodeAll is safe for
// concurrent use and keeps GOMAXPROCS block encoders of its own. It is built
// on first use so that importing the package costs nothing.
var zstdEncoder = sync.OnceValues(func() (*zstd.Encoder, error) {
	return zstd.NewWriter(nil,
		zstd.WithEncoderLevel(zstd.SpeedDefault),
		// RFC 9659 §3: the zstd content coding must not need a window
		// above 8 MiB; browsers refuse larger ones.
		zstd.WithWindowSize(8<<20),
		// An empty body still becomes a valid frame, not zero bytes.
		zstd.WithZeroFrames(true),
	)
})

// Compress returns body encoded with c: gzip at level 6, or zstd at
// SpeedDefault. Encoders are pooled or shared, so concurrent calls are safe
// and cheap. Identity, or any other value, is an error. The result is a new
// slice of exactly its length; body is not retained.
func Compress(c Coding, body []byte) ([]byte, error) {
	switch c {
	case Gzip:
		return compressGzip(body)
	case Zstd:
		return compressZstd(body)
	case Identity:
		return nil, fmt.Errorf("compress %d bytes: identity is not a compression", len(body))
	}
	return nil, fmt.Errorf("compress %d bytes: unknown coding %s", len(body), c)
}

func compressGzip(body []byte) ([]byte, error) {
	out := getScratch()
	defer putScratch(out)
	w := gzipWriters.Get().(*gzip.Writer)
	defer gzipWriters.Put(w)
	w.Reset(out)
	// appendWriter never fails a write, so neither error is expected; a
	// broken stream must still not end up in the cache.
	_, err := w.Write(body)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	w.Reset(nil) // drop out before it goes back to its pool
	if err != nil {
		return nil, fmt.Errorf("compress %d bytes with gzip: %w", len(body), err)
	}
	return exact(out.b), nil
}

func compressZstd(body []byte) ([]byte, error) {
	enc, err := zstdEncoder()
	if err != nil {
		return nil, fmt.Errorf("compress %d bytes with zstd: create encoder: %w", len(body), err)
	}
	out := getScratch()
	defer putScratch(out)
	out.b = enc.EncodeAll(body, out.b)
	return exact(out.b), nil
}

// exact copies b into a slice whose capacity is its length: slices.Clone
// rounds up, and the copy lives on in the cache.
func exact(b []byte) []byte {
	c := make([]byte, len(b))
	copy(c, b)
	return c
}

func getScratch() *appendWriter {
	w := scratch.Get().(*appendWriter)
	w.b = w.b[:0]
	return w
}

func putScratch(w *appendWriter) {
	if cap(w.b) > maxPooledScratch {
		return // let one huge body's buffer go rather than keep it forever
	}
	scratch.Put(w)
}
