package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/selfcdn/cdn/push"
)

// commitBody is a commit of one file at path naming blob b.
func commitBody(path string, b push.Blob) string {
	m := push.Manifest{Files: map[string]push.File{path: {Blob: b, Type: "text/plain"}}}
	body, _ := json.Marshal(push.Commit{Manifest: &m})
	return string(body)
}

// TestPushBadInput: what control refuses on the push endpoints, and that
// a refusal leaves nothing behind: no blob under a wrong name, no release.
func TestPushBadInput(t *testing.T) {
	a := startAPI(t)
	admin := a.token(t, 0, ScopeAdmin)
	if code, v := a.do(t, "POST", "/v1/sites", admin, siteA); code != 201 {
		t.Fatalf("create site: %d %v", code, v)
	}
	pushA := a.token(t, 0, "push:a")
	purgeA := a.token(t, 0, "purge:a")
	good := []byte("hello, pushed world")
	hash := push.HashOf(good)

	// A blob whose bytes are not what its name says is refused and not kept.
	if code, v := a.do(t, "PUT", "/v1/sites/a/blobs/"+hash, pushA, "other bytes"); code != 422 {
		t.Fatalf("mismatched blob: %d %v, want 422", code, v)
	}
	if code, v := a.do(t, "POST", "/v1/sites/a/blobs/missing", pushA, `{"blobs":["`+hash+`"]}`); code != 200 || fmt.Sprint(v["blobs"]) != "["+hash+"]" {
		t.Fatalf("after a refused upload the blob must still be missing: %d %v", code, v)
	}
	// A manifest naming a blob never uploaded makes no release.
	if code, v := a.do(t, "POST", "/v1/sites/a/releases", pushA, commitBody("/a.txt", push.Blob{Hash: hash, Size: int64(len(good))})); code != 422 || fmt.Sprint(v["missing"]) != "["+hash+"]" {
		t.Fatalf("commit naming a missing blob: %d %v, want 422 listing it", code, v)
	}
	if code, v := a.do(t, "GET", "/v1/sites/a/releases", pushA, ""); code != 200 || len(v["releases"].([]any)) != 0 {
		t.Fatalf("a refused commit left a release: %d %v", code, v)
	}
	if code, v := a.do(t, "PUT", "/v1/sites/a/blobs/"+hash, pushA, string(good)); code != 201 {
		t.Fatalf("good blob: %d %v", code, v)
	}
	if code, v := a.do(t, "PUT", "/v1/sites/a/blobs/"+hash, pushA, string(good)); code != 200 {
		t.Fatalf("the same blob again: %d %v, want 200 (already stored)", code, v)
	}

	blob := push.Blob{Hash: hash, Size: int64(len(good))}
	tests := []struct {
		name, method, path, token, body string
		want                            int
		msg                             string
	}{
		{"path with ..", "POST", "/v1/sites/a/releases", pushA, commitBody("/a/../../etc/passwd", blob), 400, "not clean"},
		{"relative path", "POST", "/v1/sites/a/releases", pushA, commitBody("a.txt", blob), 400, "must start with /"},
		{"NUL in path", "POST", "/v1/sites/a/releases", pushA, commitBody("/a\x00.txt", blob), 400, "control character"},
		{"overlong path", "POST", "/v1/sites/a/releases", pushA, commitBody("/"+strings.Repeat("a", 2000), blob), 400, "longer than"},
		{"backslash", "POST", "/v1/sites/a/releases", pushA, commitBody(`/..\x`, blob), 400, "backslash"},
		{"wrong size", "POST", "/v1/sites/a/releases", pushA, commitBody("/a.txt", push.Blob{Hash: hash, Size: 3}), 422, "not stored"},
		{"bad hash", "POST", "/v1/sites/a/releases", pushA, commitBody("/a.txt", push.Blob{Hash: "abc", Size: 3}), 400, "hash"},
		{"no manifest", "POST", "/v1/sites/a/releases", pushA, `{}`, 400, "manifest: required"},
		{"unknown field", "POST", "/v1/sites/a/releases", pushA, `{"manifesto":{}}`, 400, "unknown field"},
		{"short hash in URL", "PUT", "/v1/sites/a/blobs/abc", pushA, "x", 400, "SHA-256"},
		{"missing: bad hash", "POST", "/v1/sites/a/blobs/missing", pushA, `{"blobs":["ZZ"]}`, 400, "SHA-256"},
		{"unknown site", "POST", "/v1/sites/nope/releases", admin, commitBody("/a.txt", blob), 404, ""},
		{"purge token cannot push", "PUT", "/v1/sites/a/blobs/" + hash, purgeA, string(good), 403, ""},
		{"no such release", "POST", "/v1/sites/a/releases/7/activate", pushA, "", 404, ""},
		{"release zero", "GET", "/v1/sites/a/releases/0", pushA, "", 400, "positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, v := a.do(t, tt.method, tt.path, tt.token, tt.body)
			if code != tt.want || !strings.Contains(errMessage(v), tt.msg) {
				t.Errorf("%d %q, want %d and a message with %q", code, errMessage(v), tt.want, tt.msg)
			}
		})
	}

	// Finally a good commit: release 1, live.
	code, v := a.do(t, "POST", "/v1/sites/a/releases", pushA, commitBody("/a.txt", blob))
	if code != http.StatusCreated {
		t.Fatalf("good commit: %d %v", code, v)
	}
	if rel := v["release"].(map[string]any); rel["number"] != 1.0 || v["live"] != true {
		t.Fatalf("good commit answered %v", v)
	}
}
