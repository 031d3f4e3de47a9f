package purge

import (
	"fmt"
	"testing"
	"time"

	"github.com/selfcdn/cdn/internal/cachekey"
)

func TestCheck(t *testing.T) {
	const key = "https://www.example.com/assets/app.css?b=2&v=1"
	tests := []struct {
		name string
		req  Request
		key  string
		tags []string
		want Verdict
	}{
		{name: "url", req: Request{URLs: []string{"https://www.example.com/assets/app.css?v=1&b=2"}}, want: Gone},
		{name: "url other scheme", req: Request{URLs: []string{"http://www.example.com/assets/app.css?b=2&v=1"}}, want: Gone},
		{name: "path any host", req: Request{URLs: []string{"/assets/app.css?b=2&v=1"}}, want: Gone},
		{name: "url without query", req: Request{URLs: []string{"/assets/app.css"}}, want: Keep},
		{name: "url other host", req: Request{URLs: []string{"https://img.example.com/assets/app.css?b=2&v=1"}}, want: Keep},
		{name: "url dot segments", req: Request{URLs: []string{"/x/../assets/%61pp.css?b=2&v=1"}}, want: Gone},
		{name: "soft url", req: Request{URLs: []string{"/assets/app.css?b=2&v=1"}, Soft: true}, want: Stale},
		{name: "prefix", req: Request{Prefixes: []string{"/assets/"}}, want: Gone},
		{name: "prefix with host", req: Request{Prefixes: []string{"https://www.example.com/as"}}, want: Gone},
		{name: "prefix other host", req: Request{Prefixes: []string{"https://img.example.com/"}}, want: Keep},
		{name: "prefix elsewhere", req: Request{Prefixes: []string{"/img/"}}, want: Keep},
		{name: "prefix longer than key", req: Request{Prefixes: []string{"/assets/app.css?b=2&v=1&c=3"}}, want: Keep},
		{name: "tag", req: Request{Tags: []string{"css"}}, tags: []string{"all", "css"}, want: Gone},
		{name: "tag not held", req: Request{Tags: []string{"js"}}, tags: []string{"css"}, want: Keep},
		{name: "all", req: Request{All: true}, want: Gone},
		{name: "all soft", req: Request{All: true, Soft: true}, want: Stale},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tbl := NewTable(0, nil, nil)
			before := tbl.Clock()
			c, _ := tbl.Apply("s", tt.req)
			k := tt.key
			if k == "" {
				k = key
			}
			if got := tbl.Site("s").Check(before, k, tt.tags); got != tt.want {
				t.Errorf("Check(stamped before, %q, %v) = %v, want %v", k, tt.tags, got, tt.want)
			}
			if got := tbl.Site("s").Check(c, k, tt.tags); got != Keep {
				t.Errorf("Check(stamped after, %q) = %v, want Keep", k, got)
			}
			if got := tbl.Site("other").Check(before, k, tt.tags); got != Keep {
				t.Errorf("another site's Check = %v, want Keep", got)
			}
		})
	}
}

func TestHardOverridesSoft(t *testing.T) {
	tbl := NewTable(0, nil, nil)
	before := tbl.Clock()
	tbl.Apply("s", Request{Tags: []string{"a"}, Soft: true})
	mid := tbl.Clock()
	tbl.Apply("s", Request{URLs: []string{"/x"}})
	if got := tbl.Site("s").Check(before, "http://h/x", []string{"a"}); got != Gone {
		t.Errorf("Check(before both) = %v, want Gone", got)
	}
	if got := tbl.Site("s").Check(mid, "http://h/y", []string{"a"}); got != Keep {
		t.Errorf("Check(after the soft purge) = %v, want Keep", got)
	}
}

func TestQueryRules(t *testing.T) {
	rules := func(string) cachekey.Rules { return cachekey.Rules{Query: cachekey.QueryIgnore} }
	tbl := NewTable(0, nil, rules)
	before := tbl.Clock()
	tbl.Apply("s", Request{URLs: []string{"/a.js?v=9"}})
	// The edge keys /a.js?anything as /a.js under query: ignore.
	if got := tbl.Site("s").Check(before, "http://h/a.js", nil); got != Gone {
		t.Errorf("Check under query: ignore = %v, want Gone", got)
	}
}

