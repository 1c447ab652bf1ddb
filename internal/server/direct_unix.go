//go:build unix

package server

import (
	"errors"
	"net"
	"syscall"
)

// rawConn returns a writer to the socket under nc for writes that must
// not wait, or nil (TLS, or anything that is not a plain socket): then the
// writer goroutine writes everything.
func rawConn(nc net.Conn) *rawWriter {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return newRawWriter(rc)
}

// rawWriter writes to a socket without waiting. It is reused for every
// write of one connection (under its lock), so that a write allocates
// nothing: the function handed to RawConn.Write is made once.
type rawWriter struct {
	rc  syscall.RawConn
	fn  func(fd uintptr) bool
	b   []byte
	n   int
	err error
}

func newRawWriter(rc syscall.RawConn) *rawWriter {
	w := &rawWriter{rc: rc}
	w.fn = w.write
	return w
}

// writeNonBlocking writes as much of b as the socket takes now. It returns
// how much was written, and an error other than "would block". The
// runtime's poller never parks: fn reports done whatever write(2) says.
// An expired write deadline or a closed socket is an error before any
// byte is written.
func (w *rawWriter) writeNonBlocking(b []byte) (int, error) {
	w.b, w.n, w.err = b, 0, nil
	err := w.rc.Write(w.fn)
	n, werr := w.n, w.err
	w.b = nil
	if err != nil {
		return n, err
	}
	return n, werr
}

func (w *rawWriter) write(fd uintptr) bool {
	for w.n < len(w.b) {
		m, err := syscall.Write(int(fd), w.b[w.n:])
		if m > 0 {
			w.n += m
		}
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil && !errors.Is(err, syscall.EAGAIN) {
			w.err = err
		}
		if err != nil || m <= 0 {
			break
		}
	}
	return true
}
