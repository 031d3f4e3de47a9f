package state

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Push releases: blobs live in an object store under their SHA-256 (the
// manifest of a release is a blob too); the releases bucket holds each
// release's record ("rel.<site>.<n>") and the number last given out per
// site ("seq.<site>"); the live bucket holds the release each site serves,
// which edges watch. Switching or rolling back a site is one write there.
// Edges report what they serve in the edge-releases bucket.
const (
	BlobsBucket        = "cdn_blobs"
	ReleasesBucket     = "cdn_releases"
	LiveBucket         = "cdn_live"
	EdgeReleasesBucket = "cdn_edge_releases"
)

// Release is one committed release of a site.
type Release struct {
	Site   string `json:"site"`
	Number uint64 `json:"number"`
	// Manifest is the hash of the manifest's blob.
	Manifest string `json:"manifest"`
	// Files, Bytes and Blobs summarize the manifest: paths, their total
	// size uncompressed, and distinct blobs named (variants included).
	Files   int       `json:"files"`
	Bytes   int64     `json:"bytes"`
	Blobs   int       `json:"blobs"`
	Created time.Time `json:"created"`
	// Message is the pusher's note ("deploy abc123").
	Message string `json:"message,omitempty"`
}

// Live is the release a site serves.
type Live struct {
	Site     string    `json:"site"`
	Release  uint64    `json:"release"`
	Manifest string    `json:"manifest"`
	Since    time.Time `json:"since"`
}

// EdgeReleases is what one edge reports about its push sites.
type EdgeReleases struct {
	Edge    string                 `json:"edge"`
	Sites   map[string]SiteRelease `json:"sites"`
	Updated time.Time              `json:"updated"`
}

// SiteRelease is one site's release on an edge.
type SiteRelease struct {
	// Serving is the release the edge serves (0: none yet).
	Serving uint64 `json:"serving"`
	// Wanted is the live release the edge is syncing to, when it is not
	// serving it yet.
	Wanted uint64 `json:"wanted,omitempty"`
	// Error says why the edge cannot switch to Wanted ("disk full").
	Error string `json:"error,omitempty"`
}

// BlobInfo describes a stored blob.
type BlobInfo struct {
	Hash     string
	Size     int64
	Modified time.Time
}

// ErrBlobMismatch is returned by PutBlob when the bytes do not hash to
// the name they were sent under; nothing is kept.
var ErrBlobMismatch = errors.New("blob bytes do not match their hash")

func openReleaseStores(ctx context.Context, js jetstream.JetStream, replicas int, s *Store) error {
	var err error
	s.blobs, err = js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket: BlobsBucket, Description: "pushed content by SHA-256", Replicas: replicas, Storage: jetstream.FileStorage,
	})
	if err != nil {
		return fmt.Errorf("open object store %s: %w", BlobsBucket, err)
	}
	if s.blobStream, err = js.Stream(ctx, blobStreamName); err != nil {
		return fmt.Errorf("bind stream %s: %w", blobStreamName, err)
	}
	return nil
}

func bindReleaseStores(ctx context.Context, js jetstream.JetStream, s *Store) error {
	var err error
	if s.blobs, err = js.ObjectStore(ctx, BlobsBucket); err != nil {
		return fmt.Errorf("bind object store %s: %w", BlobsBucket, err)
	}
	if s.blobStream, err = js.Stream(ctx, blobStreamName); err != nil {
		return fmt.Errorf("bind stream %s: %w", blobStreamName, err)
	}
	return nil
}

// digestOf is the object store's digest text for a blob name.
func digestOf(hash string) string {
	b, err := hex.DecodeString(hash)
	if err != nil {
		return ""
	}
	return "SHA-256=" + base64.URLEncoding.EncodeToString(b)
}

// Blob returns a stored blob's description; ErrNotFound when there is no
// blob of that name whose bytes match it.
func (s *Store) Blob(ctx context.Context, hash string) (BlobInfo, error) {
	x := s.blobIndex()
	if b, ok := x.get(hash); ok {
		return b, nil
	}
	info, err := s.blobs.GetInfo(ctx, hash)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return BlobInfo{}, ErrNotFound
	}
	if err != nil {
		return BlobInfo{}, fmt.Errorf("blob %s: %w", hash, err)
	}
	if info.Deleted || info.Digest != digestOf(hash) {
		return BlobInfo{}, ErrNotFound
	}
	b := BlobInfo{Hash: hash, Size: int64(info.Size), Modified: info.ModTime}
	x.put(b) // the watch may not have brought it yet
	return b, nil
}

