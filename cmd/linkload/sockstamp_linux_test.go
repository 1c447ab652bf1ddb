//go:build linux

package main

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// loopbackPair returns both ends of a loopback TCP connection, the
// reading one with receive timestamps on.
func loopbackPair(t *testing.T, base time.Time) (r *stampedConn, w net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	w, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	s, ok := stampConn(c, base).(*stampedConn)
	if !ok {
		t.Fatal("stampConn did not turn timestamps on for a TCP connection")
	}
	t.Cleanup(func() { s.Close(); w.Close() })
	// The kernel turns timestamping on in a work item of its own after the
	// first socket asks: until then segments arrive without a time.
	for deadline := time.Now().Add(5 * time.Second); ; {
		if _, err := w.Write([]byte{0}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Read(make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
		if s.arrived != 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no receive timestamps after 5s")
		}
		time.Sleep(time.Millisecond)
	}
	return s, w
}

// The time a read reports is when the bytes reached the socket, not when
// they were read: bytes left unread for a while are that much older.
func TestStampedConnReportsArrivalNotRead(t *testing.T) {
	base := time.Now()
	r, w := loopbackPair(t, base)
	sent := int64(time.Since(base))
	if _, err := w.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	const wait = 50 * time.Millisecond
	time.Sleep(wait)
	buf := make([]byte, 16)
	n, err := r.Read(buf)
	read := int64(time.Since(base))
	if err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("Read = %q, %v", buf[:n], err)
	}
	if r.arrived < sent || r.arrived > sent+int64(wait/2) {
		t.Errorf("arrived %v after the start: want between the write (%v) and %v later", time.Duration(r.arrived), time.Duration(sent), wait/2)
	}
	if age := time.Duration(read - r.arrived); age < wait {
		t.Errorf("the bytes were read %v after they arrived; they waited %v", age, wait)
	}

	// A read that must wait for its bytes is stamped with their arrival.
	go func() {
		time.Sleep(20 * time.Millisecond)
		w.Write([]byte("again"))
	}()
	before := int64(time.Since(base))
	if n, err = r.Read(buf); err != nil || string(buf[:n]) != "again" {
		t.Fatalf("second Read = %q, %v", buf[:n], err)
	}
	if r.arrived < before+int64(15*time.Millisecond) {
		t.Errorf("second read stamped %v after it started waiting; the bytes came about 20ms later", time.Duration(r.arrived-before))
	}
}

// Read behaves as net.Conn's: deadlines time out as net.Errors, the
// peer's close is io.EOF, an empty buffer reads nothing.
func TestStampedConnReadErrors(t *testing.T) {
	r, w := loopbackPair(t, time.Now())
	if n, err := r.Read(nil); n != 0 || err != nil {
		t.Errorf("Read(nil) = %d, %v", n, err)
	}
	r.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	_, err := r.Read(make([]byte, 8))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("read past the deadline: %v, want a timeout", err)
	}
	r.SetReadDeadline(time.Time{})
	w.Close()
	if _, err := r.Read(make([]byte, 8)); err != io.EOF {
		t.Errorf("read after the peer closed: %v, want io.EOF", err)
	}
	r.Close()
	if _, err := r.Read(make([]byte, 8)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("read after Close: %v, want net.ErrClosed", err)
	}
}

// cmsg builds one control message as the kernel lays it out.
func cmsg(level, typ int32, data []byte) []byte {
	b := make([]byte, unix.CmsgSpace(len(data)))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = level, typ
	h.SetLen(unix.CmsgLen(len(data)))
	copy(b[unix.CmsgLen(0):], data)
	return b
}

func timespecBytes(sec, nsec int64) []byte {
	ts := unix.NsecToTimespec(sec*int64(time.Second) + nsec)
	return unsafe.Slice((*byte)(unsafe.Pointer(&ts)), unsafe.Sizeof(ts))
}

