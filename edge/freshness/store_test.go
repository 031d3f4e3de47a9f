package freshness

import (
	"net/http"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

func TestEvaluate(t *testing.T) {
	date := t0.Format(http.TimeFormat)
	tests := []struct {
		name         string
		req          http.Header
		status       int
		res          http.Header
		policy       Policy
		wantStore    bool
		wantReason   string
		wantLifetime time.Duration
		wantNoStale  bool
		wantNoCache  bool
	}{
		{name: "max-age", status: 200, res: hdr("Cache-Control", "max-age=60", "Date", date), wantStore: true, wantLifetime: time.Minute},
		{name: "s-maxage wins and forbids stale", status: 200, res: hdr("Cache-Control", "max-age=60, s-maxage=10"), wantStore: true, wantLifetime: 10 * time.Second, wantNoStale: true},
		{name: "expires", status: 200, res: hdr("Date", date, "Expires", t0.Add(time.Hour).Format(http.TimeFormat)), wantStore: true, wantLifetime: time.Hour},
		{name: "invalid expires is stale but validatable", status: 200, res: hdr("Date", date, "Expires", "0", "Etag", `"a"`), wantStore: true, wantLifetime: 0},
		{name: "max-age beats expires", status: 200, res: hdr("Date", date, "Cache-Control", "max-age=5", "Expires", t0.Add(time.Hour).Format(http.TimeFormat)), wantStore: true, wantLifetime: 5 * time.Second},
		{name: "cdn-cache-control wins", status: 200, res: hdr("Cache-Control", "no-store", "CDN-Cache-Control", "max-age=300"), wantStore: true, wantLifetime: 5 * time.Minute},
		{name: "cdn-cache-control no-store", status: 200, res: hdr("Cache-Control", "max-age=300", "CDN-Cache-Control", "no-store"), wantReason: "no-store"},
		{name: "no-store", status: 200, res: hdr("Cache-Control", "no-store, max-age=60"), wantReason: "no-store"},
		{name: "private", status: 200, res: hdr("Cache-Control", "private, max-age=60"), wantReason: "private"},
		{name: "request no-store", req: hdr("Cache-Control", "no-store"), status: 200, res: hdr("Cache-Control", "max-age=60"), wantReason: "request no-store"},
		{name: "no-cache stored, always validated", status: 200, res: hdr("Cache-Control", "no-cache, max-age=60", "Etag", `"x"`), policy: Policy{MinTTL: time.Hour}, wantStore: true, wantLifetime: 0, wantNoCache: true},
		{name: "must-revalidate", status: 200, res: hdr("Cache-Control", "max-age=60, must-revalidate"), wantStore: true, wantLifetime: time.Minute, wantNoStale: true},
		{name: "proxy-revalidate", status: 200, res: hdr("Cache-Control", "max-age=60, proxy-revalidate"), wantStore: true, wantLifetime: time.Minute, wantNoStale: true},
		{name: "heuristic from last-modified", status: 200, res: hdr("Date", date, "Last-Modified", t0.Add(-100*time.Hour).Format(http.TimeFormat)), wantStore: true, wantLifetime: 10 * time.Hour},
		{name: "heuristic capped", status: 200, res: hdr("Date", date, "Last-Modified", t0.Add(-10000*time.Hour).Format(http.TimeFormat)), wantStore: true, wantLifetime: heuristicMax},
		{name: "site default ttl", status: 200, res: hdr("Date", date), policy: Policy{DefaultTTL: 2 * time.Minute}, wantStore: true, wantLifetime: 2 * time.Minute},
		{name: "nothing to go on", status: 200, res: hdr("Date", date), wantReason: "stale on arrival"},
		{name: "min ttl raises", status: 200, res: hdr("Cache-Control", "max-age=1"), policy: Policy{MinTTL: time.Minute}, wantStore: true, wantLifetime: time.Minute},
		{name: "max ttl caps", status: 200, res: hdr("Cache-Control", "max-age=86400"), policy: Policy{MaxTTL: time.Hour}, wantStore: true, wantLifetime: time.Hour},
		{name: "404 heuristic with default", status: 404, res: hdr(), policy: Policy{DefaultTTL: time.Second}, wantStore: true, wantLifetime: time.Second},
		{name: "302 needs explicit", status: 302, res: hdr(), policy: Policy{DefaultTTL: time.Minute}, wantReason: "no freshness"},
		{name: "302 explicit", status: 302, res: hdr("Cache-Control", "max-age=9"), wantStore: true, wantLifetime: 9 * time.Second},
		{name: "206 never", status: 206, res: hdr("Cache-Control", "max-age=9"), wantReason: "status"},
		{name: "vary star", status: 200, res: hdr("Cache-Control", "max-age=9", "Vary", "*"), wantReason: "vary *"},
		{name: "set-cookie", status: 200, res: hdr("Cache-Control", "max-age=9", "Set-Cookie", "a=b"), wantReason: "set-cookie"},
		{name: "authorization plain", req: hdr("Authorization", "Bearer x"), status: 200, res: hdr("Cache-Control", "max-age=9"), wantReason: "authorization"},
		{name: "authorization public", req: hdr("Authorization", "Bearer x"), status: 200, res: hdr("Cache-Control", "public, max-age=9"), wantStore: true, wantLifetime: 9 * time.Second},
		{name: "authorization s-maxage", req: hdr("Authorization", "Bearer x"), status: 200, res: hdr("Cache-Control", "s-maxage=9"), wantStore: true, wantLifetime: 9 * time.Second, wantNoStale: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := tt.req
			if req == nil {
				req = http.Header{}
			}
			got := Evaluate(req, tt.status, tt.res, t0, t0, tt.policy)
			if got.Store != tt.wantStore || got.Reason != tt.wantReason {
				t.Fatalf("Evaluate store = %v (%q), want %v (%q)", got.Store, got.Reason, tt.wantStore, tt.wantReason)
			}
			if !got.Store {
				return
			}
			m := got.Meta
			if m.Lifetime != tt.wantLifetime || m.NoStale != tt.wantNoStale || m.NoCache != tt.wantNoCache {
				t.Errorf("Evaluate meta = lifetime %v nostale %v nocache %v, want %v %v %v", m.Lifetime, m.NoStale, m.NoCache, tt.wantLifetime, tt.wantNoStale, tt.wantNoCache)
			}
		})
	}
}

