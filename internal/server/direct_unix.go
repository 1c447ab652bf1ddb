//go:build unix

package server

import (
	"errors"
	"net"
	"syscall"
)

// rawConn returns the socket under nc for writes that must not wait, or
// nil (TLS, or anything that is not a plain socket): then the writer
// goroutine writes everything.
func rawConn(nc net.Conn) syscall.RawConn {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// writeNonBlocking writes as much of b to rc as the socket takes now. It
// returns how much was written, and an error other than "would block".
// The runtime's poller never parks: f reports done whatever write(2) says.
// An expired write deadline or a closed socket is an error before any
// byte is written.
func writeNonBlocking(rc syscall.RawConn, b []byte) (int, error) {
	var (
		n    int
		werr error
	)
	err := rc.Write(func(fd uintptr) bool {
		for n < len(b) {
			m, err := syscall.Write(int(fd), b[n:])
			if m > 0 {
				n += m
			}
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			if err != nil && !errors.Is(err, syscall.EAGAIN) {
				werr = err
			}
			if err != nil || m <= 0 {
				break
			}
		}
		return true
	})
	if err != nil {
		return n, err
	}
	return n, werr
}
