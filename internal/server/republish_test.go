package server

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/linkwall/linkwall/bot"
	"github.com/linkwall/linkwall/internal/chat"
)

// dupStore answers every append as a duplicate of stored, as a store does
// for a resend whose first try it kept.
type dupStore struct {
	nopStore
	stored chat.Message
}

func (d dupStore) Append(context.Context, chat.Message) (chat.Message, bool, error) {
	return d.stored, true, nil
}

// recordingBroker keeps what is published.
type recordingBroker struct {
	mu  sync.Mutex
	evs []chat.Event
}

func (b *recordingBroker) Publish(_ context.Context, ev chat.Event) error {
	b.mu.Lock()
	b.evs = append(b.evs, ev)
	b.mu.Unlock()
	return nil
}

// A resend matched to a stored message is published again to every member
// (with several nodes its first try may never have been), the sender's
// other connections included; the sender's copy keeps its client_msg_id.
func TestResendIsPublishedToEveryMember(t *testing.T) {
	alice := chat.Sender{ID: "alice"}
	stored := chat.Message{ID: "m2", Room: "r", Seq: 2, Sender: alice, Text: "two", ClientMsgID: "c-2", Era: "e"}
	br := &recordingBroker{}
	s, err := New(Config{Store: dupStore{stored: stored}, Broker: br, Bot: bot.New(nil, nil)})
	if err != nil {
		t.Fatal(err)
	}
	room := &chat.Room{ID: "r", Kind: chat.Group, Era: "e", Members: []string{"alice", "bob"}}
	got, dup, err := s.appendAndPublish(context.Background(), room, chat.Message{Room: "r", Sender: alice, Text: "two", ClientMsgID: "c-2", Era: "e"})
	if err != nil || !dup || got.Seq != 2 {
		t.Fatalf("appendAndPublish = %+v, %v, %v; want the stored seq 2 as a duplicate", got, dup, err)
	}
	to := map[string]string{} // member → payload
	for _, ev := range br.evs {
		if ev.Seq != 2 {
			t.Errorf("published seq %d, want 2", ev.Seq)
		}
		for _, m := range ev.Members {
			if m != ev.Except {
				to[m] = string(ev.Payload)
			}
		}
	}
	if _, ok := to["bob"]; !ok {
		t.Error("bob does not get the resent message")
	}
	if p, ok := to["alice"]; !ok || !strings.Contains(p, `"client_msg_id":"c-2"`) {
		t.Errorf("alice's other connections get %q, want her copy with its client_msg_id", p)
	}
	if p := to["bob"]; strings.Contains(p, "client_msg_id") {
		t.Errorf("bob's copy carries the sender's client_msg_id: %s", p)
	}
}
