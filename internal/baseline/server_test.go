package baseline

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"
)

type session struct {
	Token string `json:"token"`
	User  struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	} `json:"user"`
}

func startServer(t *testing.T) (*Server, *httptest.Server) {
	t.Helper()
	s := New(zap.NewNop())
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		s.Close()
		hs.Close()
	})
	return s, hs
}

func post(t *testing.T, hs *httptest.Server, path, token string, body any, out any) int {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, hs.URL+path, bytes.NewReader(b))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
	}
	return resp.StatusCode
}

func newSession(t *testing.T, hs *httptest.Server, name string) session {
	t.Helper()
	var s session
	if code := post(t, hs, "/api/v1/session", "", map[string]string{"name": name}, &s); code != http.StatusCreated {
		t.Fatalf("POST /api/v1/session: HTTP %d", code)
	}
	return s
}

func dial(t *testing.T, hs *httptest.Server, token, origin string) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	h := http.Header{}
	h.Set("Origin", origin)
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	return websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(hs.URL, "http")+"/ws", h)
}

// frame is any server frame; Raw holds "message", an object in message
// frames and a string in error frames.
type frame struct {
	Type        string          `json:"type"`
	Code        string          `json:"code"`
	Ref         string          `json:"ref"`
	ClientMsgID string          `json:"client_msg_id"`
	Raw         json.RawMessage `json:"message"`
	Message     struct {
		Room   string `json:"room"`
		Seq    int64  `json:"seq"`
		Text   string `json:"text"`
		Sender struct {
			ID string `json:"id"`
		} `json:"sender"`
	} `json:"-"`
}

// next returns the next frame of conn that is not a room or hello frame.
func next(t *testing.T, c *websocket.Conn, pending *[]frame) frame {
	t.Helper()
	for len(*pending) == 0 {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, b, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		for line := range bytes.SplitSeq(b, []byte{'\n'}) {
			var f frame
			if err := json.Unmarshal(line, &f); err != nil {
				t.Fatalf("bad frame %q: %v", line, err)
			}
			if f.Type == "message" {
				if err := json.Unmarshal(f.Raw, &f.Message); err != nil {
					t.Fatalf("bad message %q: %v", f.Raw, err)
				}
			}
			if f.Type != "hello" && f.Type != "room" {
				*pending = append(*pending, f)
			}
		}
	}
	f := (*pending)[0]
	*pending = (*pending)[1:]
	return f
}

func waitHello(t *testing.T, c *websocket.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, b, err := c.ReadMessage()
	if err != nil || !bytes.Contains(b, []byte(`"type":"hello"`)) {
		t.Fatalf("want hello first, got %q, %v", b, err)
	}
}

func TestGroupFanOut(t *testing.T) {
	_, hs := startServer(t)
	alice, bob, carol, dave := newSession(t, hs, "alice"), newSession(t, hs, "bob"), newSession(t, hs, "carol"), newSession(t, hs, "dave")
	var created struct {
		Room struct {
			ID      string   `json:"id"`
			Members []string `json:"members"`
		} `json:"room"`
	}
	code := post(t, hs, "/api/v1/rooms", alice.Token,
		map[string]any{"kind": "group", "name": "class", "members": []string{bob.User.ID, carol.User.ID}}, &created)
	if code != http.StatusCreated || len(created.Room.Members) != 3 || created.Room.Members[0] != alice.User.ID {
		t.Fatalf("create room: HTTP %d, %+v", code, created)
	}
	room := created.Room.ID

	conns := map[string]*websocket.Conn{}
	pending := map[string]*[]frame{}
	for _, s := range []session{alice, bob, carol, dave} {
		c, _, err := dial(t, hs, s.Token, hs.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		waitHello(t, c)
		conns[s.User.Name], pending[s.User.Name] = c, new([]frame)
	}

	// Two objects in one frame, as API v1 allows.
	two := `{"type":"send","room":"` + room + `","text":"one","client_msg_id":"m1"}` + "\n" +
		`{"type":"send","room":"` + room + `","text":"two","client_msg_id":"m2"}`
	if err := conns["alice"].WriteMessage(websocket.TextMessage, []byte(two)); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"alice", "bob", "carol"} {
		for i, want := range []string{"one", "two"} {
			f := next(t, conns[name], pending[name])
			if f.Type != "message" || f.Message.Text != want || f.Message.Seq != int64(i+1) || f.Message.Sender.ID != alice.User.ID {
				t.Errorf("%s got %+v, want message %q seq %d", name, f, want, i+1)
			}
			wantID := ""
			if name == "alice" {
				wantID = []string{"m1", "m2"}[i]
			}
			if f.ClientMsgID != wantID {
				t.Errorf("%s: client_msg_id %q, want %q (only the sender's copy carries it)", name, f.ClientMsgID, wantID)
			}
		}
	}

	// Dave is not a member: his send is refused and nobody gets it.
	conns["dave"].WriteJSON(map[string]string{"type": "send", "room": room, "text": "sneaky", "client_msg_id": "d1"})
	if f := next(t, conns["dave"], pending["dave"]); f.Type != "error" || f.Code != "forbidden" || f.Ref != "d1" {
		t.Errorf("dave got %+v, want forbidden error for d1", f)
	}
	conns["bob"].WriteJSON(map[string]string{"type": "ping"})
	if f := next(t, conns["bob"], pending["bob"]); f.Type != "pong" {
		t.Errorf("bob got %+v, want pong (and not dave's message)", f)
	}
}

func TestRejects(t *testing.T) {
	_, hs := startServer(t)
	alice := newSession(t, hs, "alice")
	if _, resp, err := dial(t, hs, alice.Token, "http://evil.example"); err == nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-origin dial: err %v, want 403", err)
	}
	if _, resp, err := dial(t, hs, "", hs.URL); err == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("dial without session: err %v, want 401", err)
	}
	tests := []struct {
		name, path, token string
		body              any
		want              int
	}{
		{"empty name", "/api/v1/session", "", map[string]string{"name": " "}, http.StatusBadRequest},
		{"long name", "/api/v1/session", "", map[string]string{"name": strings.Repeat("x", 65)}, http.StatusBadRequest},
		{"room without session", "/api/v1/rooms", "", map[string]any{"kind": "group"}, http.StatusUnauthorized},
		{"unknown member", "/api/v1/rooms", alice.Token, map[string]any{"kind": "group", "members": []string{"nobody"}}, http.StatusNotFound},
		{"direct room", "/api/v1/rooms", alice.Token, map[string]any{"kind": "direct"}, http.StatusBadRequest},
	}
	for _, tt := range tests {
		var e struct {
			Error struct {
				Code string `json:"code"`
			} `json:"error"`
		}
		if got := post(t, hs, tt.path, tt.token, tt.body, &e); got != tt.want || e.Error.Code == "" {
			t.Errorf("%s: HTTP %d code %q, want HTTP %d and an error code", tt.name, got, e.Error.Code, tt.want)
		}
	}
}

func TestCloseSaysGoingAway(t *testing.T) {
	s, hs := startServer(t)
	alice := newSession(t, hs, "alice")
	c, _, err := dial(t, hs, alice.Token, hs.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitHello(t, c)
	s.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _, err = c.ReadMessage()
	if !websocket.IsCloseError(err, websocket.CloseGoingAway) {
		t.Errorf("after Close: %v, want close 1001", err)
	}
}
