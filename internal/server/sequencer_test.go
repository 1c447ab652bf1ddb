package server

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/linkwall/linkwall/internal/chat"
)

// seqTestConn is a started connection of user "u" registered with s's hub.
func seqTestConn(t *testing.T, s *Server) *conn {
	t.Helper()
	c := newConn(s, nil, chat.User{ID: "u"})
	c.start(nil, nil)
	s.hub.add(c)
	return c
}

func seqEvents(room string, seq int64) published {
	e := ev(room, seq)
	e.Members = []string{"u"}
	return published{evs: []chat.Event{e}, entry: ringEntry{seq: seq, sender: "s", payload: e.Payload}}
}

func TestSequencerPublishesInOrder(t *testing.T) {
	tests := []struct {
		name string
		in   []int64
		want []int64 // delivered at once, before any hold ends
	}{
		{"in order", []int64{5, 6, 7}, []int64{5, 6, 7}},
		{"a commit group's callers race", []int64{5, 7, 8, 6, 9}, []int64{5, 6, 7, 8, 9}},
		{"held behind the missing seq", []int64{5, 7, 8}, []int64{5}},
		{"late after the first", []int64{6, 5}, []int64{6, 5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestServer(t, Limits{})
			c := seqTestConn(t, s)
			for _, seq := range tt.in {
				s.seq.publish("r", seqEvents("r", seq))
			}
			// The connection tracks the room from the first event; a late
			// event below it is still delivered once (base logic).
			if got := queued(t, c); !slices.Equal(got, tt.want) {
				t.Errorf("delivered %v, want %v", got, tt.want)
			}
		})
	}
}

// TestSequencerHoldEnds: a seq that is never published (its sender went
// away between commit and publish) holds the room for seqHoldWait only;
// then the later events go out and the connection fills the hole itself.
func TestSequencerHoldEnds(t *testing.T) {
	s := newTestServer(t, Limits{})
	var mu sync.Mutex
	var got []int64
	rec := &recordingHub{mu: &mu, got: &got}
	s.seq.deliver = func(ev chat.Event, _ *fanout) { rec.deliver(ev) }
	s.seq.publish("r", seqEvents("r", 1))
	s.seq.publish("r", seqEvents("r", 3))
	s.seq.publish("r", seqEvents("r", 4))
	mu.Lock()
	if want := []int64{1}; !slices.Equal(got, want) {
		t.Errorf("before the hold ends: %v, want %v", got, want)
	}
	mu.Unlock()
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n == 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	s.seq.publish("r", seqEvents("r", 2)) // late: still delivered
	s.seq.publish("r", seqEvents("r", 5))
	mu.Lock()
	defer mu.Unlock()
	if want := []int64{1, 3, 4, 2, 5}; !slices.Equal(got, want) {
		t.Errorf("delivered %v, want %v", got, want)
	}
}

type recordingHub struct {
	mu  *sync.Mutex
	got *[]int64
}

func (r *recordingHub) deliver(ev chat.Event) {
	r.mu.Lock()
	*r.got = append(*r.got, ev.Seq)
	r.mu.Unlock()
}

// TestSequencerConcurrent publishes a room's seqs from many goroutines in
// random completion order: the connection gets them all, in order, with
// nothing held.
func TestSequencerConcurrent(t *testing.T) {
	s := newTestServer(t, Limits{MaxQueueBytes: 1 << 30})
	c := seqTestConn(t, s)
	const n = 2000
	s.seq.publish("r", seqEvents("r", 1))
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for seq := int64(2 + g); seq <= n; seq += 8 {
				s.seq.publish("r", seqEvents("r", seq))
			}
		})
	}
	wg.Wait()
	got := queued(t, c)
	if len(got) != n {
		t.Fatalf("delivered %d events, want %d", len(got), n)
	}
	for i, seq := range got {
		if seq != int64(i+1) {
			t.Fatalf("event %d is seq %d: out of order", i, seq)
		}
	}
}

