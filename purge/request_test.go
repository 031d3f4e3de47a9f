package purge

import (
	"errors"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	hosts := []string{"www.example.com", "*.cdn.example.com"}
	tests := []struct {
		name    string
		req     Request
		wantErr string // a substring; "" for valid
		tooBig  bool
	}{
		{name: "url", req: Request{URLs: []string{"https://www.example.com/a.css?v=1"}}},
		{name: "path", req: Request{URLs: []string{"/a.css"}}},
		{name: "wildcard host", req: Request{URLs: []string{"http://img.cdn.example.com/x.png"}}},
		{name: "prefix", req: Request{Prefixes: []string{"/assets/"}}},
		{name: "tag", req: Request{Tags: []string{"product-42"}}},
		{name: "all soft", req: Request{All: true, Soft: true}},
		{name: "empty", req: Request{}, wantErr: "nothing to purge"},
		{name: "all and urls", req: Request{All: true, URLs: []string{"/a"}}, wantErr: "takes no urls"},
		{name: "other host", req: Request{URLs: []string{"https://evil.example.net/a"}}, wantErr: "urls[0]: host evil.example.net is not a host"},
		{name: "bare wildcard parent", req: Request{URLs: []string{"https://cdn.example.com/a"}}, wantErr: "not a host"},
		{name: "ftp", req: Request{URLs: []string{"ftp://www.example.com/a"}}, wantErr: "want a path"},
		{name: "relative", req: Request{URLs: []string{"a.css"}}, wantErr: "want a path"},
		{name: "glob prefix", req: Request{Prefixes: []string{"/assets/*"}}, wantErr: "prefixes[0]"},
		{name: "space", req: Request{URLs: []string{"/a b"}}, wantErr: "space"},
		{name: "empty url", req: Request{URLs: []string{""}}, wantErr: "urls[0]: empty"},
		{name: "tag comma", req: Request{Tags: []string{"a,b"}}, wantErr: "tags[0]"},
		{name: "tag empty", req: Request{Tags: []string{""}}, wantErr: "empty tag"},
		{name: "long tag", req: Request{Tags: []string{strings.Repeat("t", MaxTagLength+1)}}, wantErr: "longer than"},
		{name: "fragment", req: Request{URLs: []string{"/a#b"}}, wantErr: "fragment"},
		{name: "too many", req: Request{Tags: make([]string, MaxItems+1)}, tooBig: true},
		{name: "all problems", req: Request{URLs: []string{"", "/ok"}, Tags: []string{""}}, wantErr: "urls[0]: empty\ntags[0]: empty tag"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.req.Validate(hosts)
			switch {
			case tt.tooBig:
				if !errors.Is(err, ErrTooLarge) {
					t.Errorf("Validate() = %v, want ErrTooLarge", err)
				}
			case tt.wantErr == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("Validate() = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestSplit(t *testing.T) {
	tests := []struct{ in, host, pq string }{
		{"/a.css", "", "/a.css"},
		{"https://WWW.Example.com:443/a?b=1", "www.example.com", "/a?b=1"},
		{"http://www.example.com:8080", "www.example.com:8080", "/"},
		{"http://www.example.com/a?", "www.example.com", "/a?"},
	}
	for _, tt := range tests {
		host, pq, err := Split(tt.in)
		if err != nil || host != tt.host || pq != tt.pq {
			t.Errorf("Split(%q) = %q, %q, %v; want %q, %q", tt.in, host, pq, err, tt.host, tt.pq)
		}
	}
}

func TestCovers(t *testing.T) {
	hosts := []string{"example.com", "*.cdn.example.com"}
	for host, want := range map[string]bool{
		"example.com": true, "EXAMPLE.com.": true, "example.com:8080": true,
		"a.cdn.example.com": true, "cdn.example.com": false, "xcdn.example.com": false, "other.com": false,
	} {
		if got := Covers(hosts, host); got != want {
			t.Errorf("Covers(%v, %q) = %v, want %v", hosts, host, got, want)
		}
	}
	if !Covers([]string{"*"}, "anything.example") {
		t.Error(`Covers(["*"], ...) = false, want true`)
	}
}
