package httpstats

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestWriter(t *testing.T) {
	tests := []struct {
		name       string
		write      func(w http.ResponseWriter)
		wantStatus int
		wantBytes  int64
	}{
		{name: "implicit 200", write: func(w http.ResponseWriter) { io.WriteString(w, "hello") }, wantStatus: 200, wantBytes: 5},
		{name: "explicit status", write: func(w http.ResponseWriter) { w.WriteHeader(404); io.WriteString(w, "no") }, wantStatus: 404, wantBytes: 2},
		{name: "informational then final", write: func(w http.ResponseWriter) { w.WriteHeader(103); w.WriteHeader(200) }, wantStatus: 200},
		{name: "read from", write: func(w http.ResponseWriter) { io.Copy(w, strings.NewReader("abcdef")) }, wantStatus: 200, wantBytes: 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := &Writer{ResponseWriter: httptest.NewRecorder()}
			tt.write(w)
			if w.Status != tt.wantStatus || w.Bytes != tt.wantBytes {
				t.Errorf("recorded %d, %d bytes; want %d, %d", w.Status, w.Bytes, tt.wantStatus, tt.wantBytes)
			}
		})
	}
}

func TestClass(t *testing.T) {
	for code, want := range map[int]string{200: "2xx", 204: "2xx", 301: "3xx", 404: "4xx", 502: "5xx", 999: "5xx"} {
		if got := Class(code); got != want {
			t.Errorf("Class(%d) = %q, want %q", code, got, want)
		}
	}
}
