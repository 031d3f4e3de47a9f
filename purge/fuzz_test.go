package purge

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/selfcdn/cdn/internal/cachekey"
)

// FuzzRequest feeds arbitrary JSON to the purge request path the API
// takes: decode, validate, apply. Properties: a request that validates
// applies without panicking, every URL it names then reads Gone for an
// object stamped before the purge, and nothing stamped after it is touched.
func FuzzRequest(f *testing.F) {
	f.Add(`{"urls":["/a.css","https://www.example.com/b?x=1&a=2"]}`)
	f.Add(`{"prefixes":["/assets/"],"soft":true}`)
	f.Add(`{"tags":["t1","t2"]}`)
	f.Add(`{"all":true}`)
	f.Add(`{"urls":["http://www.example.com:80/%7Ea/./b/../c"]}`)
	hosts := []string{"www.example.com"}
	f.Fuzz(func(t *testing.T, body string) {
		var r Request
		if json.Unmarshal([]byte(body), &r) != nil {
			return
		}
		err := r.Validate(hosts)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("Validate() = %v: neither a FieldError nor ErrTooLarge", err)
			}
			return
		}
		tbl := NewTable(0, nil, nil)
		before := tbl.Clock()
		c, _ := tbl.Apply("s", r)
		rules := tbl.Site("s")
		for _, u := range r.URLs {
			host, pq, err := Split(u)
			if err != nil {
				t.Fatalf("Split(%q) after Validate: %v", u, err)
			}
			if host == "" {
				host = "www.example.com"
			}
			path, query, _ := strings.Cut(pq, "?")
			key := cachekey.New("https", host, path, query, cachekey.Rules{})
			if v := rules.Check(before, key, nil); v == Keep {
				t.Errorf("Check(%q) after purging %q = Keep", key, u)
			}
			if v := rules.Check(c, key, nil); v != Keep {
				t.Errorf("Check(%q) of an object stamped after the purge = %v", key, v)
			}
		}
	})
}

// FuzzTags checks the tag header parser: every tag it returns is one a
// purge request may name, found in the header, and listed once.
func FuzzTags(f *testing.F) {
	f.Add("a b  c", "x, y,,z")
	f.Add("dup dup", "dup")
	f.Fuzz(func(t *testing.T, sk, ct string) {
		h := http.Header{"Surrogate-Key": {sk}, "Cache-Tag": {ct}}
		tags := Tags(h)
		if len(tags) > MaxTagsPerObject {
			t.Fatalf("Tags() returned %d tags, over %d", len(tags), MaxTagsPerObject)
		}
		seen := map[string]bool{}
		for _, tag := range tags {
			if seen[tag] {
				t.Errorf("tag %q listed twice", tag)
			}
			seen[tag] = true
			if !strings.Contains(sk, tag) && !strings.Contains(ct, tag) {
				t.Errorf("tag %q is in neither header", tag)
			}
			if err := (Request{Tags: []string{tag}}).Validate(nil); err != nil {
				t.Errorf("tag %q from a header does not validate: %v", tag, err)
			}
		}
	})
}
