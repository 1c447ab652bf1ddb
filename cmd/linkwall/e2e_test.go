package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/linkwall/linkwall/bot"
	"github.com/linkwall/linkwall/internal/chat"
	"github.com/linkwall/linkwall/internal/server"
)

// waitFor bounds every wait of the end-to-end tests; they fail instead of hanging.
const waitFor = 10 * time.Second

// testServer is the real `linkwall serve` on 127.0.0.1:0.
type testServer struct {
	t   *testing.T
	m   *Main
	dir string
}

func newTestServer(t *testing.T, dir string, extra ...string) *testServer {
	t.Helper()
	// Tests send faster than people type.
	return startTestServer(t, dir, serverOpts{limits: server.Limits{SendRate: 5000, SendBurst: 5000}}, extra...)
}

// serverOpts are what a test sets besides flags.
type serverOpts struct {
	limits server.Limits
	log    *zap.Logger // nil: the test's log, warnings and up
}

func startTestServer(t *testing.T, dir string, o serverOpts, extra ...string) *testServer {
	t.Helper()
	m := NewMain()
	m.Logger = o.log
	if m.Logger == nil {
		m.Logger = zaptest.NewLogger(t, zaptest.Level(zapcore.WarnLevel))
	}
	args := append([]string{"--addr", "127.0.0.1:0", "--data", dir, "--walkthrough-step", "0"}, extra...)
	if err := m.ParseFlags(context.Background(), args); err != nil {
		t.Fatal(err)
	}
	m.Limits = o.limits
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	s := &testServer{t: t, m: m, dir: dir}
	t.Cleanup(func() { _ = m.Close() })
	return s
}

func (s *testServer) url(path string) string { return "http://" + s.m.Addr() + path }

// user is a signed-in test user.
type member struct {
	s     *testServer
	token string
	chat.User
}

func (s *testServer) newUser(name string) *member {
	s.t.Helper()
	var resp struct {
		Token string    `json:"token"`
		User  chat.User `json:"user"`
	}
	s.do("", "POST", "/api/v1/session", map[string]string{"name": name}, http.StatusCreated, &resp)
	if resp.Token == "" || resp.User.ID == "" || resp.User.Name != name {
		s.t.Fatalf("session: %+v", resp)
	}
	return &member{s: s, token: resp.Token, User: resp.User}
}

// do runs one API request and checks its status; out may be nil.
func (s *testServer) do(token, method, path string, body any, want int, out any) {
	s.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.url(path), rd)
	if err != nil {
		s.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		s.t.Fatalf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, want, data)
	}
	if resp.StatusCode >= 400 {
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if err := json.Unmarshal(data, &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
			s.t.Fatalf("%s %s: error body %q is not {\"error\":{code,message}}", method, path, data)
		}
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			s.t.Fatalf("%s %s: %v: %s", method, path, err, data)
		}
	}
}

func (u *member) do(method, path string, body any, want int, out any) {
	u.s.t.Helper()
	u.s.do(u.token, method, path, body, want, out)
}

func (u *member) direct(other *member, want int) chat.Room {
	u.s.t.Helper()
	var r struct{ Room chat.Room }
	u.do("POST", "/api/v1/rooms", map[string]any{"kind": "direct", "members": []string{other.ID}}, want, &r)
	return r.Room
}

func (u *member) group(name, lang string, others ...*member) chat.Room {
	u.s.t.Helper()
	ids := []string{}
	for _, o := range others {
		ids = append(ids, o.ID)
	}
	var r struct{ Room chat.Room }
	u.do("POST", "/api/v1/rooms", map[string]any{"kind": "group", "name": name, "members": ids, "lang": lang}, http.StatusCreated, &r)
	return r.Room
}

func (u *member) history(room string, after int64) []chat.Message {
	u.s.t.Helper()
	var r struct{ Messages []chat.Message }
	u.do("GET", fmt.Sprintf("/api/v1/rooms/%s/messages?after=%d&limit=1000", room, after), nil, http.StatusOK, &r)
	return r.Messages
}

// frame is any server → client object.
type frame struct {
	Type        string          `json:"type"`
	Raw         json.RawMessage `json:"message"`
	ClientMsgID string          `json:"client_msg_id"`
	RawRoom     json.RawMessage `json:"room"`
	User        *chat.User      `json:"user"`
	Rooms       []chat.Room     `json:"rooms"`
	Code        string          `json:"code"`
	Ref         string          `json:"ref"`

	Msg    *chat.Message `json:"-"` // Raw, for "message"
	Text   string        `json:"-"` // Raw, for "error"
	Room   *chat.Room    `json:"-"` // RawRoom, for "room"
	RoomID string        `json:"-"` // RawRoom, for "error": the refused send's or resume's room
}

// wsClient is a real WebSocket client; a goroutine reads frames into a channel.
type wsClient struct {
	t      *testing.T
	ws     *websocket.Conn
	frames chan frame
	done   chan struct{}
	err    error // why reading ended; valid after done
}

func (u *member) dial(header http.Header) (*wsClient, *http.Response, error) {
	if header == nil {
		header = http.Header{}
	}
	if u != nil && header.Get("Authorization") == "" {
		header.Set("Authorization", "Bearer "+u.token)
	}
	return u.s.dialRaw(header, nil)
}

func (s *testServer) dialRaw(header http.Header, netDial func(network, addr string) (net.Conn, error)) (*wsClient, *http.Response, error) {
	d := websocket.Dialer{HandshakeTimeout: waitFor, NetDial: netDial}
	ws, resp, err := d.Dial("ws://"+s.m.Addr()+"/ws", header)
	if err != nil {
		return nil, resp, err
	}
	c := &wsClient{t: s.t, ws: ws, frames: make(chan frame, 100_000), done: make(chan struct{})}
	s.t.Cleanup(func() { ws.Close() })
	return c, resp, nil
}

// connect dials and checks the hello frame.
func (u *member) connect() *wsClient {
	u.s.t.Helper()
	c, _, err := u.dial(nil)
	if err != nil {
		u.s.t.Fatal(err)
	}
	c.start()
	f := c.next()
	if f.Type != "hello" || f.User == nil || f.User.ID != u.ID {
		u.s.t.Fatalf("first frame %+v, want hello", f)
	}
	return c
}

func (c *wsClient) start() {
	go func() {
		defer close(c.done)
		for {
			_, data, err := c.ws.ReadMessage()
			if err != nil {
				c.err = err
				return
			}
			for _, line := range bytes.Split(data, []byte("\n")) {
				var f frame
				if err := json.Unmarshal(line, &f); err != nil {
					c.err = fmt.Errorf("bad object %q: %w", line, err)
					return
				}
				switch f.Type {
				case "message":
					f.Msg = new(chat.Message)
					if err := json.Unmarshal(f.Raw, f.Msg); err != nil {
						c.err = err
						return
					}
				case "room":
					f.Room = new(chat.Room)
					if err := json.Unmarshal(f.RawRoom, f.Room); err != nil {
						c.err = err
						return
					}
				case "error":
					_ = json.Unmarshal(f.Raw, &f.Text)
					if f.RawRoom != nil {
						if err := json.Unmarshal(f.RawRoom, &f.RoomID); err != nil {
							c.err = fmt.Errorf("error frame's room %s: %w", f.RawRoom, err)
							return
						}
					}
				}
				c.frames <- f
			}
		}
	}()
}

