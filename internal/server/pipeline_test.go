package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"

	"github.com/linkwall/linkwall/bot"
	"github.com/linkwall/linkwall/internal/chat"
	"github.com/linkwall/linkwall/internal/chat/chattest"
	"github.com/linkwall/linkwall/internal/sqlite"
)

// failingStore is the SQLite store whose queued appends all fail with
// err, as they do after a failed sync of the WAL.
type failingStore struct {
	*sqlite.Store
	err error
}

func (f failingStore) AppendAsync(ctx context.Context, m chat.Message, then func(chat.Message), done func(chat.Message, bool, error)) error {
	go done(chat.Message{}, false, f.err) // later, from another goroutine, as the store answers
	return nil
}

// TestQueuedSendFailure: a send the reader did not wait for still gets its
// error frame, with its client_msg_id as ref, and frees its place among the
// connection's queued sends: more failing sends than maxInflightSends are
// each answered, and the connection stays open.
func TestQueuedSendFailure(t *testing.T) {
	st, err := sqlite.Open(context.Background(), t.TempDir(), zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	u := chattest.NewUser(t, st, "alice", 1)
	room := chattest.NewGroup(t, st, "class", u.ID)
	fail := chat.Errorf(chat.EUnavailable, "storage unavailable, retry later")
	s, err := New(Config{Store: failingStore{st, fail}, Bot: bot.New(nil, nil), Limits: Limits{SendRate: 1000, SendBurst: 1000}})
	if err != nil {
		t.Fatal(err)
	}
	if s.asyncStore == nil {
		t.Fatal("the server does not queue sends for a store with AppendAsync")
	}
	c, client := loopbackConnAs(t, s, u)
	go c.readLoop()

	n := maxInflightSends + 8
	for i := range n {
		f := map[string]string{"type": "send", "room": room.ID, "text": "hello", "client_msg_id": fmt.Sprintf("m%d", i)}
		if err := client.WriteJSON(f); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string]string{}
	_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
	for len(got) < n {
		_, data, err := client.ReadMessage()
		if err != nil {
			t.Fatalf("after %d of %d error frames: %v", len(got), n, err)
		}
		for _, line := range bytes.Split(data, []byte{'\n'}) {
			var e struct{ Type, Code, Ref string }
			if err := json.Unmarshal(line, &e); err != nil {
				t.Fatalf("bad object %q: %v", line, err)
			}
			if e.Type != "error" {
				t.Fatalf("got %s, want only error frames", line)
			}
			got[e.Ref] = e.Code
		}
	}
	for i := range n {
		if code := got[fmt.Sprintf("m%d", i)]; code != chat.EUnavailable {
			t.Errorf("send m%d: error code %q, want %q", i, code, chat.EUnavailable)
		}
	}
	if err := client.WriteControl(websocket.PingMessage, nil, time.Now().Add(time.Second)); err != nil {
		t.Errorf("connection closed after failed sends: %v", err)
	}
}

// BenchmarkSendBurst: one connection sends 32 messages in one frame and
// waits for the 32 acknowledgements, with the SQLite store syncing the WAL
// (on this machine's disk). ns/op is the whole burst.
func BenchmarkSendBurst(b *testing.B) {
	st, err := sqlite.Open(context.Background(), b.TempDir(), zaptest.NewLogger(b, zaptest.Level(zapcore.WarnLevel)))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	u := chattest.NewUser(b, st, "alice", 1)
	room := chattest.NewGroup(b, st, "class", u.ID)
	s, err := New(Config{Store: st, Bot: bot.New(nil, nil), Limits: Limits{SendRate: 1e9, SendBurst: 1 << 30}})
	if err != nil {
		b.Fatal(err)
	}
	c, client := loopbackConnAs(b, s, u)
	s.hub.add(c)
	go c.readLoop()

	const n = 32
	objs := make([][]byte, n)
	b.ReportAllocs()
	b.ResetTimer()
	for it := 0; b.Loop(); it++ {
		for i := range objs {
			objs[i], _ = json.Marshal(map[string]string{"type": "send", "room": room.ID, "text": "hello", "client_msg_id": fmt.Sprintf("%d-%d", it, i)})
		}
		if err := client.WriteMessage(websocket.TextMessage, bytes.Join(objs, []byte{'\n'})); err != nil {
			b.Fatal(err)
		}
		for acks := 0; acks < n; {
			_, data, err := client.ReadMessage()
			if err != nil {
				b.Fatal(err)
			}
			acks += bytes.Count(data, []byte(`"client_msg_id"`))
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/send")
}

// TestPreparedMessage: a frame encoded before the seq was known and given
// it afterwards is byte for byte the frame encoded with the seq, for
// messages whose text or links hold what could be mistaken for the field.
func TestPreparedMessage(t *testing.T) {
	base := benchMessage(t)
	tricky := *base
	tricky.Text = `{"seq":9223372036854775807} "seq":9223372036854775807 \"seq\":1`
	bot := *base
	bot.Sender, bot.System, bot.Links, bot.Text = linkBotSender, true, nil, "如需浏览，请长按网址复制后使用浏览器访问"
	trunc := *base
	trunc.Truncated, trunc.ClientMsgID = true, "c-1"
	for _, m := range []*chat.Message{base, &tricky, &bot, &trunc} {
		p, ok := prepareMessage(m)
		if !ok {
			t.Fatalf("%q: the seq field was not found", m.Text)
		}
		for _, seq := range []int64{1, 9, 10, 42, 1 << 40, math.MaxInt64} {
			c := *m
			c.Seq = seq
			if got, want := p.frame(seq), encodeMessage(&c); !bytes.Equal(got, want) {
				t.Fatalf("seq %d:\n got %s\nwant %s", seq, got, want)
			}
		}
	}
}

// TestPreparedPublish: what the store's goroutine publishes for a prepared
// message is its frame with the stored seq; for a stored message that is
// not the one prepared (another ID), the stored one, encoded anew.
func TestPreparedPublish(t *testing.T) {
	s := newTestServer(t, Limits{})
	c := seqTestConn(t, s)
	room := chat.Room{ID: "r", Kind: chat.Group, Members: []string{"u", "v"}}
	frames := func() []map[string]any {
		c.mu.Lock()
		defer c.mu.Unlock()
		var out []map[string]any
		for _, line := range c.queue {
			var f struct{ Message map[string]any }
			if err := json.Unmarshal(line, &f); err != nil {
				t.Fatalf("queue holds %q: %v", line, err)
			}
			out = append(out, f.Message)
		}
		c.queue, c.queueBytes = nil, 0
		return out
	}

	m := chat.Message{Room: "r", Sender: chat.Sender{ID: "v", Name: "v"}, Text: "hello", Links: []bot.Link{}, SentAt: time.Now()}
	publish := s.preparedPublish(context.Background(), &room, &m)
	if m.ID == "" || m.SentAt.Location() != time.UTC {
		t.Fatalf("prepared message has ID %q, SentAt %v: not what the store would return", m.ID, m.SentAt)
	}
	stored := m
	stored.Seq = 1
	publish(stored)
	other := stored
	other.ID, other.Seq, other.Text = "another", 2, "not the prepared one"
	publish(other)
	got := frames()
	if len(got) != 2 {
		t.Fatalf("%d frames, want 2", len(got))
	}
	if got[0]["id"] != m.ID || got[0]["seq"] != 1.0 || got[0]["text"] != "hello" {
		t.Errorf("prepared message published as %v", got[0])
	}
	if got[1]["id"] != "another" || got[1]["seq"] != 2.0 || got[1]["text"] != "not the prepared one" {
		t.Errorf("a stored message other than the prepared one published as %v", got[1])
	}
}
