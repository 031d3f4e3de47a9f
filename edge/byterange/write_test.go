package byterange

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"testing"
)

// object is a size-byte representation whose content is computed, so a
// 1 GiB object costs no memory. It records the largest read it served.
type object struct {
	size    int64
	failAt  int64 // ReadAt at or past this offset fails with errDisk; 0 means never
	maxRead int
}

var errDisk = errors.New("disk read error")

func (o *object) ReadAt(p []byte, off int64) (int, error) {
	o.maxRead = max(o.maxRead, len(p))
	if o.failAt > 0 && off+int64(len(p)) > o.failAt {
		return 0, errDisk
	}
	if off >= o.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), o.size-off))
	for i := range n {
		p[i] = byteAt(off + int64(i))
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// byteAt is the content of object: it repeats every 251 bytes, a prime, so
// a range copied from the wrong offset shows.
func byteAt(off int64) byte { return byte(off % 251) }

func content(r Range) []byte {
	b := make([]byte, r.Length)
	for i := range b {
		b[i] = byteAt(r.Start + int64(i))
	}
	return b
}

func TestWrite(t *testing.T) {
	const size = 100_000
	tests := []struct {
		name        string
		ranges      []Range
		contentType string
		callerType  []string // Content-Type the caller set before Write; nil for none
		head        bool
		wantType    []string // single range only
	}{
		{name: "single", ranges: []Range{{2, 4}}, contentType: "text/plain", wantType: []string{"text/plain"}},
		{name: "single last byte", ranges: []Range{{size - 1, 1}}, contentType: "text/plain", wantType: []string{"text/plain"}},
		{name: "single larger than buffer", ranges: []Range{{1000, 80_000}}, contentType: "video/mp4", wantType: []string{"video/mp4"}},
		{name: "single keeps caller type", ranges: []Range{{0, 1}}, callerType: []string{"image/png"}, wantType: []string{"image/png"}},
		{name: "single no type, no sniffing", ranges: []Range{{0, 1}}, wantType: nil},
		{name: "single head", ranges: []Range{{2, 4}}, contentType: "text/plain", head: true, wantType: []string{"text/plain"}},
		{name: "multi", ranges: []Range{{0, 10}, {500, 1}, {99_990, 10}}, contentType: "text/plain; charset=utf-8"},
		{name: "multi client order", ranges: []Range{{50, 5}, {0, 5}}, contentType: "application/octet-stream"},
		{name: "multi no type", ranges: []Range{{0, 10}, {20, 10}}},
		{name: "multi larger than buffer", ranges: []Range{{0, 40_000}, {50_000, 50_000}}, contentType: "video/mp4"},
		{name: "multi head", ranges: []Range{{0, 10}, {20, 10}}, contentType: "text/plain", head: true},
		{name: "multi many", ranges: sparse(MaxRanges), contentType: "text/plain"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			rec.Header().Set("ETag", `"v1"`)
			rec.Header().Set("Content-Length", "999999") // stale: the whole object's
			if len(tt.ranges) > 1 {
				rec.Header().Set("Content-Range", "bytes 0-0/1") // stale
			}
			if tt.callerType != nil {
				rec.Header()["Content-Type"] = tt.callerType
			}
			obj := &object{size: size}
			n, err := Write(rec, tt.ranges, size, tt.contentType, obj, tt.head)
			if err != nil {
				t.Fatalf("Write(%v) error %v", tt.ranges, err)
			}
			res := rec.Result()
			got, _ := io.ReadAll(res.Body)
			if res.StatusCode != http.StatusPartialContent {
				t.Errorf("status %d, want 206", res.StatusCode)
			}
			if e := res.Header.Get("ETag"); e != `"v1"` {
				t.Errorf("ETag %q, want the caller's \"v1\"", e)
			}
			if obj.maxRead > 32<<10 {
				t.Errorf("read %d bytes at once, want at most 32 KiB", obj.maxRead)
			}
			wantN := int64(len(got))
			if tt.head {
				wantN = 0
				if len(got) != 0 {
					t.Errorf("HEAD wrote %d body bytes, want none", len(got))
				}
			}
			if n != wantN {
				t.Errorf("Write returned %d bytes, wrote %d", n, wantN)
			}
			if len(tt.ranges) == 1 {
				checkSingle(t, res, got, tt.ranges[0], size, tt.wantType, tt.head)
			} else {
				checkMulti(t, res, got, tt.ranges, size, tt.contentType, tt.head)
			}
		})
	}
}