// PutBlob stores the bytes of r as blob hash, unless it is there already
// (then r is not read). It returns the blob's size, and ErrBlobMismatch
// (keeping nothing) when the bytes hash to another name.
func (s *Store) PutBlob(ctx context.Context, hash string, r io.Reader) (int64, bool, error) {
	if info, err := s.Blob(ctx, hash); err == nil {
		return info.Size, false, nil
	}
	info, err := s.blobs.Put(ctx, jetstream.ObjectMeta{Name: hash}, r)
	if err != nil {
		return 0, false, fmt.Errorf("store blob %s: %w", hash, err)
	}
	if info.Digest != digestOf(hash) {
		if err := s.blobs.Delete(ctx, hash); err != nil {
			return 0, false, fmt.Errorf("drop mismatched blob %s: %w", hash, err)
		}
		return 0, false, ErrBlobMismatch
	}
	s.blobIndex().put(BlobInfo{Hash: hash, Size: int64(info.Size), Modified: info.ModTime})
	return int64(info.Size), true, nil
}

// OpenBlob reads a blob, checking the bytes against the digest the store
// recorded as they are read (a mismatch fails the read at its end);
// callers check them against the name.
func (s *Store) OpenBlob(ctx context.Context, hash string) (io.ReadCloser, int64, error) {
	info, err := s.blobs.GetInfo(ctx, hash)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, 0, ErrNotFound
	}
	if err != nil {
		return nil, 0, fmt.Errorf("open blob %s: %w", hash, err)
	}
	r, err := s.openChunks(ctx, info)
	if err != nil {
		return nil, 0, fmt.Errorf("open blob %s: %w", hash, err)
	}
	return r, int64(info.Size), nil
}

// Blobs lists every stored blob: from the in-memory directory when the
// process keeps one (IndexBlobs), which may miss a blob stored a moment
// ago, else from the store. Listing 16,668 blobs from the store sends
// each one's record; control's garbage collection lists them every round.
func (s *Store) Blobs(ctx context.Context) ([]BlobInfo, error) {
	if x := s.blobIndex(); x != nil {
		return x.all(), nil
	}
	infos, err := s.blobs.List(ctx)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list blobs: %w", err)
	}
	out := make([]BlobInfo, 0, len(infos))
	for _, in := range infos {
		out = append(out, BlobInfo{Hash: in.Name, Size: int64(in.Size), Modified: in.ModTime})
	}
	return out, nil
}

// DeleteBlob removes a blob.
func (s *Store) DeleteBlob(ctx context.Context, hash string) error {
	// Out of the index first: from here on the blob may be gone.
	s.blobIndex().remove(hash)
	if err := s.blobs.Delete(ctx, hash); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
		return fmt.Errorf("delete blob %s: %w", hash, err)
	}
	return nil
}

func releaseKey(site string, n uint64) string { return "rel." + site + "." + strconv.FormatUint(n, 10) }

// CreateRelease gives r the site's next number and stores it.
func (s *Store) CreateRelease(ctx context.Context, r Release) (Release, error) {
	seqKey := "seq." + r.Site
	for range 100 { // compare-and-set; another push may take a number meanwhile
		var last uint64
		var rev uint64
		e, err := s.releases.Get(ctx, seqKey)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return r, fmt.Errorf("read release number of %s: %w", r.Site, err)
		default:
			rev = e.Revision()
			if last, err = strconv.ParseUint(string(e.Value()), 10, 64); err != nil {
				return r, fmt.Errorf("release number of %s: %w", r.Site, err)
			}
		}
		next := []byte(strconv.FormatUint(last+1, 10))
		if rev == 0 {
			_, err = s.releases.Create(ctx, seqKey, next)
		} else {
			_, err = s.releases.Update(ctx, seqKey, next, rev)
		}
		if errors.Is(err, jetstream.ErrKeyExists) || isWrongSequence(err) {
			continue
		}
		if err != nil {
			return r, fmt.Errorf("take release number of %s: %w", r.Site, err)
		}
		r.Number = last + 1
		if _, err := put(ctx, s.releases, releaseKey(r.Site, r.Number), r); err != nil {
			return r, err
		}
		return r, nil
	}
	return r, fmt.Errorf("take release number of %s: too much contention", r.Site)
}

