package geodns

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// UDP is served by a loop of our own rather than dns.Server's: a few
// long-lived workers each read a batch of queries with one recvmmsg and
// send the responses with one sendmmsg. Per packet that saves a syscall
// pair's worth of overhead and a goroutine (whose stack grows on every
// query). Parsing and packing are the library's, but for the queries the
// answer cache has seen (answercache.go).

// udpBatch is how many packets one read or write moves at most.
const udpBatch = 32

// udpPacket is one slot of a worker's batch.
type udpPacket struct {
	buf  []byte     // the read buffer
	n    int        // bytes read
	src  netip.Addr // the sender (unmapped)
	out  []byte     // the response buffer, kept across batches
	resp []byte     // the response to send (nil: none), in out if it fits
}

// batchIO moves a worker's batches. Each worker has its own.
type batchIO interface {
	// read fills pkts[:n] (buf, n, src), blocking until at least one
	// packet is there.
	read(pkts []udpPacket) (n int, err error)
	// write sends each packet's resp to its sender; a response that
	// cannot be sent (a source port 0, a client gone) is passed to
	// skip, and the rest still go.
	write(pkts []udpPacket, skip func(*udpPacket, error)) error
}

// serveUDP answers on pc until stop is closed, with one worker per CPU.
// It closes pc.
func (s *Server) serveUDP(pc net.PacketConn, stop <-chan struct{}) error {
	sock, err := openUDPSocket(pc)
	if err != nil {
		pc.Close()
		return err
	}
	// Stopping wakes every worker: when the server stops, or when one
	// worker fails, so that the server sees the failure.
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		select {
		case <-stop:
		case <-done:
		}
		sock.stop()
	}()
	var wg sync.WaitGroup
	errs := make([]error, sock.workers)
	for i := range errs {
		pkts := make([]udpPacket, udpBatch)
		for i := range pkts {
			// PackBuffer packs in place only into a buffer whose length
			// (not capacity) exceeds the message.
			pkts[i].buf, pkts[i].out = make([]byte, udpReadSize), make([]byte, s.cfg.MaxUDPSize+1)
		}
		bio := sock.batchIO(pkts)
		wg.Go(func() {
			if errs[i] = s.udpWorker(bio, pkts); errs[i] != nil {
				sock.stop()
			}
		})
	}
	wg.Wait()
	close(done)
	<-stopped // no stop after the close
	return errors.Join(append(errs, sock.close())...)
}

func (s *Server) udpWorker(bio batchIO, pkts []udpPacket) error {
	skip := func(p *udpPacket, err error) {
		s.log.Debug("send response", "client", p.src.String(), "err", err)
	}
	w := new(workerState)
	for {
		n, err := bio.read(pkts)
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
		for i := range pkts[:n] {
			p := &pkts[i]
			p.resp = s.answerPacket(p.buf[:p.n], p.src, p.out, w)
		}
		s.flush(w) // a response is counted before it is sent
		if err := bio.write(pkts[:n], skip); err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
	}
}

// answerPacket answers one UDP packet into buf (nil: send nothing).
// Queries of the common shape (fastquery.go) are answered from the
// answer cache when it holds their key, and fill it when it does not;
// the rest take the library's way. w is the worker's state (nil: none;
// with one, cached answers are counted in its tally, to be flushed).
func (s *Server) answerPacket(pkt []byte, src netip.Addr, buf []byte, w *workerState) []byte {
	t := s.table.Load()
	q, fast := parseQuery(pkt)
	if !fast || t.answers == nil {
		return s.answerSlow(pkt, src, buf, t, nil, nil)
	}
	client := q.client(src)
	var memo *placeMemo
	if w != nil {
		memo = &w.places
	}
	loc, bits := s.locate(memo, client)
	var kb [160]byte
	key := q.appendKey(kb[:0], loc, bits)
	if e := t.answers.get(key); e != nil {
		return s.answerCached(e, &q, pkt, src, client, buf, t, w)
	}
	s.metrics.cacheMiss.Inc()
	return s.answerSlow(pkt, src, buf, t, &q, key)
}

// answerCached answers q from the cached response e: the same checks and
// counts as the slow way (in w's tally when w is not nil), then e's
// bytes with the query's ID and subnet.
func (s *Server) answerCached(e *cachedAnswer, q *fastQuery, pkt []byte, src, client netip.Addr, buf []byte, t *table, w *workerState) []byte {
	if w != nil {
		w.tally.hits++
	} else {
		s.metrics.cacheHit.Inc()
	}
	out := append(buf[:0], e.body...)
	if e.draw != nil && !e.draw.fill(out, t) {
		return s.answerSlow(pkt, src, buf, t, nil, nil)
	}
	var n uint64
	var start time.Time
	if w != nil {
		n, start = w.begin()
	} else {
		n, start = s.begin()
	}
	res := e.res
	res.ecs = q.subnet(client)
	if s.limiter != nil {
		switch v := s.limit(src, res); v {
		case drop:
			s.finish(nil, res, v, src, false, n, start) // counts the drop
			return nil
		case slip:
			// The slip response is built the slow way; it is rare.
			req := new(dns.Msg)
			if err := req.Unpack(pkt); err != nil {
				return nil // parseQuery took it: cannot happen
			}
			m, res := s.respond(req, src, t)
			b, _ := s.finish(m, res, v, src, false, n, start).PackBuffer(buf)
			return b
		}
	}
	out[0], out[1] = pkt[0], pkt[1] // the ID
	out = append(out, q.ecsAddr...)
	if w != nil {
		w.tally.add(e, res.ecs.IsValid())
	} else {
		s.count(res, false, e.counters)
	}
	s.end(src, false, res, n, start)
	return out
}

// answerSlow answers pkt with the library's Unpack and Pack from table
// t; q and key, when given, are its fast parse and cache key, under
// which a reusable response is kept.
func (s *Server) answerSlow(pkt []byte, src netip.Addr, buf []byte, t *table, q *fastQuery, key []byte) []byte {
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
	m, res, reusable := s.serveFrom(req, src, false, t)
	if m == nil {
		return nil
	}
	b, err := m.PackBuffer(buf)
	if err != nil {
		s.log.Warn("pack response", "name", req.Question[0].Name, "err", err)
		return nil
	}
	if reusable && key != nil {
		if e := s.newCachedAnswer(q, b, res); e != nil {
			t.answers.put(key, e)
		}
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
