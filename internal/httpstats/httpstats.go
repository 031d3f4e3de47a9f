// Package httpstats records what a handler sent, for metrics and logs: a
// ResponseWriter wrapper that keeps the status and counts body bytes, and
// the status-class label every component uses.
package httpstats

import (
	"io"
	"net/http"
)

// Writer wraps a ResponseWriter and records the status and body bytes
// written through it. The zero Status means nothing was written yet.
type Writer struct {
	http.ResponseWriter
	Status int
	Bytes  int64
}

// WriteHeader records the first final status before passing it on.
func (w *Writer) WriteHeader(code int) {
	if w.Status == 0 && code >= 200 {
		w.Status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// Write counts body bytes.
func (w *Writer) Write(p []byte) (int, error) {
	if w.Status == 0 {
		w.Status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.Bytes += int64(n)
	return n, err
}

// ReadFrom keeps the underlying writer's sendfile path for io.Copy.
func (w *Writer) ReadFrom(src io.Reader) (int64, error) {
	if w.Status == 0 {
		w.Status = http.StatusOK
	}
	n, err := io.Copy(w.ResponseWriter, src)
	w.Bytes += n
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *Writer) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Class is the status-class label ("2xx" ... "5xx") of a final status.
func Class(status int) string {
	switch {
	case status < 300:
		return "2xx" // 1xx are not final; odd codes count as success
	case status < 400:
		return "3xx"
	case status < 500:
		return "4xx"
	default:
		return "5xx"
	}
}
