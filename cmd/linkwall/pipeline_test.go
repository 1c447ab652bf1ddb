package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"testing"

	"github.com/gorilla/websocket"
)

// TestBurstOfSends: a client that sends many messages at once (one frame
// of 32 sends) gets them stored in its order, acknowledged in that order,
// and delivered in that order, in a one-to-one and in a group chat; the
// reader does not wait for each to be durable before it takes the next,
// so the burst shares a few group commits instead of taking one each.
func TestBurstOfSends(t *testing.T) {
	s := newTestServer(t, t.TempDir())
	alice, bob, carol := s.newUser("alice"), s.newUser("bob"), s.newUser("carol")
	direct := alice.direct(bob, 201)
	group := alice.group("Class 3", "en", bob, carol)
	a, b := alice.connect(), bob.connect()

	const n = 32
	for _, room := range []string{direct.ID, group.ID} {
		commits0, _ := strconv.Atoi(s.metric("linkwall_store_batch_messages_count"))
		var objs [][]byte
		for i := range n {
			obj, _ := json.Marshal(map[string]string{"type": "send", "room": room, "text": fmt.Sprintf("line %d", i), "client_msg_id": fmt.Sprintf("%s-%d", room, i)})
			objs = append(objs, obj)
		}
		if err := a.ws.WriteMessage(websocket.TextMessage, bytes.Join(objs, []byte("\n"))); err != nil {
			t.Fatal(err)
		}
		var first int64
		for i := range n {
			id := fmt.Sprintf("%s-%d", room, i)
			f := a.until("ack "+id, func(f frame) bool {
				if f.Type == "error" {
					t.Fatalf("send %s: %s: %s", f.Ref, f.Code, f.Text)
				}
				return f.Type == "message" && f.ClientMsgID != ""
			})
			if f.ClientMsgID != id {
				t.Fatalf("acknowledgement %d is %s, want %s: out of order", i, f.ClientMsgID, id)
			}
			if i == 0 {
				first = f.Msg.Seq
			} else if f.Msg.Seq != first+int64(i) {
				t.Fatalf("send %d stored as seq %d, want %d", i, f.Msg.Seq, first+int64(i))
			}
		}
		for i := range n {
			m := b.message(room, nil).Msg
			if want := fmt.Sprintf("line %d", i); m.Text != want || m.Seq != first+int64(i) {
				t.Fatalf("bob's message %d: %q seq %d, want %q seq %d", i, m.Text, m.Seq, want, first+int64(i))
			}
		}
		commits1, _ := strconv.Atoi(s.metric("linkwall_store_batch_messages_count"))
		if c := commits1 - commits0; c > n/2 {
			t.Errorf("%d sends took %d commits: the reader waited for each", n, c)
		} else {
			t.Logf("%d sends in %d commits", n, c)
		}
	}
}

// TestShutdownWithSendsInFlight stops the server as soon as the first of
// a frame of 32 sends is acknowledged, while the others may still be
// queued for the store: whatever was acknowledged is stored; what is stored is a prefix of the sends, in
// order; and after a restart the client's resends (same client_msg_ids)
// complete the 32 with nothing stored twice.
func TestShutdownWithSendsInFlight(t *testing.T) {
	dir := t.TempDir()
	s := newTestServer(t, dir)
	alice, bob := s.newUser("alice"), s.newUser("bob")
	room := alice.group("Class 3", "en", bob)
	a := alice.connect()

	const n = 32
	sends := func(ids []int) []byte {
		var objs [][]byte
		for _, i := range ids {
			obj, _ := json.Marshal(map[string]string{"type": "send", "room": room.ID, "text": fmt.Sprintf("line %d", i), "client_msg_id": fmt.Sprint(i)})
			objs = append(objs, obj)
		}
		return bytes.Join(objs, []byte("\n"))
	}
	all := make([]int, n)
	for i := range all {
		all[i] = i
	}
	if err := a.ws.WriteMessage(websocket.TextMessage, sends(all)); err != nil {
		t.Fatal(err)
	}
	// Stop once the first send is acknowledged: the rest may be anywhere
	// between the socket and the disk.
	first := a.until("ack 0", func(f frame) bool { return f.Type == "message" && f.ClientMsgID != "" })
	if err := s.m.Close(); err != nil {
		t.Fatal(err)
	}
	acked := map[string]int64{first.ClientMsgID: first.Msg.Seq}
	for {
		select {
		case f := <-a.frames:
			if f.Type == "message" && f.ClientMsgID != "" {
				acked[f.ClientMsgID] = f.Msg.Seq
			}
			continue
		case <-a.done:
		}
		break
	}

	s2 := newTestServer(t, dir)
	alice.s, bob.s = s2, s2
	h := bob.history(room.ID, 0)
	for i, m := range h {
		if m.Text != fmt.Sprintf("line %d", i) || m.Seq != int64(i+1) {
			t.Fatalf("stored message %d: %q seq %d: not the sends' prefix in order", i, m.Text, m.Seq)
		}
	}
	for id, seq := range acked {
		if i, _ := strconv.Atoi(id); i >= len(h) || h[i].Seq != seq {
			t.Errorf("send %s acknowledged as seq %d before the stop, not in the history after it", id, seq)
		}
	}
	t.Logf("before the stop: %d of %d acknowledged, %d stored", len(acked), n, len(h))

	a2 := alice.connect()
	if err := a2.ws.WriteMessage(websocket.TextMessage, sends(all)); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		f := a2.until("ack", func(f frame) bool { return f.Type == "message" && f.ClientMsgID != "" })
		if f.ClientMsgID != fmt.Sprint(i) || f.Msg.Seq != int64(i+1) {
			t.Fatalf("resend %d: ack %s seq %d, want %d seq %d", i, f.ClientMsgID, f.Msg.Seq, i, i+1)
		}
	}
	if h := bob.history(room.ID, 0); len(h) != n {
		t.Fatalf("after the resends the room holds %d messages, want %d", len(h), n)
	}
}
