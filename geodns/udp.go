package geodns

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"sync"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// UDP is served by a loop of our own rather than dns.Server's: a few
// long-lived workers each read a batch of queries with one recvmmsg and
// send the responses with one sendmmsg. Per packet that saves a syscall
// pair's worth of overhead and a goroutine (whose stack grows on every
// query). Parsing and packing are still the library's.

// udpBatch is how many packets one read or write moves at most.
const udpBatch = 32

// batchConn is the batch interface of ipv4.PacketConn and ipv6.PacketConn
// (their Message types are one type).
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

// serveUDP answers on pc until it is closed, with one worker per CPU.
func (s *Server) serveUDP(pc net.PacketConn) error {
	var bc batchConn = ipv6.NewPacketConn(pc)
	if a, ok := pc.LocalAddr().(*net.UDPAddr); ok && a.IP.To4() != nil {
		bc = ipv4.NewPacketConn(pc)
	}
	var wg sync.WaitGroup
	errs := make([]error, runtime.GOMAXPROCS(0))
	for i := range errs {
		wg.Go(func() { errs[i] = s.udpWorker(bc) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (s *Server) udpWorker(bc batchConn) error {
	in := make([]ipv4.Message, udpBatch)
	out := make([]ipv4.Message, udpBatch)
	for i := range in {
		in[i].Buffers = [][]byte{make([]byte, udpReadSize)}
		// PackBuffer packs in place only into a buffer whose length (not
		// capacity) exceeds the message.
		out[i].Buffers = [][]byte{make([]byte, s.cfg.MaxUDPSize+1)}
	}
	bufs := make([][]byte, udpBatch) // the response buffers, kept across batches
	for i := range bufs {
		bufs[i] = out[i].Buffers[0]
	}
	for {
		n, err := bc.ReadBatch(in, 0)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		k := 0
		for _, msg := range in[:n] {
			resp := s.answerPacket(msg.Buffers[0][:msg.N], addrOf(msg.Addr), bufs[k])
			if resp == nil {
				continue
			}
			out[k].Buffers[0], out[k].Addr = resp, msg.Addr
			k++
		}
		for sent := 0; sent < k; {
			m, err := bc.WriteBatch(out[sent:k], 0)
			sent += max(m, 0)
			if err != nil {
				// The message at sent failed (a source port 0, a client
				// gone): skip it, not the rest of the batch.
				s.log.Debug("send response", "client", out[sent].Addr.String(), "err", err)
				sent++
			}
		}
	}
}

// answerPacket answers one UDP packet into buf (nil: send nothing).
func (s *Server) answerPacket(pkt []byte, src netip.Addr, buf []byte) []byte {
	if len(pkt) < 12 {
		s.metrics.malformed.Inc()
		return nil // not even a header: nothing to answer
	}
	h := dns.Header{Id: binary.BigEndian.Uint16(pkt), Bits: binary.BigEndian.Uint16(pkt[2:]),
		Qdcount: binary.BigEndian.Uint16(pkt[4:]), Ancount: binary.BigEndian.Uint16(pkt[6:]),
		Nscount: binary.BigEndian.Uint16(pkt[8:]), Arcount: binary.BigEndian.Uint16(pkt[10:])}
	var m *dns.Msg
	req := new(dns.Msg)
	switch acceptQuery(h) {
	case dns.MsgIgnore:
		return nil
	case dns.MsgRejectNotImplemented:
		m = headerReply(h, dns.RcodeNotImplemented)
	case dns.MsgReject:
		m = headerReply(h, dns.RcodeFormatError)
	default:
		if err := req.Unpack(pkt); err != nil {
			s.metrics.malformed.Inc()
			m = headerReply(h, dns.RcodeFormatError)
		}
	}
	if m != nil {
		s.metrics.query(false, 0, m.Rcode)
		b, _ := m.PackBuffer(buf)
		return b
	}
	m = s.serve(req, src, false)
	if m == nil {
		return nil
	}
	b, err := m.PackBuffer(buf)
	if err != nil {
		s.log.Warn("pack response", "name", req.Question[0].Name, "err", err)
		return nil
	}
	return b
}

// headerReply is the answer to a packet known only by its header: the
// rcode, the ID and opcode, nothing else.
func headerReply(h dns.Header, rcode int) *dns.Msg {
	m := new(dns.Msg)
	m.Id, m.Response, m.Rcode = h.Id, true, rcode
	m.Opcode = int(h.Bits>>11) & 0xF
	return m
}
