//go:build !unix

package server

import (
	"errors"
	"net"
)

// rawWriter is not available here: the writer goroutine writes everything.
type rawWriter struct{}

// rawConn returns nil: the writer goroutine writes everything.
func rawConn(net.Conn) *rawWriter { return nil }

func (*rawWriter) writeNonBlocking([]byte) (int, error) {
	return 0, errors.New("direct writes are not supported here")
}
