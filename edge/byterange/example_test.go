package byterange_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/selfcdn/cdn/edge/byterange"
)

// A handler serving a cached object maps each Parse error to its answer.
func ExampleParse() {
	object := strings.NewReader("hello, range requests")
	size := object.Size()
	serve := func(rangeHeader string) {
		w := httptest.NewRecorder()
		ranges, err := byterange.Parse(rangeHeader, size)
		switch {
		case errors.Is(err, byterange.ErrUnknownUnit), errors.Is(err, byterange.ErrTooMany):
			w.WriteHeader(http.StatusOK) // ignore Range: send the whole object
		case errors.Is(err, byterange.ErrInvalid), errors.Is(err, byterange.ErrUnsatisfiable):
			byterange.Unsatisfiable(w, size)
		default:
			if _, err := byterange.Write(w, ranges, size, "text/plain", object, false); err != nil {
				panic(err) // a real handler cuts the connection
			}
		}
		fmt.Printf("%s: %d %q %q\n", rangeHeader, w.Code, w.Header().Get("Content-Range"), w.Body.String())
	}
	serve("bytes=0-4")
	serve("bytes=-8")
	serve("bytes=100-")
	serve("lines=1-2")
	// Output:
	// bytes=0-4: 206 "bytes 0-4/21" "hello"
	// bytes=-8: 206 "bytes 13-20/21" "requests"
	// bytes=100-: 416 "bytes */21" "range not satisfiable\n"
	// lines=1-2: 200 "" ""
}
