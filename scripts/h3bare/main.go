// Command h3bare serves the files of a directory from memory over HTTP/3
// (quic-go's http3.Server) and over HTTP/2 with TLS (net/http) on one
// address, with nothing else on the request path: the ceiling of what
// quic-go and net/http give, for bench-h3.sh to measure the edge against.
//
//	h3bare -addr 127.0.0.1:9454 -dir site -cert cert.pem -key key.pem
package main

import (
	"crypto/tls"
	"flag"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"strconv"

	"github.com/quic-go/quic-go/http3"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9454", "UDP and TCP address")
	dir := flag.String("dir", ".", "directory whose files are served")
	certFile := flag.String("cert", "cert.pem", "certificate")
	keyFile := flag.String("key", "key.pem", "key")
	flag.Parse()

	files := map[string][]byte{}
	entries, err := os.ReadDir(*dir)
	if err != nil {
		log.Fatal(err)
	}
	for _, e := range entries {
		if b, err := os.ReadFile(filepath.Join(*dir, e.Name())); err == nil {
			files["/"+e.Name()] = b
		}
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.Header().Set("Cache-Control", "public, max-age=3600")
		w.Write(b)
	})
	cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		log.Fatal(err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}
	h3 := &http3.Server{Addr: *addr, Handler: h, TLSConfig: http3.ConfigureTLSConfig(tc.Clone())}
	go func() { log.Fatal(h3.ListenAndServe()) }()
	h2 := &http.Server{Addr: *addr, Handler: h, TLSConfig: tc}
	log.Fatal(h2.ListenAndServeTLS("", ""))
}
