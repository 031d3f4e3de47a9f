package h2

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"runtime/debug"
	"slices"
	"syscall"
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

// TestOutFaultMidCopy: a DATA payload that faults while it is copied in
// (a mapped file truncated under the read, as the edge's disk tier
// serves them) leaves no frame header behind: the panic goes on to the
// caller, and what the connection sends afterwards is whole frames.
func TestOutFaultMidCopy(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "mapped")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(randomBytes(64 << 10)); err != nil {
		t.Fatal(err)
	}
	m, err := syscall.Mmap(int(f.Fd()), 0, 64<<10, syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(m)
	if err := f.Truncate(4096); err != nil { // the pages past 4 KiB are gone
		t.Fatal(err)
	}

	var wire bytes.Buffer
	o := newOut(&wire) // no writev: payloads are copied, as on TLS
	o.dataFrame(1, false, randomBytes(100))
	panicked := func() (r any) {
		defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
		defer func() { r = recover() }()
		o.dataFrame(3, false, m[:16<<10])
		return nil
	}()
	if panicked == nil {
		t.Fatal("copying the truncated mapping did not fault")
	}
	o.dataFrame(1, true, randomBytes(200))
	if err := o.flush(); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(nil, &wire)
	var got []string
	for {
		f, err := fr.ReadFrame()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("after %v: %v", got, err)
		}
		d := f.(*http2.DataFrame)
		got = append(got, fmt.Sprintf("stream %d, %d bytes", d.StreamID, len(d.Data())))
	}
	if want := []string{"stream 1, 100 bytes", "stream 1, 200 bytes"}; !slices.Equal(got, want) {
		t.Errorf("frames sent %v, want %v", got, want)
	}
}
