package byterange

import (
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// list builds "bytes=" plus n ranges made by f.
func list(n int, f func(i int) string) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = f(i)
	}
	return "bytes=" + strings.Join(parts, ",")
}

func TestParse(t *testing.T) {
	// 64 one-byte ranges with gaps between them stay as sent.
	var sparse []Range
	for i := range MaxRanges {
		sparse = append(sparse, Range{Start: int64(2 * i), Length: 1})
	}
	tests := []struct {
		name, header string
		size         int64
		want         []Range
		wantErr      error
	}{
		{name: "first byte", header: "bytes=0-0", size: 10, want: []Range{{0, 1}}},
		{name: "closed", header: "bytes=2-5", size: 10, want: []Range{{2, 4}}},
		{name: "last byte", header: "bytes=9-9", size: 10, want: []Range{{9, 1}}},
		{name: "open end", header: "bytes=5-", size: 10, want: []Range{{5, 5}}},
		{name: "suffix", header: "bytes=-3", size: 10, want: []Range{{7, 3}}},
		{name: "suffix zero", header: "bytes=-0", size: 10, wantErr: ErrUnsatisfiable},
		{name: "suffix zero dropped", header: "bytes=-0,0-1", size: 10, want: []Range{{0, 2}}},
		{name: "suffix whole", header: "bytes=-10", size: 10, want: []Range{{0, 10}}},
		{name: "suffix larger than size", header: "bytes=-100", size: 10, want: []Range{{0, 10}}},
		{name: "end clamped", header: "bytes=3-999", size: 10, want: []Range{{3, 7}}},
		{name: "max int64 end clamped", header: "bytes=0-9223372036854775807", size: 10, want: []Range{{0, 10}}},
		{name: "start at size", header: "bytes=10-", size: 10, wantErr: ErrUnsatisfiable},
		{name: "start past size", header: "bytes=10-20", size: 10, wantErr: ErrUnsatisfiable},
		{name: "unsatisfiable dropped", header: "bytes=20-30,1-2", size: 10, want: []Range{{1, 2}}},
		{name: "all unsatisfiable", header: "bytes=20-30,-0,10-", size: 10, wantErr: ErrUnsatisfiable},
		{name: "size zero", header: "bytes=0-", size: 0, wantErr: ErrUnsatisfiable},
		{name: "size zero suffix", header: "bytes=-5", size: 0, wantErr: ErrUnsatisfiable},
		{name: "negative size", header: "bytes=0-", size: -1, wantErr: ErrUnsatisfiable},
		{name: "disjoint keep order", header: "bytes=6-7,0-1", size: 10, want: []Range{{6, 2}, {0, 2}}},
		{name: "overlap", header: "bytes=0-3,2-5", size: 10, want: []Range{{0, 6}}},
		{name: "adjacent", header: "bytes=0-1,2-3", size: 10, want: []Range{{0, 4}}},
		{name: "contained", header: "bytes=0-8,2-3", size: 10, want: []Range{{0, 9}}},
		{name: "overlap sorts all", header: "bytes=8-9,4-5,0-1,1-2", size: 10, want: []Range{{0, 3}, {4, 2}, {8, 2}}},
		{name: "suffix overlaps", header: "bytes=-5,0-6", size: 10, want: []Range{{0, 10}}},
		{name: "same range twice", header: "bytes=1-2,1-2", size: 10, want: []Range{{1, 2}}},
		{name: "many small ranges", header: list(MaxRanges, func(i int) string { return fmt.Sprintf("%d-%d", 2*i, 2*i) }), size: 200, want: sparse},
		{name: "many touching ranges", header: list(MaxRanges, func(i int) string { return fmt.Sprintf("%d-%d", i, i) }), size: 200, want: []Range{{0, MaxRanges}}},
		{name: "65 ranges", header: list(MaxRanges+1, func(i int) string { return fmt.Sprintf("%d-%d", 2*i, 2*i) }), size: 200, wantErr: ErrTooMany},
		{name: "65 counted before dropping", header: list(MaxRanges+1, func(int) string { return "500-" }), size: 200, wantErr: ErrTooMany},
		{name: "empty elements not counted", header: list(MaxRanges, func(int) string { return "0-0,," }), size: 200, want: []Range{{0, 1}}},
		{name: "max int64 start", header: "bytes=9223372036854775807-", size: 10, wantErr: ErrUnsatisfiable},
		{name: "overflow start", header: "bytes=9223372036854775808-", size: 10, wantErr: ErrInvalid},
		{name: "overflow end", header: "bytes=0-99999999999999999999", size: 10, wantErr: ErrInvalid},
		{name: "overflow suffix", header: "bytes=-9223372036854775808", size: 10, wantErr: ErrInvalid},
		{name: "leading zeros", header: "bytes=007-0008", size: 10, want: []Range{{7, 2}}},
		{name: "unit case", header: "BYTES=0-1", size: 10, want: []Range{{0, 2}}},
		{name: "unit mixed case", header: "Bytes=0-1", size: 10, want: []Range{{0, 2}}},
		{name: "whitespace", header: " bytes = 0-1 ,\t4-5\t", size: 10, want: []Range{{0, 2}, {4, 2}}},
		{name: "empty elements", header: "bytes=,0-1,,4-5,", size: 10, want: []Range{{0, 2}, {4, 2}}},
		{name: "space inside range", header: "bytes=0 - 1", size: 10, wantErr: ErrInvalid},
		{name: "unknown unit", header: "items=0-1", size: 10, wantErr: ErrUnknownUnit},
		{name: "unit prefix", header: "bytesx=0-1", size: 10, wantErr: ErrUnknownUnit},
		{name: "empty header", header: "", size: 10, wantErr: ErrUnknownUnit},
		{name: "no equals", header: "bytes", size: 10, wantErr: ErrInvalid},
		{name: "empty list", header: "bytes=", size: 10, wantErr: ErrInvalid},
		{name: "only commas", header: "bytes= , ,", size: 10, wantErr: ErrInvalid},
		{name: "garbage", header: "bytes=abc", size: 10, wantErr: ErrInvalid},
		{name: "last before first", header: "bytes=5-1", size: 10, wantErr: ErrInvalid},
		{name: "dash only", header: "bytes=-", size: 10, wantErr: ErrInvalid},
		{name: "plus sign", header: "bytes=+1-2", size: 10, wantErr: ErrInvalid},
		{name: "negative end", header: "bytes=1--2", size: 10, wantErr: ErrInvalid},
		{name: "three parts", header: "bytes=1-2-3", size: 10, wantErr: ErrInvalid},
		{name: "hex", header: "bytes=0x1-2", size: 10, wantErr: ErrInvalid},
		{name: "invalid after unsatisfiable", header: "bytes=20-,x", size: 10, wantErr: ErrInvalid},
		{name: "invalid after valid", header: "bytes=0-1,5-1", size: 10, wantErr: ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.header, tt.size)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) || !slices.Equal(got, tt.want) {
				t.Errorf("Parse(%q, %d) = %v, %v; want %v, %v", tt.header, tt.size, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestContentRange(t *testing.T) {
	tests := []struct {
		name string
		r    Range
		size int64
		want string
	}{
		{name: "first 500", r: Range{0, 500}, size: 1234, want: "bytes 0-499/1234"},
		{name: "one byte", r: Range{7, 1}, size: 8, want: "bytes 7-7/8"},
		{name: "huge", r: Range{1 << 62, 1 << 62}, size: 1<<63 - 1, want: "bytes 4611686018427387904-9223372036854775807/9223372036854775807"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.r.ContentRange(tt.size); got != tt.want {
				t.Errorf("%v.ContentRange(%d) = %q, want %q", tt.r, tt.size, got, tt.want)
			}
		})
	}
}

func TestIfRange(t *testing.T) {
	lm := time.Date(2024, 3, 9, 12, 30, 45, 0, time.UTC)
	tests := []struct {
		name, ifRange, etag string
		lastModified        time.Time
		want                bool
	}{
		{name: "empty", ifRange: "", etag: `"v1"`, want: true},
		{name: "blank", ifRange: " \t", etag: `"v1"`, want: true},
		{name: "strong match", ifRange: `"v1"`, etag: `"v1"`, want: true},
		{name: "strong match with OWS", ifRange: ` "v1" `, etag: `"v1"`, want: true},
		{name: "strong mismatch", ifRange: `"v2"`, etag: `"v1"`, want: false},
		{name: "weak tag", ifRange: `W/"v1"`, etag: `"v1"`, want: false},
		{name: "weak tag and weak etag", ifRange: `W/"v1"`, etag: `W/"v1"`, want: false},
		{name: "weak etag", ifRange: `"v1"`, etag: `W/"v1"`, want: false},
		{name: "no etag", ifRange: `"v1"`, etag: "", want: false},
		{name: "unterminated tag", ifRange: `"v1`, etag: `"v1`, want: false},
		{name: "space in tag", ifRange: `"v 1"`, etag: `"v 1"`, want: false},
		{name: "date equal", ifRange: lm.Format(http.TimeFormat), lastModified: lm, want: true},
		{name: "date equal RFC 850", ifRange: "Saturday, 09-Mar-24 12:30:45 GMT", lastModified: lm, want: true},
		{name: "date equal asctime", ifRange: "Sat Mar  9 12:30:45 2024", lastModified: lm, want: true},
		{name: "date equal other zone", ifRange: lm.Format(http.TimeFormat), lastModified: lm.In(time.FixedZone("x", 3600)), want: true},
		{name: "date equal sub-second stored", ifRange: lm.Format(http.TimeFormat), lastModified: lm.Add(300 * time.Millisecond), want: true},
		{name: "date later", ifRange: lm.Add(time.Second).Format(http.TimeFormat), lastModified: lm, want: false},
		{name: "date earlier", ifRange: lm.Add(-time.Second).Format(http.TimeFormat), lastModified: lm, want: false},
		{name: "date zero last-modified", ifRange: lm.Format(http.TimeFormat), want: false},
		{name: "date against etag", ifRange: lm.Format(http.TimeFormat), etag: `"v1"`, want: false},
		{name: "garbage", ifRange: "yesterday", etag: `"v1"`, lastModified: lm, want: false},
		{name: "bare token", ifRange: "v1", etag: "v1", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IfRange(tt.ifRange, tt.etag, tt.lastModified); got != tt.want {
				t.Errorf("IfRange(%q, %q, %v) = %v, want %v", tt.ifRange, tt.etag, tt.lastModified, got, tt.want)
			}
		})
	}
}

// FuzzParse checks Parse against a naive model of the same rules: the bytes
// covered are exactly the requested ones within [0,size), in the client's
// order unless two of them touch, and then sorted and merged.
func FuzzParse(f *testing.F) {
	for _, h := range []string{
		"bytes=0-0", "bytes=-0", "bytes=-5", "bytes=5-", "bytes=0-1,2-3", "bytes=6-7,0-1",
		"bytes=8-9,4-5,0-1,1-2", " BYTES = 0-1 ,\t,4-5", "bytes=5-1", "bytes=abc", "items=0-1",
		"bytes=", "bytes=9223372036854775808-", "bytes=-100,50-60,0-0",
		list(MaxRanges+1, func(i int) string { return strconv.Itoa(i) + "-" }),
	} {
		f.Add(h, uint32(10))
		f.Add(h, uint32(0))
		f.Add(h, uint32(1<<32-1))
	}
	f.Fuzz(func(t *testing.T, header string, size32 uint32) {
		size := int64(size32)
		got, err := Parse(header, size)
		if err != nil {
			if got != nil {
				t.Errorf("Parse(%q, %d) = %v with error %v, want nil ranges", header, size, got, err)
			}
			if !slices.ContainsFunc([]error{ErrUnknownUnit, ErrInvalid, ErrUnsatisfiable, ErrTooMany}, func(e error) bool { return errors.Is(err, e) }) {
				t.Errorf("Parse(%q, %d) error %v wraps no sentinel", header, size, err)
			}
			return
		}
		if len(got) < 1 || len(got) > MaxRanges {
			t.Fatalf("Parse(%q, %d) = %d ranges, want 1..%d", header, size, len(got), MaxRanges)
		}
		var total int64
		for _, r := range got {
			if r.Start < 0 || r.Length < 1 || r.end() > size {
				t.Errorf("Parse(%q, %d): range %v outside [0,%d) or empty", header, size, r, size)
			}
			total += r.Length
		}
		if total > size {
			t.Errorf("Parse(%q, %d): ranges add up to %d bytes", header, size, total)
		}
		for i, a := range got {
			for _, b := range got[i+1:] {
				if a.Start <= b.end() && b.Start <= a.end() {
					t.Errorf("Parse(%q, %d) = %v: %v and %v touch", header, size, got, a, b)
				}
			}
		}

		want := model(t, header, size)
		if !coverSame(got, want) {
			t.Errorf("Parse(%q, %d) = %v, does not cover the same bytes as %v", header, size, got, want)
		}
		if modelTouching(want) {
			if !slices.IsSortedFunc(got, func(a, b Range) int { return cmp.Compare(a.Start, b.Start) }) {
				t.Errorf("Parse(%q, %d) = %v, merged but not sorted", header, size, got)
			}
		} else if !slices.Equal(got, want) {
			t.Errorf("Parse(%q, %d) = %v, want client order %v", header, size, got, want)
		}
	})
}

// model re-reads a header Parse accepted, the slow obvious way, and returns
// its satisfiable ranges clipped to size, in the client's order.
func model(t *testing.T, header string, size int64) []Range {
	_, spec, _ := strings.Cut(header, "=")
	var out []Range
	for elem := range strings.SplitSeq(spec, ",") {
		elem = strings.Trim(elem, " \t")
		if elem == "" {
			continue
		}
		a, b, _ := strings.Cut(elem, "-")
		num := func(s string) int64 {
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil || strings.HasPrefix(s, "+") {
				t.Fatalf("Parse(%q, %d) accepted %q", header, size, elem)
			}
			return n
		}
		var r Range
		switch {
		case a == "":
			n := min(num(b), size)
			r = Range{Start: size - n, Length: n}
		case b == "":
			r = Range{Start: num(a), Length: size - num(a)}
		default:
			r = Range{Start: num(a), Length: min(num(b), size-1) - num(a) + 1}
		}
		if r.Length > 0 && r.Start < size {
			out = append(out, r)
		}
	}
	return out
}

// modelTouching reports whether two ranges overlap or touch, put as "one's
// end lies within the other" so it does not mirror Parse's test.
func modelTouching(rs []Range) bool {
	for i := range rs {
		for j := range rs {
			if i != j && rs[i].Start <= rs[j].end() && rs[j].end() <= rs[i].end() {
				return true
			}
		}
	}
	return false
}

// coverSame reports whether a and b cover the same bytes, checking each
// interval between the ranges' edges rather than every byte.
func coverSame(a, b []Range) bool {
	var edges []int64
	for _, r := range slices.Concat(a, b) {
		edges = append(edges, r.Start, r.end())
	}
	slices.Sort(edges)
	covers := func(rs []Range, x int64) bool {
		return slices.ContainsFunc(rs, func(r Range) bool { return r.Start <= x && x < r.end() })
	}
	for _, x := range slices.Compact(edges) {
		if covers(a, x) != covers(b, x) {
			return false
		}
	}
	return true
}

func BenchmarkParse(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse("bytes=0-1023", 1<<20); err != nil {
			b.Fatal(err)
		}
	}
}
