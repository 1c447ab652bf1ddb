package main

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestShutdownDoesNotWaitForSlowRequests checks that a WebSocket client
// hears 1001 Going Away at once when the server stops, even while an HTTP
// request is still being received, and that the request still completes.
func TestShutdownDoesNotWaitForSlowRequests(t *testing.T) {
	s := newTestServer(t, t.TempDir())
	alice, bob := s.newUser("alice"), s.newUser("bob")
	room := alice.direct(bob, http.StatusCreated)
	a := alice.connect()
	a.sendAck(room.ID, "before shutdown", "1")

	// A request whose body trickles in: its handler waits for the rest.
	slow, err := net.Dial("tcp", s.m.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	body := `{"name":"slow"}`
	fmt.Fprintf(slow, "POST /api/v1/session HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		s.m.Addr(), len(body), body[:1])
	// A request on a second connection, answered: the server accepts
	// connections in order, so it has taken the slow one, and
	// http.Server.Shutdown waits for it instead of dropping it unaccepted.
	s.do("", "GET", "/healthz", nil, http.StatusOK, nil)

	closed := make(chan error, 1)
	go func() { closed <- s.m.Close() }()

	// Half of shutdownWait: before the fix, the 1001 came only once the
	// slow request had ended or the whole shutdown deadline had passed.
	select {
	case <-a.done:
	case <-time.After(shutdownWait / 2):
		t.Fatal("no close frame while an HTTP request was still open")
	}
	var ce *websocket.CloseError
	if !errors.As(a.err, &ce) || ce.Code != websocket.CloseGoingAway {
		t.Fatalf("socket ended with %v, want 1001", a.err)
	}
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) before the request in flight ended", err)
	default:
	}

	// The rest of the body: the request in flight is answered.
	if _, err := slow.Write([]byte(body[1:])); err != nil {
		t.Fatal(err)
	}
	_ = slow.SetReadDeadline(time.Now().Add(waitFor))
	resp, err := http.ReadResponse(bufio.NewReader(slow), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("request in flight during shutdown: status %d, want 201", resp.StatusCode)
	}
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(waitFor):
		t.Fatal("Close did not return after the last request")
	}
}
