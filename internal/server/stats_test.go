package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/linkwall/linkwall/bot"
	"github.com/linkwall/linkwall/internal/chat"
)

// longRoomStore serves one room of n messages without storing them: the
// oldest 500 have a link to platform "old", the newest one to "new".
type longRoomStore struct {
	nopStore
	user chat.User
	room chat.Room
	n    int64
}

func (l longRoomStore) UserBySession(context.Context, []byte) (chat.User, error) { return l.user, nil }

func (l longRoomStore) Room(_ context.Context, id string) (chat.Room, error) {
	if id != l.room.ID {
		return chat.Room{}, chat.Errorf(chat.ENotFound, "no such room")
	}
	return l.room, nil
}

func (l longRoomStore) Messages(_ context.Context, _ string, after int64, limit int) ([]chat.Message, error) {
	var out []chat.Message
	for seq := after + 1; seq <= l.n && len(out) < limit; seq++ {
		m := chat.Message{Room: l.room.ID, Seq: seq, Sender: chat.Sender{ID: l.user.ID}, Text: "x", Era: l.room.Era}
		switch {
		case seq <= 500:
			m.Links = []bot.Link{{Platform: "old", Outcome: bot.Blocked}}
		case seq == l.n:
			m.Links = []bot.Link{{Platform: "new", Outcome: bot.Blocked}}
		}
		out = append(out, m)
	}
	return out, nil
}

// TestStatsCountsLastMessages: /stats counts the room's last
// maxStatsMessages messages (docs/protocol.md), not its first ones: it
// used to read from seq 1 and stop, so a long-lived room's stats never
// showed anything recent.
func TestStatsCountsLastMessages(t *testing.T) {
	u := chat.User{ID: "11111111-1111-1111-1111-111111111111", Name: "alice"}
	st := longRoomStore{
		user: u,
		room: chat.Room{ID: "r", Kind: chat.Group, Members: []string{u.ID}, Era: "walled", Lang: "en"},
		n:    maxStatsMessages + 500,
	}
	s, err := New(Config{Store: st, Bot: bot.New(nil, nil)})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	req, _ := http.NewRequest(http.MethodGet, ts.URL+"/api/v1/rooms/r/stats", nil)
	req.Header.Set("Authorization", "Bearer t")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got Stats
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, %v", resp.StatusCode, err)
	}
	want := []StatsEntry{{Platform: "new", Outcome: bot.Blocked, Count: 1}}
	if got.Messages != maxStatsMessages || got.Links != 1 || len(got.Stats) != 1 || got.Stats[0] != want[0] {
		t.Fatalf("stats %+v; want %d messages and only the newest link %+v", got, maxStatsMessages, want)
	}
}

func TestLastSeq(t *testing.T) {
	for _, n := range []int64{0, 1, 2, 3, 4, 5, 999, 1000, 1024, 100_001} {
		st := longRoomStore{room: chat.Room{ID: "r"}, n: n}
		s, err := New(Config{Store: st, Bot: bot.New(nil, nil)})
		if err != nil {
			t.Fatal(err)
		}
		if got, err := s.lastSeq(context.Background(), "r"); got != n || err != nil {
			t.Errorf("lastSeq of %d messages = %d, %v", n, got, err)
		}
	}
}
