package tier

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

var secret = []byte("0123456789abcdef0123456789abcdef")

func TestMarkVerify(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	good := markValue(secret, "edge-a", StageHome, 0xabc, now, "www.example.com", "/a?b=1")
	tests := []struct {
		name      string
		secret    []byte
		value     string
		at        time.Time
		host, uri string
		ok        bool
		wantFrom  string
		wantStage Stage
	}{
		{"good", secret, good, now, "www.example.com", "/a?b=1", true, "edge-a", StageHome},
		{"clock 50s ahead", secret, good, now.Add(50 * time.Second), "www.example.com", "/a?b=1", true, "edge-a", StageHome},
		{"too old", secret, good, now.Add(2 * time.Minute), "www.example.com", "/a?b=1", false, "", StageNone},
		{"from the future", secret, good, now.Add(-2 * time.Minute), "www.example.com", "/a?b=1", false, "", StageNone},
		{"another URI", secret, good, now, "www.example.com", "/other", false, "", StageNone},
		{"another host", secret, good, now, "evil.example.com", "/a?b=1", false, "", StageNone},
		{"another secret", []byte("another secret, 32 bytes long..."), good, now, "www.example.com", "/a?b=1", false, "", StageNone},
		{"no secret", nil, good, now, "www.example.com", "/a?b=1", false, "", StageNone},
		{"stage raised", secret, strings.Replace(good, " home ", " shield ", 1), now, "www.example.com", "/a?b=1", false, "", StageNone},
		{"sender renamed", secret, strings.Replace(good, "edge-a", "edge-b", 1), now, "www.example.com", "/a?b=1", false, "", StageNone},
		{"unsigned", secret, "edge-a home abc 1800000000", now, "www.example.com", "/a?b=1", false, "", StageNone},
		{"empty", secret, "", now, "www.example.com", "/a?b=1", false, "", StageNone},
		{"garbage", secret, "\x00\xff; ;;", now, "www.example.com", "/a?b=1", false, "", StageNone},
		{"too long", secret, good + strings.Repeat(" ", 600), now, "www.example.com", "/a?b=1", false, "", StageNone},
	}
	for _, tt := range tests {
		m, ok := verifyMark(tt.secret, tt.value, tt.at, tt.host, tt.uri)
		if ok != tt.ok || m.From != tt.wantFrom || m.Stage != tt.wantStage {
			t.Errorf("%s: got %+v %v, want from %q stage %v ok %v", tt.name, m, ok, tt.wantFrom, tt.wantStage, tt.ok)
		}
		if ok && m.Epoch != 0xabc {
			t.Errorf("%s: epoch %x, want abc", tt.name, m.Epoch)
		}
	}
}

func FuzzMark(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	f.Add(markValue(secret, "edge-a", StageShield, 7, now, "h", "/"), "h", "/")
	f.Add("a b c d e", "h", "/")
	f.Fuzz(func(t *testing.T, value, host, uri string) {
		LoopCount([]string{value}, "selfcdn")
		m, ok := verifyMark(secret, value, now, host, uri)
		if !ok {
			return
		}
		// Only a signature over exactly this sender, stage, epoch, time
		// and request verifies.
		fields := strings.Fields(value)
		unix, _ := strconv.ParseInt(fields[3], 10, 64)
		if sign(secret, m.From, m.Stage, m.Epoch, unix, host, uri) != fields[4] {
			t.Fatalf("%q verified as %+v without its signature", value, m)
		}
	})
}

func TestLoopCount(t *testing.T) {
	tests := []struct {
		values []string
		want   int
	}{
		{nil, 0},
		{[]string{"selfcdn"}, 1},
		{[]string{"selfcdn, other; x=1, SelfCDN ; v=2"}, 2},
		{[]string{"selfcdn", "selfcdn"}, 2},
		{[]string{"selfcdnx, xselfcdn"}, 0},
		{[]string{",,;;, ;"}, 0},
	}
	for _, tt := range tests {
		if got := LoopCount(tt.values, "selfcdn"); got != tt.want {
			t.Errorf("LoopCount(%q) = %d, want %d", tt.values, got, tt.want)
		}
	}
}

