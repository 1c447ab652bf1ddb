//go:build linux

package main

import (
	"io"
	"net"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// stampConn turns on the kernel's receive timestamps (SO_TIMESTAMPNS) of a
// TCP connection and returns it wrapped so that its reads also tell when
// their bytes reached the socket; any other connection, or one where the
// option is refused, comes back as it was.
func stampConn(c net.Conn, base time.Time) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
	}); err != nil || serr != nil {
		return c
	}
	s := &stampedConn{TCPConn: tc, raw: raw, base: base}
	s.recv = s.recvmsg
	return s
}

// stampedConn is a TCP connection read with recvmsg(2), keeping the
// receive timestamp the kernel returns with each read.
type stampedConn struct {
	*net.TCPConn
	raw  syscall.RawConn
	base time.Time
	// arrived is, after a Read that returned bytes, when the last of
	// them reached the socket, on the load's clock (ns since base); 0
	// if the kernel gave no time.
	arrived int64

	// The state of one Read, kept here so that recv, a method value
	// made once, needs no closure per read.
	recv func(fd uintptr) bool
	p    []byte
	oob  [64]byte
	n    int
	oobn int
	err  error
}

func (s *stampedConn) recvmsg(fd uintptr) bool {
	for {
		s.n, s.oobn, _, _, s.err = unix.Recvmsg(int(fd), s.p, s.oob[:], 0)
		switch s.err {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false // wait until readable
		}
		return true
	}
}

// Read reads as net.Conn's does, from one recvmsg(2).
func (s *stampedConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	s.p = p
	err := s.raw.Read(s.recv)
	s.p = nil
	if err == nil {
		err = s.err
	}
	if err != nil {
		return 0, &net.OpError{Op: "read", Net: "tcp", Source: s.LocalAddr(), Addr: s.RemoteAddr(), Err: err}
	}
	if s.n == 0 {
		return 0, io.EOF
	}
	s.arrived = 0
	if kt, ok := cmsgTime(s.oob[:s.oobn]); ok {
		// The kernel's time is the wall clock's, the load's the monotonic
		// one: take the age of the bytes, now, on the first, and place it
		// on the second, so that no drift between the clocks adds up.
		now := time.Now()
		s.arrived = int64(now.Sub(s.base)) - max(now.UnixNano()-kt, 0)
	}
	return s.n, nil
}

// cmsgTime returns the SCM_TIMESTAMPNS time (ns since the epoch) in the
// control messages b of a recvmsg(2), if there is one. For TCP it is the
// arrival of the last segment the read took data from.
func cmsgTime(b []byte) (int64, bool) {
	for len(b) > 0 {
		if len(b) < unix.SizeofCmsghdr { // the parser would read past b
			return 0, false
		}
		h, data, rest, err := unix.ParseOneSocketControlMessage(b)
		if err != nil {
			return 0, false
		}
		if h.Level == unix.SOL_SOCKET && h.Type == unix.SCM_TIMESTAMPNS &&
			len(data) >= int(unsafe.Sizeof(unix.Timespec{})) {
			var ts unix.Timespec
			copy(unsafe.Slice((*byte)(unsafe.Pointer(&ts)), unsafe.Sizeof(ts)), data)
			return ts.Nano(), true
		}
		b = rest
	}
	return 0, false
}