func TestCmsgTime(t *testing.T) {
	stamp := cmsg(unix.SOL_SOCKET, unix.SCM_TIMESTAMPNS, timespecBytes(1_700_000_000, 123))
	other := cmsg(unix.SOL_SOCKET, unix.SCM_RIGHTS, binary.NativeEndian.AppendUint32(nil, 7))
	tests := []struct {
		name string
		b    []byte
		want int64
		ok   bool
	}{
		{"none", nil, 0, false},
		{"timestamp", stamp, 1_700_000_000_000_000_123, true},
		{"after another message", append(append([]byte{}, other...), stamp...), 1_700_000_000_000_000_123, true},
		{"another message only", other, 0, false},
		{"other level", cmsg(unix.SOL_IP, unix.SCM_TIMESTAMPNS, timespecBytes(1, 2)), 0, false},
		{"data too short", cmsg(unix.SOL_SOCKET, unix.SCM_TIMESTAMPNS, []byte{1, 2, 3}), 0, false},
		{"header cut", stamp[:8], 0, false},
		{"data cut", stamp[:len(stamp)-4], 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := cmsgTime(tt.b)
			if got != tt.want || ok != tt.ok {
				t.Errorf("cmsgTime = %d, %v; want %d, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func FuzzCmsgTime(f *testing.F) {
	f.Add(cmsg(unix.SOL_SOCKET, unix.SCM_TIMESTAMPNS, timespecBytes(1_700_000_000, 5)))
	f.Add(cmsg(unix.SOL_SOCKET, unix.SCM_RIGHTS, []byte{1, 0, 0, 0}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, ok := cmsgTime(b) // must not panic on any bytes
		if !ok && got != 0 {
			t.Errorf("no timestamp, yet %d", got)
		}
		// After one well-formed message of another kind, a timestamp is
		// still found.
		if len(b) < unix.SizeofCmsghdr {
			return
		}
		h, _, _, err := unix.ParseOneSocketControlMessage(b)
		if err != nil || len(b) != unix.CmsgSpace(int(h.Len)-unix.SizeofCmsghdr) ||
			(h.Level == unix.SOL_SOCKET && h.Type == unix.SCM_TIMESTAMPNS) {
			return
		}
		const want = 42*int64(time.Second) + 7
		if got, ok := cmsgTime(append(append([]byte{}, b...), cmsg(unix.SOL_SOCKET, unix.SCM_TIMESTAMPNS, timespecBytes(42, 7))...)); !ok || got != want {
			t.Errorf("timestamp after %x: %d, %v; want %d", b, got, ok, want)
		}
	})
}

// Every delivery of a real load is also timed to the receiver's socket,
// and that time is part of its end-to-end latency: never more, quantile
// by quantile, and never nothing.
func TestLoadTimesDeliveriesToTheSocket(t *testing.T) {
	r, stdout, _ := runOnBaseline(t, "-users", "20", "-rooms", "2", "-group", "10",
		"-rate", "400", "-d", "1s", "-slices", "100ms", "-socket-time")
	checkDelivered(t, "load", r.Load, 0, 10)
	e2e, sock := r.Load.Latency, r.Load.SocketLatency
	if sock == nil {
		t.Fatal("no socket latency in the report")
	}
	if sock.Count != e2e.Count {
		t.Errorf("%d deliveries timed to the socket, %d end to end", sock.Count, e2e.Count)
	}
	for _, q := range []struct {
		name      string
		sock, e2e float64
	}{{"p50", sock.P50Ms, e2e.P50Ms}, {"p99", sock.P99Ms, e2e.P99Ms}, {"max", sock.MaxMs, e2e.MaxMs}} {
		if q.sock <= 0 || q.sock > q.e2e {
			t.Errorf("%s: %vms to the socket, %vms end to end", q.name, q.sock, q.e2e)
		}
	}
	// Slices are cut from the two histograms a moment apart, so a slice
	// may hold a delivery in one and not the other: no finer check here.
	if m := r.Load.SocketSliceP99MedianMs; m <= 0 || m > sock.MaxMs*(1+1.0/histSub) {
		t.Errorf("median slice p99 to the socket %vms, its max %vms", m, sock.MaxMs)
	}
	if !strings.Contains(stdout, "to the receiver's socket") {
		t.Errorf("want the socket latency in the summary; stdout:\n%s", stdout)
	}
}
