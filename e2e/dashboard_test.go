package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/nats-io/nats.go"

	"github.com/selfcdn/cdn/internal/state"
	"github.com/selfcdn/cdn/internal/testwait"
)

// The operator dashboard in a real browser: Debian's chromium, headless,
// driven with chromedp (scripts/install-chromium.sh installs it; make
// test-browser runs it first). Screenshots go to $DASHBOARD_ARTIFACTS, by
// default $TMPDIR/cdn-dashboard-artifacts.

// chromiumPath finds the browser, or skips: `make test-browser` installs
// it, and CDN_REQUIRE_BROWSER=1 (which it sets) turns the skip into a
// failure.
func chromiumPath(t *testing.T) string {
	for _, p := range []string{os.Getenv("CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if os.Getenv("CDN_REQUIRE_BROWSER") != "" {
		t.Fatal("no chromium: run scripts/install-chromium.sh (make test-browser does)")
	}
	t.Skip("no chromium (scripts/install-chromium.sh installs Debian's)")
	return ""
}

func artifactsDir(t *testing.T) string {
	dir := os.Getenv("DASHBOARD_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "cdn-dashboard-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// browser is one headless chromium with one tab, collecting the page's
// errors (exceptions, console.error, error log entries).
type browser struct {
	ctx       context.Context
	artifacts string

	mu     sync.Mutex // guards errors
	errors []string
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	opts := append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]),
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900),
	)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelB := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelB(); cancelA() })
	b := &browser{ctx: ctx, artifacts: artifactsDir(t)}
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	lctx, stop := context.WithCancel(ctx)
	t.Cleanup(stop)
	messages := chromedp.Console(lctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			// The answers to the bad input the test gives on purpose (a
			// wrong token, an invalid site, a read-only token's action)
			// are logged by the browser as failed loads; anything else
			// the page logs as an error fails the test.
			expected := m.Source == "network" && answeredBadInput.MatchString(m.Text)
			if (m.Type == chromedp.ConsoleError || m.IsException()) && !expected {
				b.mu.Lock()
				b.errors = append(b.errors, fmt.Sprintf("%s (%s %s)", m, m.Source, m.URL))
				b.mu.Unlock()
			}
		}
	}()
	return b
}

// answeredBadInput is a failed load the test provokes: 400, 401, 403.
var answeredBadInput = regexp.MustCompile(`status of 40[013] `)

// takeErrors returns and forgets the errors so far.
func (b *browser) takeErrors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.errors
	b.errors = nil
	return e
}

// run runs actions with a bound on time, failing the test with what.
func (b *browser) run(t *testing.T, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.shot(t, "failed-"+strings.ReplaceAll(what, " ", "-"))
		t.Fatalf("%s: %v", what, err)
	}
}

// waitJS waits until expr is true in the page.
func (b *browser) waitJS(t *testing.T, what, expr string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ok, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](expr))
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			b.shot(t, "failed-"+strings.ReplaceAll(what, " ", "-"))
			t.Fatalf("%s: %s still false after 20s (%v)", what, expr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// evalJS evaluates expr in the page (awaiting a promise).
func evalJS[T any](t *testing.T, b *browser, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// change fires a change event on the element sel selects.
func change(sel string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := chromedp.Evaluate[bool](`document.querySelector(`+strconv.Quote(sel)+`).dispatchEvent(new Event("change"))`)(ctx, t)
		return err
	})
}

// shot saves a full-page screenshot as an artifact.
func (b *browser) shot(t *testing.T, name string) {
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Logf("screenshot %s: %v", name, err)
		return
	}
	path := filepath.Join(b.artifacts, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Logf("screenshot %s: %v", name, err)
	}
}

// confirm clicks a button, then Confirm in the dialog it opens.
func (b *browser) confirm(t *testing.T, what, selector string) {
	t.Helper()
	b.run(t, what, chromedp.Click(chromedp.CSS(selector)), chromedp.WaitVisible(chromedp.CSS("#confirm-ok")))
	b.shot(t, "confirm-"+strings.ReplaceAll(what, " ", "-"))
	b.run(t, what+" confirm", chromedp.Click(chromedp.CSS("#confirm-ok")))
}