func (c *wsClient) next() frame {
	c.t.Helper()
	select {
	case f := <-c.frames:
		return f
	case <-c.done:
		select {
		case f := <-c.frames:
			return f
		default:
		}
		c.t.Fatalf("connection ended: %v", c.err)
	case <-time.After(waitFor):
		c.t.Fatal("no frame in time")
	}
	return frame{}
}

// until returns the first frame matching ok, skipping others.
func (c *wsClient) until(what string, ok func(frame) bool) frame {
	c.t.Helper()
	deadline := time.After(waitFor)
	for {
		select {
		case f := <-c.frames:
			if ok(f) {
				return f
			}
		case <-c.done:
			c.t.Fatalf("waiting for %s: connection ended: %v", what, c.err)
		case <-deadline:
			c.t.Fatalf("waiting for %s: timeout", what)
		}
	}
}

func (c *wsClient) message(room string, ok func(*chat.Message) bool) frame {
	c.t.Helper()
	return c.until("a message", func(f frame) bool {
		return f.Type == "message" && f.Msg.Room == room && (ok == nil || ok(f.Msg))
	})
}

func (c *wsClient) errorFrame(ref string) frame {
	c.t.Helper()
	return c.until("error "+ref, func(f frame) bool { return f.Type == "error" && f.Ref == ref })
}

func (c *wsClient) write(v any) {
	c.t.Helper()
	if err := c.ws.WriteJSON(v); err != nil {
		c.t.Fatal(err)
	}
}

func (c *wsClient) send(room, text, id string) {
	c.t.Helper()
	c.write(map[string]any{"type": "send", "room": room, "text": text, "client_msg_id": id})
}

// sendAck sends and waits for the acknowledgement (the own copy with client_msg_id).
func (c *wsClient) sendAck(room, text, id string) *chat.Message {
	c.t.Helper()
	c.send(room, text, id)
	f := c.until("ack "+id, func(f frame) bool {
		if f.Type == "error" && f.Ref == id {
			c.t.Fatalf("send %s: %s: %s", id, f.Code, f.Text)
		}
		return f.Type == "message" && f.ClientMsgID == id
	})
	return f.Msg
}

// closeCode waits for the connection to end and returns its close code.
func (c *wsClient) closeCode() int {
	c.t.Helper()
	select {
	case <-c.done:
	case <-time.After(waitFor):
		c.t.Fatal("connection not closed in time")
	}
	var ce *websocket.CloseError
	if errors.As(c.err, &ce) {
		return ce.Code
	}
	c.t.Fatalf("connection ended without a close frame: %v", c.err)
	return 0
}

func outcomes(m *chat.Message) map[string]bot.Outcome {
	out := map[string]bot.Outcome{}
	for _, l := range m.Links {
		out[l.Platform] = l.Outcome
	}
	return out
}

// sampleText has a Taobao, a Douyin and a JD link, pasted the way people do.
const sampleText = "【淘宝】好物分享 https://m.tb.cn/h.5Zq8Lmn 点击链接直接打开，抖音看看https://v.douyin.com/iRNBho6/，京东 https://item.jd.com/100012043978.html"

func TestSessionsRoomsAndMembership(t *testing.T) {
	s := newTestServer(t, t.TempDir())
	alice, bob, carol := s.newUser("alice"), s.newUser("bob"), s.newUser("carol")

	var me struct{ User chat.User }
	alice.do("GET", "/api/v1/me", nil, http.StatusOK, &me)
	if me.User.ID != alice.ID {
		t.Fatalf("me = %+v", me.User)
	}
	s.do("", "GET", "/api/v1/me", nil, http.StatusUnauthorized, nil)
	s.do("not-a-token", "GET", "/api/v1/rooms", nil, http.StatusUnauthorized, nil)
	s.do("", "POST", "/api/v1/session", map[string]string{"name": "  "}, http.StatusBadRequest, nil)
	s.do("", "POST", "/api/v1/session", map[string]string{"name": strings.Repeat("名", 33)}, http.StatusRequestEntityTooLarge, nil)

	var users struct{ Users []chat.User }
	alice.do("GET", "/api/v1/users", nil, http.StatusOK, &users)
	if len(users.Users) != 3 {
		t.Fatalf("users = %+v, want alice, bob and carol (LinkBot excluded)", users.Users)
	}

	d1 := alice.direct(bob, http.StatusCreated)
	d2 := alice.direct(bob, http.StatusOK)
	d3 := bob.direct(alice, http.StatusOK)
	if d1.ID != d2.ID || d1.ID != d3.ID || d1.Kind != chat.Direct || len(d1.Members) != 2 || d1.Era != "group-ecommerce" {
		t.Fatalf("direct rooms %+v %+v %+v", d1, d2, d3)
	}
	alice.do("POST", "/api/v1/rooms", map[string]any{"kind": "direct", "members": []string{alice.ID}}, http.StatusBadRequest, nil)
	alice.do("POST", "/api/v1/rooms", map[string]any{"kind": "direct", "members": []string{"6f1f3c39-1d6e-4d8f-9d0c-3c0b8c1f0000"}}, http.StatusNotFound, nil)
	alice.do("POST", "/api/v1/rooms", map[string]any{"kind": "circle"}, http.StatusBadRequest, nil)

	g := alice.group("课堂", "zh", bob)
	if g.Kind != chat.Group || g.Lang != "zh" || !g.HasMember(alice.ID) || !g.HasMember(bob.ID) || g.HasMember(carol.ID) {
		t.Fatalf("group %+v", g)
	}
	var rooms struct{ Rooms []chat.Room }
	bob.do("GET", "/api/v1/rooms", nil, http.StatusOK, &rooms)
	if len(rooms.Rooms) != 2 {
		t.Fatalf("bob's rooms: %+v", rooms.Rooms)
	}
	carol.do("GET", "/api/v1/rooms", nil, http.StatusOK, &rooms)
	if len(rooms.Rooms) != 0 {
		t.Fatalf("carol's rooms: %+v", rooms.Rooms)
	}

	// Carol is in neither room: every member endpoint refuses her
	// (TestNonMemberRefusedEverywhere walks them all).
	carol.do("GET", "/api/v1/rooms/"+g.ID+"/messages", nil, http.StatusForbidden, nil)
	alice.do("PUT", "/api/v1/rooms/"+g.ID+"/era", map[string]string{"era": "no-such-era"}, http.StatusNotFound, nil)

	// Over WebSocket too, and the others see nothing.
	a, b, c := alice.connect(), bob.connect(), carol.connect()
	c.send(d1.ID, "let me in", "c1")
	if f := c.errorFrame("c1"); f.Code != chat.EForbidden {
		t.Fatalf("send to others' room: %+v", f)
	}
	c.write(map[string]any{"type": "resume", "room": g.ID, "after": 0})
	if f := c.errorFrame("resume"); f.Code != chat.EForbidden {
		t.Fatalf("resume of others' room: %+v", f)
	}
	c.send("6f1f3c39-1d6e-4d8f-9d0c-3c0b8c1f0000", "hello?", "c2")
	if f := c.errorFrame("c2"); f.Code != chat.ENotFound {
		t.Fatalf("send to unknown room: %+v", f)
	}
	a.sendAck(d1.ID, "hi bob", "a1")
	if m := b.message(d1.ID, nil).Msg; m.Text != "hi bob" || m.Sender.ID != alice.ID {
		t.Fatalf("bob got %+v", m)
	}
	if len(bob.history(d1.ID, 0)) != 1 {
		t.Fatal("history should hold one message")
	}

	// A connection receives rooms created after it connected.
	g2 := bob.group("later", "", alice)
	if f := a.until("room frame", func(f frame) bool { return f.Type == "room" && f.Room.ID == g2.ID }); f.Room.Lang != "en" {
		t.Fatalf("room frame %+v", f.Room)
	}

	// Upgrades without a session wait for an auth frame: TestWSAuthByFrame.
}

