package h2

import (
	"bytes"
	"net"
	"testing"

	"golang.org/x/net/http2"
)

// gatherer is a BuffersWriter that records what each writev carried.
type gatherer struct {
	bytes.Buffer
	calls int
}

func (g *gatherer) WriteBuffers(b *net.Buffers) (int64, error) {
	g.calls++
	return b.WriteTo(&g.Buffer)
}

// TestOutSameBytes: frames gathered by reference and frames copied come
// out byte for byte the same, in order, and the gathered ones in one call.
func TestOutSameBytes(t *testing.T) {
	large, small := randomBytes(16<<10), randomBytes(100)
	write := func(o *out) {
		fr := http2.NewFramer(o, nil)
		fr.WriteSettingsAck()
		o.dataFrame(1, false, large)
		o.dataFrame(1, false, small)
		fr.WritePing(true, [8]byte{7})
		o.dataFrame(3, true, large[:refMin])
		o.dataFrame(5, true, nil)
		if err := o.flush(); err != nil {
			t.Fatal(err)
		}
	}
	var copied bytes.Buffer
	write(newOut(&copied))
	g := &gatherer{}
	o := newOut(g)
	write(o)
	if !bytes.Equal(g.Bytes(), copied.Bytes()) {
		t.Errorf("gathered %d bytes differ from copied %d", g.Len(), copied.Len())
	}
	if g.calls != 1 {
		t.Errorf("%d writev calls, want 1", g.calls)
	}
	if o.refs != 0 || len(o.iov) > 0 && o.iov[0] != nil {
		t.Error("out still holds payloads after the flush")
	}
	// The frames parse back.
	fr := http2.NewFramer(nil, &copied)
	var kinds []http2.FrameType
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			break
		}
		kinds = append(kinds, f.Header().Type)
	}
	if len(kinds) != 6 {
		t.Errorf("read back %v, want 6 frames", kinds)
	}
}