// xss is what the test feeds the dashboard wherever the API lets text
// through: if any of it ran or became an element, window.__xss is set or
// an img or script appears in the page's content.
const xss = `<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>`

// TestDashboard drives the operator pages of a `cdn up` network in
// headless chromium: sign in, the three edges, a purge with its blast
// radius and per-edge progress, a rollback, a drain that GeoDNS follows,
// hostile text, CSRF, a read-only token, 50 edges, and control going
// away and coming back.
func TestDashboard(t *testing.T) {
	b := newBrowser(t)
	data := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	controlAddr := ln.Addr().String()
	ln.Close()
	upArgs := []string{"up", "--data", data, "--origin-listen", "127.0.0.1:0", "--edge-port", "0", "--https-port", "0", "--admin-port", "0",
		"--control-listen", controlAddr, "--nats-listen", "127.0.0.1:0", "--geodns-listen", "127.0.0.1:0"}
	up := start(t, upArgs...)
	info := readUp(t, data)
	if !strings.HasPrefix(info.Dashboard, info.Control+"/dashboard/signin?code=") {
		t.Fatalf("up.json dashboard = %q, want a sign-in link on %s", info.Dashboard, info.Control)
	}
	admin := &apiCaller{t: t, base: info.Control, token: info.AdminToken}
	env := []string{"CDN_CONTROL_URL=" + info.Control, "CDN_TOKEN=" + info.AdminToken}

	// Content the pages show: a pushed site with two releases (the
	// second's message hostile), cached objects on every edge.
	admin.do("PUT", "/v1/sites/docs", map[string]any{"name": "docs", "hosts": []string{"docs.cdn.test"}, "push_only": true}, 200)
	dir := t.TempDir()
	for i, msg := range []string{"first", xss} {
		os.WriteFile(filepath.Join(dir, "index.html"), fmt.Appendf(nil, "release %d\n", i+1), 0o644)
		cmd := exec.Command(cdnBin, "push", dir, "--site", "docs", "--wait", "20s", "--message", msg)
		cmd.Env = append(os.Environ(), env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("cdn push: %v\n%s", err, out)
		}
	}
	for _, e := range info.Edges {
		for _, p := range []string{"/", "/a", "/b"} {
			fetch(t, e.HTTP+p, info.Site.Hosts[0])
		}
	}
	admin.do("POST", "/v1/tokens", map[string]any{"name": xss, "scopes": []string{"read"}}, 201)

	// The one-time link signs in once.
	b.run(t, "open the sign-in link", chromedp.Navigate(info.Dashboard))
	b.waitJS(t, "signed in by link", `document.querySelectorAll("#edges tbody tr").length === 3`)
	b.run(t, "sign out", chromedp.Click(chromedp.CSS("#signout")), chromedp.WaitVisible(chromedp.CSS("#signin")))
	b.run(t, "reuse the sign-in link", chromedp.Navigate(info.Dashboard))
	b.waitJS(t, "a used link signs nobody in", `!document.getElementById("signin").hidden && /used or has expired/.test(document.getElementById("signin-error").textContent)`)

	t.Run("wrong token", func(t *testing.T) {
		b.run(t, "sign in with a wrong token", chromedp.SetValue(chromedp.CSS("#token"), "cdn_nope_nope"), chromedp.Click(chromedp.CSS("#signin-form button")))
		b.waitJS(t, "refused", `/not valid/.test(document.getElementById("signin-error").textContent)`)
		b.shot(t, "01-wrong-token")
	})

	signIn := func(t *testing.T, token string) {
		t.Helper()
		b.run(t, "sign in", chromedp.Navigate(info.Control+"/dashboard/"), chromedp.WaitVisible(chromedp.CSS("#token")),
			chromedp.SetValue(chromedp.CSS("#token"), token), chromedp.Click(chromedp.CSS("#signin-form button")))
		b.waitJS(t, "the network shows", `!document.getElementById("network").hidden && document.querySelectorAll("#edges tbody tr").length >= 3`)
	}

	t.Run("three edges", func(t *testing.T) {
		signIn(t, info.AdminToken)
		b.waitJS(t, "every edge up and live", `[...document.querySelectorAll("#edges tbody tr")].filter(r => r.dataset.health === "up").length === 3`)
		names := evalJS[[]string](t, b, `[...document.querySelectorAll("#edges tbody tr")].map(r => r.dataset.edge)`)
		if want := []string{"edge-a", "edge-b", "edge-c"}; !slices.Equal(names, want) {
			t.Errorf("edges shown: %v, want %v", names, want)
		}
		b.shot(t, "02-network")
		// Requests at edge-a show in its row within a second or two, and
		// in the charts of the demo site.
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
				req, _ := http.NewRequest("GET", info.Edges[0].HTTP+"/", nil)
				req.Host = info.Site.Hosts[0]
				if res, err := http.DefaultClient.Do(req); err == nil {
					res.Body.Close()
				}
			}
		}()
		defer func() { close(stop); <-done }()
		b.waitJS(t, "edge-a's requests per second", `Number(document.querySelector('#edges tr[data-edge="edge-a"]').dataset.rps) > 5`)
		b.shot(t, "02-network-live")
		b.run(t, "open charts", chromedp.Navigate(info.Control+"/dashboard/#charts"), chromedp.WaitVisible(chromedp.CSS("#chart-0")))
		b.waitJS(t, "the demo site's series", `[...document.querySelectorAll("#series option")].some(o => o.value === "site:demo")`)
		b.run(t, "pick the demo site", chromedp.SetValue(chromedp.CSS("#series"), "site:demo"), change("#series"))
		b.waitJS(t, "a chart of it", `/latest [1-9]/.test(document.getElementById("chart-0").getAttribute("aria-label"))`)
		b.shot(t, "02-charts")
	})

	t.Run("purge with blast radius and per-edge progress", func(t *testing.T) {
		b.run(t, "open purges", chromedp.Navigate(info.Control+"/dashboard/#purges"), chromedp.WaitVisible(chromedp.CSS("#purge-form")))
		b.waitJS(t, "sites listed", `[...document.querySelectorAll("#purge-site option")].some(o => o.value === "demo")`)
		b.run(t, "ask for the blast radius", chromedp.SetValue(chromedp.CSS("#purge-site"), "demo"),
			chromedp.Click(chromedp.CSS(`input[name=kind][value=prefixes]`)),
			chromedp.SetValue(chromedp.CSS("#purge-items"), "/"), chromedp.Click(chromedp.CSS("#purge-check")))
		b.waitJS(t, "a count from every edge", `document.querySelectorAll("#blast-table tbody tr").length === 3 && !document.getElementById("blast").hidden`)
		counts := evalJS[map[string]string](t, b, `Object.fromEntries([...document.querySelectorAll("#blast-table tbody tr")].map(r => [r.dataset.edge, r.querySelector(".matched").textContent]))`)
		for _, e := range info.Edges {
			if counts[e.Name] == "0" || counts[e.Name] == "" || strings.HasPrefix(counts[e.Name], "unknown") {
				t.Errorf("blast radius on %s: %q, want the objects fetched there", e.Name, counts[e.Name])
			}
		}
		b.shot(t, "03-blast-radius")
		b.run(t, "confirm the purge", chromedp.Click(chromedp.CSS("#purge-confirm")))
		b.waitJS(t, "every edge applied it", `(() => { const r = document.querySelector("#purge-list tbody tr"); return r && r.dataset.done === "true" && /3 of 3 edges/.test(r.textContent); })()`)
		b.shot(t, "04-purge-applied")
	})

	t.Run("roll back a release", func(t *testing.T) {
		b.run(t, "open releases", chromedp.Navigate(info.Control+"/dashboard/#releases"), chromedp.WaitVisible(chromedp.CSS("#release-list")))
		b.waitJS(t, "docs listed", `[...document.querySelectorAll("#release-site option")].some(o => o.value === "docs")`)
		b.run(t, "pick docs", chromedp.SetValue(chromedp.CSS("#release-site"), "docs"),
			change("#release-site"))
		b.waitJS(t, "release 2 live on every edge", `(() => { const r = document.querySelector('#release-list tr[data-release="2"]'); return r && r.dataset.live === "true" && r.querySelector(".serving").textContent.split(",").length === 3; })()`)
		b.confirm(t, "roll back to 1", `#release-list tr[data-release="1"] button`)
		b.waitJS(t, "release 1 live on every edge", `(() => { const r = document.querySelector('#release-list tr[data-release="1"]'); return r && r.dataset.live === "true" && r.querySelector(".serving").textContent.split(",").length === 3; })()`)
		b.shot(t, "05-rolled-back")
	})

	t.Run("drain an edge", func(t *testing.T) {
		b.run(t, "open the network", chromedp.Navigate(info.Control+"/dashboard/#network"))
		b.waitJS(t, "edges", `document.querySelectorAll("#edges tbody tr").length === 3`)
		b.confirm(t, "drain edge-a", `button[aria-label="Drain edge-a"]`)
		b.waitJS(t, "edge-a marked draining", `document.querySelector('#edges tr[data-edge="edge-a"]').dataset.draining === "true"`)
		b.shot(t, "06-drained")
		// A client near edge-a (192.0.2.0/24 maps to its region) no longer
		// gets it.
		edgeA := strings.Split(strings.TrimPrefix(info.Edges[0].HTTP, "http://"), ":")[0]
		testwait.Until(t, "edge-a gone from GeoDNS answers", func() bool {
			got := geoAnswer(t, info.GeoDNS, info.Site.Hosts[0], "192.0.2.0/24")
			return len(got) > 0 && !slices.Contains(got, edgeA)
		})
		b.run(t, "explain", chromedp.Navigate(info.Control+"/dashboard/#geodns"), chromedp.WaitVisible(chromedp.CSS("#explain-client")),
			chromedp.SetValue(chromedp.CSS("#explain-client"), "192.0.2.0/24"), chromedp.Click(chromedp.CSS("#explain-form button")))
		b.waitJS(t, "the explainer says why", `(() => { const r = document.querySelector('#explain-table tr[data-edge="edge-a"]'); return r && r.dataset.eligible === "false" && /draining/.test(r.textContent) && !/edge-a/.test(document.getElementById("explain-answer").textContent); })()`)
		b.shot(t, "07-geodns-explainer")
		b.run(t, "back to the network", chromedp.Navigate(info.Control+"/dashboard/#network"))
		b.waitJS(t, "edges", `document.querySelectorAll("#edges tbody tr").length === 3`)
		b.confirm(t, "undrain edge-a", `button[aria-label="Undrain edge-a"]`)
		b.waitJS(t, "edge-a back", `document.querySelector('#edges tr[data-edge="edge-a"]').dataset.draining === "false"`)
	})

	t.Run("keyboard", func(t *testing.T) {
		// Tab through the page from the top to the first Drain button,
		// open the dialog with Enter, leave it with Escape: nothing
		// drained.
		b.run(t, "open the network", chromedp.Navigate(info.Control+"/dashboard/#network"))
		b.waitJS(t, "edges", `document.querySelectorAll("#edges tbody tr").length === 3`)
		for i := 0; ; i++ {
			b.run(t, "tab", chromedp.KeyEvent(kb.Tab))
			if evalJS[string](t, b, `document.activeElement.getAttribute("aria-label") || ""`) == "Drain edge-a" {
				break
			}
			if i == 40 {
				t.Fatal("the Drain button of edge-a is not reached by Tab")
			}
		}
		// The rows are built anew with every snapshot: the focus stays.
		was := evalJS[string](t, b, `document.getElementById("updated").textContent`)
		b.waitJS(t, "the next snapshot", `document.getElementById("updated").textContent !== `+strconv.Quote(was))
		if got := evalJS[string](t, b, `document.activeElement.getAttribute("aria-label") || document.activeElement.tagName`); got != "Drain edge-a" {
			t.Fatalf("after a snapshot the focus is on %q, not the Drain button of edge-a", got)
		}
		b.run(t, "enter", chromedp.KeyEvent(kb.Enter))
		b.waitJS(t, "the dialog open", `document.getElementById("confirm").open && document.activeElement.id === "confirm-cancel"`)
		b.run(t, "escape", chromedp.KeyEvent(kb.Escape))
		b.waitJS(t, "the dialog closed", `!document.getElementById("confirm").open`)
		time.Sleep(300 * time.Millisecond)
		if evalJS[string](t, b, `document.querySelector('#edges tr[data-edge="edge-a"]').dataset.draining`) != "false" {
			t.Error("Escape drained edge-a")
		}
	})

	t.Run("tokens: mint shown once, revoke", func(t *testing.T) {
		b.run(t, "open tokens", chromedp.Navigate(info.Control+"/dashboard/#tokens"), chromedp.WaitVisible(chromedp.CSS("#token-form")),
			chromedp.SetValue(chromedp.CSS("#token-name"), "ci"), chromedp.SetValue(chromedp.CSS("#token-scopes"), "purge:demo"),
			chromedp.SetValue(chromedp.CSS("#token-ttl"), "1h"), chromedp.Click(chromedp.CSS("#token-form button")))
		b.waitJS(t, "the secret shown", `/^cdn_/.test(document.getElementById("token-secret-value").textContent)`)
		secret := evalJS[string](t, b, `document.getElementById("token-secret-value").textContent`)
		id := strings.Split(strings.TrimPrefix(secret, "cdn_"), "_")[0]
		b.waitJS(t, "listed without its secret", `!!document.querySelector('#token-list tr[data-token="`+id+`"]') && !document.getElementById("token-list").textContent.includes("`+secret+`")`)
		b.shot(t, "08-token-minted")
		minted := &apiCaller{t: t, base: info.Control, token: secret}
		minted.do("GET", "/v1/purges/1", nil, 200)
		b.confirm(t, "revoke", `#token-list tr[data-token="`+id+`"] button`)
		b.waitJS(t, "gone from the list", `!document.querySelector('#token-list tr[data-token="`+id+`"]')`)
		minted.do("GET", "/v1/purges/1", nil, 401)
	})

	t.Run("hostile text stays text", func(t *testing.T) {
		// A site form with a hostile name: the field error shows it as text.
		b.run(t, "open sites", chromedp.Navigate(info.Control+"/dashboard/#sites"), chromedp.WaitVisible(chromedp.CSS("#site-new")),
			chromedp.Click(chromedp.CSS("#site-new")), chromedp.SetValue(chromedp.CSS("#site-name"), xss),
			chromedp.SetValue(chromedp.CSS("#site-hosts"), "ok.cdn.test, "+xss), chromedp.SetValue(chromedp.CSS("#site-origin"), "javascript:"+xss),
			chromedp.Click(chromedp.CSS("#site-form button[type=submit]")))
		b.waitJS(t, "errors by field", `document.getElementById("site-name-error").textContent.startsWith("name:") && document.getElementById("site-hosts-error").textContent.includes("hosts") && document.getElementById("site-name").getAttribute("aria-invalid") === "true"`)
		b.shot(t, "08-site-field-errors")
		// Purge paths and tags take no spaces: markup written without them.
		admin.with(t).do("POST", "/v1/sites/demo/purge", map[string]any{"prefixes": []string{"/<script>window.__xss=3</script>"},
			"tags": []string{"<img/src=x/onerror=window.__xss=4>"}}, 202)
		for _, view := range []string{"purges", "releases", "tokens", "sites", "network"} {
			b.run(t, "open "+view, chromedp.Navigate(info.Control+"/dashboard/#"+view))
			time.Sleep(300 * time.Millisecond)
			if view == "releases" {
				b.run(t, "pick docs", chromedp.SetValue(chromedp.CSS("#release-site"), "docs"),
					change("#release-site"))
				b.waitJS(t, "the hostile message shown as text", `[...document.querySelectorAll("#release-list td")].some(td => td.textContent.includes("onerror"))`)
			}
			if view == "tokens" {
				b.waitJS(t, "the hostile token name shown as text", `[...document.querySelectorAll("#token-list td")].some(td => td.textContent.includes("<img"))`)
			}
			if view == "purges" {
				b.waitJS(t, "the hostile prefix shown as text", `[...document.querySelectorAll("#purge-list td")].some(td => td.textContent.includes("<script>"))`)
			}
			ran := evalJS[bool](t, b, `window.__xss !== undefined || document.querySelectorAll("main img, main script").length > 0`)
			if ran {
				t.Errorf("%s: the hostile text became markup or ran", view)
			}
		}
		b.shot(t, "09-hostile-text")
	})

	t.Run("CSRF on every action", func(t *testing.T) {
		c := newSession(t, info.Control, info.AdminToken)
		actions := []struct{ method, path, body string }{
			{"POST", "/dashboard/api/v1/edges/edge-b/drain", ""},
			{"POST", "/dashboard/api/v1/edges/edge-b/undrain", ""},
			{"POST", "/dashboard/api/v1/sites/demo/purge", `{"all":true}`},
			{"POST", "/dashboard/api/v1/sites/docs/releases/2/activate", ""},
			{"PUT", "/dashboard/api/v1/sites/demo", `{"name":"demo","hosts":["evil.test"],"origin":"http://127.0.0.1:1"}`},
			{"POST", "/dashboard/api/v1/sites", `{"name":"evil","hosts":["evil.test"],"origin":"http://127.0.0.1:1"}`},
			{"DELETE", "/dashboard/api/v1/sites/demo", ""},
			{"POST", "/dashboard/api/v1/tokens", `{"name":"evil","scopes":["admin"]}`},
			{"DELETE", "/dashboard/api/v1/tokens/" + strings.Split(strings.TrimPrefix(info.AdminToken, "cdn_"), "_")[0], ""},
			{"DELETE", "/dashboard/api/v1/edges/edge-b", ""},
			{"POST", "/dashboard/count", `{"site":"demo","purge":{"all":true}}`},
			{"POST", "/dashboard/signout", ""},
		}
		for _, a := range actions {
			for _, forged := range []struct{ name, token, origin string }{
				{"no token", "", ""},
				{"wrong token", "WRONG", ""},
				{"right token from another site", c.csrf, "http://evil.test"},
			} {
				if got := c.do(a.method, a.path, a.body, forged.token, forged.origin); got != http.StatusForbidden {
					t.Errorf("%s %s with %s: %d, want 403", a.method, a.path, forged.name, got)
				}
			}
		}
		// Nothing happened: the admin token still works, edge-b is not
		// drained, the demo site is there.
		var edge struct{ Draining bool }
		admin.with(t).get("/v1/edges/edge-b", &edge)
		if edge.Draining {
			t.Error("edge-b drained by a forged request")
		}
		admin.with(t).do("GET", "/v1/sites/demo", nil, 200)
	})

	t.Run("read-only token", func(t *testing.T) {
		var minted struct{ Token string }
		admin.with(t).doInto("POST", "/v1/tokens", map[string]any{"name": "viewer", "scopes": []string{"read"}}, 201, &minted)
		b.run(t, "sign out", chromedp.Navigate(info.Control+"/dashboard/"), chromedp.WaitVisible(chromedp.CSS("#signout")), chromedp.Click(chromedp.CSS("#signout")))
		signIn(t, minted.Token)
		b.waitJS(t, "drain buttons disabled", `[...document.querySelectorAll("#edges tbody button")].length === 3 && [...document.querySelectorAll("#edges tbody button")].every(b => b.disabled)`)
		b.shot(t, "10-read-only")
		// Even when the page is made to act, the API refuses.
		status := evalJS[float64](t, b, `(async () => {
			const s = await (await fetch("/dashboard/session")).json();
			const r = await fetch("/dashboard/api/v1/edges/edge-b/drain", {method: "POST", headers: {"X-CSRF-Token": s.csrf}});
			return r.status; })()`)
		if status != 403 {
			t.Errorf("a read-only session's drain: %v, want 403", status)
		}
		b.run(t, "open releases", chromedp.Navigate(info.Control+"/dashboard/#releases"))
		b.run(t, "pick docs", chromedp.WaitVisible(chromedp.CSS("#release-site")), chromedp.SetValue(chromedp.CSS("#release-site"), "docs"),
			change("#release-site"))
		b.waitJS(t, "rollback disabled", `(() => { const bs = [...document.querySelectorAll("#release-list button")]; return bs.length > 0 && bs.every(b => b.disabled); })()`)

		// The token revoked mid-session: the open page stops and asks to
		// sign in again.
		b.run(t, "back to the network", chromedp.Navigate(info.Control+"/dashboard/#network"))
		b.waitJS(t, "edges", `document.querySelectorAll("#edges tbody tr").length >= 3`)
		admin.with(t).do("DELETE", "/v1/tokens/"+strings.Split(strings.TrimPrefix(minted.Token, "cdn_"), "_")[0], nil, 204)
		b.waitJS(t, "signed out by the revocation", `!document.getElementById("signin").hidden && document.getElementById("network").hidden && /revoked/.test(document.getElementById("signin-error").textContent)`)
		b.shot(t, "10-read-only-revoked")
	})

	t.Run("50 edges interactive in under a second", func(t *testing.T) {
		signIn(t, info.AdminToken)
		registerEdges(t, info, 47)
		testwait.Until(t, "50 edges registered", func() bool {
			var body struct{ Edges []struct{ Name string } }
			admin.with(t).get("/v1/edges", &body)
			return len(body.Edges) == 50
		})
		time.Sleep(time.Second) // the dashboard's watch of the registry has them too
		// A fresh load of the page (a new document, not a hash change).
		b.run(t, "load", chromedp.Navigate("about:blank"), chromedp.Navigate(info.Control+"/dashboard/#network"))
		b.waitJS(t, "50 rows", `document.querySelectorAll("#edges tbody tr").length === 50`)
		if rows := evalJS[float64](t, b, `performance.getEntriesByName("network-rendered")[0].detail.rows`); rows != 50 {
			t.Fatalf("the first render showed %v edges, want all 50", rows)
		}
		ms := evalJS[float64](t, b, `performance.getEntriesByName("network-rendered")[0].startTime`)
		t.Logf("network table rendered with 50 edges %.0f ms after navigation start", ms)
		fmt.Fprintf(os.Stderr, "dashboard: 50 edges rendered %.0f ms after navigation start\n", ms)
		if ms >= 1000 {
			t.Errorf("50 edges rendered after %.0f ms, want under 1 s", ms)
		}
		b.shot(t, "11-fifty-edges")
		// The same page on a phone's screen.
		b.run(t, "phone", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile),
			chromedp.Navigate(info.Control+"/dashboard/#network"))
		b.waitJS(t, "50 rows on a phone", `document.querySelectorAll("#edges tbody tr").length === 50`)
		b.shot(t, "11-phone")
		b.run(t, "laptop", chromedp.EmulateViewport(1280, 900))
	})

	if errs := b.takeErrors(); len(errs) > 0 {
		t.Errorf("the page logged errors:\n%s", strings.Join(errs, "\n"))
	}

	t.Run("control goes away and comes back", func(t *testing.T) {
		up.stop(t)
		b.waitJS(t, "the page says control is gone", `!document.getElementById("banner").hidden && /unreachable/.test(document.getElementById("banner").textContent)`)
		b.shot(t, "12-control-gone")
		os.Remove(filepath.Join(data, "up.json"))
		start(t, upArgs...)
		readUp(t, data)
		b.waitJS(t, "the page recovers", `document.getElementById("banner").hidden && document.querySelectorAll("#edges tbody tr").length >= 3`)
		b.shot(t, "13-control-back")
		b.takeErrors() // the refused reconnects while control was away
	})
	t.Logf("screenshots in %s", b.artifacts)
}

