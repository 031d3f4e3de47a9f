package purgesync

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/selfcdn/cdn/purge"
)

// The edge's purge log is a file of JSON lines, one per applied purge,
// written to the file (so in the kernel, which a killed process cannot
// lose) before the edge reports the version applied, and fsynced within
// 100 ms, in the background: the fsync left the report's path (issue 25).
// What only a crash of the machine can lose is covered by the boot
// records (see Open). A torn last line (a crash mid-write) is dropped on
// open; the purge it held is applied again from the stream, since the
// version read back is the one before it. The file is rewritten, by
// rename, with only the live records when it opens and when dead records
// pile up.

// FileName is the log's name in the edge's cache directory.
const FileName = "purges.log"

// record is one line of the log.
type record struct {
	// Version is the stream version this record brings the edge to; 0
	// for a floor written before the edge saw the stream.
	Version uint64 `json:"v"`
	// Clock is the purge clock the table marked the rules with.
	Clock uint64 `json:"c"`
	// Stream identifies the stream the versions belong to (its creation
	// time), set when the edge first sees it and when it changes.
	Stream string `json:"stream,omitempty"`
	// Floor purged every site: purges may have been missed that cannot
	// be named.
	Floor bool `json:"floor,omitempty"`
	// Boot is the machine's boot ID, written when the log opens: a log
	// whose last boot is not this one, and which was not closed cleanly,
	// may have lost what was written but not yet fsynced.
	Boot string `json:"boot,omitempty"`
	// Clean marks a close after which everything before it was durable.
	Clean bool           `json:"clean,omitempty"`
	Site  string         `json:"site,omitempty"`
	Req   *purge.Request `json:"req,omitempty"`
	// size is the record's line in the file, in bytes.
	size int64
}

// journal is the open log. One goroutine appends and flushes (the
// follower), another syncs (the follower's syncer).
//
// Lock order: syncMu before mu.
type journal struct {
	path string
	// syncMu serializes sync, rewrite and close: a rewrite replaces f,
	// which an fsync running without mu may be using.
	syncMu  sync.Mutex
	mu      sync.Mutex // protects the fields below
	closed  bool
	f       *os.File
	w       *bufio.Writer
	live    []record // records a rewrite keeps
	written int      // records in the file
	// bytes is the file's size, liveBytes the live records' share of it:
	// a whole-site purge after a flood of big purges leaves few records
	// but many bytes dead.
	bytes, liveBytes int64
	// items counts the URLs, prefixes and tags of each site's live
	// records: repeats included, which the table does not count.
	items map[string]int
	// fsync, when set, replaces (*os.File).Sync: tests make it fail.
	fsync func(*os.File) error
}

// openJournal reads the log at path (none yet is fine), returning it
// open for appending and the records it holds, in order. A log damaged
// in the middle is an error, unless it was last opened under another boot
// than boot: a crash of the machine can leave unsynced blocks unwritten
// inside the file, and the caller purges every site then anyway. damaged
// says the records after the damage were dropped.
func openJournal(path, boot string) (j *journal, recs []record, damaged bool, err error) {
	recs, err = readRecords(path)
	if errors.Is(err, errDamaged) && lastBoot(recs) != "" && lastBoot(recs) != boot {
		damaged, err = true, nil
	}
	if err != nil {
		return nil, nil, false, err
	}
	j = &journal{path: path, live: compact(recs), items: map[string]int{}}
	j.syncMu.Lock()
	defer j.syncMu.Unlock()
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.rewrite(); err != nil {
		return nil, nil, false, err
	}
	return j, recs, damaged, nil
}

// lastBoot is the boot ID of the last start recs record.
func lastBoot(recs []record) string {
	for _, r := range slices.Backward(recs) {
		if r.Boot != "" {
			return r.Boot
		}
	}
	return ""
}

// errDamaged is a record that does not parse with records after it.
var errDamaged = errors.New("a damaged record in the middle")

func readRecords(path string) ([]record, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read purge log: %w", err)
	}
	var recs []record
	for len(b) > 0 {
		line, rest, complete := bytes.Cut(b, []byte("\n"))
		b = rest
		var r record
		if err := json.Unmarshal(line, &r); err != nil {
			if !complete || len(bytes.TrimSpace(b)) == 0 {
				break // the torn tail of a crash: its purge comes again
			}
			return recs, fmt.Errorf("purge log %s: %w: %w", path, errDamaged, err)
		}
		recs = append(recs, r)
	}
	return recs, nil
}

