package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/selfcdn/cdn/internal/testwait"
)

type upInfo struct {
	Origin     string `json:"origin"`
	Control    string `json:"control"`
	AdminToken string `json:"admin_token"`
	GeoDNS     string `json:"geodns"`
	Site       struct {
		Name  string   `json:"name"`
		Hosts []string `json:"hosts"`
	} `json:"site"`
	Edges []struct {
		Name, Region, HTTP, HTTPS, Admin string
	} `json:"edges"`
	CACert string `json:"ca_cert"`
}

func fetch(t *testing.T, url, host string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), "GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("read %s: %v", url, err)
	}
	return res, string(b)
}

// TestUp starts `cdn up` as a newcomer would, reads up.json, and checks
// that every edge serves the demo site through the cache.
func TestUp(t *testing.T) {
	data := t.TempDir()
	p := start(t, "up", "--data", data, "--origin-listen", "127.0.0.1:0", "--edge-port", "0", "--https-port", "0", "--admin-port", "0",
		"--control-listen", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0")
	upPath := filepath.Join(data, "up.json")
	var info upInfo
	testwait.Until(t, "up.json", func() bool {
		b, err := os.ReadFile(upPath)
		return err == nil && json.Unmarshal(b, &info) == nil
	})
	if info.Origin == "" || info.Control == "" || info.AdminToken == "" || info.GeoDNS == "" || info.Site.Name == "" || len(info.Site.Hosts) == 0 || len(info.Edges) < 2 {
		t.Fatalf("up.json incomplete: %+v", info)
	}
	host := info.Site.Hosts[0]
	for _, e := range info.Edges {
		if e.Name == "" || e.Region == "" || !strings.HasPrefix(e.HTTP, "http://") || !strings.HasPrefix(e.Admin, "http://") {
			t.Errorf("up.json edge incomplete: %+v", e)
			continue
		}
		waitOK(t, e.Admin+"/readyz")
		res, body := fetch(t, e.HTTP+"/", host)
		if res.StatusCode != 200 || !strings.Contains(body, "It works") {
			t.Errorf("%s first GET /: %d %q", e.Name, res.StatusCode, body)
		}
		if cs := res.Header.Get("Cache-Status"); !strings.Contains(cs, "fwd=uri-miss") {
			t.Errorf("%s first GET /: Cache-Status %q, want a miss", e.Name, cs)
		}
		res, _ = fetch(t, e.HTTP+"/", host)
		if cs := res.Header.Get("Cache-Status"); cs != e.Name+"; hit" {
			t.Errorf("%s second GET /: Cache-Status %q, want %q", e.Name, cs, e.Name+"; hit")
		}
		if sk := res.Header.Get("Surrogate-Key"); sk != "" {
			t.Errorf("%s: Surrogate-Key %q reached the client; the edge keeps it for purges", e.Name, sk)
		}
		_, metrics := fetch(t, e.Admin+"/metrics", "")
		if !strings.Contains(metrics, `cdn_edge_requests_total{cache="hit",code="2xx",site="demo"} 1`) {
			t.Errorf("%s /metrics lacks the hit:\n%s", e.Name, grep(metrics, "cdn_edge_requests_total"))
		}
	}
	// The network as control sees it: every edge registered and up.
	testwait.Until(t, "every edge up in cdn status", func() bool {
		cmd := exec.Command(cdnBin, "status")
		cmd.Env = append(os.Environ(), "CDN_CONTROL_URL="+info.Control, "CDN_TOKEN="+info.AdminToken)
		out, err := cmd.CombinedOutput()
		return err == nil && strings.Contains(string(out), fmt.Sprintf("%d edges (%d up", len(info.Edges), len(info.Edges)))
	})
	// A deploy purges by the demo's tag and waits for every edge.
	cmd := exec.Command(cdnBin, "purge", "--site", info.Site.Name, "--tag", "pages", "--wait", "20s")
	cmd.Env = append(os.Environ(), "CDN_CONTROL_URL="+info.Control, "CDN_TOKEN="+info.AdminToken)
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "applied by") {
		t.Fatalf("cdn purge: %v\n%s", err, out)
	}
	for _, e := range info.Edges {
		if res, _ := fetch(t, e.HTTP+"/", host); !strings.Contains(res.Header.Get("Cache-Status"), "fwd=uri-miss") {
			t.Errorf("%s GET / after the tag purge: Cache-Status %q, want a miss", e.Name, res.Header.Get("Cache-Status"))
		}
	}
	// HTTPS with the development CA, over HTTP/1.1, HTTP/2 and HTTP/3.
	checkUpHTTPS(t, info)
	// GeoDNS answers the demo host with the edge nearest the client.
	for _, tc := range []struct {
		subnet string
		edge   int
	}{{"", 1}, {"192.0.2.0/24", 0}, {"198.51.100.0/24", 2}} {
		u, _ := url.Parse(info.Edges[tc.edge].HTTP)
		want := u.Hostname()
		var got []string
		testwait.Until(t, fmt.Sprintf("GeoDNS answer %s for subnet %q", want, tc.subnet), func() bool {
			got = geoAnswer(t, info.GeoDNS, info.Site.Hosts[0], tc.subnet)
			return len(got) == 1 && got[0] == want
		})
	}
	p.stop(t)
}

