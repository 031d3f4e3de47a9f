package accesslog

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/selfcdn/cdn/internal/syncbuf"
)

func record(path string) *Record {
	return &Record{Time: time.Date(2026, 12, 6, 9, 30, 0, 123456789, time.UTC), Site: "www", Method: "GET", Host: "www.example.com",
		Path: path, Proto: "HTTP/1.1", Cache: "hit", Remote: "192.0.2.1:5555", Status: 200, Bytes: 1024, Dur: 1500 * time.Microsecond}
}

// TestSameAsSlog: a line reads as the slog JSON handler writes the same
// record, so whoever reads the edge's logs sees no change.
func TestSameAsSlog(t *testing.T) {
	for _, path := range []string{"/", "/a b/ü/\u2028", `/"quoted"\back`, "/\x00\x1f\n\t", "/bad\xffutf8"} {
		r := record(path)
		var want bytes.Buffer
		slog.New(slog.NewJSONHandler(&want, nil)).LogAttrs(context.Background(), slog.LevelInfo, "request",
			slog.String("site", r.Site), slog.String("method", r.Method), slog.String("host", r.Host),
			slog.String("path", r.Path), slog.String("proto", r.Proto), slog.Int("status", r.Status),
			slog.String("cache", r.Cache), slog.Int64("bytes", r.Bytes),
			slog.String("remote", r.Remote), slog.Duration("dur", r.Dur))
		// slog stamps its own time: compare the rest.
		_, wantRest, _ := strings.Cut(want.String(), `","level"`)
		_, gotRest, _ := strings.Cut(string(appendRecord(nil, r)), `","level"`)
		if gotRest != wantRest {
			t.Errorf("path %q:\n got %s\nwant %s", path, gotRest, wantRest)
		}
	}
	if got := string(appendRecord(nil, record("/"))); !strings.HasPrefix(got, `{"time":"2026-12-06T09:30:00.123Z",`) {
		t.Errorf("time: %s", got)
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "plain", "\"\\", "\x00\x7f\xff", "\u2028\u2029", "é\xc3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var got, want string
		if err := json.Unmarshal(appendString(nil, s), &got); err != nil {
			t.Fatalf("%q written as invalid JSON: %v", s, err)
		}
		std, _ := json.Marshal(s)
		json.Unmarshal(std, &want)
		if got != want {
			t.Fatalf("%q read back as %q, encoding/json gives %q", s, got, want)
		}
	})
}

// lineCount counts the lines written to b so far.
func lineCount(b *syncbuf.Buffer) int { return strings.Count(b.String(), "\n") }

func TestEveryLineWritten(t *testing.T) {
	var out syncbuf.Buffer
	l := New(&out, Config{BufferBytes: 4 << 10, FlushInterval: time.Hour}, nil)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				l.Write(*record("/" + strings.Repeat("x", g) + "/" + string(rune('a'+i%26))))
			}
		})
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(strings.NewReader(out.String()))
	n := 0
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %d: %v: %s", n, err, sc.Bytes())
		}
		n++
	}
	if n != 8000 {
		t.Errorf("%d lines written, want 8000", n)
	}
	l.Write(*record("/late")) // after Close: dropped, counted
	if got := testutil.ToFloat64(l.dropped); got != 1 {
		t.Errorf("dropped %v after close, want 1", got)
	}
}

func TestFlushInterval(t *testing.T) {
	var out syncbuf.Buffer
	l := New(&out, Config{FlushInterval: 20 * time.Millisecond}, nil)
	defer l.Close()
	l.Write(*record("/one"))
	deadline := time.Now().Add(2 * time.Second)
	for lineCount(&out) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("a lone line was not written within the flush interval")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// blockedWriter stands for a pipe nobody reads.
type blockedWriter struct{ release chan struct{} }

func (w blockedWriter) Write(p []byte) (int, error) { <-w.release; return len(p), nil }

func TestDropsCounted(t *testing.T) {
	w := blockedWriter{make(chan struct{})}
	reg := prometheus.NewRegistry()
	l := New(w, Config{BufferBytes: 1 << 10, MaxPending: 16 << 10, FlushInterval: time.Millisecond}, reg)
	done := make(chan struct{})
	go func() {
		for range 2000 {
			l.Write(*record("/x"))
		}
		close(done)
	}()
	select {
	case <-done: // the request path never waited for the writer
	case <-time.After(5 * time.Second):
		t.Fatal("Write blocked on a stuck writer")
	}
	close(w.release)
	l.Close()
	written, dropped := testutil.ToFloat64(l.written), testutil.ToFloat64(l.dropped)
	if dropped == 0 || written+dropped != 2000 {
		t.Errorf("written %v + dropped %v, want 2000 with some dropped", written, dropped)
	}
}

func BenchmarkWrite(b *testing.B) {
	l := New(discard{}, Config{}, nil)
	defer l.Close()
	r := record("/static/app.js")
	b.ReportAllocs()
	for b.Loop() {
		l.Write(*r)
	}
}

// BenchmarkSlog is the line as the edge logged it before: through slog's
// JSON handler, one write per line.
func BenchmarkSlog(b *testing.B) {
	log := slog.New(slog.NewJSONHandler(discard{}, nil))
	r := record("/static/app.js")
	b.ReportAllocs()
	for b.Loop() {
		log.LogAttrs(context.Background(), slog.LevelInfo, "request",
			slog.String("site", r.Site), slog.String("method", r.Method), slog.String("host", r.Host),
			slog.String("path", r.Path), slog.String("proto", r.Proto), slog.Int("status", r.Status),
			slog.String("cache", r.Cache), slog.Int64("bytes", r.Bytes),
			slog.String("remote", r.Remote), slog.Duration("dur", r.Dur))
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func TestRemoteAddr(t *testing.T) {
	for _, tt := range []struct {
		addr netip.AddrPort
		want string
	}{
		{netip.MustParseAddrPort("192.0.2.1:5555"), `"remote":"192.0.2.1:5555"`},
		{netip.MustParseAddrPort("[2001:db8::1]:443"), `"remote":"[2001:db8::1]:443"`},
	} {
		r := record("/")
		r.Remote, r.RemoteAddr = "ignored", tt.addr
		if got := string(appendRecord(nil, r)); !strings.Contains(got, tt.want) {
			t.Errorf("%s: %s", tt.addr, got)
		}
	}
}
