package cache

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
)

// tcpPair returns the raw connection of one end of a loopback TCP
// connection, and a channel that delivers everything the other end reads
// until the first end is closed.
func tcpPair(t *testing.T) (syscall.RawConn, func(), <-chan []byte) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(client)
		client.Close()
		got <- b
	}()
	rc, err := server.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	done := func() {
		if !closed {
			closed = true
			server.Close()
		}
	}
	t.Cleanup(done)
	return rc, done, got
}

func TestSendFileRanges(t *testing.T) {
	d := openTestDisk(t, t.TempDir(), 64<<20)
	body := randomBody(5*blockSize + 1234)
	putAged(t, d, "k", body)
	if _, o, err := getBody(t, d, "k"); err != nil || o.body == nil {
		t.Fatalf("first read: %v (the file must be kept and mapped)", err)
	}
	size := int64(len(body))
	tests := []struct {
		name    string
		off, n  int64
		wantErr bool
	}{
		{name: "whole", off: 0, n: size},
		{name: "after a buffered head", off: 3900, n: size - 3900},
		{name: "one block, unaligned", off: blockSize - 7, n: blockSize},
		{name: "the short tail", off: size - 1234, n: 1234},
		{name: "nothing", off: size, n: 0},
		{name: "past the end", off: size - 10, n: 11, wantErr: true},
		{name: "negative", off: -1, n: 5, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, ok := d.Get("k", 0)
			if !ok {
				t.Fatal("miss")
			}
			defer e.Release()
			rc, done, got := tcpPair(t)
			calls := 0
			n, err := e.Disk.SendFile(rc, tt.off, tt.n, func() { calls++ })
			done()
			out := <-got
			if tt.wantErr {
				if err == nil || n != 0 || len(out) != 0 {
					t.Fatalf("sent %d bytes (%d received), err %v; want an error and nothing sent", n, len(out), err)
				}
				return
			}
			if err != nil || n != tt.n {
				t.Fatalf("sent %d bytes, err %v; want %d", n, err, tt.n)
			}
			if !bytes.Equal(out, body[tt.off:tt.off+tt.n]) {
				t.Fatalf("received %d bytes that differ from the body's [%d, %d)", len(out), tt.off, tt.off+tt.n)
			}
			if tt.n > 0 && calls == 0 {
				t.Error("beforeWrite never ran")
			}
		})
	}
}

// TestSendFileDamage: a block that fails its checksum is never handed to
// the kernel; what went before it is the right bytes, and the object is
// dropped.
func TestSendFileDamage(t *testing.T) {
	d := openTestDisk(t, t.TempDir(), 64<<20)
	body := randomBody(6 * blockSize)
	putAged(t, d, "k", body)
	e, ok := d.Get("k", 0) // the first read: kept and mapped, no block trusted yet
	if !ok || e.Disk.obj.body == nil {
		t.Fatalf("hit %v, not mapped", ok)
	}
	defer e.Release()
	// Damage block 4 (the third chunk of writeBlocks blocks) in place,
	// the way a failing disk would: same inode, no new ctime check.
	f, err := os.OpenFile(d.path(keyHash("k")), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0xff ^ body[4*blockSize+10]}, e.Disk.obj.off+4*blockSize+10); err != nil {
		t.Fatal(err)
	}
	f.Close()
	rc, done, got := tcpPair(t)
	n, err := e.Disk.SendFile(rc, 0, int64(len(body)), func() {})
	done()
	out := <-got
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("sendfile of a damaged body: %d bytes, err %v; want ErrCorrupt", n, err)
	}
	if n != 4*blockSize || !bytes.Equal(out, body[:4*blockSize]) {
		t.Fatalf("sent %d bytes (%d received, right %v); want the %d before the bad chunk",
			n, len(out), bytes.Equal(out, body[:len(out)]), 4*blockSize)
	}
	if d.Len() != 0 {
		t.Error("damaged object still indexed")
	}
}

// TestSendFileNeedsMapping: a body whose file is not kept mapped cannot
// be checked without reading it, so SendFile sends nothing and says so;
// the body still reads whole through Read.
func TestSendFileNeedsMapping(t *testing.T) {
	d := openTestDisk(t, t.TempDir(), 64<<20)
	d.open.max = 0 // keep no file open
	body := randomBody(2*blockSize + 5)
	putAged(t, d, "k", body)
	e, ok := d.Get("k", 0)
	if !ok {
		t.Fatal("miss")
	}
	defer e.Release()
	r := e.Disk.Sender()
	rc, done, got := tcpPair(t)
	n, err := r.SendTo(rc, int64(len(body)), func() {})
	done()
	if out := <-got; !errors.Is(err, ErrNoSendFile) || n != 0 || len(out) != 0 {
		t.Fatalf("SendTo without a mapping: %d bytes (%d received), err %v; want ErrNoSendFile and nothing sent", n, len(out), err)
	}
	all, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(all, body) {
		t.Fatalf("Read after: %d bytes, err %v", len(all), err)
	}
}