func sparse(n int) []Range {
	rs := make([]Range, n)
	for i := range rs {
		rs[i] = Range{Start: int64(3 * i), Length: 2}
	}
	return rs
}

func checkSingle(t *testing.T, res *http.Response, body []byte, r Range, size int64, wantType []string, head bool) {
	t.Helper()
	if cr, want := res.Header.Get("Content-Range"), r.ContentRange(size); cr != want {
		t.Errorf("Content-Range %q, want %q", cr, want)
	}
	if cl, want := res.Header.Get("Content-Length"), strconv.FormatInt(r.Length, 10); cl != want {
		t.Errorf("Content-Length %q, want %q", cl, want)
	}
	if ct, ok := res.Header["Content-Type"]; !ok || !slices.Equal(ct, wantType) {
		t.Errorf("Content-Type %q (present %v), want %q present", ct, ok, wantType)
	}
	if !head && !bytes.Equal(body, content(r)) {
		t.Errorf("body of %d bytes differs from range %v", len(body), r)
	}
}

func checkMulti(t *testing.T, res *http.Response, body []byte, ranges []Range, size int64, contentType string, head bool) {
	t.Helper()
	if cr, ok := res.Header["Content-Range"]; ok {
		t.Errorf("multipart response has Content-Range %q", cr)
	}
	mt, params, err := mime.ParseMediaType(res.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/byteranges" || params["boundary"] == "" {
		t.Fatalf("Content-Type %q (%v), want multipart/byteranges with a boundary", res.Header.Get("Content-Type"), err)
	}
	if head {
		// The length a HEAD promises is the one a GET sends.
		get := httptest.NewRecorder()
		if _, err := Write(get, ranges, size, contentType, &object{size: size}, false); err != nil {
			t.Fatalf("Write for GET: %v", err)
		}
		body = get.Body.Bytes()
		// The boundaries differ but have the same length.
		if cl := res.Header.Get("Content-Length"); cl != strconv.Itoa(len(body)) {
			t.Errorf("HEAD Content-Length %s, GET body is %d bytes", cl, len(body))
		}
		return
	}
	if cl := res.Header.Get("Content-Length"); cl != strconv.Itoa(len(body)) {
		t.Errorf("Content-Length %s, body is %d bytes", cl, len(body))
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	for i, r := range ranges {
		p, err := mr.NextRawPart()
		if err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
		if cr, want := p.Header.Get("Content-Range"), r.ContentRange(size); cr != want {
			t.Errorf("part %d Content-Range %q, want %q", i, cr, want)
		}
		if ct, ok := p.Header["Content-Type"]; (contentType == "" && ok) || (contentType != "" && p.Header.Get("Content-Type") != contentType) {
			t.Errorf("part %d Content-Type %q, want %q", i, ct, contentType)
		}
		got, err := io.ReadAll(p)
		if err != nil || !bytes.Equal(got, content(r)) {
			t.Errorf("part %d: %d bytes (%v) differ from range %v", i, len(got), err, r)
		}
	}
	if p, err := mr.NextRawPart(); err != io.EOF {
		t.Errorf("after %d parts: %v, %v; want io.EOF", len(ranges), p, err)
	}
}

func TestWriteLargeObject(t *testing.T) {
	const size = 1 << 30 // never held in memory: object computes its bytes
	obj := &object{size: size}
	r := Range{Start: size - 100_000, Length: 100_000}
	rec := httptest.NewRecorder()
	if _, err := Write(rec, []Range{r}, size, "video/mp4", obj, false); err != nil {
		t.Fatalf("Write(%v) error %v", r, err)
	}
	if !bytes.Equal(rec.Body.Bytes(), content(r)) {
		t.Errorf("body differs from range %v", r)
	}
	if obj.maxRead > 32<<10 {
		t.Errorf("read %d bytes at once, want at most 32 KiB", obj.maxRead)
	}
}

func TestWriteErrors(t *testing.T) {
	const size = 100_000
	tests := []struct {
		name        string
		ranges      []Range
		body        *object
		wantErr     error // nil: any error
		wantWritten bool  // whether the 206 went out before the error
	}{
		{name: "no ranges", ranges: nil, body: &object{size: size}},
		{name: "empty range", ranges: []Range{{0, 0}}, body: &object{size: size}},
		{name: "negative start", ranges: []Range{{-1, 2}}, body: &object{size: size}},
		{name: "past the end", ranges: []Range{{size - 1, 2}}, body: &object{size: size}},
		{name: "start at size", ranges: []Range{{0, 1}, {size, 1}}, body: &object{size: size}},
		{name: "read fails mid-range", ranges: []Range{{0, 80_000}}, body: &object{size: size, failAt: 50_000}, wantErr: errDisk, wantWritten: true},
		{name: "read fails in second part", ranges: []Range{{0, 10}, {60_000, 30_000}}, body: &object{size: size, failAt: 70_000}, wantErr: errDisk, wantWritten: true},
		{name: "body shorter than size", ranges: []Range{{0, 10}, {size - 10, 10}}, body: &object{size: size - 5}, wantErr: io.ErrUnexpectedEOF, wantWritten: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			n, err := Write(rec, tt.ranges, size, "text/plain", tt.body, false)
			if err == nil || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) {
				t.Fatalf("Write(%v) = %d, %v; want error %v", tt.ranges, n, err, tt.wantErr)
			}
			if written := rec.Code == http.StatusPartialContent; written != tt.wantWritten {
				t.Errorf("Write(%v): 206 sent %v, want %v", tt.ranges, written, tt.wantWritten)
			}
			if n != int64(rec.Body.Len()) {
				t.Errorf("Write(%v) returned %d bytes, wrote %d", tt.ranges, n, rec.Body.Len())
			}
		})
	}
}