func TestSequencerRing(t *testing.T) {
	s := newTestServer(t, Limits{})
	s.seq.deliver = func(chat.Event, *fanout) {}
	for seq := int64(1); seq <= 10; seq++ {
		s.seq.publish("r", seqEvents("r", seq))
	}
	seqs := func(es []ringEntry) []int64 {
		var out []int64
		for _, e := range es {
			out = append(out, e.seq)
		}
		return out
	}
	tests := []struct {
		name        string
		room        string
		after       int64
		limit       int
		want        []int64
		wantCovered bool
	}{
		{"from the start", "r", 0, 100, []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, true},
		{"a page", "r", 3, 2, []int64{4, 5}, true},
		{"nothing newer", "r", 10, 100, nil, true},
		{"unknown room", "x", 0, 100, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, covered := s.seq.recent(tt.room, tt.after, tt.limit)
			if !slices.Equal(seqs(got), tt.want) || covered != tt.wantCovered {
				t.Errorf("recent(%s, %d) = %v, %v; want %v, %v", tt.room, tt.after, seqs(got), covered, tt.want, tt.wantCovered)
			}
		})
	}

	// Past maxRingEvents the oldest leave: older seqs are the store's.
	for seq := int64(11); seq <= maxRingEvents+20; seq++ {
		s.seq.publish("r", seqEvents("r", seq))
	}
	if _, covered := s.seq.recent("r", 0, 100); covered {
		t.Error("seq 1 is still covered after maxRingEvents more")
	}
	if got, covered := s.seq.recent("r", maxRingEvents+18, 100); !covered || !slices.Equal(seqs(got), []int64{maxRingEvents + 19, maxRingEvents + 20}) {
		t.Errorf("the newest: %v, %v", seqs(got), covered)
	}

	// An era change empties the ring: history is rendered under the new era.
	s.seq.forgetRing("r", "new")
	if _, covered := s.seq.recent("r", maxRingEvents+18, 100); covered {
		t.Error("the ring still covers after forgetRing")
	}
	if n := s.seq.ringBytes.Load(); n != 0 {
		t.Errorf("ringBytes = %d after the only ring was emptied", n)
	}

	// A message decided under the old era and published after the change
	// stays out of the ring; the ring goes on from the next one. LinkBot's
	// messages (no era: they stay as posted) go in.
	next := int64(maxRingEvents + 21)
	for i, era := range []string{"old", "new", "", "new"} {
		p := seqEvents("r", next+int64(i))
		p.entry.era = era
		s.seq.publish("r", p)
	}
	if _, covered := s.seq.recent("r", next-1, 100); covered {
		t.Error("the ring serves the message decided under the old era")
	}
	if got, covered := s.seq.recent("r", next, 100); !covered || !slices.Equal(seqs(got), []int64{next + 1, next + 2, next + 3}) {
		t.Errorf("after the old-era message: %v, %v; want the three after it", seqs(got), covered)
	}
}

// TestWriterExitsIdleAndRestarts: an idle connection keeps no writer
// goroutine; the next message starts one and arrives.
func TestWriterExitsIdleAndRestarts(t *testing.T) {
	s := newTestServer(t, Limits{})
	c, client := loopbackConn(t, s)
	writerOn := func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.writerOn
	}
	for i := range 2 {
		c.send([]byte(fmt.Sprintf(`{"n":%d}`, i)))
		_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, data, err := client.ReadMessage()
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if want := fmt.Sprintf(`{"n":%d}`, i); string(data) != want {
			t.Fatalf("got %s, want %s", data, want)
		}
		deadline := time.Now().Add(writerIdle + 5*time.Second)
		for writerOn() && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if writerOn() {
			t.Fatalf("the writer still runs %v after message %d", writerIdle+5*time.Second, i)
		}
	}
	c.ping() // the hub's sweep: a ping starts a writer too
	pinged := make(chan struct{})
	client.SetPingHandler(func(string) error { close(pinged); return nil })
	go func() { _, _, _ = client.ReadMessage() }()
	select {
	case <-pinged:
	case <-time.After(5 * time.Second):
		t.Fatal("no ping")
	}
	c.closeWith(websocket.CloseNormalClosure, "")
}

// TestWriterTimerReleasesHold: a held room's events wait for the client's
// resume; without one, the writer's own timer releases them at holdUntil,
// with nothing else waking the writer.
func TestWriterTimerReleasesHold(t *testing.T) {
	s := newTestServer(t, Limits{})
	c, client := loopbackConn(t, s)
	start := time.Now()
	c.mu.Lock()
	c.rooms["r"] = &roomState{held: true}
	c.holdUntil = start.Add(resumeWait)
	c.signal() // starts the writer, which arms its timer for holdUntil
	c.mu.Unlock()
	c.deliver(ev("r", 1)) // held: queued behind the hold, no wake-up
	_ = client.SetReadDeadline(time.Now().Add(resumeWait + 5*time.Second))
	_, data, err := client.ReadMessage()
	if err != nil {
		t.Fatalf("the held event never came: %v", err)
	}
	if string(data) != `{"seq":1}` {
		t.Fatalf("got %s, want seq 1", data)
	}
	if el := time.Since(start); el < resumeWait {
		t.Fatalf("delivered after %v, before the hold ended (%v)", el, resumeWait)
	}
	c.closeWith(websocket.CloseNormalClosure, "")
}

// A message's event shares the room's member list and skips the sender,
// who gets its own copy: every member gets exactly one of the two.
func TestPublishMessageSkipsSenderInSharedList(t *testing.T) {
	s := newTestServer(t, Limits{})
	room := &chat.Room{ID: "r", Kind: chat.Group, Members: []string{"a", "b", "c"}}
	conns := map[string]*conn{}
	for _, id := range room.Members {
		c := newConn(s, nil, chat.User{ID: id})
		c.start(nil, nil)
		s.hub.add(c)
		conns[id] = c
	}
	m := &chat.Message{ID: "m1", Room: "r", Seq: 1, Sender: chat.Sender{ID: "b"}, Text: "hi", ClientMsgID: "cm-1"}
	s.publishMessage(context.Background(), room, m)
	for id, c := range conns {
		c.mu.Lock()
		q := slices.Clone(c.queue)
		c.mu.Unlock()
		if len(q) != 1 {
			t.Fatalf("%s got %d objects, want 1", id, len(q))
		}
		if acked := bytes.Contains(q[0], []byte(`"client_msg_id":"cm-1"`)); acked != (id == "b") {
			t.Errorf("%s: client_msg_id present = %v; only the sender's copy carries it", id, acked)
		}
	}
	if got := room.Members; !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Errorf("room members changed to %v", got)
	}
}
