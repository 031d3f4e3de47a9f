package edge

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math/rand/v2"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/selfcdn/cdn/internal/config"

	"github.com/selfcdn/cdn/internal/testwait"
)

// withDisk turns the disk tier on, in dir, with memory holding bodies up to
// maxObject.
func withDisk(dir string, maxObject int64) func(*Config) {
	return restartOf(nil, dir, maxObject)
}

// restartOf is withDisk for an edge that takes over from prev: same
// directory, same address (the cache key holds the Host).
func restartOf(prev *testEdge, dir string, maxObject int64) func(*Config) {
	return func(c *Config) {
		if prev != nil {
			c.Listen = strings.TrimPrefix(prev.URL, "http://")
		}
		c.Cache.Dir = dir
		c.Cache.Disk = 256 << 20
		c.Cache.MaxObject = config.Size(maxObject)
	}
}

// payload is a deterministic body of n bytes that no two offsets repeat in
// a short window, so a shifted or mixed-up range cannot pass as right.
func payload(n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(uint64(n), 7))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// objectOrigin serves fixed bodies by path, with ranges and validators.
func objectOrigin(t *testing.T, objects map[string][]byte) *countingOrigin {
	return newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		body, ok := objects[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("ETag", fmt.Sprintf(`"%x"`, len(body)))
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
	})
}

// TestDiskTierRestartKeepsHits: an edge restarted on the same directory
// answers from its disk cache at once, over both protocols, for bodies held
// in memory before and for bodies too large for memory.
func TestDiskTierRestartKeepsHits(t *testing.T) {
	objects := map[string][]byte{"/small": payload(5000), "/large": payload(3 << 20)}
	o := objectOrigin(t, objects)
	dir := t.TempDir()
	first := startEdge(t, o.URL, nil, withDisk(dir, 1<<20))
	for path, body := range objects {
		res, got := get(t, "GET", first.URL+path, nil)
		if got != string(body) || cacheResult(res.Header.Get("Cache-Status")) != "miss" {
			t.Fatalf("fill %s: %q, %d bytes; want a stored miss with the body", path, res.Header.Get("Cache-Status"), len(got))
		}
	}
	first.stop()

	e := startEdge(t, o.URL, nil, restartOf(first, dir, 1<<20))
	for _, c := range []*http.Client{http.DefaultClient, h2cClient(t)} {
		for path, body := range objects {
			res, got := getWith(t, c, "GET", e.URL+path, nil)
			if got != string(body) || cacheResult(res.Header.Get("Cache-Status")) != "hit" {
				t.Errorf("after restart, %s over HTTP/%d: %q, %d bytes; want a hit with the %d stored bytes",
					path, res.ProtoMajor, res.Header.Get("Cache-Status"), len(got), len(body))
			}
			if res.Header.Get("Content-Length") != fmt.Sprint(len(body)) {
				t.Errorf("%s: Content-Length %q, want %d", path, res.Header.Get("Content-Length"), len(body))
			}
		}
	}
	if n := o.hits.Load(); n != 2 {
		t.Errorf("origin requests = %d, want 2 (one per object, before the restart)", n)
	}
	if n := metricValue(t, e, "cdn_edge_cache_tier_hits_total"); n < 2 {
		t.Errorf("tier hits after restart = %v, want the disk hits counted", n)
	}
}