// checkUpHTTPS fetches the demo site from every edge over HTTPS, verifying
// the certificate against up.json's ca_cert, with each protocol.
func checkUpHTTPS(t *testing.T, info upInfo) {
	t.Helper()
	pem, err := os.ReadFile(info.CACert)
	if err != nil {
		t.Fatalf("up.json ca_cert: %v", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		t.Fatalf("%s holds no certificate", info.CACert)
	}
	host := info.Site.Hosts[0]
	for _, e := range info.Edges {
		u, err := url.Parse(e.HTTPS)
		if err != nil || u.Scheme != "https" {
			t.Errorf("%s: https %q", e.Name, e.HTTPS)
			continue
		}
		addr := u.Host
		for _, proto := range []string{"h1", "h2", "h3"} {
			c := httpsClient(t, proto, addr, roots)
			res, err := c.Get("https://" + host + ":" + u.Port() + "/")
			if err != nil {
				t.Errorf("%s %s: %v", e.Name, proto, err)
				continue
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			want := map[string]int{"h1": 1, "h2": 2, "h3": 3}[proto]
			if res.StatusCode != 200 || res.ProtoMajor != want || !strings.Contains(string(b), "It works") {
				t.Errorf("%s %s: %d over HTTP/%d, %q", e.Name, proto, res.StatusCode, res.ProtoMajor, b)
			}
			if proto != "h3" && !strings.HasPrefix(res.Header.Get("Alt-Svc"), `h3=":`+u.Port()+`"`) {
				t.Errorf("%s %s: Alt-Svc %q", e.Name, proto, res.Header.Get("Alt-Svc"))
			}
		}
	}
}

// httpsClient speaks proto to addr whatever the URL's host, verifying
// against roots.
func httpsClient(t *testing.T, proto, addr string, roots *x509.CertPool) *http.Client {
	tc := &tls.Config{RootCAs: roots}
	if proto == "h3" {
		tr := &http3.Transport{TLSClientConfig: tc, Dial: func(ctx context.Context, _ string, tc *tls.Config, qc *quic.Config) (*quic.Conn, error) {
			return quic.DialAddrEarly(ctx, addr, tc, qc)
		}}
		t.Cleanup(func() { tr.Close() })
		return &http.Client{Transport: tr, Timeout: 10 * time.Second}
	}
	var p http.Protocols
	p.SetHTTP1(proto == "h1")
	p.SetHTTP2(proto == "h2")
	tr := &http.Transport{TLSClientConfig: tc, Protocols: &p, DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// geoAnswer asks server for host's A records, from subnet ("" for none).
func geoAnswer(t *testing.T, server, host, subnet string) []string {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(host), dns.TypeA)
	if subnet != "" {
		p := netip.MustParsePrefix(subnet)
		m.SetEdns0(1232, false)
		m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1,
			SourceNetmask: uint8(p.Bits()), Address: p.Addr().AsSlice()})
	}
	r, _, err := (&dns.Client{Timeout: time.Second}).Exchange(m, server)
	if err != nil {
		t.Logf("dig %s: %v", host, err)
		return nil
	}
	var out []string
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok {
			out = append(out, a.A.String())
		}
	}
	return out
}