// isWrongSequence reports a compare-and-set that lost to another writer.
func isWrongSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}

// Release returns one release of a site.
func (s *Store) Release(ctx context.Context, site string, n uint64) (Release, error) {
	r, _, err := get[Release](ctx, s.releases, releaseKey(site, n))
	return r, err
}

// Releases lists a site's releases, newest first.
func (s *Store) Releases(ctx context.Context, site string) ([]Release, error) {
	out, err := list[Release](ctx, s.releases, "rel."+site+".*")
	slices.SortFunc(out, func(a, b Release) int { return cmp.Compare(b.Number, a.Number) })
	return out, err
}

// AllReleases lists every site's releases.
func (s *Store) AllReleases(ctx context.Context) ([]Release, error) {
	return list[Release](ctx, s.releases, "rel.>")
}

// DeleteRelease forgets a release (its blobs are collected separately).
func (s *Store) DeleteRelease(ctx context.Context, site string, n uint64) error {
	return del(ctx, s.releases, releaseKey(site, n))
}

// SetLive switches a site to a release: one write, which every edge
// follows.
func (s *Store) SetLive(ctx context.Context, l Live) error {
	_, err := put(ctx, s.live, l.Site, l)
	return err
}

// Live returns the release a site serves; ErrNotFound for a site that
// has none.
func (s *Store) Live(ctx context.Context, site string) (Live, error) {
	l, _, err := get[Live](ctx, s.live, site)
	return l, err
}

// Lives lists the live release of every site that has one.
func (s *Store) Lives(ctx context.Context) ([]Live, error) {
	return list[Live](ctx, s.live)
}

// DeleteLive stops a site serving pushed content.
func (s *Store) DeleteLive(ctx context.Context, site string) error {
	return del(ctx, s.live, site)
}

// WatchLive calls f with every site's live release (by site) once the
// current set is known, and again after every change, until ctx ends or
// the watch fails. f must not keep the map.
func (s *Store) WatchLive(ctx context.Context, f func(map[string]Live)) error {
	return watchBucket(ctx, s, s.live, func(_ string, l Live, _ jetstream.KeyValueEntry) Live { return l }, f)
}

// ReportReleases records what an edge serves.
func (s *Store) ReportReleases(ctx context.Context, r EdgeReleases) error {
	_, err := put(ctx, s.edgeRel, r.Edge, r)
	return err
}

// WatchEdgeReleases calls f with every edge's report (by edge) once the
// current set is known, and again after every change, until ctx ends or
// the watch fails. f must not keep the map.
func (s *Store) WatchEdgeReleases(ctx context.Context, f func(map[string]EdgeReleases)) error {
	return watchBucket(ctx, s, s.edgeRel, func(_ string, r EdgeReleases, _ jetstream.KeyValueEntry) EdgeReleases { return r }, f)
}

// EdgeReleases lists every edge's report.
func (s *Store) EdgeReleases(ctx context.Context) ([]EdgeReleases, error) {
	return list[EdgeReleases](ctx, s.edgeRel)
}

// pushActivityKey records when a push last asked which blobs it must send.
const pushActivityKey = "push-activity"

// TouchPush records that a push is under way.
func (s *Store) TouchPush(ctx context.Context) error {
	if _, err := s.releases.Put(ctx, pushActivityKey, nil); err != nil {
		return fmt.Errorf("record push activity: %w", err)
	}
	return nil
}

// LastPush returns when a push last started (zero if never).
func (s *Store) LastPush(ctx context.Context) (time.Time, error) {
	e, err := s.releases.Get(ctx, pushActivityKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("read push activity: %w", err)
	}
	return e.Created(), nil
}