// TestDiskTierDamageNeverServed damages cached files behind the edge's back:
// the edge never sends wrong bytes, drops the object and fetches it again.
func TestDiskTierDamageNeverServed(t *testing.T) {
	tests := []struct {
		name   string
		size   int
		damage func(t *testing.T, path string)
	}{
		{name: "small object, bit flipped", size: 10_000, damage: flipByte(-5000)},
		{name: "small object, truncated", size: 10_000, damage: truncateTo(4000)},
		{name: "large object, bit flipped in the first block", size: 2 << 20, damage: flipByte(100_000)},
		{name: "large object, bit flipped near the end", size: 2 << 20, damage: flipByte(-20_000)},
		{name: "large object, truncated", size: 2 << 20, damage: truncateTo(1 << 20)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := payload(tt.size)
			o := objectOrigin(t, map[string][]byte{"/o": body})
			dir := t.TempDir()
			first := startEdge(t, o.URL, nil, withDisk(dir, 64<<10))
			get(t, "GET", first.URL+"/o", nil)
			first.stop()
			files := objectFiles(t, dir)
			if len(files) != 1 {
				t.Fatalf("object files on disk: %v, want 1", files)
			}
			tt.damage(t, files[0])

			e := startEdge(t, o.URL, nil, restartOf(first, dir, 64<<10))
			res, err := http.Get(e.URL + "/o")
			if err == nil {
				got, rerr := io.ReadAll(res.Body)
				res.Body.Close()
				if rerr == nil && !bytes.Equal(got, body) {
					t.Fatalf("damaged object served as whole: %d bytes, status %d", len(got), res.StatusCode)
				}
			}
			// Whether the damage was caught before the status line or cut the
			// transfer, the next answer is the right body, from the origin.
			res2, got := get(t, "GET", e.URL+"/o", nil)
			if got != string(body) {
				t.Errorf("after the damage: %d bytes (%q), want the origin's %d", len(got), res2.Header.Get("Cache-Status"), len(body))
			}
			if n := o.hits.Load(); n != 2 {
				t.Errorf("origin requests = %d, want 2 (the fill, then the refetch)", n)
			}
			if n := metricValue(t, e, "cdn_edge_cache_corrupt_total"); n != 1 {
				t.Errorf("corrupt objects counted = %v, want 1", n)
			}
		})
	}
}