func TestWholeSiteFreesRules(t *testing.T) {
	tbl := NewTable(0, nil, nil)
	for i := range 100 {
		tbl.Apply("s", Request{URLs: []string{fmt.Sprintf("/%d", i)}, Tags: []string{fmt.Sprint(i)}})
	}
	if n := tbl.Rules(); n != 200 {
		t.Fatalf("Rules() = %d, want 200", n)
	}
	tbl.Apply("s", Request{All: true, Soft: true})
	if n := tbl.Rules(); n != 200 {
		t.Errorf("Rules() after a soft whole-site purge = %d, want 200 (hard rules still count)", n)
	}
	tbl.Apply("s", Request{All: true})
	if n := tbl.Rules(); n != 0 {
		t.Errorf("Rules() after a whole-site purge = %d, want 0", n)
	}
}

func TestMaxRulesWidens(t *testing.T) {
	tbl := NewTable(10, nil, nil)
	before := tbl.Clock()
	if _, widened := tbl.Apply("s", Request{Tags: []string{"a", "b"}}); widened {
		t.Fatal("Apply(2 tags) widened under a bound of 10")
	}
	_, widened := tbl.Apply("s", Request{URLs: make9()})
	if !widened {
		t.Fatal("Apply past the bound did not widen")
	}
	if got := tbl.Site("s").Check(before, "http://h/unrelated", nil); got != Gone {
		t.Errorf("Check after widening = %v, want Gone", got)
	}
	if n := tbl.Rules(); n != 0 {
		t.Errorf("Rules() after widening = %d, want 0", n)
	}
}

func make9() []string {
	var u []string
	for i := range 9 {
		u = append(u, fmt.Sprintf("/%d", i))
	}
	return u
}

func TestFloor(t *testing.T) {
	tbl := NewTable(0, nil, nil)
	old := tbl.Clock()
	tbl.Site("a")
	c := tbl.Floor()
	for _, s := range []string{"a", "created-later"} {
		if got := tbl.Site(s).Check(old, "http://h/x", nil); got != Gone {
			t.Errorf("site %s: Check(before the floor) = %v, want Gone", s, got)
		}
		if got := tbl.Site(s).Check(c, "http://h/x", nil); got != Keep {
			t.Errorf("site %s: Check(at the floor) = %v, want Keep", s, got)
		}
	}
}

func TestClockMonotonic(t *testing.T) {
	frozen := time.Unix(1000, 0)
	tbl := NewTable(0, func() time.Time { return frozen }, nil)
	a, _ := tbl.Apply("s", Request{All: true})
	b, _ := tbl.Apply("s", Request{All: true})
	if b <= a || tbl.Clock() != b {
		t.Errorf("clocks %d then %d, Clock() = %d: want strictly rising, ending at the last", a, b, tbl.Clock())
	}
}

// BenchmarkCheck is the cost a purge adds to a hit: an object older than
// some rules, checked against 1,000 URL, 100 prefix and 1,000 tag rules.
func BenchmarkCheck(b *testing.B) {
	tbl := NewTable(0, nil, nil)
	stamp := tbl.Clock()
	for i := range 1000 {
		tbl.Apply("s", Request{URLs: []string{fmt.Sprintf("/u/%d", i)}, Tags: []string{fmt.Sprintf("t%d", i)}})
	}
	for i := range 100 {
		tbl.Apply("s", Request{Prefixes: []string{fmt.Sprintf("/p%d/", i)}})
	}
	s := tbl.Site("s")
	tags := []string{"x", "y", "z"}
	b.Run("older", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			s.Check(stamp, "https://www.example.com/assets/app.css", tags)
		}
	})
	b.Run("newer", func(b *testing.B) {
		b.ReportAllocs()
		now := tbl.Clock()
		for b.Loop() {
			s.Check(now, "https://www.example.com/assets/app.css", tags)
		}
	})
}
