package server

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestReaderNeverWritesIntoADirectWrite: a frame past the read limit ends
// the connection with 1009, written by the writer after any frame a direct
// write began. (gorilla/websocket's own read limit writes its close frame
// from the reader goroutine, which could land inside that frame.) The
// direct write is done step by step as flushDirect does it when the socket
// takes only part of a frame.
func TestReaderNeverWritesIntoADirectWrite(t *testing.T) {
	s := directServer(t, Limits{MaxFrameBytes: 1024})
	c, client := loopbackConn(t, s)
	go c.readLoop()

	payload := []byte(`{"seq":1,"pad":"` + strings.Repeat("p", 300) + `"}`)
	buf := appendTextFrame(nil, [][]byte{payload})
	k := 50 // what the socket took of the frame

	// flushDirect, first half: mark the direct write and write part of the frame.
	c.mu.Lock()
	c.direct = true
	c.mu.Unlock()
	n, err := c.raw.writeNonBlocking(buf[:k])
	if err != nil || n != k {
		t.Fatalf("raw write: %d %v", n, err)
	}

	// Meanwhile the client sends a frame over the read limit.
	if err := client.WriteMessage(websocket.TextMessage, bytes.Repeat([]byte("x"), 4096)); err != nil {
		t.Fatal(err)
	}
	// The reader has handled it once it asked the writer to close.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.mu.Lock()
		closing := c.closing
		c.mu.Unlock()
		if closing {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("reader did not close")
		}
		time.Sleep(time.Millisecond)
	}

	// flushDirect, second half: the socket took only k bytes; the writer writes the rest.
	c.mu.Lock()
	c.direct = false
	c.partial, c.partialOff = buf, k
	c.passWaits = false
	c.signal()
	c.mu.Unlock()

	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	mt, got, err := client.ReadMessage()
	if err != nil || mt != websocket.TextMessage || !bytes.Equal(got, payload) {
		t.Fatalf("client read type %d, %d bytes (%.60q…), err %v; want the %d-byte text frame whole, then a close 1009",
			mt, len(got), got, err, len(payload))
	}
	_, _, err = client.ReadMessage()
	if ce, ok := err.(*websocket.CloseError); !ok || ce.Code != websocket.CloseMessageTooBig {
		t.Fatalf("after the message: %v, want close 1009", err)
	}
}
