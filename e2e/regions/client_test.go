package regions

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/miekg/dns"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// client is a user somewhere: it lives in a namespace, resolves through
// the GeoDNS servers a resolver near it would ask (its own region's
// first, the others when that one does not answer), sends its network as
// EDNS Client Subnet, and fetches over h1, h2 or h3 from the edges it
// was given, trying the next address when one fails, as browsers do.
type client struct {
	ns    string
	ecs   netip.Prefix
	dns   []string // GeoDNS servers, host:port, in the order asked
	roots *x509.CertPool
}

// protos a client fetches over.
var protos = []string{"h1", "h2", "h3"}

// answer is what a resolution returned, and which server gave it.
type answer struct {
	addrs  []netip.Addr
	server string
}

// resolve asks for name's A records, one server after another, each
// twice with a short timeout (the WAN loses a packet now and then).
func (c *client) resolve(ctx context.Context, name string) (answer, error) {
	var errs []error
	for _, server := range c.dns {
		for range 2 {
			addrs, err := c.query(ctx, server, name)
			if err == nil {
				return answer{addrs: addrs, server: server}, nil
			}
			errs = append(errs, fmt.Errorf("%s: %w", server, err))
		}
	}
	return answer{}, fmt.Errorf("resolve %s: %w", name, errors.Join(errs...))
}

func (c *client) query(ctx context.Context, server, name string) ([]netip.Addr, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeA)
	m.SetEdns0(1232, false)
	m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_SUBNET{
		Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: uint8(c.ecs.Bits()), Address: c.ecs.Addr().AsSlice(),
	})
	var conn net.Conn
	if err := inNS(c.ns, func() (err error) {
		conn, err = (&net.Dialer{}).DialContext(ctx, "udp", server)
		return err
	}); err != nil {
		return nil, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(700 * time.Millisecond))
	co := &dns.Conn{Conn: conn}
	if err := co.WriteMsg(m); err != nil {
		return nil, err
	}
	r, err := co.ReadMsg()
	if err != nil {
		return nil, err
	}
	if r.Rcode != dns.RcodeSuccess {
		return nil, fmt.Errorf("rcode %s", dns.RcodeToString[r.Rcode])
	}
	var addrs []netip.Addr
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok {
			ip, _ := netip.AddrFromSlice(a.A.To4())
			addrs = append(addrs, ip)
		}
	}
	if len(addrs) == 0 {
		return nil, errors.New("no A records")
	}
	return addrs, nil
}

// result is one fetch as the client saw it.
type result struct {
	status int
	body   string
	edge   netip.Addr
	header http.Header
	proto  string
}

// fetch resolves host and GETs https://host/path over proto from the
// first of its edges that answers.
func (c *client) fetch(ctx context.Context, proto, host, path string) (result, error) {
	ans, err := c.resolve(ctx, host)
	if err != nil {
		return result{}, err
	}
	var errs []error
	for _, a := range ans.addrs {
		res, err := c.get(ctx, proto, a, host, path)
		if err == nil {
			return res, nil
		}
		errs = append(errs, err)
	}
	return result{}, errors.Join(errs...)
}

// get fetches https://host/path from the edge at a, over a new
// connection made inside the client's namespace.
func (c *client) get(ctx context.Context, proto string, a netip.Addr, host, path string) (result, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	target := netip.AddrPortFrom(a, 443).String()
	tc := &tls.Config{RootCAs: c.roots, ServerName: host}
	var rt http.RoundTripper
	switch proto {
	case "h1", "h2":
		tr := &http.Transport{
			TLSClientConfig: tc, DisableKeepAlives: true,
			DialContext: func(ctx context.Context, network, _ string) (conn net.Conn, err error) {
				err = inNS(c.ns, func() error {
					conn, err = (&net.Dialer{}).DialContext(ctx, network, target)
					return err
				})
				return conn, err
			},
			Protocols: new(http.Protocols),
		}
		tr.Protocols.SetHTTP1(proto == "h1")
		tr.Protocols.SetHTTP2(proto == "h2")
		defer tr.CloseIdleConnections()
		rt = tr
	case "h3":
		var pc net.PacketConn
		if err := inNS(c.ns, func() (err error) { pc, err = net.ListenPacket("udp4", ":0"); return err }); err != nil {
			return result{}, err
		}
		defer pc.Close()
		tr := &http3.Transport{
			TLSClientConfig: tc,
			Dial: func(ctx context.Context, _ string, tlsCfg *tls.Config, cfg *quic.Config) (*quic.Conn, error) {
				return quic.DialEarly(ctx, pc, net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, 443)), tlsCfg, cfg)
			},
		}
		defer tr.Close()
		rt = tr
	default:
		return result{}, fmt.Errorf("unknown protocol %q", proto)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+host+path, nil)
	if err != nil {
		return result{}, err
	}
	res, err := rt.RoundTrip(req)
	if err != nil {
		return result{}, fmt.Errorf("%s %s via %s: %w", proto, path, a, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		return result{}, fmt.Errorf("%s %s via %s: body: %w", proto, path, a, err)
	}
	got := map[int]string{1: "h1", 2: "h2", 3: "h3"}[res.ProtoMajor]
	if got != proto {
		return result{}, fmt.Errorf("%s %s via %s: answered over %s", proto, path, a, res.Proto)
	}
	return result{status: res.StatusCode, body: string(body), edge: a, header: res.Header, proto: got}, nil
}
