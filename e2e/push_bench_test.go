package e2e

import (
	"bytes"
	"crypto/rand"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/selfcdn/cdn/push"
)

// BenchmarkPush pushes a 10,000-file, ~500 MB site to control and three
// edge processes and waits until every edge serves it, then measures
// one-file changes. Run it alone (make bench-push): it writes ~2.5 GB to
// the temp dir.
//
//	go test ./e2e -run '^$' -bench Push -benchtime 1x
func BenchmarkPush(b *testing.B) {
	n := startPushNet(b, 3)
	site := filepath.Join(n.dir, "site")
	var total int64
	rng := mrand.New(mrand.NewPCG(3, 4))
	for i := range 10_000 {
		size := 1000 + rng.IntN(99_000) // mean ~50 KB
		var body []byte
		name := fmt.Sprintf("d%02d/f%05d", i%50, i)
		if i%3 == 0 { // a third text, which push compresses
			name += ".html"
			body = bytes.Repeat(fmt.Appendf(nil, "<p>file %d, line of text %d</p>\n", i, rng.IntN(1000)), size/20+1)[:size]
		} else {
			name += ".bin"
			body = make([]byte, size)
			rand.Read(body)
		}
		total += int64(len(body))
		p := filepath.Join(site, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, body, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	// push1 pushes the site and adds the time spent scanning and the time
	// from the first request to control until every edge serves it.
	var scanTime, deployTime, askTime, commitTime time.Duration
	// edgeSyncs sums the edges' release sync histograms and the time
	// their syncs spent in each stage.
	stages := []string{"manifest", "fetch", "pin", "save", "index"}
	edgeSyncs := func() (sum, count float64, stage map[string]float64) {
		stage = map[string]float64{}
		for _, e := range n.edges {
			sum += metric(b, e.admin+"/metrics", "cdn_edge_release_sync_seconds_sum")
			count += metric(b, e.admin+"/metrics", "cdn_edge_release_sync_seconds_count")
			for _, st := range stages {
				stage[st] += max(0, metric(b, e.admin+"/metrics", `cdn_edge_release_sync_stage_seconds_total{stage="`+st+`"}`))
			}
		}
		return sum, count, stage
	}
	lastSyncSum, lastSyncs, lastStage := edgeSyncs()
	// The scan cache lives beside the site, as cdn push keeps one per
	// directory: the full push starts without one.
	scanCache := filepath.Join(n.dir, "scan-cache.json")
	push1 := func(b *testing.B) push.Result {
		start := time.Now()
		scan, err := push.ScanDir(b.Context(), site, push.ScanOptions{Cache: scanCache})
		if err != nil {
			b.Fatal(err)
		}
		scanned := time.Now()
		res, err := n.client().Push(b.Context(), "docs", scan, push.Options{Wait: push.MaxWait})
		if err != nil {
			b.Fatal(err)
		}
		scanTime += scanned.Sub(start)
		deployTime += time.Since(scanned)
		askTime += res.Asking
		commitTime += res.Committing
		return res
	}
	// split reports the mean scan and deploy seconds of b's rounds.
	split := func(b *testing.B, rounds int) {
		b.ReportMetric(scanTime.Seconds()/float64(rounds), "scan-s/op")
		b.ReportMetric(deployTime.Seconds()/float64(rounds), "deploy-s/op")
		b.ReportMetric(askTime.Seconds()/float64(rounds), "ask-s/op")
		// The edges' own time from learning of the release to serving it,
		// and its stages: the manifest, the blobs fetched and verified,
		// their disk sync, the release saved, the index built.
		syncSum, syncs, stage := edgeSyncs()
		switches := syncs - lastSyncs
		b.ReportMetric((syncSum-lastSyncSum)/switches, "edge-sync-s/switch")
		for _, st := range stages {
			b.ReportMetric((stage[st]-lastStage[st])/switches, "edge-"+st+"-s/switch")
		}
		b.ReportMetric(commitTime.Seconds()/float64(rounds), "commit-s/op")
		scanTime, deployTime, askTime, commitTime = 0, 0, 0, 0
		lastSyncSum, lastSyncs, lastStage = edgeSyncs()
	}
	b.Run("full-10k-files", func(b *testing.B) {
		var res push.Result
		rounds := 0
		for b.Loop() { // -benchtime 1x: blobs are shared, a second round would send none
			res = push1(b)
			rounds++
		}
		split(b, rounds)
		b.ReportMetric(float64(total)/1e6, "site-MB")
		b.ReportMetric(float64(res.UploadedBytes)/1e6, "uploaded-MB")
		b.ReportMetric(float64(res.Uploaded), "blobs-uploaded")
	})
	b.Run("one-file-change", func(b *testing.B) {
		push1(b) // the whole site is there before the clock starts
		scanTime, deployTime, askTime, commitTime = 0, 0, 0, 0
		lastSyncSum, lastSyncs, lastStage = edgeSyncs()
		var res push.Result
		i := 0
		for b.Loop() {
			i++
			os.WriteFile(filepath.Join(site, "d00", "changed.html"), fmt.Appendf(nil, "<p>change %d at %s</p>", i, time.Now()), 0o644)
			res = push1(b)
		}
		split(b, i)
		b.ReportMetric(float64(res.UploadedBytes), "uploaded-B")
		b.ReportMetric(float64(res.Uploaded), "blobs-uploaded")
	})
}
