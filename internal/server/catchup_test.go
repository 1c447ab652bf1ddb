package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/linkwall/linkwall/bot"
	"github.com/linkwall/linkwall/internal/chat"
)

// roomStore holds messages 1..total of one room. Its first Messages call
// blocks until gate is closed and then returns only 1..firstUpTo (what was
// readable when the read began); later calls see all of them.
type roomStore struct {
	nopStore
	room      chat.Room
	total     int64
	firstUpTo int64
	entered   chan struct{}
	gate      chan struct{}
	calls     *atomic.Int32
}

func newRoomStore(total, firstUpTo int64) roomStore {
	return roomStore{
		room:  chat.Room{ID: "r", Kind: chat.Group, Members: []string{"u", "other"}, Era: "walled", Lang: "en"},
		total: total, firstUpTo: firstUpTo,
		entered: make(chan struct{}), gate: make(chan struct{}), calls: new(atomic.Int32),
	}
}

func (g roomStore) Room(_ context.Context, id string) (chat.Room, error) {
	if id != g.room.ID {
		return chat.Room{}, chat.Errorf(chat.ENotFound, "no such room")
	}
	return g.room, nil
}

func (g roomStore) Messages(_ context.Context, room string, after int64, limit int) ([]chat.Message, error) {
	upTo := g.total
	if g.calls.Add(1) == 1 {
		close(g.entered)
		<-g.gate
		upTo = g.firstUpTo
	}
	var out []chat.Message
	for seq := after + 1; seq <= upTo && len(out) < limit; seq++ {
		out = append(out, chat.Message{ID: fmt.Sprint(seq), Room: room, Seq: seq,
			Sender: chat.Sender{ID: "other", Name: "o"}, Text: "x", Era: g.room.Era})
	}
	return out, nil
}

// readFrames reads objects from client until want of them arrived or
// nothing comes for a second; it returns each one's seq (0 for others) and
// the error frames' codes and refs.
func readFrames(t *testing.T, client *websocket.Conn, want int) (seqs []int64, errs []string) {
	t.Helper()
	for len(seqs) < want {
		_ = client.SetReadDeadline(time.Now().Add(time.Second))
		_, data, err := client.ReadMessage()
		if err != nil {
			break
		}
		for _, line := range bytes.Split(data, []byte("\n")) {
			var v struct {
				Type, Code, Ref string
				Seq             int64
				Message         json.RawMessage
			}
			if err := json.Unmarshal(line, &v); err != nil {
				t.Fatalf("%q: %v", line, err)
			}
			var m struct{ Seq int64 }
			if v.Type == "message" {
				_ = json.Unmarshal(v.Message, &m)
			}
			if v.Type == "error" {
				errs = append(errs, v.Code+" "+v.Ref)
			}
			seqs = append(seqs, max(v.Seq, m.Seq))
		}
	}
	return seqs, errs
}

// Live events that overflow the waiting bound while a resume reads the
// store are dropped there; the catch-up must then read them too instead of
// finishing with what its first read saw.
func TestOverflowDuringCatchUpReadsAgain(t *testing.T) {
	st := newRoomStore(7, 3)
	s, err := New(Config{Store: st, Bot: bot.New(nil, nil), Limits: Limits{MaxQueueBytes: 300}})
	if err != nil {
		t.Fatal(err)
	}
	c, client := loopbackConn(t, s)
	c.resume("r", 0)
	<-st.entered
	for seq := int64(4); seq <= 7; seq++ { // 4 × ~100 bytes: the 4th overflows the 300-byte bound
		p := []byte(fmt.Sprintf(`{"seq":%d,"pad":%q}`, seq, strings.Repeat("p", 80)))
		c.deliver(chat.Event{Room: "r", Seq: seq, Payload: p})
	}
	close(st.gate)
	got, _ := readFrames(t, client, 7)
	if fmt.Sprint(got) != "[1 2 3 4 5 6 7]" {
		t.Fatalf("client got seqs %v (store reads: %d); want 1..7", got, st.calls.Load())
	}
}

// A resume from past the room's last message is refused, and the room goes
// on live: otherwise every live message up to that seq, the client's own
// acknowledgements too, would count as delivered and be skipped.
func TestResumePastTheLastMessage(t *testing.T) {
	for _, tc := range []struct {
		after  int64
		before int    // frames that answer the resume
		want   string // seqs, then error frames
	}{
		{after: 5, before: 0, want: "[6] []"},                    // up to date: nothing to refuse
		{after: 3, before: 2, want: "[4 5 6] []"},                // behind: history, then live
		{after: 1000, before: 1, want: "[0 6] [invalid resume]"}, // past the end: refused, then live
	} {
		st := newRoomStore(5, 5)
		close(st.gate)
		s, err := New(Config{Store: st, Bot: bot.New(nil, nil), Limits: Limits{}})
		if err != nil {
			t.Fatal(err)
		}
		c, client := loopbackConn(t, s)
		c.resume("r", tc.after)
		seqs, errs := readFrames(t, client, tc.before)
		c.deliver(ev("r", 6)) // the room's next message, published after the resume was answered
		more, moreErrs := readFrames(t, client, 1)
		if got := fmt.Sprint(append(seqs, more...), " ", append(errs, moreErrs...)); got != tc.want {
			t.Errorf("resume after %d: got %s, want %s", tc.after, got, tc.want)
		}
	}
}
