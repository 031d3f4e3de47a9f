//go:build !linux

package edge

import "net"

// setNotSentLowat is Linux-only; elsewhere connections keep the default.
func setNotSentLowat(net.Conn, int) {}
