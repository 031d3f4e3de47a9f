package push

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseRedirects(t *testing.T) {
	tests := []struct {
		name, in string
		want     []Redirect
		wantErr  string // a substring of the error; "" for none
	}{
		{name: "empty", in: ""},
		{name: "comments and blanks", in: "# a\n\n   \n\t# b\n"},
		{
			name: "default status",
			in:   "/old /new\n",
			want: []Redirect{{From: "/old", To: "/new", Status: 301}},
		},
		{
			name: "explicit statuses in order",
			in:   "/a https://example.com/a 302\n/b /c 307\n/d /e 308\n/f /g 303\n/h /i 301\n",
			want: []Redirect{
				{From: "/a", To: "https://example.com/a", Status: 302},
				{From: "/b", To: "/c", Status: 307},
				{From: "/d", To: "/e", Status: 308},
				{From: "/f", To: "/g", Status: 303},
				{From: "/h", To: "/i", Status: 301},
			},
		},
		{
			name: "tabs, CRLF, indentation and a BOM",
			in:   "\ufeff/a\t/b\r\n  /c   /d\t\t302  \r\n",
			want: []Redirect{{From: "/a", To: "/b", Status: 301}, {From: "/c", To: "/d", Status: 302}},
		},
		{
			name: "directory and root sources",
			in:   "/ /home\n/old/ /new/\n",
			want: []Redirect{{From: "/", To: "/home", Status: 301}, {From: "/old/", To: "/new/", Status: 301}},
		},
		{name: "one field", in: "/a\n", wantErr: "line 1: want FROM TO [STATUS], got only"},
		{name: "four fields", in: "\n/a /b 301 x\n", wantErr: "line 2: want FROM TO [STATUS], got 4 fields"},
		{name: "trailing comment", in: "/a /b # moved\n", wantErr: "line 1: want FROM TO [STATUS], got 4 fields"},
		{name: "status-like comment", in: "/a /b #302\n", wantErr: "line 1: status \"#302\""},
		{name: "status not a number", in: "/a /b abc\n", wantErr: "line 1: status \"abc\""},
		{name: "forced status", in: "/a /b 301!\n", wantErr: "status \"301!\""},
		{name: "signed status", in: "/a /b +301\n", wantErr: "status \"+301\""},
		{name: "long status", in: "/a /b 0301\n", wantErr: "status \"0301\""},
		{name: "rewrite", in: "/a /b 200\n", wantErr: "line 1: status: want 301"},
		{name: "not found rule", in: "/a /404.html 404\n", wantErr: "got 404"},
		{name: "relative source", in: "a /b\n", wantErr: "line 1: from: "},
		{name: "unclean source", in: "/a/../b /c\n", wantErr: "from: path"},
		{name: "javascript target", in: "/a javascript:alert(1)\n", wantErr: "to: want a path or an http(s) URL"},
		{name: "protocol-relative target", in: "/a //evil.example/\n", wantErr: "to: want a path or an http(s) URL"},
		{name: "line too long", in: "/a /" + strings.Repeat("b", maxRedirectLine) + "\n", wantErr: "line 1: longer than"},
		{name: "too many", in: strings.Repeat("/a /b\n", MaxRedirects+1), wantErr: "more than 10000 redirects"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseRedirects(strings.NewReader(tt.in))
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("parseRedirects(%q) = %v", truncate(tt.in), err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("parseRedirects(%q) = %v, want an error with %q", truncate(tt.in), err, tt.wantErr)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parseRedirects(%q) = %+v, want %+v", truncate(tt.in), got, tt.want)
			}
		})
	}
}