func TestLinksUnderEras(t *testing.T) {
	s := newTestServer(t, t.TempDir())
	alice, bob := s.newUser("alice"), s.newUser("bob")
	direct := alice.direct(bob, http.StatusCreated)
	group := alice.group("class", "en", bob)
	a, b := alice.connect(), bob.connect()

	tests := []struct {
		era    string
		room   chat.Room
		taobao bot.Outcome
		douyin bot.Outcome
	}{
		{"walled", direct, bot.Blocked, bot.Blocked},
		{"walled", group, bot.Blocked, bot.Blocked},
		{"direct-open", direct, bot.Hyperlink, bot.Hyperlink},
		{"direct-open", group, bot.Blocked, bot.Blocked},
		{"group-ecommerce", direct, bot.Hyperlink, bot.Hyperlink},
		{"group-ecommerce", group, bot.Hyperlink, bot.Blocked},
		{"2021-10-01", group, bot.Blocked, bot.Blocked}, // a date → direct-open
		{"open-api", group, bot.CardView, bot.CardView},
	}
	for i, tt := range tests {
		var r struct{ Room chat.Room }
		alice.do("PUT", "/api/v1/rooms/"+tt.room.ID+"/era", map[string]string{"era": tt.era}, http.StatusOK, &r)
		b.until("room frame", func(f frame) bool { return f.Type == "room" && f.Room.ID == tt.room.ID && f.Room.Era == r.Room.Era })
		id := fmt.Sprintf("m%d", i)
		ack := a.sendAck(tt.room.ID, sampleText, id)
		got := b.message(tt.room.ID, func(m *chat.Message) bool { return m.ID == ack.ID }).Msg
		o := outcomes(got)
		if o["taobao"] != tt.taobao || o["douyin"] != tt.douyin || o["jd"] != bot.CardView || got.Era != r.Room.Era {
			t.Errorf("%s in %s: got %v (era %s), want taobao %s, douyin %s, jd card", tt.era, tt.room.Kind, o, got.Era, tt.taobao, tt.douyin)
		}
		if o["jd"] == bot.CardView {
			for _, l := range got.Links {
				if l.Platform == "jd" && (l.Card == nil || l.Card.Title == "") {
					t.Errorf("jd card without title: %+v", l)
				}
			}
		}
		if tt.taobao == bot.Blocked || tt.douyin == bot.Blocked {
			// LinkBot's grey notice follows, from the policy, in the room's language.
			n := b.message(tt.room.ID, func(m *chat.Message) bool { return m.Sender.Bot && m.System }).Msg
			if n.Text != bot.DefaultPolicy().BlockedNotice("en") || n.Sender.ID != chat.LinkBotID || n.Seq != got.Seq+1 {
				t.Errorf("notice %+v", n)
			}
		}
	}
}

func TestIdempotentSend(t *testing.T) {
	s := newTestServer(t, t.TempDir())
	alice, bob := s.newUser("alice"), s.newUser("bob")
	room := alice.direct(bob, http.StatusCreated)
	a, b := alice.connect(), bob.connect()
	first := a.sendAck(room.ID, "once", "same-id")
	second := a.sendAck(room.ID, "once", "same-id")
	if first.ID != second.ID || first.Seq != second.Seq {
		t.Fatalf("two acks for one client_msg_id: %+v %+v", first, second)
	}
	a.sendAck(room.ID, "marker", "marker")
	got := b.message(room.ID, nil).Msg
	next := b.message(room.ID, nil).Msg
	if got.Text != "once" || next.Text != "marker" {
		t.Fatalf("bob got %q then %q, want the message once, then the marker", got.Text, next.Text)
	}
	if h := alice.history(room.ID, 0); len(h) != 2 {
		t.Fatalf("history has %d messages, want 2", len(h))
	}
	// The store's series: every append went through a batch (the repeat
	// too), and every acknowledgement waited for a sync of the WAL.
	if got := s.metric("linkwall_store_batch_messages_sum"); got != "3" {
		t.Errorf("linkwall_store_batch_messages_sum = %q, want 3 (three sends)", got)
	}
	if got, _ := strconv.Atoi(s.metric("linkwall_store_sync_seconds_count")); got < 1 {
		t.Errorf("linkwall_store_sync_seconds_count = %d, want ≥ 1", got)
	}
}

func TestResumeWhileMessagesFlow(t *testing.T) {
	// The hold must outlast bob's hello→resume round trip (500 ms is too short under load).
	s := startTestServer(t, t.TempDir(), serverOpts{limits: server.Limits{SendRate: 5000, SendBurst: 5000, ResumeWait: waitFor}})
	alice, bob := s.newUser("alice"), s.newUser("bob")
	room := alice.group("flow", "en", bob)
	a := alice.connect()
	const total = 300
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for i := 1; i <= total; i++ {
			if err := a.ws.WriteJSON(map[string]any{"type": "send", "room": room.ID, "text": fmt.Sprintf("n%d", i), "client_msg_id": fmt.Sprint(i)}); err != nil {
				return
			}
			if i%20 == 0 {
				time.Sleep(5 * time.Millisecond)
			}
		}
	}()

	// Bob connects while alice sends, resumes from 0, drops the connection
	// half-way and resumes from the last seq he saw: every seq exactly once, in order.
	var seen []int64
	last := int64(0)
	for round := 0; last < total; round++ {
		b := bob.connect()
		b.write(map[string]any{"type": "resume", "room": room.ID, "after": last})
		stop := last + total/3
		if round >= 2 {
			stop = total
		}
		for last < stop {
			m := b.message(room.ID, nil).Msg
			seen = append(seen, m.Seq)
			if m.Seq != last+1 {
				t.Fatalf("round %d: got seq %d after %d (seen %v)", round, m.Seq, last, seen)
			}
			last = m.Seq
		}
		b.ws.Close()
	}
	<-sent
	if len(seen) != total {
		t.Fatalf("saw %d messages, want %d", len(seen), total)
	}
}

