package fill

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"sync"
	"testing"
)

func TestBodyStreamsToReaders(t *testing.T) {
	tests := []struct {
		name     string
		memLimit int64
		size     int
		wantFile bool
	}{
		{name: "in memory", memLimit: 1 << 20, size: 100_000},
		{name: "spills to file", memLimit: 4096, size: 100_000, wantFile: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := make([]byte, tt.size)
			rand.Read(want)
			b := NewBody(tt.memLimit, t.TempDir())
			const readers = 8
			var wg sync.WaitGroup
			got := make([]bytes.Buffer, readers)
			for i := range readers {
				b.Acquire()
				wg.Go(func() {
					defer b.Release()
					if _, err := b.WriteTo(t.Context(), &got[i], nil); err != nil {
						t.Errorf("reader %d: WriteTo = %v", i, err)
					}
				})
			}
			for p := want; len(p) > 0; {
				n := min(len(p), 1000)
				if _, err := b.Write(p[:n]); err != nil {
					t.Fatalf("Write: %v", err)
				}
				p = p[n:]
			}
			b.Finish(nil)
			wg.Wait()
			for i := range got {
				if !bytes.Equal(got[i].Bytes(), want) {
					t.Errorf("reader %d got %d bytes, want the %d written", i, got[i].Len(), len(want))
				}
			}
			mem, err := b.Bytes()
			if tt.wantFile != errors.Is(err, ErrTooLarge) {
				t.Errorf("Bytes() err = %v, want spilled = %v", err, tt.wantFile)
			}
			if err == nil && !bytes.Equal(mem, want) {
				t.Errorf("Bytes() differs from what was written")
			}
			b.Release()
		})
	}
}

func TestBodyBrokenFetchReachesReaders(t *testing.T) {
	b := NewBody(1024, t.TempDir())
	b.Write([]byte("partial"))
	broken := errors.New("origin reset")
	b.Finish(broken)
	var out bytes.Buffer
	if _, err := b.WriteTo(context.Background(), &out, nil); !errors.Is(err, broken) {
		t.Errorf("WriteTo = %v, want %v", err, broken)
	}
	if _, err := b.Bytes(); !errors.Is(err, broken) {
		t.Errorf("Bytes() = %v, want %v", err, broken)
	}
}

func TestBodyReaderCancel(t *testing.T) {
	b := NewBody(1024, t.TempDir())
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() {
		_, err := b.WriteTo(ctx, &bytes.Buffer{}, nil)
		done <- err
	}()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("WriteTo after cancel = %v, want context.Canceled", err)
	}
}

func TestGroupJoin(t *testing.T) {
	g := NewGroup(func() *Body { return NewBody(1024, t.TempDir()) })
	f1, lead1 := g.Join("k")
	f2, lead2 := g.Join("k")
	if !lead1 || lead2 || f1 != f2 {
		t.Fatalf("Join twice: leaders %v, %v, same flight %v; want true, false, true", lead1, lead2, f1 == f2)
	}
	if n := f1.Body.Readers(); n != 2 {
		t.Errorf("Readers() = %d, want 2", n)
	}
	g.Done("k", f1)
	if _, lead := g.Join("k"); !lead {
		t.Errorf("Join after Done: leader = false, want true")
	}
}