// testTier is edge self in region "eu" of a network with two edges in
// each of "eu" and "us".
func testTier(t *testing.T, self string, urls map[string]string) *Tier {
	t.Helper()
	tr := New(Config{Rampup: time.Nanosecond}, self, "eu", nil)
	t.Cleanup(tr.Close)
	tr.SetSecret(secret)
	var ms []Member
	for i, name := range []string{"eu-1", "eu-2", "us-1", "us-2"} {
		region, lat := "eu", 50.0
		if strings.HasPrefix(name, "us") {
			region, lat = "us", 40.0
		}
		u := urls[name]
		if u == "" {
			u = fmt.Sprintf("http://127.0.0.%d:1", i+2)
		}
		ms = append(ms, Member{Name: name, Region: region, URL: u, Lat: lat, Up: true})
	}
	tr.SetView(NewView(ms))
	return tr
}

// keyHomedAt finds a key whose home in region is name.
func keyHomedAt(t *testing.T, tr *Tier, region, name string) string {
	for i := range 1000 {
		k := fmt.Sprint("k", i)
		if tr.View().Rank(region, k, time.Now(), 0)[0].Name == name {
			return k
		}
	}
	t.Fatalf("no key homed at %s", name)
	return ""
}

func TestPlan(t *testing.T) {
	tr := testTier(t, "eu-1", nil)
	atOther := keyHomedAt(t, tr, "eu", "eu-2")
	atSelf := keyHomedAt(t, tr, "eu", "eu-1")
	stages := func(hops []Hop) string {
		var s []string
		for _, h := range hops {
			s = append(s, h.Stage.String()+":"+h.Peer.Region)
		}
		return strings.Join(s, ",")
	}
	tests := []struct {
		name, key, shield string
		in                Stage
		want              string
	}{
		{"client, home elsewhere", atOther, "", StageNone, "home:eu"},
		{"client, home is us", atSelf, "", StageNone, ""},
		{"client, shield elsewhere", atOther, "us", StageNone, "home:eu,shield:us,shield:us"},
		{"client, home is us, shield elsewhere", atSelf, "us", StageNone, "shield:us,shield:us"},
		{"client, we are the shield region", atOther, "eu", StageNone, "home:eu"},
		{"from a peer as home: shield only", atOther, "us", StageHome, "shield:us,shield:us"},
		{"from a peer as home, no shield", atOther, "", StageHome, ""},
		{"from a peer as shield: origin", atOther, "us", StageShield, ""},
		{"unknown shield region", atOther, "mars", StageNone, "home:eu"},
	}
	for _, tt := range tests {
		if got := stages(tr.Plan(tt.key, tt.shield, tt.in)); got != tt.want {
			t.Errorf("%s: plan %q, want %q", tt.name, got, tt.want)
		}
	}
	tr.SetSecret(nil)
	if hops := tr.Plan(atOther, "us", StageNone); len(hops) != 0 {
		t.Errorf("without a secret: plan %v, want none", hops)
	}
}

// TestAskSignsAndSkipsFailing sends fills to a real peer, which verifies
// the mark; then to a dead one, which is skipped after three failures.
func TestAskSignsAndSkipsFailing(t *testing.T) {
	var receiver *Tier
	var got Mark
	peer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = receiver.Received(r.Header, r.Host, r.RequestURI)
		io.WriteString(w, "from the home")
	}))
	defer peer.Close()
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()

	tr := testTier(t, "eu-1", map[string]string{"eu-2": peer.URL, "us-1": deadURL, "us-2": deadURL})
	receiver = testTier(t, "eu-2", nil)
	tr.SetPurges(func() uint64 { return 42 })
	receiver.SetPurges(func() uint64 { return 41 })
	key := keyHomedAt(t, tr, "eu", "eu-2")
	req, _ := http.NewRequest(http.MethodGet, "http://unused/", nil)
	req.Host = "www.example.com"
	hops := tr.Plan(key, "", StageNone)
	res, err := tr.Ask(hops[0], req, "/obj?x=1")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if string(b) != "from the home" || got.From != "eu-1" || got.Stage != StageHome || got.Purges != 42 {
		t.Fatalf("peer answered %q and saw mark %+v", b, got)
	}
	// The asker applied purge 42, the receiver only 41: behind.
	if !receiver.Behind(got) {
		t.Errorf("a receiver at purge 41 is not behind an asker at 42")
	}
	if got.Purges = 41; receiver.Behind(got) {
		t.Errorf("a receiver at purge 41 is behind an asker at 41")
	}

	// Forged: the same mark on another URI is any client's request.
	req.Header.Set(PeerHeader, markValue(secret, "eu-1", StageHome, 0, time.Now(), "www.example.com", "/obj?x=1"))
	req.Header.Set(PurgesHeader, "99")
	if m := receiver.Received(req.Header, "www.example.com", "/other"); m.Stage != StageNone || m.Purges != 0 {
		t.Errorf("a mark for another request verified: %+v", m)
	}

	shieldKey := keyHomedAt(t, tr, "us", "us-1")
	for i := range peerFailures {
		hops := tr.Plan(shieldKey, "us", StageHome)
		if len(hops) == 0 {
			t.Fatalf("after %d failures the shield is skipped already", i)
		}
		if _, err := tr.Ask(hops[0], req, "/"); err == nil {
			t.Fatal("a dead peer answered")
		}
	}
	hops = tr.Plan(shieldKey, "us", StageHome)
	if len(hops) != 1 || hops[0].Peer.Name != "us-2" {
		t.Errorf("after %d failures of us-1, plan %v, want us-2 alone", peerFailures, hops)
	}
}

