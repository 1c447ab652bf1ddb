package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/linkwall/linkwall/internal/chat"
)

// TestAppendTextFrame: gorilla/websocket reads the frames appendTextFrame
// builds as the text messages they hold, at every length encoding.
func TestAppendTextFrame(t *testing.T) {
	queues := [][][]byte{{[]byte("x")}}
	for _, n := range []int{0, 125, 126, 127, 65535, 65536, 70000} {
		queues = append(queues, [][]byte{bytes.Repeat([]byte("a"), n)})
	}
	queues = append(queues, [][]byte{[]byte(`{"a":1}`), []byte(`{"b":"中文"}`), bytes.Repeat([]byte("z"), 200)})
	frames := make(chan []byte, len(queues))
	for _, q := range queues {
		frames <- appendTextFrame(nil, q)
	}
	close(frames)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		for f := range frames {
			if _, err := ws.NetConn().Write(f); err != nil {
				return
			}
		}
	}))
	defer ts.Close()
	client, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(ts.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	for i, q := range queues {
		mt, got, err := client.ReadMessage()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if want := bytes.Join(q, []byte("\n")); mt != websocket.TextMessage || !bytes.Equal(got, want) {
			t.Fatalf("frame %d: type %d, %d bytes, want a text message of %d bytes", i, mt, len(got), len(want))
		}
	}
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

// directServer is a test server whose fan-out writes directly, as with
// the SQLite store.
func directServer(t testing.TB, limits Limits) *Server {
	s := newTestServer(t, limits)
	s.fo = &fanout{}
	s.foFree = make(chan *fanout, 1)
	s.foFree <- &fanout{}
	return s
}

// fanOut delivers events seqs of room r through s's fan-out to cs and
// flushes it, as the store's sync goroutine does after a sync.
func fanOut(s *Server, cs []*conn, seqs []int64, pad int) {
	for _, seq := range seqs {
		p := []byte(fmt.Sprintf(`{"seq":%d,"pad":%q}`, seq, strings.Repeat("p", pad)))
		for _, c := range cs {
			c.deliverVia(chat.Event{Room: "r", Seq: seq, Payload: p}, s.fo)
		}
		s.fo.msgs++
	}
	s.flushFanout()
}

// waitFlushed waits until no flush runs.
func waitFlushed(s *Server) {
	f := <-s.foFree
	s.foFree <- f
}

// readSeqs reads frames until it has n objects, and returns their seqs
// and the number of frames they came in.
func readSeqs(t *testing.T, client *websocket.Conn, n int) ([]int64, int) {
	t.Helper()
	_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
	var seqs []int64
	frames := 0
	for len(seqs) < n {
		_, data, err := client.ReadMessage()
		if err != nil {
			t.Fatalf("after %d objects: %v", len(seqs), err)
		}
		frames++
		for _, line := range bytes.Split(data, []byte("\n")) {
			var v struct{ Seq int64 }
			if err := json.Unmarshal(line, &v); err != nil {
				t.Fatalf("object %.80q…: %v", line, err)
			}
			seqs = append(seqs, v.Seq)
		}
	}
	return seqs, frames
}

func wantSeqs(t *testing.T, got []int64, from, to int64) {
	t.Helper()
	if len(got) != int(to-from+1) {
		t.Fatalf("got %d seqs, want %d..%d", len(got), from, to)
	}
	for i, seq := range got {
		if seq != from+int64(i) {
			t.Fatalf("seq %d at %d, want %d..%d in order", seq, i, from, to)
		}
	}
}

// TestFanoutWritesLargeSyncDirectly: a sync of directMinBatch messages or
// more reaches every member in one frame written by the fan-out, with no
// writer goroutine started; a smaller one goes through the writers.
func TestFanoutWritesLargeSyncDirectly(t *testing.T) {
	s := directServer(t, Limits{})
	var cs []*conn
	var clients []*websocket.Conn
	for i := range 3 {
		c, client := loopbackConnAs(t, s, chat.User{ID: fmt.Sprintf("u%d", i)})
		cs, clients = append(cs, c), append(clients, client)
	}
	fanOut(s, cs, []int64{1, 2, 3, 4, 5}, 10)
	waitFlushed(s)
	for i, client := range clients {
		seqs, frames := readSeqs(t, client, 5)
		wantSeqs(t, seqs, 1, 5)
		if frames != 1 {
			t.Errorf("member %d got the sync in %d frames, want 1", i, frames)
		}
		cs[i].mu.Lock()
		on := cs[i].writerOn
		cs[i].mu.Unlock()
		if on {
			t.Errorf("member %d: a writer goroutine was started for a direct write", i)
		}
	}
	if got := counterValue(s.metrics.directWhole); got != 3 {
		t.Fatalf("%v whole direct writes, want 3", got)
	}

	fanOut(s, cs, []int64{6, 7}, 10) // below directMinBatch
	for i, client := range clients {
		seqs, _ := readSeqs(t, client, 2)
		wantSeqs(t, seqs, 6, 7)
		cs[i].mu.Lock()
		on := cs[i].writerOn
		cs[i].mu.Unlock()
		if !on {
			t.Errorf("member %d: a small sync was not left to the writer", i)
		}
	}
	if got := counterValue(s.metrics.directWhole); got != 3 {
		t.Fatalf("%v whole direct writes after a small sync, want still 3", got)
	}
}

// TestFanoutDirectWriteToFullSocket: a member that stops reading fills its
// socket; the direct writes that do not fit are finished by its writer,
// and once it reads again it gets every message once, in order, in whole
// frames.
func TestFanoutDirectWriteToFullSocket(t *testing.T) {
	s := directServer(t, Limits{MaxQueueBytes: 64 << 20})
	c, client := loopbackConn(t, s)
	const perSync, pad = 8, 16 << 10
	seq := int64(0)
	for syncs := 0; syncs < 400; syncs++ {
		seqs := make([]int64, perSync)
		for i := range seqs {
			seq++
			seqs[i] = seq
		}
		fanOut(s, []*conn{c}, seqs, pad)
		if counterValue(s.metrics.directPart)+counterValue(s.metrics.directNone) > 0 &&
			counterValue(s.metrics.directWhole) > 0 {
			break
		}
	}
	waitFlushed(s)
	if counterValue(s.metrics.directPart)+counterValue(s.metrics.directNone) == 0 {
		t.Fatalf("the socket took %d messages of %d KB without filling up", seq, pad>>10)
	}
	fanOut(s, []*conn{c}, []int64{seq + 1, seq + 2, seq + 3, seq + 4}, pad) // behind the writer
	seq += 4
	got, _ := readSeqs(t, client, int(seq))
	wantSeqs(t, got, 1, seq)
}

// TestWriterAnswersControlFrames: pings and closes from the client are
// answered by the connection's writer (the reader never writes, so its
// answers cannot land inside a direct write).
func TestWriterAnswersControlFrames(t *testing.T) {
	s := newTestServer(t, Limits{})
	c, client := loopbackConn(t, s)
	go c.readLoop()
	pong := make(chan string, 1)
	client.SetPongHandler(func(data string) error {
		pong <- data
		return nil
	})
	read := make(chan error, 1)
	go func() {
		for {
			if _, _, err := client.ReadMessage(); err != nil {
				read <- err
				return
			}
		}
	}()
	if err := client.WriteControl(websocket.PingMessage, []byte("are you there"), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-pong:
		if got != "are you there" {
			t.Fatalf("pong %q", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no pong")
	}
	msg := websocket.FormatCloseMessage(websocket.CloseGoingAway, "bye")
	if err := client.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-read:
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.CloseGoingAway {
			t.Fatalf("after the client's close: %v, want the server's close %d", err, websocket.CloseGoingAway)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no close frame back")
	}
}
