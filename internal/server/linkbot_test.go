package server

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"go.uber.org/zap/zaptest"

	"github.com/linkwall/linkwall/bot"
	"github.com/linkwall/linkwall/internal/chat"
	"github.com/linkwall/linkwall/internal/chat/chattest"
	"github.com/linkwall/linkwall/internal/sqlite"
)

// TestLinkBotRepliesStayWithinTextLimit: LinkBot used to quote a long
// unknown command or era whole, so its reply to a message of the maximum
// length was longer than any message may be (docs/protocol.md: 4000
// characters).
func TestLinkBotRepliesStayWithinTextLimit(t *testing.T) {
	st, err := sqlite.Open(context.Background(), t.TempDir(), zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	u := chattest.NewUser(t, st, "alice", 1)
	room := chattest.NewGroup(t, st, "class", u.ID)
	s, err := New(Config{Store: st, Bot: bot.New(nil, nil)})
	if err != nil {
		t.Fatal(err)
	}
	c, client := loopbackConnAs(t, s, u)
	s.hub.add(c) // gets the room's messages
	go c.readLoop()
	long := strings.Repeat("汉", DefaultMaxTextRunes)
	for _, text := range []string{"/era " + long[:len(long)-5*3], "/" + long[:len(long)-3], "/era 2021-02-30"} {
		if utf8.RuneCountInString(text) > DefaultMaxTextRunes {
			t.Fatalf("test text of %d characters", utf8.RuneCountInString(text))
		}
		if err := client.WriteJSON(map[string]string{"type": "send", "room": room.ID, "text": text}); err != nil {
			t.Fatal(err)
		}
	}
	_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
	for replies := 0; replies < 3; {
		_, data, err := client.ReadMessage()
		if err != nil {
			t.Fatalf("after %d replies: %v", replies, err)
		}
		for _, line := range bytes.Split(data, []byte{'\n'}) {
			var f struct {
				Type    string
				Message chat.Message
			}
			if err := json.Unmarshal(line, &f); err != nil || f.Type != typeMessage {
				t.Fatalf("got %.200s, %v", line, err)
			}
			if !f.Message.Sender.Bot {
				continue
			}
			replies++
			if n := utf8.RuneCountInString(f.Message.Text); n > DefaultMaxTextRunes {
				t.Errorf("LinkBot replied with %d characters: %.80s…", n, f.Message.Text)
			}
			if strings.Contains(f.Message.Text, "2021-02-30") != (replies == 3) {
				t.Errorf("reply %d: %.200s", replies, f.Message.Text)
			}
		}
	}
}

func TestCutEcho(t *testing.T) {
	for in, want := range map[string]string{
		"":                             "",
		"walled":                       "walled",
		strings.Repeat("é", 64):        strings.Repeat("é", 64),
		strings.Repeat("é", 65):        strings.Repeat("é", 64) + "…",
		strings.Repeat("x", 63) + "汉字": strings.Repeat("x", 63) + "汉…",
	} {
		if got := cutEcho(in); got != want {
			t.Errorf("cutEcho(%q) = %q, want %q", in, got, want)
		}
	}
}
