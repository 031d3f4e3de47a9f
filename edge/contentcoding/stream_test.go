package contentcoding

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// decodeStream decodes b as c, reading only what is there: a truncated
// stream returns the bytes decoded so far and an error.
func decodeStream(t *testing.T, c Coding, b []byte) (string, error) {
	t.Helper()
	var r io.Reader
	switch c {
	case Gzip:
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return "", err
		}
		r = zr
	case Zstd:
		zr, err := zstd.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		r = zr
	}
	var out bytes.Buffer
	_, err := io.Copy(&out, r)
	return out.String(), err
}

// TestWriterStreams writes a body in pieces with a Flush after each: after
// every Flush the output decodes to every byte written so far (a slow
// origin's body reaches the client as it arrives), after Close to the
// whole body; an abandoned stream never decodes as complete.
func TestWriterStreams(t *testing.T) {
	pieces := []string{"event one\n", strings.Repeat("a long middle piece ", 5000), "last\n"}
	tests := []struct {
		name   string
		coding Coding
	}{
		{name: "gzip", coding: Gzip},
		{name: "zstd", coding: Zstd},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range 2 { // the second round reuses a pooled encoder
				var out bytes.Buffer
				w, err := NewWriter(tt.coding, &out)
				if err != nil {
					t.Fatalf("NewWriter(%s): %v", tt.coding, err)
				}
				var sent strings.Builder
				for _, p := range pieces {
					if _, err := w.Write([]byte(p)); err != nil {
						t.Fatalf("Write: %v", err)
					}
					sent.WriteString(p)
					if err := w.Flush(); err != nil {
						t.Fatalf("Flush: %v", err)
					}
					got, _ := decodeStream(t, tt.coding, out.Bytes())
					if got != sent.String() {
						t.Fatalf("after Flush decoded %d bytes, want the %d written", len(got), sent.Len())
					}
				}
				if err := w.Close(); err != nil {
					t.Fatalf("Close: %v", err)
				}
				got, err := decodeStream(t, tt.coding, out.Bytes())
				if err != nil || got != sent.String() {
					t.Fatalf("after Close decoded %d bytes, %v; want %d, nil", len(got), err, sent.Len())
				}
			}

			var out bytes.Buffer
			w, _ := NewWriter(tt.coding, &out)
			w.Write([]byte(pieces[1]))
			w.Flush()
			w.Abandon()
			if _, err := decodeStream(t, tt.coding, out.Bytes()); err == nil {
				t.Errorf("an abandoned %s stream decoded without error", tt.coding)
			}
		})
	}
	if _, err := NewWriter(Identity, io.Discard); err == nil {
		t.Error("NewWriter(Identity) = nil error, want one")
	}
}
