//go:build !linux

package main

import (
	"context"
	"crypto/tls"
	"errors"

	"github.com/quic-go/quic-go"
)

// groDialer needs Linux's UDP_GRO; elsewhere run with -gro=false.
type groDialer struct{}

func (*groDialer) dial(context.Context, string, *tls.Config, *quic.Config) (*quic.Conn, error) {
	return nil, errors.New("-gro needs Linux")
}

func (*groDialer) close() {}