func objectFiles(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	filepath.WalkDir(filepath.Join(dir, "disk", "objects"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	return files
}

func flipByte(off int64) func(*testing.T, string) {
	return func(t *testing.T, path string) {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if off < 0 {
			off += int64(len(b))
		}
		b[off] ^= 0x20
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func truncateTo(n int64) func(*testing.T, string) {
	return func(t *testing.T, path string) {
		t.Helper()
		if err := os.Truncate(path, n); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRangesFromCache checks range answers byte for byte, from memory and
// from disk, over both protocols.
func TestRangesFromCache(t *testing.T) {
	objects := map[string][]byte{"/mem": payload(300_000), "/disk": payload(1_500_000)}
	o := objectOrigin(t, objects)
	e := startEdge(t, o.URL, nil, withDisk(t.TempDir(), 400_000))
	for path := range objects {
		get(t, "GET", e.URL+path, nil)
	}
	tests := []struct {
		name, rng string
		status    int
		want      [][2]int64 // [start, end] inclusive, per part
		whole     bool
	}{
		{name: "first bytes", rng: "bytes=0-99", status: 206, want: [][2]int64{{0, 99}}},
		{name: "suffix", rng: "bytes=-500", status: 206, want: [][2]int64{{-500, -1}}},
		{name: "open end", rng: "bytes=99000-", status: 206, want: [][2]int64{{99000, -1}}},
		{name: "across disk blocks", rng: "bytes=262000-290000", status: 206, want: [][2]int64{{262000, 290000}}},
		{name: "two parts", rng: "bytes=10-19, 50000-50099", status: 206, want: [][2]int64{{10, 19}, {50000, 50099}}},
		{name: "overlapping parts coalesced", rng: "bytes=0-99,50-149", status: 206, want: [][2]int64{{0, 149}}},
		{name: "past the end", rng: "bytes=99999999-", status: 416},
		{name: "malformed", rng: "bytes=abc", status: 416},
		{name: "unknown unit ignored", rng: "items=0-5", status: 200, whole: true},
		{name: "too many ranges ignored", rng: "bytes=" + strings.Repeat("0-0,", 70) + "0-0", status: 200, whole: true},
	}
	for _, c := range []*http.Client{http.DefaultClient, h2cClient(t)} {
		for path, body := range objects {
			for _, tt := range tests {
				t.Run(fmt.Sprintf("%s%s/%s", protoName(c), path, tt.name), func(t *testing.T) {
					res, got := getWith(t, c, "GET", e.URL+path, http.Header{"Range": {tt.rng}})
					if res.StatusCode != tt.status {
						t.Fatalf("status %d, want %d", res.StatusCode, tt.status)
					}
					switch {
					case tt.status == 416:
						if cr := res.Header.Get("Content-Range"); cr != fmt.Sprintf("bytes */%d", len(body)) {
							t.Errorf("Content-Range %q, want bytes */%d", cr, len(body))
						}
					case tt.whole:
						if got != string(body) {
							t.Errorf("whole body: %d bytes, want %d", len(got), len(body))
						}
					default:
						checkParts(t, res, got, body, tt.want)
					}
				})
			}
		}
	}
}

func protoName(c *http.Client) string {
	if c == http.DefaultClient {
		return "h1"
	}
	return "h2c"
}

// checkParts checks a 206 body (single or multipart) against the expected
// [start, end] parts of body; negative bounds count from the end.
func checkParts(t *testing.T, res *http.Response, got string, body []byte, want [][2]int64) {
	t.Helper()
	abs := func(v int64) int64 {
		if v < 0 {
			return int64(len(body)) + v
		}
		return v
	}
	if len(want) == 1 {
		s, en := abs(want[0][0]), abs(want[0][1])
		if got != string(body[s:en+1]) {
			t.Errorf("range body: %d bytes, want bytes %d-%d", len(got), s, en)
		}
		if cr := res.Header.Get("Content-Range"); cr != fmt.Sprintf("bytes %d-%d/%d", s, en, len(body)) {
			t.Errorf("Content-Range %q, want bytes %d-%d/%d", cr, s, en, len(body))
		}
		return
	}
	mt, params, err := mime.ParseMediaType(res.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/byteranges" {
		t.Fatalf("Content-Type %q, want multipart/byteranges", res.Header.Get("Content-Type"))
	}
	mr := multipart.NewReader(strings.NewReader(got), params["boundary"])
	for i, w := range want {
		p, err := mr.NextPart()
		if err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
		b, _ := io.ReadAll(p)
		s, en := abs(w[0]), abs(w[1])
		if string(b) != string(body[s:en+1]) || p.Header.Get("Content-Range") != fmt.Sprintf("bytes %d-%d/%d", s, en, len(body)) {
			t.Errorf("part %d: %d bytes, Content-Range %q; want bytes %d-%d", i, len(b), p.Header.Get("Content-Range"), s, en)
		}
	}
	if _, err := mr.NextPart(); err != io.EOF {
		t.Errorf("more parts than %d (err %v)", len(want), err)
	}
}

// TestRangeOnMiss: a range request that misses is answered without waiting
// for the whole object, and the object is still fetched once and stored.
func TestRangeOnMiss(t *testing.T) {
	const size = 24 << 20
	body := payload(size)
	release := make(chan struct{})
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("ETag", `"big"`)
		if r.Header.Get("Range") != "" {
			http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
			return
		}
		// The whole object: the first MiB at once, the rest only after the
		// test saw its range answered, so a range that waited for the whole
		// object would hang.
		w.Header().Set("Content-Length", fmt.Sprint(size))
		w.Write(body[:1<<20])
		w.(http.Flusher).Flush()
		<-release
		w.Write(body[1<<20:])
	})
	e := startEdge(t, o.URL, nil, withDisk(t.TempDir(), 1<<20))

	res, got := get(t, "GET", e.URL+"/big", http.Header{"Range": {"bytes=100-199"}})
	if res.StatusCode != 206 || got != string(body[100:200]) {
		t.Fatalf("near range on a miss: %d, %d bytes; want 206 with bytes 100-199", res.StatusCode, len(got))
	}
	res, got = get(t, "GET", e.URL+"/big", http.Header{"Range": {fmt.Sprintf("bytes=%d-", size-1000)}})
	if res.StatusCode != 206 || got != string(body[size-1000:]) {
		t.Fatalf("range at the end on a miss: %d, %d bytes; want 206 with the last 1000 bytes", res.StatusCode, len(got))
	}
	if !strings.Contains(res.Header.Get("Cache-Status"), "range-from-origin") {
		t.Errorf("far range Cache-Status %q, want it answered from the origin", res.Header.Get("Cache-Status"))
	}
	close(release)
	testwait.Until(t, "the object stored", func() bool {
		res, _ := http.Get(e.URL + "/big")
		if res == nil {
			return false
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return cacheResult(res.Header.Get("Cache-Status")) == "hit"
	})
	res, got = get(t, "GET", e.URL+"/big", http.Header{"Range": {fmt.Sprintf("bytes=%d-%d", size-5, size-1)}})
	if res.StatusCode != 206 || got != string(body[size-5:]) || cacheResult(res.Header.Get("Cache-Status")) != "hit" {
		t.Errorf("range after the fill: %d %q; want a 206 hit", res.StatusCode, res.Header.Get("Cache-Status"))
	}
	if n := o.hits.Load(); n != 2 {
		t.Errorf("origin requests = %d, want 2 (the whole object once, the far range once)", n)
	}
}

// TestDiskFull runs the disk tier on a filesystem far smaller than its
// budget: once the filesystem is full the edge keeps answering every
// request right, from memory and the origin, and counts the failed writes.
func TestDiskFull(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("mounting a 1 MiB tmpfs needs root: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	objects := map[string][]byte{}
	for i := range 12 {
		objects[fmt.Sprintf("/o%d", i)] = payload(200_000 + i)
	}
	o := objectOrigin(t, objects)
	e := startEdge(t, o.URL, nil, withDisk(dir, 1<<20))
	for pass := range 2 {
		for path, body := range objects {
			res, got := get(t, "GET", e.URL+path, nil)
			if got != string(body) {
				t.Fatalf("pass %d, %s: %d bytes (%d), want the origin's %d", pass, path, len(got), res.StatusCode, len(body))
			}
		}
	}
	if n := metricValue(t, e, "cdn_edge_cache_write_errors_total"); n == 0 {
		t.Error("no failed disk writes counted on a full filesystem")
	}
	if n := o.hits.Load(); n != int64(len(objects)) {
		t.Errorf("origin requests = %d, want %d (memory still caches)", n, len(objects))
	}
}

// TestDiskTierDamageCutsTheClient: a bad block found while a large object
// streams from disk (plain, conditional or range request, either protocol)
// ends in a transfer error, never in a short body that looks whole.
func TestDiskTierDamageCutsTheClient(t *testing.T) {
	body := payload(2 << 20)
	for _, c := range []*http.Client{http.DefaultClient, h2cClient(t)} {
		for _, hdr := range []http.Header{nil, {"If-None-Match": {`"other"`}}, {"Range": {"bytes=0-"}}} {
			for _, sendFile := range []bool{false, true} {
				if sendFile && (c != http.DefaultClient || hdr != nil) {
					continue // only plain HTTP/1.1 hits go out with sendfile
				}
				t.Run(fmt.Sprintf("%s %v sendfile=%v", protoName(c), hdr, sendFile), func(t *testing.T) {
					o := objectOrigin(t, map[string][]byte{"/o": body})
					dir := t.TempDir()
					first := startEdge(t, o.URL, nil, withDisk(dir, 64<<10))
					get(t, "GET", first.URL+"/o", nil)
					first.stop()
					flipByte(-20_000)(t, objectFiles(t, dir)[0])
					e := startEdge(t, o.URL, nil, withSendFile(restartOf(first, dir, 64<<10), sendFile))
					req, _ := http.NewRequest("GET", e.URL+"/o", nil)
					maps.Copy(req.Header, hdr)
					res, err := c.Do(req)
					if err != nil {
						t.Fatalf("request: %v", err)
					}
					got, err := io.ReadAll(res.Body)
					res.Body.Close()
					if err == nil {
						t.Errorf("damaged body read without error: %d bytes, status %d, equal to the origin's: %v",
							len(got), res.StatusCode, bytes.Equal(got, body))
					}
					if !bytes.Equal(got, body[:len(got)]) {
						t.Error("wrong bytes before the cut")
					}
				})
			}
		}
	}
}

// smallWindowClient is an HTTP/1.1 client whose connections are new and
// take at most 64 KiB in flight (a fixed receive buffer).
func smallWindowClient(t *testing.T) *http.Client {
	tr := &http.Transport{DialContext: smallWindowDial(nil)}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

// smallWindowDial dials as dial does (to addr when it is nil) and fixes
// the connection's receive buffer at 64 KiB, which also stops the
// kernel growing its window.
func smallWindowDial(dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetReadBuffer(64 << 10)
		}
		return c, err
	}
}

// withSendFile is mutate plus the edge's sendfile option.
func withSendFile(mutate func(*Config), on bool) func(*Config) {
	return func(c *Config) {
		mutate(c)
		c.SendFile = on
	}
}

// openFiles counts this process's open files under dir.
func openFiles(t *testing.T, dir string) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	n := 0
	for _, fd := range fds {
		if target, err := os.Readlink("/proc/self/fd/" + fd.Name()); err == nil && strings.HasPrefix(target, dir) {
			n++
		}
	}
	return n
}

// TestDiskTierNoFileLeak runs every path that opens a disk body (both
// protocols, plain, range, conditional, HEAD, stale revalidation, a body
// that turns uncacheable) and checks that every file is closed again.
func TestDiskTierNoFileLeak(t *testing.T) {
	body := payload(600_000)
	var version atomic.Int64
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("ETag", `"same"`)
		switch {
		case r.URL.Path == "/turns-private" && version.Load() > 0:
			w.Header().Set("Cache-Control", "private")
			w.Header().Set("ETag", `"new"`)
		case r.URL.Path == "/stale":
			w.Header().Set("Cache-Control", "max-age=1, stale-while-revalidate=60")
		default:
			w.Header().Set("Cache-Control", "max-age=600")
		}
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
	})
	dir := t.TempDir()
	first := startEdge(t, o.URL, nil, withDisk(dir, 64<<10))
	paths := []string{"/a", "/stale", "/turns-private"}
	for _, p := range paths {
		get(t, "GET", first.URL+p, nil)
	}
	first.stop()
	clk := newClock()
	e := startEdge(t, o.URL, clk, restartOf(first, dir, 64<<10))
	h2c := h2cClient(t)
	// os.File closes itself when collected; a leak must not hide behind GC.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	before := openFiles(t, dir)
	version.Store(1)
	clk.Advance(5 * time.Second) // /stale is now stale: served while revalidating
	for _, c := range []*http.Client{http.DefaultClient, h2c} {
		for _, p := range paths {
			for _, hdr := range []http.Header{nil, {"Range": {"bytes=1000-300000"}}, {"Range": {"bytes=0-9,500000-500009"}},
				{"If-None-Match": {`"same"`}}, {"If-None-Match": {`"other"`}}, {"Cache-Control": {"no-cache"}}} {
				getWith(t, c, "GET", e.URL+p, hdr)
			}
			getWith(t, c, "HEAD", e.URL+p, nil)
		}
	}
	http.DefaultClient.CloseIdleConnections()
	h2c.CloseIdleConnections()
	// The disk tier keeps the files of recent large hits open on purpose
	// (cdn_edge_disk_open_files); anything beyond those is a leak.
	testwait.Until(t, "open files back to where they were", func() bool {
		return openFiles(t, dir) <= before+int(metricValue(t, e, "cdn_edge_disk_open_files"))
	})
}

// TestVaryAfterInvalidationAndRestart: variants a POST orphaned stay
// orphaned after a restart (Vary generations do not restart at zero).
func TestVaryAfterInvalidationAndRestart(t *testing.T) {
	var version atomic.Int64
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			version.Add(1)
			return
		}
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("Vary", "Accept-Language")
		fmt.Fprintf(w, "%s v%d", r.Header.Get("Accept-Language"), version.Load())
	})
	dir := t.TempDir()
	fr := http.Header{"Accept-Language": {"fr"}}
	first := startEdge(t, o.URL, nil, withDisk(dir, 1<<20))
	get(t, "GET", first.URL+"/page", fr)
	get(t, "POST", first.URL+"/page", nil)
	get(t, "GET", first.URL+"/page", http.Header{"Accept-Language": {"de"}}) // a new Vary index
	first.stop()
	e := startEdge(t, o.URL, nil, restartOf(first, dir, 1<<20))
	res, body := get(t, "GET", e.URL+"/page", fr)
	if body != "fr v1" {
		t.Errorf("after POST and restart: %q (%q), want the new \"fr v1\"", body, res.Header.Get("Cache-Status"))
	}
}