func TestUnsatisfiable(t *testing.T) {
	rec := httptest.NewRecorder()
	h := rec.Header()
	h.Set("ETag", `"v1"`)
	h.Set("Content-Length", "1234")
	h.Set("Content-Encoding", "gzip")
	h.Set("Content-Type", "image/png")
	Unsatisfiable(rec, 1234)
	res := rec.Result()
	body, _ := io.ReadAll(res.Body)
	tests := []struct{ name, got, want string }{
		{name: "status", got: strconv.Itoa(res.StatusCode), want: "416"},
		{name: "Content-Range", got: res.Header.Get("Content-Range"), want: "bytes */1234"},
		{name: "Content-Encoding", got: res.Header.Get("Content-Encoding"), want: ""},
		{name: "Content-Length", got: res.Header.Get("Content-Length"), want: ""},
		{name: "Content-Type", got: res.Header.Get("Content-Type"), want: "text/plain; charset=utf-8"},
		{name: "ETag", got: res.Header.Get("ETag"), want: `"v1"`},
		{name: "body", got: string(body), want: "range not satisfiable\n"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("Unsatisfiable: %s %q, want %q", tt.name, tt.got, tt.want)
		}
	}
}

func TestWriteContentTypeNewlines(t *testing.T) {
	// A stored Content-Type with a line break must not add a part header.
	rec := httptest.NewRecorder()
	ranges := []Range{{0, 1}, {5, 1}}
	if _, err := Write(rec, ranges, 10, "text/plain\r\nX-Injected: 1", &object{size: 10}, false); err != nil {
		t.Fatalf("Write: %v", err)
	}
	_, params, _ := mime.ParseMediaType(rec.Header().Get("Content-Type"))
	mr := multipart.NewReader(rec.Body, params["boundary"])
	for i := range ranges {
		p, err := mr.NextRawPart()
		if err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
		if got := p.Header.Get("X-Injected"); got != "" {
			t.Errorf("part %d has injected header X-Injected: %q", i, got)
		}
		if got, want := p.Header.Get("Content-Type"), "text/plain  X-Injected: 1"; got != want {
			t.Errorf("part %d Content-Type %q, want %q", i, got, want)
		}
	}
}
