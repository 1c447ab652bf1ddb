//go:build !linux

package main

import (
	"net"
	"time"
)

// stampConn returns c as it is: receive timestamps are read on Linux only,
// and the socket latency is not reported elsewhere.
func stampConn(c net.Conn, base time.Time) net.Conn { return c }

// stampedConn is never made here; wsClient's field and connect's type
// assertion name it.
type stampedConn struct {
	net.Conn
	arrived int64
}