// TestBoundedLoad: with asks outstanding at the key's home past the
// bound, the next fill goes to the next-ranked peer.
func TestBoundedLoad(t *testing.T) {
	tr := New(Config{LoadFactor: 1.25}, "self", "r", nil)
	defer tr.Close()
	tr.SetSecret(secret)
	ms := members("r", 4, time.Time{})
	ms = append(ms, Member{Name: "self", Region: "r", URL: "http://self", Up: true})
	tr.SetView(NewView(ms))
	var key string
	var ranked []Member
	for i := range 1000 {
		key = fmt.Sprint(i)
		if ranked = tr.View().Rank("r", key, time.Now(), 0); ranked[0].Name != "self" && ranked[1].Name != "self" {
			break
		}
	}
	for range minBound - 1 {
		tr.begin(ranked[0].Name) // a few outstanding: still the home
	}
	if hops := tr.Plan(key, "", StageNone); hops[0].Peer.Name != ranked[0].Name {
		t.Fatalf("with %d outstanding at the home, plan %v, want the home %s", minBound-1, hops, ranked[0].Name)
	}
	for range 20 - (minBound - 1) {
		tr.begin(ranked[0].Name) // 20 outstanding, none elsewhere
	}
	// Bound: max(ceil(1.25 * 21 / 5), 8) = 8; the home holds 20.
	hops := tr.Plan(key, "", StageNone)
	if len(hops) != 1 || hops[0].Peer.Name != ranked[1].Name {
		t.Fatalf("with the home loaded, plan %v, want the next-ranked %s", hops, ranked[1].Name)
	}
	for range 20 {
		tr.end(ranked[0].Name, true)
	}
	if hops := tr.Plan(key, "", StageNone); hops[0].Peer.Name != ranked[0].Name {
		t.Fatalf("with the load gone, plan %v, want the home %s", hops, ranked[0].Name)
	}
}

func TestHot(t *testing.T) {
	tr := New(Config{HotAfter: 3}, "self", "r", nil)
	defer tr.Close()
	for i, want := range []bool{false, false, true, true} {
		if got := tr.Hot("k"); got != want {
			t.Errorf("miss %d: hot %v, want %v", i+1, got, want)
		}
	}
	if tr.Hot("other") {
		t.Error("a key seen once is hot")
	}
}

// TestDeclineKeepsPeer: answers a fill declines (the peer's origin
// failed, it lacks the site) do not make the peer skipped.
func TestDeclineKeepsPeer(t *testing.T) {
	peer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "origin down", http.StatusBadGateway)
	}))
	defer peer.Close()
	tr := testTier(t, "eu-1", map[string]string{"eu-2": peer.URL})
	key := keyHomedAt(t, tr, "eu", "eu-2")
	req, _ := http.NewRequest(http.MethodGet, "http://unused/", nil)
	for range 2 * peerFailures {
		hops := tr.Plan(key, "", StageNone)
		if len(hops) != 1 || hops[0].Peer.Name != "eu-2" {
			t.Fatalf("plan %v, want the home eu-2: a declined answer made it skipped", hops)
		}
		res, err := tr.Ask(hops[0], req, "/")
		if err != nil {
			t.Fatal(err)
		}
		tr.Decline(res)
	}
}
