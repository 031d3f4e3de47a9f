package h2

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// FuzzServeConn feeds arbitrary frames after the client preface: the
// connection never panics, and ends once the client has gone.
//
//	go test ./edge/h2/ -run '^$' -fuzz FuzzServeConn -fuzztime 30s
func FuzzServeConn(f *testing.F) {
	var buf bytes.Buffer
	fr := http2.NewFramer(&buf, nil)
	var hb bytes.Buffer
	henc := hpack.NewEncoder(&hb)
	for _, kv := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", "/a?b"}, {":authority", "x"}, {"content-length", "3"}} {
		henc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
	}
	seed := func(write func()) {
		buf.Reset()
		fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 10})
		write()
		f.Add(bytes.Clone(buf.Bytes()))
	}
	seed(func() {
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true})
		fr.WriteData(1, true, []byte("abc"))
	})
	seed(func() {
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes()[:4]})
		fr.WriteContinuation(1, true, hb.Bytes()[4:])
		fr.WriteRSTStream(1, http2.ErrCodeCancel)
		fr.WriteWindowUpdate(0, 1000)
		fr.WritePing(false, [8]byte{1})
	})
	seed(func() { fr.WriteGoAway(0, http2.ErrCodeNo, nil) })
	f.Add([]byte("\x00\x00\x00\x04\x00\x00\x00\x00\x00garbage"))

	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Write(bytes.Repeat([]byte("x"), 100))
	})
	f.Fuzz(func(t *testing.T, in []byte) {
		s := &Server{Handler: h, PrefaceTimeout: time.Second}
		s.once.Do(s.defaults)
		client, server := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.ServeConn(server)
		}()
		go io.Copy(io.Discard, client)
		client.SetWriteDeadline(time.Now().Add(2 * time.Second))
		client.Write(append([]byte(http2.ClientPreface), in...))
		client.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("connection still served after the client left")
		}
		s.Close() // a connection cut off for a flood is held until then
	})
}