func TestRestartKeepsHistory(t *testing.T) {
	dir := t.TempDir()
	s := newTestServer(t, dir)
	alice, bob := s.newUser("alice"), s.newUser("bob")
	room := alice.direct(bob, http.StatusCreated)
	a := alice.connect()
	for i := 1; i <= 3; i++ {
		a.sendAck(room.ID, fmt.Sprintf("before %d", i), fmt.Sprint(i))
	}
	b := bob.connect()
	if err := s.m.Close(); err != nil {
		t.Fatal(err)
	}
	if code := b.closeCode(); code != websocket.CloseGoingAway {
		t.Fatalf("shutdown closed with %d, want 1001", code)
	}

	s2 := newTestServer(t, dir)
	alice.s, bob.s = s2, s2 // the sessions survive the restart
	a2 := alice.connect()
	if m := a2.sendAck(room.ID, "after restart", "4"); m.Seq != 4 {
		t.Fatalf("seq after restart = %d, want 4", m.Seq)
	}
	h := bob.history(room.ID, 0)
	if len(h) != 4 || h[0].Text != "before 1" || h[3].Text != "after restart" {
		t.Fatalf("history after restart: %+v", h)
	}
	// A duplicate of a message acknowledged before the restart is still one message.
	if m := a2.sendAck(room.ID, "before 1", "1"); m.Seq != 1 {
		t.Fatalf("resent message got seq %d, want 1", m.Seq)
	}
}

func TestSlowConsumerDropped(t *testing.T) {
	// The blocked write to the slow client fails after writeWait (10 s): the
	// queue must pass its bound well before, even at a few sends a second.
	s := startTestServer(t, t.TempDir(), serverOpts{limits: server.Limits{SendRate: 5000, SendBurst: 5000, MaxQueueBytes: 256 << 10}})
	alice, bob, slow := s.newUser("alice"), s.newUser("bob"), s.newUser("slow")
	room := alice.group("busy", "en", bob, slow)
	a, b := alice.connect(), bob.connect()

	// The slow client has a tiny receive buffer and never reads.
	dial := func(network, addr string) (net.Conn, error) {
		d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
			})
			return errors.Join(err, serr)
		}}
		return d.Dial(network, addr)
	}
	sc, _, err := s.dialRaw(http.Header{"Authorization": {"Bearer " + slow.token}}, dial)
	if err != nil {
		t.Fatal(err)
	}
	// 12 KB per message: a few hundred pass the queue bound plus the socket buffers.
	text := strings.Repeat("汉", 4000)
	const total = 700
	// Alice waits for each acknowledgement, so bob (who reads) never falls
	// behind, while the slow client's queue only grows. Once dropped, it
	// reads at once: its close frame waits behind a write blocked on the full
	// socket, which fails after writeWait.
	reading := false
	for i := 1; i <= total; i++ {
		a.sendAck(room.ID, text, fmt.Sprint(i))
		if !reading && i%5 == 0 && s.metric("linkwall_slow_consumers_dropped_total") == "1" {
			t.Logf("dropped by send %d", i)
			sc.start() // what was written, then the close frame
			reading = true
		}
	}
	for i := int64(1); i <= total; i++ {
		if m := b.message(room.ID, nil).Msg; m.Seq != i {
			t.Fatalf("bob got seq %d, want %d", m.Seq, i)
		}
	}
	if got := s.metric("linkwall_slow_consumers_dropped_total"); got != "1" {
		t.Fatalf("slow consumers dropped = %s, want 1", got)
	}
	if code := sc.closeCode(); code != server.CloseSlowConsumer {
		t.Fatalf("slow client closed with %d, want %d", code, server.CloseSlowConsumer)
	}
}

// metric returns the value of an unlabelled series from /metrics.
func (s *testServer) metric(name string) string {
	s.t.Helper()
	return metricAt(s.t, "http://"+s.m.Addr(), name)
}

// metricAt returns the value of an unlabelled series from base's /metrics.
func metricAt(t *testing.T, base, name string) string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	return ""
}

func TestEraChangeRerendersHistory(t *testing.T) {
	s := newTestServer(t, t.TempDir(), "--era", "walled")
	alice, bob := s.newUser("alice"), s.newUser("bob")
	room := alice.group("replay", "en", bob)
	if room.Era != "walled" {
		t.Fatalf("--era walled: new room has era %q", room.Era)
	}
	a, b := alice.connect(), bob.connect()
	a.sendAck(room.ID, sampleText, "x")
	if o := outcomes(&alice.history(room.ID, 0)[0]); o["taobao"] != bot.Blocked {
		t.Fatalf("walled: %v", o)
	}
	var r struct{ Room chat.Room }
	alice.do("PUT", "/api/v1/rooms/"+room.ID+"/era", map[string]string{"era": "group-ecommerce"}, http.StatusOK, &r)
	if f := b.until("room frame", func(f frame) bool { return f.Type == "room" }); f.Room.Era != "group-ecommerce" {
		t.Fatalf("room frame %+v", f.Room)
	}
	h := bob.history(room.ID, 0)
	if h[0].Era != "group-ecommerce" || outcomes(&h[0])["taobao"] != bot.Hyperlink || h[0].Text != sampleText {
		t.Fatalf("history under the new era: %+v", h[0])
	}
	// Resume renders under the current era too.
	b2 := bob.connect()
	b2.write(map[string]any{"type": "resume", "room": room.ID, "after": 0})
	if m := b2.message(room.ID, nil).Msg; m.Seq != 1 || outcomes(m)["taobao"] != bot.Hyperlink {
		t.Fatalf("resumed message %+v", m)
	}
}