// TestDiskTruncatedUnderRead truncates a kept (mapped) object file while
// a slow client is being sent it, over each way a disk body leaves the
// edge: the client gets a short, cut-off body, never a wrong whole one,
// and the edge lives on (touching the vanished pages would raise SIGBUS)
// and serves the object whole again from the origin.
func TestDiskTruncatedUnderRead(t *testing.T) {
	body := payload(8 << 20)
	tests := []struct {
		name     string
		header   http.Header
		client   func(t *testing.T) *http.Client
		sendFile bool
	}{
		{name: "HTTP/1.1 fast path", client: smallWindowClient},
		{name: "HTTP/1.1 sendfile", client: smallWindowClient, sendFile: true},
		{name: "HTTP/1.1 full path", header: http.Header{"Cache-Control": {"max-stale=60"}}, client: smallWindowClient},
		{name: "h2c", client: func(t *testing.T) *http.Client {
			c := smallWindowClient(t)
			c.Transport.(*http.Transport).Protocols = new(http.Protocols)
			c.Transport.(*http.Transport).Protocols.SetUnencryptedHTTP2(true)
			return c
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := objectOrigin(t, map[string][]byte{"/o": body})
			dir := t.TempDir()
			e := startEdge(t, o.URL, nil, withSendFile(withDisk(dir, 64<<10), tt.sendFile))
			truncateUnderRead(t, http.DefaultClient, tt.client(t), e.URL+"/o", tt.header, dir, body)
			if sent := metricValue(t, e, "cdn_edge_sendfile_bytes_total"); tt.sendFile != (sent > 0) {
				t.Errorf("sendfile bytes = %v with sendfile %v", sent, tt.sendFile)
			}
		})
	}
}

