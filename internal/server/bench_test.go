package server

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/linkwall/linkwall/bot"
	"github.com/linkwall/linkwall/internal/chat"
	"github.com/linkwall/linkwall/internal/cputime"
)

// benchMessage is a typical message: a Chinese share text with three links.
func benchMessage(b testing.TB) *chat.Message {
	text := "【淘宝】好物分享 https://m.tb.cn/h.5Zq8Lmn 抖音 https://v.douyin.com/iRNBho6/ 京东 https://item.jd.com/100012043978.html"
	res := bot.New(nil, nil).Decide(b.Context(), text, bot.Group, "group-ecommerce")
	return &chat.Message{
		ID: "0b5e3f7e-8a53-4d39-9d7c-0e7a1f1c2d3e", Room: "6f1f3c39-1d6e-4d8f-9d0c-3c0b8c1f0000", Seq: 42,
		Sender: chat.Sender{ID: "c1a8381b-8b7a-40d6-a89b-74e0e2b5feac", Name: "alice"},
		Text:   text, Links: res.Links, Era: "group-ecommerce", SentAt: time.Now().UTC(),
	}
}

// BenchmarkEncodeMessage is the per-message encoding cost of a fan-out:
// once for all recipients, plus the sender's copy.
func BenchmarkEncodeMessage(b *testing.B) {
	m := benchMessage(b)
	b.ReportAllocs()
	var n int
	for b.Loop() {
		p := encodeMessage(m)
		n = len(withClientMsgID(p, "client-1"))
	}
	b.SetBytes(int64(n))
}

// BenchmarkPreparedMessage is the same with the frame encoded by the
// reader before the seq was known (prepareMessage): what is left for the
// store's sync goroutine per message.
func BenchmarkPreparedMessage(b *testing.B) {
	m := benchMessage(b)
	p, ok := prepareMessage(m)
	if !ok {
		b.Fatal("no seq field")
	}
	b.ReportAllocs()
	var n int
	for b.Loop() {
		n = len(withClientMsgID(p.frame(m.Seq), "client-1"))
	}
	b.SetBytes(int64(n))
}

// BenchmarkFanout100 delivers one event to a 100-member room: the hub's
// lookup, each connection's sequence check and the enqueue.
func BenchmarkFanout100(b *testing.B) {
	s := newTestServer(b, Limits{MaxQueueBytes: 1 << 30})
	members := make([]string, 100)
	conns := make([]*conn, 100)
	for i := range members {
		members[i] = fmt.Sprintf("user-%03d", i)
		c := newConn(s, nil, chat.User{ID: members[i]})
		c.start(nil, nil)
		s.hub.add(c)
		conns[i] = c
	}
	payload := encodeMessage(benchMessage(b))
	b.ReportAllocs()
	b.ResetTimer()
	seq := int64(0)
	for b.Loop() {
		seq++
		s.hub.Deliver(chat.Event{Room: "r", Seq: seq, Members: members, Payload: payload})
		if seq%256 == 0 { // what the writers would do
			for _, c := range conns {
				c.mu.Lock()
				putQueue(c.queue)
				c.queue, c.queueBytes = nil, 0
				c.mu.Unlock()
			}
		}
	}
	b.ReportMetric(float64(b.N*len(members))/b.Elapsed().Seconds(), "deliveries/s")
}

// BenchmarkCoalescedWriter pushes messages through one real connection's
// queue and writer over loopback; the client reads and discards.
func BenchmarkCoalescedWriter(b *testing.B) {
	s := newTestServer(b, Limits{MaxQueueBytes: 64 << 20})
	c, client := loopbackConn(b, s)
	payload := encodeMessage(benchMessage(b))
	done := make(chan int)
	go func() {
		objects := 0
		for objects < b.N {
			_, data, err := client.ReadMessage()
			if err != nil {
				break
			}
			objects += strings.Count(string(data), "\n") + 1
		}
		done <- objects
	}()
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for {
			c.mu.Lock()
			full := c.queueBytes > DefaultMaxQueueBytes/2
			if !full {
				c.enqueueLocked(payload)
			}
			c.mu.Unlock()
			if !full {
				break
			}
			time.Sleep(10 * time.Microsecond) // let the writer catch up
		}
	}
	if got := <-done; got != b.N {
		b.Fatalf("client read %d objects, want %d", got, b.N)
	}
	c.closeWith(websocket.CloseNormalClosure, "")
}