func TestInitialAge(t *testing.T) {
	tests := []struct {
		name      string
		res       http.Header
		sent, got time.Time
		want      time.Duration
	}{
		{name: "no age, no delay", res: hdr("Date", t0.Format(http.TimeFormat)), sent: t0, got: t0, want: 0},
		{name: "age header plus delay", res: hdr("Age", "30", "Date", t0.Format(http.TimeFormat)), sent: t0, got: t0.Add(2 * time.Second), want: 32 * time.Second},
		{name: "apparent age wins", res: hdr("Age", "1", "Date", t0.Add(-time.Minute).Format(http.TimeFormat)), sent: t0, got: t0, want: time.Minute},
		{name: "date in future clamps", res: hdr("Date", t0.Add(time.Hour).Format(http.TimeFormat)), sent: t0, got: t0, want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Evaluate(http.Header{}, 200, withCC(tt.res), tt.sent, tt.got, Policy{})
			if d.Meta.InitialAge != tt.want {
				t.Errorf("InitialAge = %v, want %v", d.Meta.InitialAge, tt.want)
			}
		})
	}
}

func withCC(h http.Header) http.Header {
	h.Set("Cache-Control", "max-age=3600")
	return h
}

func TestCheck(t *testing.T) {
	base := Meta{Lifetime: time.Minute, ResponseTime: t0}
	tests := []struct {
		name string
		meta Meta
		req  string
		at   time.Duration
		want State
	}{
		{name: "fresh", meta: base, at: 30 * time.Second, want: Fresh},
		{name: "stale", meta: base, at: 61 * time.Second, want: Validate},
		{name: "swr window", meta: Meta{Lifetime: time.Minute, ResponseTime: t0, StaleWhileRevalidate: time.Minute}, at: 90 * time.Second, want: StaleRevalidate},
		{name: "past swr window", meta: Meta{Lifetime: time.Minute, ResponseTime: t0, StaleWhileRevalidate: time.Minute}, at: 3 * time.Minute, want: Validate},
		{name: "must-revalidate beats swr", meta: Meta{Lifetime: time.Minute, ResponseTime: t0, StaleWhileRevalidate: time.Minute, NoStale: true}, at: 90 * time.Second, want: Validate},
		{name: "no-cache response", meta: Meta{Lifetime: time.Hour, ResponseTime: t0, NoCache: true}, at: 0, want: Validate},
		{name: "request no-cache", meta: base, req: "no-cache", at: 0, want: Validate},
		{name: "request max-age", meta: base, req: "max-age=10", at: 20 * time.Second, want: Validate},
		{name: "request max-age ok", meta: base, req: "max-age=30", at: 20 * time.Second, want: Fresh},
		{name: "request min-fresh", meta: base, req: "min-fresh=50", at: 20 * time.Second, want: Validate},
		{name: "request max-stale", meta: base, req: "max-stale=30", at: 80 * time.Second, want: Fresh},
		{name: "request max-stale vs must-revalidate", meta: Meta{Lifetime: time.Minute, ResponseTime: t0, NoStale: true}, req: "max-stale", at: 80 * time.Second, want: Validate},
		{name: "initial age counts", meta: Meta{Lifetime: time.Minute, ResponseTime: t0, InitialAge: 50 * time.Second}, at: 20 * time.Second, want: Validate},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Check(tt.meta, Parse(tt.req), t0.Add(tt.at)); got != tt.want {
				t.Errorf("Check(at %v, req %q) = %v, want %v", tt.at, tt.req, got, tt.want)
			}
		})
	}
}

func TestStaleIfError(t *testing.T) {
	m := Meta{Lifetime: time.Minute, ResponseTime: t0, StaleIfError: time.Hour}
	if !StaleIfError(m, t0.Add(30*time.Minute)) {
		t.Errorf("StaleIfError inside window = false, want true")
	}
	if StaleIfError(m, t0.Add(2*time.Hour)) {
		t.Errorf("StaleIfError past window = true, want false")
	}
	m.NoStale = true
	if StaleIfError(m, t0.Add(2*time.Minute)) {
		t.Errorf("StaleIfError with must-revalidate = true, want false")
	}
}