// TestDiskTruncatedUnderReadHTTPS is TestDiskTruncatedUnderRead over TLS:
// HTTP/1.1, HTTP/2 and HTTP/3 (which copies the body out of the mapping
// before quic-go sees it).
func TestDiskTruncatedUnderReadHTTPS(t *testing.T) {
	body := payload(8 << 20)
	for _, proto := range []string{"h1", "h2", "h3"} {
		t.Run(proto, func(t *testing.T) {
			o := objectOrigin(t, map[string][]byte{"/o": body})
			var dir string
			e := startTLSEdge(t, o.URL, func(c *Config) {
				dir = c.Cache.Dir
				c.Cache.Disk = 256 << 20
				c.Cache.MaxObject = 64 << 10
			})
			truncateUnderRead(t, e.client(t, proto), e.smallWindowClient(t, proto), e.url("www.example.test", "/o"), nil, dir, body)
		})
	}
}

// truncateUnderRead fills url (body, from the origin) into the disk tier
// under dir, reads it from disk so the file is kept open and mapped, then
// truncates the file while a read through reader is under way: that read
// must end short (never passed off as whole) with the right bytes up to
// the cut, and the next read must be the whole body again. reader must
// take little in flight (a fresh connection with a small receive window):
// a connection whose window grew on earlier transfers would let the edge
// check and send the whole body before the truncation, which is right.
func truncateUnderRead(t *testing.T, c, reader *http.Client, url string, header http.Header, dir string, body []byte) {
	t.Helper()
	getWith(t, c, "GET", url, nil)
	testwait.Until(t, "the object on disk", func() bool { return len(objectFiles(t, dir)) == 1 })
	// A request right after the fill may still join it and be served from
	// the fill's own file, which no truncation reaches; wait for a hit,
	// which also leaves the object file kept open and mapped.
	testwait.Until(t, "a hit from disk", func() bool {
		res, _ := getWith(t, c, "GET", url, nil)
		return cacheResult(res.Header.Get("Cache-Status")) == "hit"
	})
	req, _ := http.NewRequestWithContext(t.Context(), "GET", url, nil)
	maps.Copy(req.Header, header)
	res, err := reader.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if cs := res.Header.Get("Cache-Status"); cacheResult(cs) != "hit" {
		t.Fatalf("the read under test is %q, want it served from disk", cs)
	}
	first := make([]byte, 64<<10)
	if _, err := io.ReadFull(res.Body, first); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(objectFiles(t, dir)[0], 1<<20); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(res.Body)
	res.Body.Close()
	got := append(first, rest...)
	if err == nil && len(got) == len(body) {
		t.Fatalf("whole body served after the file was truncated under it (equal %v)", bytes.Equal(got, body))
	}
	if !bytes.Equal(got, body[:len(got)]) {
		t.Fatal("wrong bytes before the cut")
	}
	// On the same client: on HTTP/2 and HTTP/3 that is the same connection,
	// whose other streams must go on with whole frames.
	if _, again := getWith(t, reader, "GET", url, nil); again != string(body) {
		t.Errorf("after the truncation: %d bytes, want the whole %d", len(again), len(body))
	}
}

