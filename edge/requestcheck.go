package edge

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
)

// Requests the edge refuses before routing them, whatever the protocol
// (issue 20). Each error becomes its status in fail.
var (
	// errBadHost: a Host with userinfo, a port outside 1-65535, or
	// characters no hostname has (400, RFC 9110 §7.2).
	errBadHost = errors.New("malformed Host")
	// errURITooLong: a request target over max_uri_bytes (414).
	errURITooLong = errors.New("request target too long")
	// errConnect: the edge is no tunnel (405).
	errConnect = errors.New("CONNECT is not served")
	// errMisdirected: the TLS connection's name belongs to another site
	// than the Host (421, RFC 9110 §15.5.20): no fronting one site's
	// requests through another's connection.
	errMisdirected = errors.New("the Host is not a name this TLS connection was made for")
)

// allowedMethods answers a 405's Allow.
const allowedMethods = "GET, HEAD, OPTIONS, POST, PUT, PATCH, DELETE"

// refusal is the status and Cache-Status detail of a refused request.
type refusal struct {
	err    error
	status int
	detail string
}

// refusals are the statuses of the errors above, for every front (fail,
// and h1Error for what fasthttp's front refuses itself).
var refusals = []refusal{
	{errMisdirected, http.StatusMisdirectedRequest, "misdirected"},
	{errBadHost, http.StatusBadRequest, "bad-host"},
	{errURITooLong, http.StatusRequestURITooLong, "uri-too-long"},
	{errConnect, http.StatusMethodNotAllowed, "connect"},
}

// refusalOf returns the refusal err is, if it is one.
func refusalOf(err error) (refusal, bool) {
	for _, r := range refusals {
		if errors.Is(err, r.err) {
			return r, true
		}
	}
	return refusal{}, false
}

// checkRequest returns why r must be refused before routing, or nil. A
// header name that is not a token never gets here: fasthttp, edge/h2 and
// quic-go each refuse it themselves (HTTP/1.1: TestHostileClients).
func (h *Handler) checkRequest(r *http.Request) error {
	if len(r.RequestURI) > h.maxURI || len(r.URL.RawPath)+len(r.URL.Path)+len(r.URL.RawQuery) > h.maxURI {
		return errURITooLong
	}
	if r.Method == http.MethodConnect {
		return errConnect
	}
	if !validHost(r.Host) {
		return errBadHost
	}
	if r.TLS != nil && !h.sameSite(r.TLS.ServerName, r.Host) {
		return errMisdirected
	}
	return nil
}

// sameSite reports whether the TLS server name sni and the Host route to
// the same site. A connection without a name (an IP address was dialled)
// was offered the default certificate, which fronts nothing.
func (h *Handler) sameSite(sni, host string) bool {
	if sni == "" || strings.HasPrefix(host, sni) && (len(host) == len(sni) || host[len(sni)] == ':') {
		return true // the usual case, without two route lookups
	}
	routes := h.routes.Load()
	return routes.Lookup(sni) == routes.Lookup(host)
}

// validHost reports whether host is a uri-host with an optional port
// (RFC 9110 §7.2, RFC 3986 §3.2.2): a reg-name or IP literal, no userinfo,
// and a port, when given, of 1-65535.
func validHost(host string) bool {
	if host == "" || len(host) > 255+6 {
		return false
	}
	name, port := host, ""
	if strings.HasPrefix(host, "[") {
		end := strings.IndexByte(host, ']')
		if end < 0 {
			return false
		}
		name, port = host[1:end], host[end+1:]
		if port != "" && port[0] != ':' {
			return false
		}
		if !strings.Contains(name, ":") || strings.ContainsFunc(name, func(c rune) bool { return !isHexRune(c) && c != ':' && c != '.' }) {
			return false
		}
	} else if i := strings.LastIndexByte(host, ':'); i >= 0 {
		name, port = host[:i], host[i:]
	}
	if port != "" {
		n, err := strconv.Atoi(port[1:])
		if err != nil || n < 1 || n > 65535 || port[1] == '+' || port[1] == '-' {
			return false
		}
	}
	if strings.HasPrefix(host, "[") {
		return true
	}
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-' || c == '.' || c == '_':
		default:
			return false // '@' (userinfo), spaces, '/', '%', controls, non-ASCII
		}
	}
	return true
}

func isHexRune(c rune) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