// compact keeps the records that still mean something: a floor and what
// came after it, and per site what came after its last hard whole-site
// purge. The last record always stays, for the version.
func compact(recs []record) []record {
	start := 0
	lastAll := map[string]int{}
	for i, r := range recs {
		switch {
		case r.Floor:
			start = i
		case r.Req != nil && r.Req.All && !r.Req.Soft:
			lastAll[r.Site] = i
		}
	}
	// Of the marks of a start and a clean close, only the last of each
	// means something.
	lastBoot := -1
	for i, r := range recs {
		if r.Boot != "" {
			lastBoot = i
		}
	}
	var out []record
	for i, r := range recs[start:] {
		i += start
		last := i == len(recs)-1
		switch {
		case last:
		case r.Req != nil && i < lastAll[r.Site]:
			continue
		case r.Clean, r.Boot != "" && i != lastBoot && r.Req == nil && !r.Floor && r.Stream == "":
			continue
		}
		out = append(out, r)
	}
	// The stream identity and the last boot must survive compaction.
	if len(out) > 0 && out[0].Stream == "" {
		for _, r := range slices.Backward(recs[:start]) {
			if r.Stream != "" {
				out[0].Stream = r.Stream
				break
			}
		}
	}
	if len(out) > 0 && !slices.ContainsFunc(out, func(r record) bool { return r.Boot != "" }) {
		for _, r := range slices.Backward(recs[:start]) {
			if r.Boot != "" {
				out[0].Boot = r.Boot
				break
			}
		}
	}
	return out
}

// rewrite replaces the file with the live records, atomically. The
// caller holds syncMu and mu.
func (j *journal) rewrite() error {
	if j.f != nil {
		j.f.Close()
	}
	tmp := j.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("rewrite purge log: %w", err)
	}
	w := bufio.NewWriter(f)
	for i, r := range j.live {
		b, _ := json.Marshal(r)
		w.Write(b)
		w.WriteByte('\n')
		j.live[i].size = int64(len(b) + 1)
	}
	j.count()
	if err = w.Flush(); err == nil {
		err = j.sync1(f)
	}
	f.Close()
	if err == nil {
		err = os.Rename(tmp, j.path)
	}
	if err == nil {
		err = syncDir(filepath.Dir(j.path))
	}
	if err != nil {
		return fmt.Errorf("rewrite purge log: %w", err)
	}
	if j.f, err = os.OpenFile(j.path, os.O_APPEND|os.O_WRONLY, 0); err != nil {
		return fmt.Errorf("open purge log: %w", err)
	}
	j.w = bufio.NewWriter(j.f)
	j.written, j.bytes = len(j.live), j.liveBytes
	return nil
}

// count sums the live records' bytes and items.
func (j *journal) count() {
	j.liveBytes = 0
	clear(j.items)
	for _, r := range j.live {
		j.liveBytes += r.size
		j.items[r.Site] += reqItems(r.Req)
	}
}

// reqItems is how many URLs, prefixes and tags r names.
func reqItems(r *purge.Request) int {
	if r == nil {
		return 0
	}
	return len(r.URLs) + len(r.Prefixes) + len(r.Tags)
}

// items is how many URLs, prefixes and tags the live records of site
// name.
func (j *journal) siteItems(site string) int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.items[site]
}

// append buffers r; it is in the file after the next flush, and durable
// after the next sync.
func (j *journal) append(r record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	j.w.Write(b)
	j.w.WriteByte('\n')
	r.size = int64(len(b) + 1)
	j.live = append(j.live, r)
	j.written++
	j.bytes += r.size
	j.liveBytes += r.size
	j.items[r.Site] += reqItems(r.Req)
	if r.Floor || r.Req != nil && r.Req.All && !r.Req.Soft {
		j.live = compact(j.live)
		j.count()
	}
	return nil
}

// flush writes what was appended to the file: past it a killed process
// loses nothing, only a crash of the machine can.
func (j *journal) flush() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return errClosed
	}
	if err := j.w.Flush(); err != nil {
		return fmt.Errorf("write purge log: %w", err)
	}
	return nil
}

var errClosed = errors.New("purge log closed")

// sync makes what was appended durable, and compacts the file when it is
// mostly dead records. Appends and flushes go on while it waits for the
// disk.
func (j *journal) sync() error {
	j.syncMu.Lock()
	defer j.syncMu.Unlock()
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return errClosed
	}
	err := j.w.Flush()
	f := j.f // only a rewrite replaces it, and we hold syncMu
	j.mu.Unlock()
	if err != nil {
		return fmt.Errorf("write purge log: %w", err)
	}
	if err := j.sync1(f); err != nil {
		// After a failed fsync the kernel may have dropped the pages it
		// could not write and report the next fsync of the file as a
		// success: the file cannot be trusted any more. Write it again,
		// whole, from the records held.
		j.mu.Lock()
		defer j.mu.Unlock()
		if rerr := j.rewrite(); rerr != nil {
			return fmt.Errorf("sync purge log: %w; write it again: %w", err, rerr)
		}
		return nil
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.written > 4*len(j.live)+10_000 || j.bytes > 4*j.liveBytes+1<<20 {
		return j.rewrite()
	}
	return nil
}

// sync1 fsyncs f.
func (j *journal) sync1(f *os.File) error {
	if j.fsync != nil {
		return j.fsync(f)
	}
	return f.Sync()
}

func (j *journal) close() error {
	j.syncMu.Lock()
	defer j.syncMu.Unlock()
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return nil
	}
	j.closed = true
	err := j.w.Flush()
	if cerr := j.f.Close(); err == nil {
		err = cerr
	}
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
