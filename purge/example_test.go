package purge_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/selfcdn/cdn/purge"
)

// fakeControl answers every purge with body and code, as control's API
// would.
func fakeControl(code int, body string) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		io.WriteString(w, body)
	}))
}

// A deploy job purges what it changed and waits until every healthy edge
// has applied the purge.
func ExampleClient_Purge() {
	control := fakeControl(http.StatusOK, `{"version":42,"site":"www","status":{
		"version":42,"site":"www","applied":true,"pending":[],
		"edges":[{"edge":"fra-1","health":"up","version":42,"applied":true},
		         {"edge":"iad-1","health":"up","version":43,"applied":true}]}}`)
	defer control.Close()

	c := &purge.Client{BaseURL: control.URL, Token: "token with scope purge:www"}
	res, err := c.Purge(context.Background(), "www", purge.Request{
		URLs: []string{"/index.html"},
		Tags: []string{"release-2024"},
	}, purge.Options{Wait: 30 * time.Second, IdempotencyKey: "deploy-1234"})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("version %d applied=%v by %d edges\n", res.Version, res.Status.Applied, len(res.Status.Edges))
	// Output: version 42 applied=true by 2 edges
}

// When some edge did not apply the purge in time, the purge is still
// written: the error says which edges are behind.
func ExampleClient_Purge_notApplied() {
	control := fakeControl(http.StatusGatewayTimeout, `{
		"error":{"code":"not_applied","message":"1 of 2 edges applied version 42 within 30s"},
		"version":42,"status":{"version":42,"site":"www","applied":false,"pending":["iad-1"]}}`)
	defer control.Close()

	c := &purge.Client{BaseURL: control.URL, Token: "token with scope purge:www"}
	res, err := c.Purge(context.Background(), "www", purge.Request{All: true},
		purge.Options{Wait: 30 * time.Second})
	if errors.Is(err, purge.ErrNotApplied) {
		ae, _ := errors.AsType[*purge.APIError](err)
		fmt.Printf("version %d written, pending: %s\n", res.Version, strings.Join(ae.Status.Pending, ", "))
	}
	// Output: version 42 written, pending: iad-1
}
