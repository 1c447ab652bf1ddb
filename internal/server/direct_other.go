//go:build !unix

package server

import (
	"errors"
	"net"
	"syscall"
)

// rawConn returns nil: the writer goroutine writes everything.
func rawConn(net.Conn) syscall.RawConn { return nil }

func writeNonBlocking(syscall.RawConn, []byte) (int, error) {
	return 0, errors.New("direct writes are not supported here")
}
