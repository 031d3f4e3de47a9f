package dashboard

import (
	"testing"
	"time"

	"github.com/selfcdn/cdn/internal/state"
)

func TestSeriesLastHour(t *testing.T) {
	s := newSeriesSet()
	start := time.Unix(1_700_000_000, 0)
	// Two hours of one request a second, two in the last second.
	for i := range 2 * window {
		s.add("all", start.Unix()+int64(i), state.SiteFigure{Requests: 1})
	}
	end := start.Add(2*window*time.Second - time.Second)
	s.add("all", end.Unix(), state.SiteFigure{Requests: 1})
	got := s.last("all", end)
	if len(got) != window {
		t.Fatalf("%d samples, want %d", len(got), window)
	}
	if got[0].Time != end.Unix()-window+1 || got[window-1].Time != end.Unix() {
		t.Errorf("samples span %d..%d, want the hour to %d", got[0].Time, got[window-1].Time, end.Unix())
	}
	var total uint64
	for _, p := range got {
		total += p.Requests
	}
	if total != window+1 {
		t.Errorf("%d requests in the last hour, want %d (older seconds overwritten)", total, window+1)
	}
	// Ten minutes later, ten minutes of it are empty, not stale.
	later := s.last("all", end.Add(10*time.Minute))
	for _, p := range later[window-600:] {
		if p.Requests != 0 {
			t.Fatalf("second %d: %d requests from an hour before", p.Time, p.Requests)
		}
	}
	if n := len(s.last("none", end)); n != window {
		t.Errorf("an unknown series: %d samples, want %d zeros", n, window)
	}
}

func TestSeriesBounded(t *testing.T) {
	s := newSeriesSet()
	for i := range maxSeries + 10 {
		s.add(string(rune('a'+i%26))+string(rune(i)), 1, state.SiteFigure{Requests: 1})
	}
	if n := len(s.keys()); n != maxSeries {
		t.Errorf("%d series kept, want at most %d", n, maxSeries)
	}
}

// FuzzOpenSession: a cookie value from a browser is outside input; open
// never panics and never accepts what seal did not make.
func FuzzOpenSession(f *testing.F) {
	k, err := newSealer(make([]byte, 32))
	if err != nil {
		f.Fatal(err)
	}
	now := time.Unix(1_700_000_000, 0)
	f.Add(k.seal(session{Token: "t", CSRF: "c", Expires: now.Add(time.Hour)}))
	f.Add("")
	f.Add("AAAA")
	f.Fuzz(func(t *testing.T, value string) {
		s, err := k.open(value, now)
		if err == nil && (s.Token == "" || s.CSRF == "" || !now.Before(s.Expires)) {
			t.Errorf("opened %q to %+v", value, s)
		}
	})
}