// TestEdgeAndOriginProcesses runs `cdn origin` and `cdn edge --origin` as
// two processes, the first-try path of the README.
func TestEdgeAndOriginProcesses(t *testing.T) {
	site := t.TempDir()
	os.WriteFile(filepath.Join(site, "hello.txt"), []byte("hello, edge\n"), 0o644)
	os.WriteFile(filepath.Join(site, "_headers"), []byte("/*\n  Cache-Control: public, max-age=300\n"), 0o644)
	origin := start(t, "origin", "--dir", site, "--listen", "127.0.0.77:18701")
	edge := start(t, "edge", "--origin", "http://127.0.0.77:18701", "--listen", "127.0.0.77:18702", "--admin", "127.0.0.77:18703", "--cache-dir", t.TempDir(), "--memory", "32MiB")
	waitOK(t, "http://127.0.0.77:18701/hello.txt") // the origin serves
	waitOK(t, "http://127.0.0.77:18703/readyz")    // the edge is ready
	for i, want := range []string{"fwd=uri-miss", "hit"} {
		res, body := fetch(t, "http://127.0.0.77:18702/hello.txt", "any.host")
		if body != "hello, edge\n" || !strings.Contains(res.Header.Get("Cache-Status"), want) {
			t.Errorf("request %d: %q, Cache-Status %q; want the file and %s", i, body, res.Header.Get("Cache-Status"), want)
		}
	}
	edge.stop(t)
	origin.stop(t)
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "edge.yaml")
	os.WriteFile(bad, []byte("listen: \":0\"\ncache:\n  memory: 0\nsites:\n  - name: s\n    hosts: [\"a.test\"]\n    origin: ftp://x\n"), 0o644)
	typo := filepath.Join(dir, "typo.yaml")
	os.WriteFile(typo, []byte("fetch_timout: 3s\n"), 0o644)
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantMsgs []string
	}{
		{name: "no args", args: []string{"edge"}, wantCode: 2, wantMsgs: []string{"--config FILE, --origin URL or --control NATS_URL"}},
		{name: "invalid fields named", args: []string{"edge", "--config", bad}, wantCode: 2, wantMsgs: []string{"cache.memory must be > 0", "origin: must be an http or https URL"}},
		{name: "unknown key", args: []string{"edge", "--config", typo}, wantCode: 2, wantMsgs: []string{"field fetch_timout not found"}},
		{name: "missing file", args: []string{"edge", "--config", filepath.Join(dir, "nope.yaml")}, wantCode: 2, wantMsgs: []string{"no such file"}},
		{name: "bad size flag", args: []string{"edge", "--origin", "http://x", "--memory", "lots"}, wantCode: 2, wantMsgs: []string{"parse size"}},
		{name: "unknown command", args: []string{"frobnicate"}, wantCode: 2, wantMsgs: []string{"unknown command"}},
		{name: "check-config ok", args: []string{"edge", "--origin", "http://127.0.0.1:1", "--check-config"}, wantCode: 0, wantMsgs: []string{"configuration ok"}},
		{name: "origin without dir", args: []string{"origin"}, wantCode: 2, wantMsgs: []string{"dir is required"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out := run(t, tt.args...)
			if code != tt.wantCode {
				t.Errorf("cdn %v exit %d, want %d; output:\n%s", tt.args, code, tt.wantCode, out)
			}
			for _, m := range tt.wantMsgs {
				if !strings.Contains(out, m) {
					t.Errorf("cdn %v output lacks %q:\n%s", tt.args, m, out)
				}
			}
		})
	}
}

func grep(s, sub string) string {
	var out []string
	for l := range strings.SplitSeq(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
