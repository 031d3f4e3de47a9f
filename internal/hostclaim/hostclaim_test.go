package hostclaim

import "testing"

func TestClaim(t *testing.T) {
	type claim struct{ site, host string }
	tests := []struct {
		name      string
		before    []claim
		claim     claim
		wantOwner string
		wantOK    bool
	}{
		{name: "free host", claim: claim{"a", "www.example.com"}, wantOwner: "a", wantOK: true},
		{name: "same exact host", before: []claim{{"a", "www.example.com"}}, claim: claim{"b", "www.example.com"}, wantOwner: "a"},
		{name: "case differs", before: []claim{{"a", "www.example.com"}}, claim: claim{"b", "WWW.Example.COM"}, wantOwner: "a"},
		{name: "trailing dot", before: []claim{{"a", "www.example.com."}}, claim: claim{"b", "www.example.com"}, wantOwner: "a"},
		{name: "same wildcard", before: []claim{{"a", "*.example.com"}}, claim: claim{"b", "*.Example.com."}, wantOwner: "a"},
		{name: "second catch-all", before: []claim{{"a", "*"}}, claim: claim{"b", "*"}, wantOwner: "a"},
		{name: "exact under a wildcard", before: []claim{{"a", "*.example.com"}}, claim: claim{"b", "www.example.com"}, wantOwner: "b", wantOK: true},
		{name: "wildcard over an exact", before: []claim{{"a", "www.example.com"}}, claim: claim{"b", "*.example.com"}, wantOwner: "b", wantOK: true},
		{name: "deeper wildcard", before: []claim{{"a", "*.example.com"}}, claim: claim{"b", "*.a.example.com"}, wantOwner: "b", wantOK: true},
		{name: "one site names a host twice", before: []claim{{"a", "www.example.com"}}, claim: claim{"a", "WWW.example.com."}, wantOwner: "a", wantOK: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Claims{}
			for _, b := range tt.before {
				c.Claim(b.site, b.host)
			}
			owner, ok := c.Claim(tt.claim.site, tt.claim.host)
			if owner != tt.wantOwner || ok != tt.wantOK {
				t.Errorf("Claim(%q, %q) = %q, %v; want %q, %v", tt.claim.site, tt.claim.host, owner, ok, tt.wantOwner, tt.wantOK)
			}
		})
	}
}