// readUp waits for DATA/up.json and reads it.
func readUp(t *testing.T, data string) dashUpInfo {
	t.Helper()
	var info dashUpInfo
	testwait.Until(t, "up.json", func() bool {
		bs, err := os.ReadFile(filepath.Join(data, "up.json"))
		return err == nil && json.Unmarshal(bs, &info) == nil
	})
	return info
}

// dashUpInfo is up.json with the dashboard link.
type dashUpInfo struct {
	upInfo
	Dashboard string `json:"dashboard"`
	Operator  string `json:"operator_creds"`
	NATS      string `json:"nats"`
}

// apiCaller calls the control API with a token.
type apiCaller struct {
	t           *testing.T
	base, token string
}

// with is a for a subtest.
func (a *apiCaller) with(t *testing.T) *apiCaller {
	return &apiCaller{t: t, base: a.base, token: a.token}
}

func (a *apiCaller) doInto(method, path string, body any, want int, into any) {
	a.t.Helper()
	var rd *bytes.Reader
	if body != nil {
		bs, _ := json.Marshal(body)
		rd = bytes.NewReader(bs)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, _ := http.NewRequest(method, a.base+path, rd)
	req.Header.Set("Authorization", "Bearer "+a.token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	if res.StatusCode != want {
		var msg bytes.Buffer
		msg.ReadFrom(res.Body)
		a.t.Fatalf("%s %s: %d, want %d: %s", method, path, res.StatusCode, want, msg.String())
	}
	if into != nil {
		json.NewDecoder(res.Body).Decode(into)
	}
}

func (a *apiCaller) do(method, path string, body any, want int) {
	a.t.Helper()
	a.doInto(method, path, body, want, nil)
}
func (a *apiCaller) get(path string, into any) { a.t.Helper(); a.doInto("GET", path, nil, 200, into) }

// dashSession is a signed-in dashboard session outside the browser.
type dashSession struct {
	t      *testing.T
	base   string
	client *http.Client
	csrf   string
}

func newSession(t *testing.T, base, token string) *dashSession {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	s := &dashSession{t: t, base: base, client: &http.Client{Jar: jar, Timeout: 10 * time.Second}}
	if got := s.do("POST", "/dashboard/signin", `{"token":"`+token+`"}`, "", base); got != 200 {
		t.Fatalf("sign in: %d", got)
	}
	res, err := s.client.Get(base + "/dashboard/session")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var body struct{ CSRF string }
	json.NewDecoder(res.Body).Decode(&body)
	if body.CSRF == "" {
		t.Fatal("no CSRF token in the session")
	}
	s.csrf = body.CSRF
	return s
}

func (s *dashSession) do(method, path, body, csrf, origin string) int {
	req, _ := http.NewRequest(method, s.base+path, strings.NewReader(body))
	if csrf != "" {
		req.Header.Set("X-CSRF-Token", csrf)
	}
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := s.client.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	res.Body.Close()
	return res.StatusCode
}

// registerEdges registers n more edges, as the operator (NATS admin in
// the account), so the page has many rows to draw.
func registerEdges(t *testing.T, info dashUpInfo, n int) {
	t.Helper()
	nc, err := nats.Connect(info.NATS, nats.UserCredentials(info.Operator))
	if err != nil {
		t.Fatalf("connect as the operator: %v", err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	store, err := state.Bind(ctx, nc, state.Access{Writes: []string{state.EdgesBucket}})
	if err != nil {
		t.Fatalf("bind the edges bucket: %v", err)
	}
	for i := range n {
		e := state.Edge{Name: fmt.Sprintf("extra-%02d", i), Region: fmt.Sprintf("extra-%d", i%5), HTTP: "http://127.0.0.1:9",
			Capacity: 1, Started: time.Now()}
		if err := store.Heartbeat(ctx, e); err != nil {
			t.Fatalf("register %s: %v", e.Name, err)
		}
	}
}
