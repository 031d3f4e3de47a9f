package edge

import (
	"context"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
)

// Informational responses (RFC 9110 §15.2): an origin's 103 Early Hints
// or 102 Processing goes on to the client before the final answer, on
// every protocol, and is never stored. 100 Continue and 101 are the
// transport's own business.

// withInterims returns ctx with a trace that calls f with each 1xx
// response the origin sends before its final one.
func withInterims(ctx context.Context, f func(code int, hdr http.Header)) context.Context {
	return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		Got1xxResponse: func(code int, hdr textproto.MIMEHeader) error {
			if code != http.StatusContinue && code != http.StatusSwitchingProtocols {
				f(code, http.Header(hdr).Clone())
			}
			return nil
		},
	})
}

// writeInterim sends an informational response with hdr's fields, which
// the final response does not inherit.
func writeInterim(w http.ResponseWriter, code int, hdr http.Header) {
	h := w.Header()
	saved := make(http.Header, len(hdr))
	for k, v := range hdr {
		if old, ok := h[k]; ok {
			saved[k] = old
		}
		h[k] = v
	}
	w.WriteHeader(code)
	for k := range hdr {
		if old, ok := saved[k]; ok {
			h[k] = old
		} else {
			delete(h, k)
		}
	}
}
