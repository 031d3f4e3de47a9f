package byterange

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

// copyBufs holds 32 KiB copy buffers, so a range of a 1 GiB object is sent
// in chunks and busy edges do not allocate one per response.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// Write sends ranges of body (size bytes) as a 206: one range as a plain 206 with Content-Range and
// Content-Length, several as multipart/byteranges (each part with Content-Type: contentType when it
// is not empty, and Content-Range) with an exact Content-Length computed before writing.
// It sets Content-Range/Content-Type/Content-Length itself, deletes any Content-Encoding-unrelated
// stale "Content-Length" already in w.Header(), writes the status and, unless head is true, the bodies.
// It returns the body bytes written. Other headers (ETag, Cache-Control...) the caller set stay.
//
// The count includes multipart framing, so on success it equals the
// Content-Length sent (0 for head). For a single range with an empty
// contentType, a Content-Type the caller set is kept, and if there is none
// net/http is stopped from sniffing one from the middle of the object.
// Ranges outside [0,size) or empty are refused before anything is written.
// An error after the status was written (ReadAt failed, or body is shorter
// than size) means the client got a short body: the caller cuts the connection.
func Write(w http.ResponseWriter, ranges []Range, size int64, contentType string, body io.ReaderAt, head bool) (int64, error) {
	if err := check(ranges, size); err != nil {
		return 0, err
	}
	h := w.Header()
	if len(ranges) == 1 {
		r := ranges[0]
		h.Set("Content-Range", r.ContentRange(size))
		h.Set("Content-Length", strconv.FormatInt(r.Length, 10))
		if contentType != "" {
			h.Set("Content-Type", contentType)
		} else if _, ok := h["Content-Type"]; !ok {
			h["Content-Type"] = nil // sniffing a slice would guess wrong
		}
		w.WriteHeader(http.StatusPartialContent)
		if head {
			return 0, nil
		}
		return copyRange(w, body, r, size)
	}

	mp := newFraming(ranges, size, contentType)
	// A multipart 206 names its ranges in each part (RFC 9110 §14.6).
	h.Del("Content-Range")
	h.Set("Content-Type", "multipart/byteranges; boundary="+mp.boundary)
	h.Set("Content-Length", strconv.FormatInt(mp.length, 10))
	w.WriteHeader(http.StatusPartialContent)
	if head {
		return 0, nil
	}
	var written int64
	for i, r := range ranges {
		n, err := io.WriteString(w, mp.heads[i])
		written += int64(n)
		if err != nil {
			return written, fmt.Errorf("write part header for %s: %w", r.ContentRange(size), err)
		}
		m, err := copyRange(w, body, r, size)
		written += m
		if err != nil {
			return written, err
		}
	}
	n, err := io.WriteString(w, mp.tail)
	written += int64(n)
	if err != nil {
		return written, fmt.Errorf("write multipart end: %w", err)
	}
	return written, nil
}

// check refuses ranges Parse would never return, before any header is sent,
// so the caller can still answer with a proper error.
func check(ranges []Range, size int64) error {
	if len(ranges) == 0 {
		return errors.New("write ranges: no ranges")
	}
	var total int64
	for _, r := range ranges {
		if r.Start < 0 || r.Length < 1 || r.Start >= size || r.Length > size-r.Start {
			return fmt.Errorf("write range start %d length %d: outside %d bytes", r.Start, r.Length, size)
		}
		// Overlapping ranges from a caller other than Parse could overflow
		// the multipart Content-Length.
		if total += r.Length; total > 1<<62 {
			return fmt.Errorf("write %d ranges: more than 2^62 bytes", len(ranges))
		}
	}
	return nil
}

// copyRange copies r from body to w through a 32 KiB buffer.
func copyRange(w io.Writer, body io.ReaderAt, r Range, size int64) (int64, error) {
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)
	n, err := io.CopyBuffer(w, io.NewSectionReader(body, r.Start, r.Length), *buf)
	if err != nil {
		return n, fmt.Errorf("copy %s: %w", r.ContentRange(size), err)
	}
	if n < r.Length {
		// Content-Length is already promised; a short copy is a broken body.
		return n, fmt.Errorf("copy %s: body ended after %d bytes: %w", r.ContentRange(size), n, io.ErrUnexpectedEOF)
	}
	return n, nil
}

// framing is the delimiters and part headers of a multipart/byteranges body (RFC 9110
// §14.6, RFC 2046 §5.1.1), built before writing so its length is exact.
type framing struct {
	boundary string
	heads    []string // heads[i] goes before the bytes of range i
	tail     string   // the close delimiter
	length   int64    // the whole body: framing plus ranges
}

func newFraming(ranges []Range, size int64, contentType string) framing {
	// 26 base32 characters: valid boundary characters (RFC 2046 §5.1.1)
	// that no object will contain by chance.
	mp := framing{boundary: rand.Text(), heads: make([]string, len(ranges))}
	// The part header is written into the body, where net/http cannot
	// sanitize it as it does header values: a stored CR or LF must not
	// start a new part header.
	ctLine := ""
	if contentType != "" {
		ctLine = "Content-Type: " + strings.Map(func(c rune) rune {
			if c == '\r' || c == '\n' {
				return ' '
			}
			return c
		}, contentType) + "\r\n"
	}
	for i, r := range ranges {
		sep := "\r\n" // the CRLF before a delimiter belongs to it
		if i == 0 {
			sep = ""
		}
		mp.heads[i] = sep + "--" + mp.boundary + "\r\n" + ctLine + "Content-Range: " + r.ContentRange(size) + "\r\n\r\n"
		mp.length += int64(len(mp.heads[i])) + r.Length
	}
	mp.tail = "\r\n--" + mp.boundary + "--\r\n"
	mp.length += int64(len(mp.tail))
	return mp
}

// Unsatisfiable answers 416 with Content-Range: bytes */size and no body beyond a short text.
//
// It drops Content-Encoding: the text is not in the representation's
// coding, and a stored gzip variant's header would make clients fail to
// decode it.
func Unsatisfiable(w http.ResponseWriter, size int64) {
	h := w.Header()
	h.Del("Content-Encoding")
	h.Set("Content-Range", "bytes */"+strconv.FormatInt(size, 10))
	http.Error(w, "range not satisfiable", http.StatusRequestedRangeNotSatisfiable)
}