func TestOriginCheck(t *testing.T) {
	s := newTestServer(t, t.TempDir(), "--allowed-origins", "https://class.example")
	alice := s.newUser("alice")
	_, resp, err := alice.dial(http.Header{"Origin": {"https://evil.example"}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("foreign origin: %v %v", resp, err)
	}
	// The origin is checked first: a foreign page cannot tell a valid token from a bad one.
	_, resp, err = s.dialRaw(http.Header{"Origin": {"https://evil.example"}, "Authorization": {"Bearer garbage"}}, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("foreign origin with a bad token: %v %v", resp, err)
	}
	for _, origin := range []string{"http://" + s.m.Addr(), "https://class.example"} {
		c, _, err := alice.dial(http.Header{"Origin": {origin}})
		if err != nil {
			t.Fatalf("origin %s: %v", origin, err)
		}
		c.ws.Close()
	}
	// No Origin (not a browser) passes the WebSocket check too.
	c, _, err := alice.dial(nil)
	if err != nil {
		t.Fatalf("no Origin: %v", err)
	}
	c.ws.Close()

	bob := s.newUser("bob")
	room := alice.direct(bob, http.StatusCreated)
	for _, tc := range []struct {
		method, path, body, origin string
		want                       int
	}{
		{"POST", "/api/v1/session", `{"name":"mallory"}`, "https://evil.example", http.StatusForbidden},
		{"POST", "/api/v1/rooms", `{"kind":"group","name":"x"}`, "null", http.StatusForbidden},
		{"PUT", "/api/v1/rooms/" + room.ID + "/era", `{"era":"walled"}`, "https://evil.example", http.StatusForbidden},
		{"PUT", "/api/v1/rooms/" + room.ID + "/era", `{"era":"walled"}`, "http://" + s.m.Addr() + ".evil.example", http.StatusForbidden},
		{"DELETE", "/api/v1/session", "", "https://evil.example", http.StatusForbidden},
		{"PUT", "/api/v1/rooms/" + room.ID + "/era", `{"era":"walled"}`, "", http.StatusOK},
		{"PUT", "/api/v1/rooms/" + room.ID + "/era", `{"era":"walled"}`, "http://" + s.m.Addr(), http.StatusOK},
		{"PUT", "/api/v1/rooms/" + room.ID + "/lang", `{"lang":"zh"}`, "https://class.example", http.StatusOK},
		// Reads are not refused, but no CORS header lets a foreign page see them.
		{"GET", "/api/v1/rooms", "", "https://evil.example", http.StatusOK},
	} {
		req, _ := http.NewRequest(tc.method, s.url(tc.path), strings.NewReader(tc.body))
		req.Header.Set("Authorization", "Bearer "+alice.token)
		if tc.origin != "" {
			req.Header.Set("Origin", tc.origin)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want || resp.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("%s %s from %q: %d (CORS %q), want %d and no CORS header", tc.method, tc.path, tc.origin,
				resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"), tc.want)
		}
	}
	alice.do("GET", "/api/v1/me", nil, http.StatusOK, nil) // the cross-origin DELETE did not sign her out
	resp, err = http.Get(s.url("/"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") ||
		resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("page headers %v", resp.Header)
	}
}

func TestLinkBotCommands(t *testing.T) {
	s := newTestServer(t, t.TempDir())
	alice, bob := s.newUser("alice"), s.newUser("bob")
	room := alice.group("bot", "en", bob)
	zhRoom := alice.group("机器人", "zh", bob)
	a, b := alice.connect(), bob.connect()
	reply := func(c *wsClient, room string) *chat.Message {
		t.Helper()
		return c.message(room, func(m *chat.Message) bool { return m.Sender.ID == chat.LinkBotID }).Msg
	}

	a.sendAck(room.ID, "/help", "h")
	if m := reply(b, room.ID); !strings.Contains(m.Text, "/walkthrough") || m.Sender.Name != "LinkBot" || !m.Sender.Bot {
		t.Fatalf("/help: %+v", m)
	}
	a.sendAck(zhRoom.ID, "/help", "hz")
	if m := reply(b, zhRoom.ID); !strings.Contains(m.Text, "命令") {
		t.Fatalf("/help in zh: %q", m.Text)
	}
	a.sendAck(room.ID, "/era", "e")
	if m := reply(b, room.ID); !strings.Contains(m.Text, "E-commerce in groups (trial) (group-ecommerce, from 2021-11-29)") || !strings.Contains(m.Text, "Walled garden (walled)") {
		t.Fatalf("/era: %q", m.Text)
	}
	a.sendAck(room.ID, "/era walled", "e2")
	if f := b.until("room frame", func(f frame) bool { return f.Type == "room" }); f.Room.Era != "walled" {
		t.Fatalf("/era walled: %+v", f.Room)
	}
	if m := reply(b, room.ID); !strings.Contains(m.Text, "walled") {
		t.Fatalf("era change announcement: %q", m.Text)
	}
	a.sendAck(room.ID, "/era bronze-age", "e3")
	if m := reply(b, room.ID); !strings.Contains(m.Text, "Cannot") {
		t.Fatalf("bad era: %q", m.Text)
	}

	a.sendAck(room.ID, sampleText, "links")
	reply(b, room.ID) // the blocked notice
	a.sendAck(room.ID, "/why", "w")
	// An explanation in plain text: the addresses it quotes are not links.
	if m := reply(b, room.ID); !strings.Contains(m.Text, "m.tb.cn") || !strings.Contains(m.Text, "(Taobao) → blocked") || !strings.Contains(m.Text, "under Walled garden") || len(m.Links) != 0 {
		t.Fatalf("/why: %q with %d links", m.Text, len(m.Links))
	}
	a.sendAck(room.ID, "/stats", "s")
	if m := reply(b, room.ID); !strings.Contains(m.Text, "Taobao, blocked: 1") {
		t.Fatalf("/stats: %q", m.Text)
	}
	var st server.Stats
	alice.do("GET", "/api/v1/rooms/"+room.ID+"/stats", nil, http.StatusOK, &st)
	if st.Links != 3 || st.Messages == 0 {
		t.Fatalf("stats %+v", st)
	}

	a.sendAck(room.ID, "/walkthrough", "wt")
	eras := bot.DefaultPolicy().Eras()
	for _, e := range eras {
		b.until("walkthrough era "+e.ID, func(f frame) bool { return f.Type == "room" && f.Room.Era == e.ID })
	}
	done := b.message(room.ID, func(m *chat.Message) bool { return strings.Contains(m.Text, "Walkthrough done") }).Msg
	// The room is back in the era it had before (walled, set above).
	var after struct{ Room chat.Room }
	alice.do("GET", "/api/v1/rooms/"+room.ID, nil, http.StatusOK, &after)
	if after.Room.Era != "walled" || !strings.Contains(done.Text, "back in Walled garden") {
		t.Errorf("after the walkthrough the room is in %q (%q), want walled again", after.Room.Era, done.Text)
	}
	// Each era's samples keep that era's outcomes after the room moved on,
	// shown for a one-to-one chat and for a group.
	taobao := map[string]bot.Outcome{} // era/kind → Taobao's outcome
	for _, m := range alice.history(room.ID, max(0, done.Seq-6*int64(len(eras)))) {
		kind, _, ok := strings.Cut(m.Text, ":")
		if !m.Sender.Bot || !ok || !strings.HasPrefix(kind, "In a ") {
			continue
		}
		taobao[m.Era+"/"+kind] = outcomes(&m)["taobao"]
	}
	for key, want := range map[string]bot.Outcome{
		"walled/In a one-to-one chat":      bot.Blocked,
		"walled/In a group chat":           bot.Blocked,
		"direct-open/In a one-to-one chat": bot.Hyperlink,
		"direct-open/In a group chat":      bot.Blocked,
		"group-ecommerce/In a group chat":  bot.Hyperlink,
		"open-api/In a group chat":         bot.CardView,
	} {
		if taobao[key] != want {
			t.Errorf("walkthrough sample %s: Taobao %q, want %q (all: %v)", key, taobao[key], want, taobao)
		}
	}
	// Traffic counts the samples as shown: 5 links (a share token and 4
	// URLs) × 2 chat kinds × every era, besides the 3 people's links.
	alice.do("GET", "/api/v1/rooms/"+room.ID+"/stats", nil, http.StatusOK, &st)
	if st.Links != 3+10*len(eras) || st.Samples != 10*len(eras) {
		t.Errorf("stats after the walkthrough: %d links, %d from samples; want %d and %d", st.Links, st.Samples, 3+10*len(eras), 10*len(eras))
	}
	// A class may ask for a longer pause between eras: whole seconds, 1 to 60.
	for _, bad := range []any{0, 61, 1.5, "ten", "10", 18446744075} { // the last one wraps to 1.29 s as nanoseconds
		var e struct{ Error struct{ Code string } }
		alice.do("POST", "/api/v1/rooms/"+room.ID+"/walkthrough", map[string]any{"step_seconds": bad}, http.StatusBadRequest, &e)
		if e.Error.Code != chat.EInvalid {
			t.Errorf("step_seconds %v: %+v, want invalid", bad, e)
		}
	}
	for _, arg := range []string{"0", "s", "10 seconds"} {
		a.sendAck(room.ID, "/walkthrough "+arg, "wt-"+arg)
		if m := reply(b, room.ID); !strings.Contains(m.Text, "from 1 to 60") {
			t.Errorf("/walkthrough %s: LinkBot said %q", arg, m.Text)
		}
	}
	alice.do("POST", "/api/v1/rooms/"+room.ID+"/walkthrough", map[string]any{"step_seconds": 1}, http.StatusAccepted, nil)
	b.until("the first era", func(f frame) bool { return f.Type == "room" && f.Room.Era == eras[0].ID })
	first := time.Now()
	b.until("the second era", func(f frame) bool { return f.Type == "room" && f.Room.Era == eras[1].ID })
	if waited := time.Since(first); waited < 900*time.Millisecond {
		t.Errorf("the second era came %v after the first, want the 1 s pause asked for", waited)
	}
	alice.do("POST", "/api/v1/rooms/"+room.ID+"/walkthrough", nil, http.StatusConflict, nil)
	// Nobody changes the era under a running walkthrough.
	var e struct{ Error struct{ Code string } }
	bob.do("PUT", "/api/v1/rooms/"+room.ID+"/era", map[string]any{"era": "open-api"}, http.StatusConflict, &e)
	if e.Error.Code != chat.EConflict {
		t.Errorf("an era change during the walkthrough: %+v, want conflict", e)
	}
}

func TestProtocolAbuse(t *testing.T) {
	s := newTestServer(t, t.TempDir())
	alice, bob := s.newUser("alice"), s.newUser("bob")
	room := alice.direct(bob, http.StatusCreated)
	a, b := alice.connect(), bob.connect()

	for _, bad := range []string{`{"type":`, `{"type":"send","room":5}`, `{"type":"dance"}`, "\xff\xfe"} {
		if err := a.ws.WriteMessage(websocket.TextMessage, []byte(bad)); err != nil {
			t.Fatal(err)
		}
		if f := a.until("error", func(f frame) bool { return f.Type == "error" }); f.Code != chat.EInvalid {
			t.Fatalf("%q: %+v", bad, f)
		}
	}
	for _, tc := range []struct{ text, code string }{
		{"", chat.EInvalid},
		{"   ", chat.EInvalid},
		{"bell\a", chat.EInvalid},
		{strings.Repeat("x", 4001), chat.ETooLarge},
	} {
		a.send(room.ID, tc.text, "bad")
		if f := a.errorFrame("bad"); f.Code != tc.code {
			t.Fatalf("text %.10q: %+v, want %s", tc.text, f, tc.code)
		}
	}
	a.write(map[string]string{"type": "ping"})
	a.until("pong", func(f frame) bool { return f.Type == "pong" })
	// Still usable, and bob saw none of it.
	a.sendAck(room.ID, "still here", "ok")
	if m := b.message(room.ID, nil).Msg; m.Text != "still here" {
		t.Fatalf("bob got %q", m.Text)
	}

	// A frame past the read limit closes with 1009.
	big, _ := json.Marshal(map[string]string{"type": "send", "room": room.ID, "text": strings.Repeat("x", server.DefaultMaxFrameBytes)})
	_ = a.ws.WriteMessage(websocket.TextMessage, big)
	if code := a.closeCode(); code != websocket.CloseMessageTooBig {
		t.Fatalf("big frame closed with %d", code)
	}
}

func TestRateLimit(t *testing.T) {
	dir := t.TempDir()
	m := NewMain()
	m.Logger = zap.NewNop()
	if err := m.ParseFlags(context.Background(), []string{"--addr", "127.0.0.1:0", "--data", dir}); err != nil {
		t.Fatal(err)
	}
	// Creating the room draws one of the three.
	m.Limits = server.Limits{SendRate: 0.01, SendBurst: 3, RateStrikes: 5}
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	s := &testServer{t: t, m: m, dir: dir}
	alice, bob := s.newUser("alice"), s.newUser("bob")
	room := alice.direct(bob, http.StatusCreated)
	a := alice.connect()
	a.sendAck(room.ID, "1", "1")
	a.sendAck(room.ID, "2", "2")
	a.send(room.ID, "3", "3")
	if f := a.errorFrame("3"); f.Code != chat.ERateLimited {
		t.Fatalf("third send: %+v", f)
	}
	for i := 0; i < 10; i++ {
		// The server closes the connection mid-flood; later writes fail.
		if a.ws.WriteJSON(map[string]any{"type": "send", "room": room.ID, "text": "flood", "client_msg_id": fmt.Sprint("f", i)}) != nil {
			break
		}
	}
	if code := a.closeCode(); code != server.CloseRateLimited {
		t.Fatalf("flood closed with %d, want %d", code, server.CloseRateLimited)
	}
	// REST calls that fan out to a room draw on the same budget: Alice's
	// is spent, Bob's is not.
	alice.do("PUT", "/api/v1/rooms/"+room.ID+"/lang", map[string]string{"lang": "zh"}, http.StatusTooManyRequests, nil)
	alice.do("PUT", "/api/v1/rooms/"+room.ID+"/era", map[string]string{"era": "walled"}, http.StatusTooManyRequests, nil)
	alice.do("POST", "/api/v1/rooms", map[string]any{"kind": "group", "name": "g", "members": []string{bob.ID}}, http.StatusTooManyRequests, nil)
	bob.do("PUT", "/api/v1/rooms/"+room.ID+"/lang", map[string]string{"lang": "zh"}, http.StatusOK, nil)
}

// TestResumeRateLimit: a connection may resume as many rooms at once as a
// user may be in; past that, resumes (each a store read, even of an
// unknown room) are refused until the limit refills.
func TestResumeRateLimit(t *testing.T) {
	s := startTestServer(t, t.TempDir(), serverOpts{limits: server.Limits{SendRate: 5000, SendBurst: 5000, MaxRoomsPerUser: 3}})
	a := s.newUser("alice").connect()
	const n = 60
	var frame bytes.Buffer
	rooms := make([]string, n)
	for i := range rooms {
		rooms[i] = uuid.NewString()
		fmt.Fprintf(&frame, `{"type":"resume","room":%q,"after":0}`+"\n", rooms[i])
	}
	if err := a.ws.WriteMessage(websocket.TextMessage, frame.Bytes()); err != nil {
		t.Fatal(err)
	}
	codes := map[string]int{}
	for i := range n {
		// Each refusal names its room, so a client knows which to ask again.
		f := a.errorFrame("resume")
		if f.RoomID != rooms[i] {
			t.Fatalf("refusal %d names room %q, want %q", i, f.RoomID, rooms[i])
		}
		codes[f.Code]++
	}
	// The burst is 3; at 100/s the limit gives back one more every 10 ms,
	// which a slow machine may take for a few of the 60.
	if codes[chat.ENotFound] < 3 || codes[chat.ERateLimited] < n/2 || codes[chat.ENotFound]+codes[chat.ERateLimited] != n {
		t.Fatalf("answers to %d resumes of unknown rooms: %v; want 3 or a few more not_found, the rest rate_limited", n, codes)
	}
}

// TestRoomQuotaCountsEveryMember: nobody can be put in more rooms than the
// limit, by themselves or by others, and a user in many large groups still
// gets a hello bigger than the send queue's bound.
func TestRoomQuotaCountsEveryMember(t *testing.T) {
	s := startTestServer(t, t.TempDir(), serverOpts{limits: server.Limits{
		SendRate: 5000, SendBurst: 5000, SessionBurst: 1000, MaxRoomsPerUser: 3, MaxQueueBytes: 4096,
	}})
	bob := s.newUser("bob")
	var crowd []*member
	for i := range 60 {
		crowd = append(crowd, s.newUser(fmt.Sprint("u", i)))
	}
	for i := range 3 { // each about 2.5 KB in Bob's hello
		crowd[i].group(fmt.Sprint("g", i), "en", append([]*member{bob}, crowd[3:]...)...)
	}
	var e struct {
		Error struct{ Code, Message string }
	}
	crowd[0].do("POST", "/api/v1/rooms", map[string]any{"kind": "group", "name": "one too many", "members": []string{bob.ID}}, http.StatusRequestEntityTooLarge, &e)
	if e.Error.Code != chat.ETooLarge || !strings.Contains(e.Error.Message, bob.ID) {
		t.Fatalf("adding Bob to a 4th room: %+v, want too_large naming him", e.Error)
	}
	crowd[0].do("POST", "/api/v1/rooms", map[string]any{"kind": "direct", "members": []string{bob.ID}}, http.StatusRequestEntityTooLarge, nil)
	bob.do("POST", "/api/v1/rooms", map[string]any{"kind": "direct", "members": []string{crowd[1].ID}}, http.StatusRequestEntityTooLarge, nil)
	d := crowd[0].direct(crowd[1], http.StatusCreated) // each is in one room
	crowd[0].group("h", "en", crowd[2])                // crowd[0] is at the limit
	// Asking again for an existing direct room adds nobody to anything.
	if again := crowd[0].direct(crowd[1], http.StatusOK); again.ID != d.ID {
		t.Fatalf("at the limit, the existing direct room came back as %s, want %s", again.ID, d.ID)
	}
	if again := crowd[1].direct(crowd[0], http.StatusOK); again.ID != d.ID {
		t.Fatalf("the other side got %s, want %s", again.ID, d.ID)
	}
	crowd[0].do("POST", "/api/v1/rooms", map[string]any{"kind": "direct", "members": []string{crowd[2].ID}}, http.StatusRequestEntityTooLarge, nil)

	// Bob's hello, about 7.5 KB, passes a 4 KB send queue.
	c, _, err := bob.dial(nil)
	if err != nil {
		t.Fatal(err)
	}
	c.start()
	f := c.next()
	if f.Type != "hello" || len(f.Rooms) != 3 {
		t.Fatalf("first frame %s with %d rooms, want the hello with 3", f.Type, len(f.Rooms))
	}
	for _, r := range f.Rooms {
		if len(r.Members) != 59 {
			t.Fatalf("room %s has %d members in the hello, want 59", r.Name, len(r.Members))
		}
	}
}

func TestPolicyReload(t *testing.T) {
	orig, err := os.ReadFile("../../bot/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, orig, 0o600); err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.ErrorLevel)
	log := zap.New(zapcore.NewTee(zaptest.NewLogger(t, zaptest.Level(zapcore.WarnLevel)).Core(), core))
	s := startTestServer(t, t.TempDir(), serverOpts{log: log}, "--policy", path)
	eraName := func() string {
		var r struct{ Eras []bot.Era }
		s.do("", "GET", "/api/v1/eras", nil, http.StatusOK, &r)
		return r.Eras[0].Name
	}
	name := eraName()
	if name == "" || !bytes.Contains(orig, []byte(name)) {
		t.Fatalf("first era name %q not found in the policy file", name)
	}
	// An invalid file keeps the policy in force, and the log says where it is wrong…
	lines := bytes.Count(orig, []byte("\n"))
	if err := os.WriteFile(path, append(bytes.Clone(orig), "\neras: [\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(waitFor)
	for logs.FilterMessage("policy not reloaded; the previous one stays in force").Len() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the invalid policy file was not reported")
		}
		time.Sleep(100 * time.Millisecond)
	}
	entry := logs.FilterMessage("policy not reloaded; the previous one stays in force").All()[0]
	msg, _ := entry.ContextMap()["error"].(string)
	if where := regexp.MustCompile(regexp.QuoteMeta(path) + `:(\d+):`).FindStringSubmatch(msg); where == nil {
		t.Errorf("log error %q does not name %s:LINE", msg, path)
	} else if n, _ := strconv.Atoi(where[1]); n <= lines {
		t.Errorf("log names line %d; the broken line is after line %d", n, lines)
	}
	if got := eraName(); got != name {
		t.Fatalf("invalid policy replaced the old one: %q", got)
	}
	// …a valid one replaces it.
	renamed := bytes.Replace(orig, []byte(name), []byte(name+" (reloaded)"), 1)
	if err := os.WriteFile(path, renamed, 0o600); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(waitFor)
	for eraName() != name+" (reloaded)" {
		if time.Now().After(deadline) {
			t.Fatal("the changed policy file was not reloaded")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Concurrent senders' messages can be published out of seq order; every
// reader still sees each seq once, in order.
func TestConcurrentSendersInOrder(t *testing.T) {
	s := newTestServer(t, t.TempDir())
	reader := s.newUser("reader")
	var senders []*member
	for i := range 5 {
		senders = append(senders, s.newUser(fmt.Sprint("sender", i)))
	}
	room := reader.group("busy", "en", senders...)
	r := reader.connect()
	r.write(map[string]any{"type": "resume", "room": room.ID, "after": 0})
	const each = 60
	for i, u := range senders {
		c := u.connect()
		go func() {
			for j := range each {
				if c.ws.WriteJSON(map[string]any{"type": "send", "room": room.ID, "text": fmt.Sprint(i, "-", j), "client_msg_id": fmt.Sprint(j)}) != nil {
					return
				}
			}
		}()
	}
	for want := int64(1); want <= int64(len(senders)*each); want++ {
		if m := r.message(room.ID, nil).Msg; m.Seq != want {
			t.Fatalf("got seq %d, want %d", m.Seq, want)
		}
	}
}

// TestResendAfterResumeKeepsOrder: a client reconnects, resumes and at
// once resends a message it never saw acknowledged. The repeated
// acknowledgement must not overtake the resumed history: seqs arrive 1..N
// in order, the resent one carries its client_msg_id, and the only repeat
// allowed is the answer to the resend after its seq was already delivered.
func TestResendAfterResumeKeepsOrder(t *testing.T) {
	s := newTestServer(t, t.TempDir())
	alice, bob := s.newUser("alice"), s.newUser("bob")
	room := alice.group("resend", "en", bob)
	a := alice.connect()
	const n = 30
	for i := 1; i <= n; i++ {
		a.sendAck(room.ID, fmt.Sprintf("m%d", i), fmt.Sprintf("id%d", i))
	}
	a.ws.Close()

	// The new connection's room is held until it resumes; the resend comes
	// right behind the resume, as a reconnecting client sends its outbox.
	c := alice.connect()
	c.write(map[string]any{"type": "resume", "room": room.ID, "after": 0})
	c.send(room.ID, "m5", "id5")
	c.send(room.ID, "after", "marker")
	var next int64 = 1 // the next seq expected for the first time
	var acked bool
	for {
		f := c.message(room.ID, nil)
		seq := f.Msg.Seq
		switch {
		case seq == next:
			next++
		case seq < next && seq == 5 && f.ClientMsgID == "id5":
			// The answer to the resend, after the history delivered seq 5.
		default:
			t.Fatalf("got seq %d (client_msg_id %q) while expecting %d: the acknowledgement of a resend overtook the history or a seq repeated", seq, f.ClientMsgID, next)
		}
		if seq == 5 && f.ClientMsgID == "id5" {
			acked = true
		}
		if f.ClientMsgID == "marker" {
			break
		}
	}
	if next != n+2 {
		t.Errorf("delivered seqs up to %d, want %d", next-1, n+1)
	}
	if !acked {
		t.Error("the resent message's seq came without its client_msg_id: the client cannot tell it was stored")
	}
}

// TestPreviewAPI: how a text would render, without a session and without
// posting it, for any era (by id or date) and chat kind.
func TestPreviewAPI(t *testing.T) {
	s := newTestServer(t, t.TempDir())
	type answer struct {
		Links []bot.Link
		Era   string
		Chat  string
	}
	for _, tc := range []struct {
		chat, era string
		wantEra   string
		want      map[string]bot.Outcome
	}{
		{"direct", "walled", "walled", map[string]bot.Outcome{"taobao": bot.Blocked, "douyin": bot.Blocked, "jd": bot.CardView}},
		{"direct", "2021-10-01", "direct-open", map[string]bot.Outcome{"taobao": bot.Hyperlink, "douyin": bot.Hyperlink, "jd": bot.CardView}},
		{"group", "2021-10-01", "direct-open", map[string]bot.Outcome{"taobao": bot.Blocked, "douyin": bot.Blocked, "jd": bot.CardView}},
		{"group", "", "group-ecommerce", map[string]bot.Outcome{"taobao": bot.Hyperlink, "douyin": bot.Blocked, "jd": bot.CardView}},
		{"", "open-api", "open-api", map[string]bot.Outcome{"taobao": bot.CardView, "douyin": bot.CardView, "jd": bot.CardView}},
	} {
		var a answer
		s.do("", "POST", "/api/v1/preview", map[string]string{"text": sampleText, "chat": tc.chat, "era": tc.era}, http.StatusOK, &a)
		got := outcomes(&chat.Message{Links: a.Links})
		if a.Era != tc.wantEra || !maps.Equal(got, tc.want) {
			t.Errorf("preview %s/%s: era %s, %v; want %s, %v", tc.chat, tc.era, a.Era, got, tc.wantEra, tc.want)
		}
	}
	// Every era × chat kind in one request, in timeline order.
	var all struct{ Results []answer }
	s.do("", "POST", "/api/v1/preview/all", map[string]string{"text": sampleText}, http.StatusOK, &all)
	eras := bot.DefaultPolicy().Eras()
	if len(all.Results) != 2*len(eras) {
		t.Fatalf("preview/all: %d results, want %d", len(all.Results), 2*len(eras))
	}
	for i, r := range all.Results {
		kind := []string{"direct", "group"}[i%2]
		if r.Era != eras[i/2].ID || r.Chat != kind || len(r.Links) != 3 {
			t.Errorf("preview/all result %d: %s/%s with %d links, want %s/%s with 3", i, r.Era, r.Chat, len(r.Links), eras[i/2].ID, kind)
		}
	}
	if got := outcomes(&chat.Message{Links: all.Results[2].Links}); got["taobao"] != bot.Hyperlink { // direct-open, one-to-one
		t.Errorf("preview/all direct-open/direct: %v", got)
	}
	s.do("", "POST", "/api/v1/preview", map[string]string{"text": sampleText, "chat": "channel"}, http.StatusBadRequest, nil)
	s.do("", "POST", "/api/v1/preview", map[string]string{"text": sampleText, "era": "bronze-age"}, http.StatusNotFound, nil)

	// Past its burst, one address is refused until the limiter refills.
	limited := 0
	for i := 0; i < 100; i++ {
		resp, err := http.Post(s.url("/api/v1/preview"), "application/json", strings.NewReader(`{"text":"https://m.tb.cn/h.UXpq2Xr"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests {
			limited++
		} else if resp.StatusCode != http.StatusOK {
			t.Fatalf("preview %d: status %d", i, resp.StatusCode)
		}
	}
	if limited == 0 || limited > 100-50 {
		t.Errorf("%d of 100 rapid previews refused, want some, after a burst of about 60 (less the 8 above)", limited)
	}
}

// TestConnectionsPerUserBounded: one user's connections stop at
// server.MaxConnsPerUser, the next is closed with CloseTooManyConnections,
// other users are unaffected, and a slot freed by a closed connection can
// be taken again.
func TestConnectionsPerUserBounded(t *testing.T) {
	s := newTestServer(t, t.TempDir())
	alice, bob := s.newUser("alice"), s.newUser("bob")
	conns := make([]*wsClient, server.MaxConnsPerUser)
	for i := range conns {
		conns[i] = alice.connect()
	}
	over, _, err := alice.dial(nil)
	if err != nil {
		t.Fatal(err)
	}
	over.start()
	if code := over.closeCode(); code != server.CloseTooManyConnections {
		t.Fatalf("connection %d closed with %d, want %d", server.MaxConnsPerUser+1, code, server.CloseTooManyConnections)
	}
	bob.connect()
	conns[0].ws.Close()
	// The server notices the close when its reader does: retry until then.
	deadline := time.Now().Add(waitFor)
	for {
		c, _, err := alice.dial(nil)
		if err != nil {
			t.Fatal(err)
		}
		c.start()
		select {
		case f := <-c.frames:
			if f.Type != "hello" {
				t.Fatalf("after closing one connection: %+v", f)
			}
			return
		case <-c.done:
		}
		if code := c.closeCode(); code != server.CloseTooManyConnections || time.Now().After(deadline) {
			t.Fatalf("after closing one connection: closed with %d", code)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRoomQuotaUnderConcurrentCreation: many people adding the same person
// to new groups at once cannot put them past the room limit.
func TestRoomQuotaUnderConcurrentCreation(t *testing.T) {
	const limit = 3
	s := startTestServer(t, t.TempDir(), serverOpts{limits: server.Limits{
		SendRate: 5000, SendBurst: 5000, SessionBurst: 1000, MaxRoomsPerUser: limit,
	}})
	bob := s.newUser("bob")
	var crowd []*member
	for i := range 24 {
		crowd = append(crowd, s.newUser(fmt.Sprint("u", i)))
	}
	var wg sync.WaitGroup
	var created atomic.Int32
	for _, m := range crowd {
		wg.Go(func() {
			body, _ := json.Marshal(map[string]any{"kind": "group", "name": "g", "members": []string{bob.ID}})
			req, _ := http.NewRequest(http.MethodPost, s.url("/api/v1/rooms"), bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+m.token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode == http.StatusCreated {
				created.Add(1)
			}
		})
	}
	wg.Wait()
	var rooms struct{ Rooms []chat.Room }
	bob.do("GET", "/api/v1/rooms", nil, http.StatusOK, &rooms)
	if len(rooms.Rooms) != limit || created.Load() != limit {
		t.Fatalf("%d creations succeeded and Bob is in %d rooms, want %d of each", created.Load(), len(rooms.Rooms), limit)
	}
}