// BenchmarkQuietDelivery is the time from queueing one message on a quiet
// connection (nothing written for longer than lingerQuiet) until its
// client has read it, over loopback: the latency of a chat that is not
// busy, where a writer must not linger.
func BenchmarkQuietDelivery(b *testing.B) {
	s := newTestServer(b, Limits{MaxQueueBytes: 64 << 20})
	c, client := loopbackConn(b, s)
	payload := encodeMessage(benchMessage(b))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		time.Sleep(lingerQuiet + time.Millisecond)
		b.StartTimer()
		c.mu.Lock()
		c.enqueueLocked(payload)
		c.mu.Unlock()
		if _, _, err := client.ReadMessage(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	c.closeWith(websocket.CloseNormalClosure, "")
}

// BenchmarkSequencedFanout100 is BenchmarkFanout100 through the per-room
// sequencer, as publishMessage does on one node: ordering, the ring and
// the fan-out of the shared payload and the sender's copy.
func BenchmarkSequencedFanout100(b *testing.B) {
	s := newTestServer(b, Limits{MaxQueueBytes: 1 << 30})
	members := make([]string, 100)
	conns := make([]*conn, 100)
	for i := range members {
		members[i] = fmt.Sprintf("user-%03d", i)
		c := newConn(s, nil, chat.User{ID: members[i]})
		c.start(nil, nil)
		s.hub.add(c)
		conns[i] = c
	}
	m := benchMessage(b)
	m.Sender.ID = members[0]
	m.ClientMsgID = "client-1"
	room := &chat.Room{ID: m.Room, Kind: chat.Group, Members: members}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		m.Seq++
		s.publishMessage(b.Context(), room, m)
		if m.Seq%256 == 0 { // what the writers would do
			for _, c := range conns {
				c.mu.Lock()
				putQueue(c.queue)
				c.queue, c.queueBytes = nil, 0
				c.mu.Unlock()
			}
		}
	}
	b.ReportMetric(float64(b.N*len(members))/b.Elapsed().Seconds(), "deliveries/s")
}

// BenchmarkDirectFanout100 is one sync of 8 messages into a 100-member
// room written straight to the members' sockets over loopback (the path
// of a large group commit): the fan-out, the flush goroutines' frames and
// writes. The clients read and discard; every iteration waits for its
// flush, so this is the flush's latency, not a pipeline's throughput.
func BenchmarkDirectFanout100(b *testing.B) {
	benchDirectFanout(b, encodeMessage(benchMessage(b)), 8)
}

// BenchmarkFrameBytes asks what a delivery's bytes cost against its
// write: DirectFanout100 with the fewest messages per sync that are
// written directly (directMinBatch) and with eight, for linkwall's message
// with three decided links and for the same text without them (a
// text-only chat's message). cpu-ns/delivery is the process's CPU, the
// clients' reads included.
func BenchmarkFrameBytes(b *testing.B) {
	withLinks := encodeMessage(benchMessage(b))
	bare := benchMessage(b)
	bare.Links = nil
	textOnly := encodeMessage(bare)
	for _, perSync := range []int{directMinBatch, 8} {
		for _, m := range []struct {
			name    string
			payload []byte
		}{{"text", textOnly}, {"links", withLinks}} {
			b.Run(fmt.Sprintf("msgs=%d/%s=%dB", perSync, m.name, len(m.payload)), func(b *testing.B) {
				benchDirectFanout(b, m.payload, perSync)
			})
		}
	}
}

func benchDirectFanout(b *testing.B, payload []byte, perSync int) {
	s := directServer(b, Limits{MaxQueueBytes: 64 << 20})
	conns := make([]*conn, 100)
	read := make(chan int, len(conns))
	for i := range conns {
		c, client := loopbackConnAs(b, s, chat.User{ID: fmt.Sprintf("user-%03d", i)})
		conns[i] = c
		go func() {
			// Count without keeping the frames: the process's allocations
			// are reported, the clients' included.
			var nl newlines
			buf := make([]byte, 32<<10)
			for frames := 0; ; frames++ {
				_, r, err := client.NextReader()
				if err == nil {
					_, err = io.CopyBuffer(&nl, r, buf)
				}
				if err != nil {
					read <- int(nl) + frames
					return
				}
			}
		}()
	}
	b.SetBytes(int64(perSync * len(payload) * len(conns)))
	b.ReportAllocs()
	cpu0 := cputime.Process()
	b.ResetTimer()
	seq := int64(0)
	for b.Loop() {
		for range perSync {
			seq++
			for _, c := range conns {
				c.deliverVia(chat.Event{Room: "r", Seq: seq, Payload: payload}, s.fo)
			}
			s.fo.msgs++
		}
		s.flushFanout()
		waitFlushed(s)
	}
	b.StopTimer()
	deliveries := float64(int(seq) * len(conns))
	b.ReportMetric(deliveries/b.Elapsed().Seconds(), "deliveries/s")
	if cpu := cputime.Process() - cpu0; cpu > 0 {
		b.ReportMetric(float64(cpu.Nanoseconds())/deliveries, "cpu-ns/delivery")
	}
	for _, c := range conns {
		c.closeWith(websocket.CloseNormalClosure, "")
	}
	total := 0
	for range conns {
		total += <-read
	}
	if total != int(seq)*len(conns) {
		b.Fatalf("clients read %d objects, want %d", total, int(seq)*len(conns))
	}
}

// newlines counts the '\n' bytes written to it.
type newlines int

func (n *newlines) Write(p []byte) (int, error) {
	*n += newlines(bytes.Count(p, []byte{'\n'}))
	return len(p), nil
}