// TestSendFileDiskHits: with sendfile on, disk hits over plain HTTP/1.1
// are byte-exact and framed right, one after another on one kept-alive
// connection, at sizes around fasthttp's write buffer and the block size;
// HEAD and ranges, which take other paths, stay right beside them.
func TestSendFileDiskHits(t *testing.T) {
	sizes := []int{70_000, 256 << 10, 256<<10 + 1, 3<<20 + 17}
	objects := map[string][]byte{}
	for _, n := range sizes {
		objects[fmt.Sprintf("/o%d", n)] = payload(n)
	}
	o := objectOrigin(t, objects)
	dir := t.TempDir()
	e := startEdge(t, o.URL, nil, withSendFile(withDisk(dir, 64<<10), true))
	for p := range objects {
		get(t, "GET", e.URL+p, nil)
	}
	testwait.Until(t, "the objects on disk", func() bool { return len(objectFiles(t, dir)) == len(objects) })

	tr := &http.Transport{MaxConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	conns := 0
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
		if !i.Reused {
			conns++
		}
	}}
	for range 3 {
		for _, n := range sizes {
			p := fmt.Sprintf("/o%d", n)
			body := objects[p]
			req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(t.Context(), trace), "GET", e.URL+p, nil)
			res, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(res.Body)
			res.Body.Close()
			if err != nil || !bytes.Equal(got, body) {
				t.Fatalf("%s: %d bytes, err %v, want the %d of the body", p, len(got), err, len(body))
			}
			if cs := res.Header.Get("Cache-Status"); !strings.HasSuffix(cs, "; hit") {
				t.Errorf("%s: Cache-Status %q, want a hit", p, cs)
			}
		}
	}
	if conns != 1 {
		t.Errorf("%d connections for the hits, want 1 (kept alive after every sendfile body)", conns)
	}
	if n := metricValue(t, e, "cdn_edge_cache_tier_hits_total"); n < float64(3*len(sizes)) {
		t.Errorf("tier hits = %v, want at least %d", n, 3*len(sizes))
	}
	// All but what fasthttp's 4 KiB write buffer took with the header.
	var total int
	for _, n := range sizes {
		total += n
	}
	if n := metricValue(t, e, "cdn_edge_sendfile_bytes_total"); n < float64(3*(total-len(sizes)*4096)) {
		t.Errorf("sendfile bytes = %v, want at least %d", n, 3*(total-len(sizes)*4096))
	}
	big := objects[fmt.Sprintf("/o%d", sizes[len(sizes)-1])]
	res, got := get(t, "HEAD", e.URL+fmt.Sprintf("/o%d", len(big)), nil)
	if got != "" || res.ContentLength != int64(len(big)) {
		t.Errorf("HEAD: %d body bytes, Content-Length %d", len(got), res.ContentLength)
	}
	res, got = get(t, "GET", e.URL+fmt.Sprintf("/o%d", len(big)), http.Header{"Range": {"bytes=1000000-1000099"}})
	if res.StatusCode != http.StatusPartialContent || got != string(big[1000000:1000100]) {
		t.Errorf("range: status %d, %d bytes", res.StatusCode, len(got))
	}
}
