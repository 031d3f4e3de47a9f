package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/selfcdn/cdn/internal/testwait"
)

// TestH2spec runs h2spec (github.com/summerwind/h2spec) against the
// edge's TLS listener and wants every test to pass. It needs the h2spec
// binary in $H2SPEC (scripts/h2spec.sh, `make conformance`, installs it
// into bin/tools); $H2SPEC_ARGS narrows it to some specs ("http2/6.5.3"),
// $H2SPEC_REPORT keeps the JUnit report.
func TestH2spec(t *testing.T) {
	h2spec := os.Getenv("H2SPEC")
	if h2spec == "" {
		t.Skip("H2SPEC is not set: run scripts/h2spec.sh (make conformance)")
	}
	const ip = "127.0.0.79"
	const httpAddr, admin, tlsPort = ip + ":18721", ip + ":18722", "18723"

	// The origin answers every request (h2spec sends GET, HEAD and POST
	// to /) with 200 and a short body after 50 ms, uncacheable, so that
	// h2spec's timing races go one way:
	//   - no response completes before the frames h2spec sends after a
	//     request (6.9.1/3 sends WINDOW_UPDATEs after an open-ended GET; a
	//     cache hit answered first ends the stream with RST_STREAM
	//     NO_ERROR instead of the FLOW_CONTROL_ERROR expected);
	//   - the last DATA frame fits Go's 4 KiB frame write buffer, so the
	//     server closes the stream before the client sees END_STREAM (a
	//     larger one is written on another goroutine: 5.1/12's HEADERS on
	//     the stream can then find it half-closed and get RST_STREAM
	//     instead of the connection error expected).
	body := bytes.Repeat([]byte("x"), 512) // h2spec's flow-control tests want >= 5 bytes
	o := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		time.Sleep(50 * time.Millisecond)
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Content-Type", "text/plain")
		w.Write(body)
	}))
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	o.Listener = ln
	o.Start()
	t.Cleanup(o.Close)

	dir := t.TempDir()
	cfg := filepath.Join(dir, "edge.yaml")
	// One site for any host with a development certificate: h2spec sends
	// no SNI for an IP address, and the dev CA mints one for the IP.
	yaml := fmt.Sprintf(`name: h2spec
listen: %q
admin_listen: %q
access_log: false
cache:
  memory: 16MiB
tls:
  listen: "%s:%s"
  http3: false
  storage: %q
sites:
  - name: h2spec
    hosts: ["*"]
    origin: %q
    tls: dev
`, httpAddr, admin, ip, tlsPort, filepath.Join(dir, "certs"), o.URL)
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	edge := start(t, "edge", "--config", cfg, "--log-level", "warn")
	waitOK(t, "http://"+admin+"/readyz")
	// Over TLS with h2 too: the certificate is minted before h2spec starts.
	var p http.Protocols
	p.SetHTTP2(true)
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, Protocols: &p}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	testwait.Until(t, "an h2 answer on the TLS port", func() bool {
		res, err := client.Get("https://" + ip + ":" + tlsPort + "/")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK && res.ProtoMajor == 2
	})

	report := os.Getenv("H2SPEC_REPORT")
	if report == "" {
		report = filepath.Join(dir, "h2spec.xml")
	}
	args := []string{"-t", "-k", "-h", ip, "-p", tlsPort, "-o", "2", "-j", report}
	args = append(args, strings.Fields(os.Getenv("H2SPEC_ARGS"))...)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, h2spec, args...).CombinedOutput()
	summary := strings.TrimSpace(string(out))
	if i := strings.LastIndexByte(summary, '\n'); i >= 0 {
		summary = summary[i+1:]
	}
	if err != nil {
		failures := string(out)
		if i := strings.Index(failures, "\nFailures:"); i >= 0 {
			failures = failures[i+1:]
		}
		t.Errorf("h2spec %s: %v\n%s", strings.Join(args, " "), err, failures)
	} else {
		t.Logf("h2spec: %s", summary)
	}
	edge.stop(t)
}
