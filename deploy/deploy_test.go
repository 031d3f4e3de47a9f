// Package deploy holds the deploy kit (systemd units, example configs for
// three regions, NATS cluster configs, Prometheus and Grafana files, the
// Dockerfile); its tests check that the kit says what the binary accepts.
// deploy/test.sh (make test-deploy) adds systemd-analyze and promtool.
package deploy

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/selfcdn/cdn/control"
	"github.com/selfcdn/cdn/geodns"
	"github.com/selfcdn/cdn/internal/config"
)

// bin holds the cdn and nats-server binaries: TestMain builds them, or
// takes them from $DEPLOY_TEST_BIN (deploy/test.sh builds them once).
var bin string

func TestMain(m *testing.M) {
	if dir := os.Getenv("DEPLOY_TEST_BIN"); dir != "" {
		bin = dir
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "deploy-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = dir
	code := 1
	if err := build(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
	} else {
		code = m.Run()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// build compiles the cdn binary and the nats-server of go.mod's version,
// at once.
func build(dir string) error {
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, b := range []struct{ out, pkg string }{
		{"cdn", "github.com/selfcdn/cdn/cmd/cdn"},
		{"nats-server", "github.com/nats-io/nats-server/v2"},
	} {
		wg.Go(func() {
			cmd := exec.Command("go", "build", "-o", filepath.Join(dir, b.out), b.pkg)
			if out, err := cmd.CombinedOutput(); err != nil {
				errs[i] = fmt.Errorf("build %s: %v\n%s", b.pkg, err, out)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// run runs one of the built binaries and returns its combined output.
func run(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(filepath.Join(bin, name), args...).CombinedOutput()
	return string(out), err
}

// roleOf is the cdn subcommand an example config is for, by its name.
func roleOf(file string) string {
	base := strings.TrimSuffix(filepath.Base(file), ".yaml")
	role, _, _ := strings.Cut(base, "-")
	return role
}

// TestExampleConfigsPassCheckConfig runs the binary's own --check-config
// on every example config of every region.
func TestExampleConfigsPassCheckConfig(t *testing.T) {
	files, _ := filepath.Glob("regions/*/*.yaml")
	if len(files) == 0 {
		t.Fatal("no example configs under regions/")
	}
	regions := map[string][]string{}
	for _, f := range files {
		region := filepath.Base(filepath.Dir(f))
		regions[region] = append(regions[region], roleOf(f))
		t.Run(f, func(t *testing.T) {
			out, err := run(t, "cdn", roleOf(f), "--config", f, "--check-config")
			if err != nil || !strings.Contains(out, "configuration ok") {
				t.Errorf("cdn %s --config %s --check-config: %v\n%s", roleOf(f), f, err, out)
			}
		})
	}
	// Three regions, each with an edge and a name server; control in two.
	var controls int
	for _, r := range []string{"eu", "us", "ap"} {
		roles := regions[r]
		if !slices.Contains(roles, "edge") || !slices.Contains(roles, "geodns") {
			t.Errorf("region %s has %v, want an edge and a geodns", r, roles)
		}
		if slices.Contains(roles, "control") {
			controls++
		}
	}
	if controls < 2 {
		t.Errorf("control runs in %d regions, want two (one survives a region's loss)", controls)
	}
}

// TestGeoDNSZonesLoad builds each region's GeoDNS from its file (without
// its City database, which lives on the host, nor its NATS creds, which
// systemd hands it at start): the zone parses, and the three name servers
// agree on it.
func TestGeoDNSZonesLoad(t *testing.T) {
	files, _ := filepath.Glob("regions/*/geodns.yaml")
	var zones []string
	for _, f := range files {
		cfg := geodns.DefaultConfig()
		if err := config.Load(f, &cfg); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		cfg.Geo.MMDB = ""
		if cfg.Control != nil {
			cfg.Control.Creds = ""
		}
		if _, err := geodns.New(cfg, geodns.Deps{}); err != nil {
			t.Errorf("%s: %v", f, err)
		}
		b, _ := yaml.Marshal(cfg.Zones)
		zones = append(zones, string(b))
	}
	for i := 1; i < len(zones); i++ {
		if zones[i] != zones[0] {
			t.Errorf("%s serves another zone than %s", files[i], files[0])
		}
	}
}

// TestUnitsUseRealFlags runs each cdn unit's ExecStart with the example
// config put where the unit reads it, plus --check-config: a flag the
// binary does not know fails it.
func TestUnitsUseRealFlags(t *testing.T) {
	examples := map[string]string{
		"/etc/cdn/control.yaml": "regions/eu/control.yaml",
		"/etc/cdn/edge.yaml":    "regions/eu/edge-1.yaml",
		"/etc/cdn/geodns.yaml":  "regions/eu/geodns.yaml",
		"/etc/cdn/origin.yaml":  "regions/eu/origin.yaml",
	}
	units, _ := filepath.Glob("systemd/cdn-*.service")
	for _, u := range units {
		t.Run(u, func(t *testing.T) {
			args := execStart(t, u)
			if args[0] != "/usr/local/bin/cdn" {
				t.Fatalf("ExecStart runs %s, want /usr/local/bin/cdn", args[0])
			}
			for i, a := range args {
				if ex, ok := examples[a]; ok {
					args[i] = ex
				}
			}
			out, err := run(t, "cdn", append(args[1:], "--check-config")...)
			if err != nil || !strings.Contains(out, "configuration ok") {
				t.Errorf("%s with --check-config: %v\n%s", strings.Join(args, " "), err, out)
			}
		})
	}
}

// execStart returns the words of a unit's ExecStart line.
func execStart(t *testing.T, unit string) []string {
	t.Helper()
	f, err := os.Open(unit)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "ExecStart="); ok {
			return strings.Fields(v)
		}
	}
	t.Fatalf("%s: no ExecStart", unit)
	return nil
}

// TestNATSConfigsLoad checks each region's nats-server config with
// nats-server -t (the version go.mod pins), as the host would have it:
// the operator block from `cdn control nats-config` in auth.conf, and the
// TLS files, put in a temp dir in place of /etc/nats and /var/lib/nats.
func TestNATSConfigsLoad(t *testing.T) {
	confs, _ := filepath.Glob("nats/*.conf")
	if len(confs) != 3 {
		t.Fatalf("nats configs %v, want one per region", confs)
	}
	dir := t.TempDir()
	auth, err := control.OpenAuthority(filepath.Join(dir, "cdn-control"))
	if err != nil {
		t.Fatal(err)
	}
	block, err := auth.ServerConfig(filepath.Join(dir, "lib", "accounts"))
	if err != nil {
		t.Fatal(err)
	}
	writeTLS(t, filepath.Join(dir, "tls"), []string{"nats-eu.cdn.example.net", "nats-us.cdn.example.net", "nats-ap.cdn.example.net"})
	for _, c := range confs {
		t.Run(c, func(t *testing.T) {
			b, err := os.ReadFile(c)
			if err != nil {
				t.Fatal(err)
			}
			text := strings.NewReplacer(
				"/etc/nats/tls/", filepath.Join(dir, "tls")+"/",
				"/run/credentials/nats-server.service/", filepath.Join(dir, "tls")+"/",
				"/var/lib/nats/", filepath.Join(dir, "lib")+"/",
			).Replace(string(b))
			for _, want := range []string{"jetstream", "cluster", "verify: true", `include "auth.conf"`} {
				if !strings.Contains(text, want) {
					t.Errorf("%s lacks %q", c, want)
				}
			}
			cdir := filepath.Join(dir, strings.TrimSuffix(filepath.Base(c), ".conf"))
			os.MkdirAll(cdir, 0o700)
			if err := os.WriteFile(filepath.Join(cdir, "auth.conf"), []byte(block), 0o600); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(cdir, "nats.conf")
			if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
			if out, err := run(t, "nats-server", "-t", "-c", path); err != nil {
				t.Errorf("nats-server -t -c %s: %v\n%s", c, err, out)
			}
		})
	}
}

// writeTLS writes a CA and a server certificate for names into dir
// (ca.pem, server.pem, server-key.pem).
func writeTLS(t *testing.T, dir string, names []string) {
	t.Helper()
	os.MkdirAll(dir, 0o700)
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "cdn nats CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	for name, block := range map[string]*pem.Block{
		"ca.pem": {Type: "CERTIFICATE", Bytes: caDER}, "server.pem": {Type: "CERTIFICATE", Bytes: der},
		"server-key.pem": {Type: "PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// metricName matches the CDN's metric names in PromQL and in Go.
var metricName = regexp.MustCompile(`cdn_[a-z0-9_]+`)

// registeredMetrics are the cdn_* names the module's code registers: the
// string literals of its non-test Go files.
func registeredMetrics(t *testing.T) map[string]bool {
	t.Helper()
	literal := regexp.MustCompile(`"(cdn_[a-z0-9_]+)"`)
	names := map[string]bool{}
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != ".." {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range literal.FindAllSubmatch(b, -1) {
			names[string(m[1])] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// TestMonitoringUsesRealMetrics: every cdn_* metric the alert rules and
// the Grafana dashboard query is one the code registers (a histogram's
// _bucket, _sum and _count count as the histogram).
func TestMonitoringUsesRealMetrics(t *testing.T) {
	known := registeredMetrics(t)
	if !known["cdn_edge_requests_total"] {
		t.Fatalf("found %d metric names in the code, not cdn_edge_requests_total: the scan is broken", len(known))
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	b, err := os.ReadFile("prometheus/cdn-alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &rules); err != nil {
		t.Fatal(err)
	}
	queries := map[string]string{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			queries["alert "+r.Alert] = r.Expr
		}
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	b, err = os.ReadFile("grafana/cdn-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("grafana/cdn-dashboard.json: %v", err)
	}
	for _, p := range dash.Panels {
		for i, tg := range p.Targets {
			queries[fmt.Sprintf("panel %q query %d", p.Title, i)] = tg.Expr
		}
	}
	// The alerts the issue asks for are there.
	for _, a := range []string{"CDNEdgeDown", "CDNPurgeLag", "CDNGeoDNSFailOpen", "CDNOriginErrors", "CDNDiskFull"} {
		if _, ok := queries["alert "+a]; !ok {
			t.Errorf("no alert %s", a)
		}
	}
	for where, q := range queries {
		for _, name := range metricName.FindAllString(q, -1) {
			base := name
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				base = strings.TrimSuffix(base, suffix)
			}
			if !known[name] && !known[base] {
				t.Errorf("%s queries %s, which no code registers", where, name)
			}
		}
	}
}
