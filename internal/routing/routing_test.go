package routing

import "testing"

func TestLookup(t *testing.T) {
	type site struct{ name string }
	www, wild, deep, any := &site{"www"}, &site{"wild"}, &site{"deep"}, &site{"any"}
	tbl := New([]Route[site]{{"www.example.com", www}, {"*.example.com", wild}, {"*.a.example.com", deep}, {"*", any}})
	tests := []struct {
		host string
		want *site
	}{
		{"www.example.com", www},
		{"WWW.Example.COM:8080", www},
		{"www.example.com.", www},
		{"img.example.com", wild},
		{"x.a.example.com", deep},
		{"x.y.b.example.com", any},
		{"example.com", any},
		{"other.test", any},
		{"[::1]:80", any},
	}
	for _, tt := range tests {
		if got := tbl.Lookup(tt.host); got != tt.want {
			t.Errorf("Lookup(%q) = %v, want %v", tt.host, got, tt.want)
		}
	}
	if got := New([]Route[site]{{"a.test", www}}).Lookup("b.test"); got != nil {
		t.Errorf("Lookup without fallback = %v, want nil", got)
	}
}
