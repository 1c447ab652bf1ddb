package main

// Hardening tests (issue #7) against the real server on 127.0.0.1:0 with
// real WebSocket clients: authentication by frame, idle sockets, protocol
// abuse next to a bystander conversation, membership on every endpoint,
// and the limits table of docs/security.md.

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/linkwall/linkwall/bot"
	"github.com/linkwall/linkwall/internal/chat"
	"github.com/linkwall/linkwall/internal/server"
)

// dialQuery dials /ws with a query string ("" or "?auth=frame") and header,
// and starts reading.
func (s *testServer) dialQuery(query string, header http.Header) (*wsClient, *http.Response, error) {
	d := websocket.Dialer{HandshakeTimeout: waitFor}
	ws, resp, err := d.Dial("ws://"+s.m.Addr()+"/ws"+query, header)
	if err != nil {
		return nil, resp, err
	}
	c := &wsClient{t: s.t, ws: ws, frames: make(chan frame, 100_000), done: make(chan struct{})}
	s.t.Cleanup(func() { ws.Close() })
	c.start()
	return c, resp, nil
}

// closeError waits for the connection to end and returns its close frame.
func (c *wsClient) closeError() *websocket.CloseError {
	c.t.Helper()
	select {
	case <-c.done:
	case <-time.After(waitFor):
		c.t.Fatal("connection not closed in time")
	}
	var ce *websocket.CloseError
	if !errors.As(c.err, &ce) {
		c.t.Fatalf("connection ended without a close frame: %v", c.err)
	}
	return ce
}

func (c *wsClient) hello(want *member) {
	c.t.Helper()
	if f := c.next(); f.Type != "hello" || f.User == nil || f.User.ID != want.ID {
		c.t.Fatalf("first frame %+v, want the hello of %s", f, want.Name)
	}
}

func TestWSAuthByFrame(t *testing.T) {
	// Long enough that a loaded CI machine reads a bad first frame well
	// before it: "at once" is told apart by the close reason, not by time.
	const wait = 2 * time.Second
	s := startTestServer(t, t.TempDir(), serverOpts{limits: server.Limits{AuthWait: wait}})
	alice, bob := s.newUser("alice"), s.newUser("bob")
	room := alice.direct(bob, http.StatusCreated)
	auth := func(tok string) map[string]string { return map[string]string{"type": "auth", "token": tok} }
	dial := func(t *testing.T, query string, header http.Header) *wsClient {
		t.Helper()
		c, resp, err := s.dialQuery(query, header)
		if err != nil {
			t.Fatalf("upgrade refused: %v %v", resp, err)
		}
		c.t = t
		return c
	}

	t.Run("no credentials, then an auth frame", func(t *testing.T) {
		c := dial(t, "", nil)
		c.write(auth(alice.token))
		c.hello(alice)
		c.sendAck(room.ID, "signed in by frame", "f1")
		c.ws.Close()
	})
	t.Run("auth=frame wins over the header", func(t *testing.T) {
		// A page tab with its own identity: the browser sends the cookie of
		// another tab's session, the frame says who this tab is.
		c := dial(t, "?auth=frame", http.Header{"Cookie": {"linkwall_session=" + alice.token}})
		c.write(auth(bob.token))
		c.hello(bob)
		c.ws.Close()
	})
	t.Run("cookie at the upgrade, as before", func(t *testing.T) {
		c := dial(t, "", http.Header{"Cookie": {"linkwall_session=" + alice.token}})
		c.hello(alice)
		c.ws.Close()
	})
	t.Run("never authenticated: 4001 after the deadline", func(t *testing.T) {
		start := time.Now()
		c := dial(t, "", nil)
		ce := c.closeError()
		if ce.Code != server.CloseUnauthorized || ce.Text == "" || time.Since(start) < wait {
			t.Fatalf("closed with %d %q after %v, want %d with a reason after %v", ce.Code, ce.Text, time.Since(start), server.CloseUnauthorized, wait)
		}
		if len(c.frames) != 0 {
			t.Fatalf("an unauthenticated socket got %+v", <-c.frames)
		}
	})
	for name, first := range map[string]any{
		"wrong token":          auth("not-a-token"),
		"token too long":       auth(strings.Repeat("t", 200)),
		"first frame a send":   map[string]string{"type": "send", "room": room.ID, "text": "hi"},
		"malformed auth frame": map[string]any{"type": "auth", "token": 7},
	} {
		t.Run(name+": 4001 at once", func(t *testing.T) {
			c := dial(t, "?auth=frame", nil)
			c.write(first)
			if ce := c.closeError(); ce.Code != server.CloseUnauthorized || ce.Text == "" || ce.Text == "no auth frame in time" {
				t.Fatalf("closed with %d %q, want %d for the frame, not the deadline", ce.Code, ce.Text, server.CloseUnauthorized)
			}
		})
	}
	t.Run("auth frame over its read limit: 1009", func(t *testing.T) {
		c := dial(t, "?auth=frame", nil)
		_ = c.ws.WriteJSON(auth(strings.Repeat("t", 4096))) // the server may close mid-write
		if code := c.closeError().Code; code != websocket.CloseMessageTooBig {
			t.Fatalf("closed with %d", code)
		}
	})
	t.Run("a second auth frame is an error, not a switch", func(t *testing.T) {
		c := dial(t, "?auth=frame", nil)
		c.write(auth(alice.token))
		c.hello(alice)
		c.write(auth(bob.token))
		if f := c.errorFrame("auth"); f.Code != chat.EInvalid {
			t.Fatalf("second auth: %+v", f)
		}
		c.sendAck(room.ID, "still alice", "f2")
		c.ws.Close()
	})
	t.Run("a bad token in the header is still 401 before the upgrade", func(t *testing.T) {
		_, resp, err := s.dialQuery("", http.Header{"Authorization": {"Bearer not-a-token"}})
		if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("upgrade with a bad token: %v %v", resp, err)
		}
	})
	t.Run("foreign origin without credentials: 403 before the upgrade", func(t *testing.T) {
		_, resp, err := s.dialQuery("?auth=frame", http.Header{"Origin": {"https://evil.example"}})
		if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Fatalf("foreign origin: %v %v", resp, err)
		}
	})
	// Every socket is gone from the server, refused or closed.
	deadline := time.Now().Add(waitFor)
	for s.metric("linkwall_connections") != "0" {
		if time.Now().After(deadline) {
			t.Fatalf("connections = %s after every client ended", s.metric("linkwall_connections"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestSilentConnectionClosed(t *testing.T) {
	const wait = time.Second
	s := startTestServer(t, t.TempDir(), serverOpts{limits: server.Limits{PongWait: wait, SendRate: 5000, SendBurst: 5000}})
	alice, carol, dave := s.newUser("alice"), s.newUser("carol"), s.newUser("dave")
	room := carol.direct(dave, http.StatusCreated)
	// Alice's client never reads, so it never answers the server's pings,
	// and never sends anything.
	start := time.Now()
	silent, _, err := alice.dial(nil)
	if err != nil {
		t.Fatal(err)
	}
	c, d := carol.connect(), dave.connect()
	// Carol and dave read (and so pong) and keep talking meanwhile.
	for i := 0; s.metric("linkwall_connections") != "2"; i++ {
		if time.Since(start) > waitFor {
			t.Fatalf("the silent connection was not closed: connections = %s", s.metric("linkwall_connections"))
		}
		id := fmt.Sprint("tick", i)
		ack := c.sendAck(room.ID, id, id)
		if m := d.message(room.ID, nil).Msg; m.ID != ack.ID {
			t.Fatalf("dave got %q, want %q", m.Text, id)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if since := time.Since(start); since < wait {
		t.Fatalf("closed after %v, before the %v deadline", since, wait)
	}
	silent.ws.SetPingHandler(func(string) error { return nil }) // the socket is closed: no pongs
	silent.start()
	if code := silent.closeCode(); code != server.CloseIdle {
		t.Fatalf("silent connection closed with %d, want %d", code, server.CloseIdle)
	}
}

// linkText returns n distinct links separated by spaces.
func linkText(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "http://s%d.cn ", i)
	}
	return b.String()
}

func TestAbuseSparesBystanders(t *testing.T) {
	s := startTestServer(t, t.TempDir(), serverOpts{limits: server.Limits{SendRate: 200, SendBurst: 200, RateStrikes: 20}})
	mallory, carol, dave := s.newUser("mallory"), s.newUser("carol"), s.newUser("dave")
	theirs := carol.group("theirs", "en", dave)
	own := mallory.direct(carol, http.StatusCreated)
	m, c, d := mallory.connect(), carol.connect(), dave.connect()

	// After every abuse step carol and dave still talk, and the next message
	// dave gets in their room is carol's: nothing of mallory's got in.
	n := 0
	bystanders := func(step string) {
		t.Helper()
		n++
		id := fmt.Sprint("by", n)
		ack := c.sendAck(theirs.ID, "still fine "+id, id)
		if got := d.message(theirs.ID, nil).Msg; got.ID != ack.ID {
			t.Fatalf("after %s: dave got %q from %s, want carol's %q", step, got.Text, got.Sender.Name, ack.Text)
		}
	}
	raw := func(w *wsClient, data string) {
		t.Helper()
		if err := w.ws.WriteMessage(websocket.TextMessage, []byte(data)); err != nil {
			t.Fatal(err)
		}
	}
	send := func(room, text, id string) string {
		b, _ := json.Marshal(map[string]string{"type": "send", "room": room, "text": text, "client_msg_id": id})
		return string(b)
	}
	const unknown = "6f1f3c39-1d6e-4d8f-9d0c-3c0b8c1f0000"
	for _, tc := range []struct{ name, frame, code, ref string }{
		{"text is a number", `{"type":"send","room":"` + own.ID + `","text":5,"client_msg_id":"w1"}`, chat.EInvalid, "w1"},
		{"room is a list", `{"type":"send","room":["` + own.ID + `"],"text":"x"}`, chat.EInvalid, "send"},
		{"after is a string", `{"type":"resume","room":"` + own.ID + `","after":"7"}`, chat.EInvalid, "resume"},
		{"client_msg_id is an object", `{"type":"send","room":"` + own.ID + `","text":"x","client_msg_id":{}}`, chat.EInvalid, "send"},
		{"type is null", `{"type":null}`, chat.EInvalid, ""},
		{"after is negative", `{"type":"resume","room":"` + own.ID + `","after":-1}`, chat.EInvalid, "resume"},
		{"room missing", `{"type":"send","text":"x","client_msg_id":"w2"}`, chat.EInvalid, "w2"},
		{"client_msg_id too long", send(own.ID, "x", strings.Repeat("i", 65)), chat.EInvalid, "send"},
		{"control character", send(own.ID, "ring \u0007", "w3"), chat.EInvalid, "w3"},
		{"huge text", send(own.ID, strings.Repeat("长", 4001), "w4"), chat.ETooLarge, "w4"},
		{"unknown room", send(unknown, "hello?", "w5"), chat.ENotFound, "w5"},
		{"room id too long", send(strings.Repeat("r", 100), "hello?", "w6"), chat.ENotFound, "w6"},
		{"others' room", send(theirs.ID, "let me in", "w7"), chat.EForbidden, "w7"},
		{"others' room: /era", send(theirs.ID, "/era walled", "w8"), chat.EForbidden, "w8"},
		{"others' room: resume", `{"type":"resume","room":"` + theirs.ID + `","after":0}`, chat.EForbidden, "resume"},
		{"auth after authenticating", `{"type":"auth","token":"x"}`, chat.EInvalid, "auth"},
		{"unknown type", `{"type":"subscribe","room":"` + theirs.ID + `"}`, chat.EInvalid, "subscribe"},
	} {
		raw(m, tc.frame)
		f := m.until(tc.name, func(f frame) bool { return f.Type == "error" })
		if f.Code != tc.code || f.Ref != tc.ref {
			t.Errorf("%s: error %s ref %q, want %s ref %q", tc.name, f.Code, f.Ref, tc.code, tc.ref)
		}
		bystanders(tc.name)
	}

	// As many links as 4000 characters hold: the first bot.MaxLinks are
	// decided, the message says it was cut.
	ack := m.sendAck(own.ID, linkText(250), "links")
	if len(ack.Links) != bot.MaxLinks || !ack.Truncated {
		t.Fatalf("250 links: %d decided, truncated %v", len(ack.Links), ack.Truncated)
	}
	bystanders("250 links")

	// 101 objects in one frame: the first 100 run, then one error.
	raw(m, strings.Repeat(`{"type":"ping"}`+"\n", 101))
	for i := range 100 {
		if f := m.next(); f.Type != "pong" {
			t.Fatalf("object %d: %+v, want pong", i, f)
		}
	}
	if f := m.next(); f.Type != "error" || f.Code != chat.EInvalid {
		t.Fatalf("101st object: %+v", f)
	}
	bystanders("101 objects")

	// A binary message ends that connection with 1003.
	bin := mallory.connect()
	if err := bin.ws.WriteMessage(websocket.BinaryMessage, []byte{0, 1, 2}); err != nil {
		t.Fatal(err)
	}
	if code := bin.closeCode(); code != websocket.CloseUnsupportedData {
		t.Fatalf("binary message closed with %d", code)
	}
	bystanders("binary message")

	// A message past the read limit ends that connection with 1009.
	big := mallory.connect()
	_ = big.ws.WriteMessage(websocket.TextMessage, []byte(send(own.ID, strings.Repeat("x", server.DefaultMaxFrameBytes), "big")))
	if code := big.closeCode(); code != websocket.CloseMessageTooBig {
		t.Fatalf("big message closed with %d", code)
	}
	bystanders("message over the read limit")

	// A flood past the rate limit: rate_limited errors, then 4029.
	var flood strings.Builder
	for i := range 100 {
		flood.WriteString(send(own.ID, "flood", fmt.Sprint("f", i)) + "\n")
	}
	for range 10 {
		if m.ws.WriteMessage(websocket.TextMessage, []byte(flood.String())) != nil {
			break // closed mid-flood
		}
	}
	if code := m.closeCode(); code != server.CloseRateLimited {
		t.Fatalf("flood closed with %d, want %d", code, server.CloseRateLimited)
	}
	limited := 0
	for len(m.frames) > 0 {
		if f := <-m.frames; f.Type == "error" && f.Code == chat.ERateLimited {
			limited++
		}
	}
	// The bucket refills while the flood is stored, so a send may pass
	// between strikes and restart the count: at least RateStrikes errors.
	if limited < 20 {
		t.Errorf("%d rate_limited errors before the close, want at least RateStrikes = 20", limited)
	}
	bystanders("flood")

	// Their room is as they left it: carol's messages only, the era unchanged.
	var r struct{ Room chat.Room }
	carol.do("GET", "/api/v1/rooms/"+theirs.ID, nil, http.StatusOK, &r)
	if r.Room.Era != theirs.Era {
		t.Errorf("their era changed to %s", r.Room.Era)
	}
	for _, msg := range carol.history(theirs.ID, 0) {
		if msg.Sender.ID != carol.ID {
			t.Errorf("their room holds %q from %s", msg.Text, msg.Sender.Name)
		}
	}
	if resp, err := http.Get(s.url("/readyz")); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("server after the abuse: %v %v", resp, err)
	}
}

func TestTenThousandLinks(t *testing.T) {
	text := linkText(10_000)
	// The default limits refuse such a message long before the bot sees it;
	// raised limits show the bot itself stays bounded.
	s := startTestServer(t, t.TempDir(), serverOpts{limits: server.Limits{MaxTextRunes: len(text), MaxFrameBytes: 1 << 20}})
	alice, bob := s.newUser("alice"), s.newUser("bob")
	room := alice.group("links", "en", bob)
	a, b := alice.connect(), bob.connect()
	start := time.Now()
	ack := a.sendAck(room.ID, text, "many")
	t.Logf("10,000 links acknowledged in %v", time.Since(start))
	got := b.message(room.ID, func(m *chat.Message) bool { return m.ID == ack.ID }).Msg
	stored := bob.history(room.ID, 0)[0]
	for who, m := range map[string]*chat.Message{"ack": ack, "bob": got, "history": &stored} {
		if len(m.Links) != bot.MaxLinks || !m.Truncated || m.Text != text {
			t.Errorf("%s: %d links, truncated %v, text intact %v", who, len(m.Links), m.Truncated, m.Text == text)
		}
	}
}

// TestNonMemberRefusedEverywhere walks every endpoint docs/protocol.md marks
// "member" (a new one fails this test until it is added here) and the
// WebSocket frames that touch a room: a non-member is refused, an unknown
// room is 404, and nothing changes for the members.
func TestNonMemberRefusedEverywhere(t *testing.T) {
	bodies := map[string]any{
		"GET /api/v1/rooms/{id}":              nil,
		"GET /api/v1/rooms/{id}/messages":     nil,
		"PUT /api/v1/rooms/{id}/era":          map[string]string{"era": "walled"},
		"PUT /api/v1/rooms/{id}/lang":         map[string]string{"lang": "zh"},
		"GET /api/v1/rooms/{id}/stats":        nil,
		"POST /api/v1/rooms/{id}/walkthrough": nil,
	}
	documented := memberEndpoints(t)
	if len(documented) == 0 {
		t.Fatal("docs/protocol.md lists no member endpoints")
	}
	for _, ep := range documented {
		if _, ok := bodies[ep]; !ok {
			t.Errorf("docs/protocol.md: %s is for members but has no case here", ep)
		}
	}

	s := newTestServer(t, t.TempDir())
	alice, bob, carol := s.newUser("alice"), s.newUser("bob"), s.newUser("carol")
	group := alice.group("private", "en", bob)
	direct := alice.direct(bob, http.StatusCreated)
	alice.connect().sendAck(group.ID, "secret", "s")
	b := bob.connect()
	b.write(map[string]any{"type": "resume", "room": group.ID, "after": 1})
	b.write(map[string]any{"type": "resume", "room": direct.ID, "after": 0})
	const unknown = "6f1f3c39-1d6e-4d8f-9d0c-3c0b8c1f0000"
	for _, ep := range documented {
		method, path, _ := strings.Cut(ep, " ")
		for _, room := range []string{group.ID, direct.ID} {
			carol.do(method, strings.Replace(path, "{id}", room, 1), bodies[ep], http.StatusForbidden, nil)
		}
		carol.do(method, strings.Replace(path, "{id}", unknown, 1), bodies[ep], http.StatusNotFound, nil)
		s.do("", method, strings.Replace(path, "{id}", group.ID, 1), bodies[ep], http.StatusUnauthorized, nil)
	}

	c := carol.connect()
	for i, text := range []string{"hi", "/era walled", "/lang zh", "/walkthrough", "/stats", "/why"} {
		id := fmt.Sprint("c", i)
		c.send(group.ID, text, id)
		if f := c.errorFrame(id); f.Code != chat.EForbidden {
			t.Errorf("carol's %q: %+v", text, f)
		}
	}
	c.write(map[string]any{"type": "resume", "room": group.ID, "after": 0})
	if f := c.errorFrame("resume"); f.Code != chat.EForbidden {
		t.Errorf("carol's resume: %+v", f)
	}

	// Bob, a member, sees none of it: the next thing in his rooms is alice's marker.
	alice.connect().sendAck(group.ID, "marker", "m")
	f := b.until("the marker", func(f frame) bool { return f.Type != "message" || f.Msg.Text == "marker" })
	if f.Type != "message" {
		t.Fatalf("bob got %+v before the marker", f)
	}
	var r struct{ Room chat.Room }
	alice.do("GET", "/api/v1/rooms/"+group.ID, nil, http.StatusOK, &r)
	if r.Room.Era != group.Era || r.Room.Lang != group.Lang {
		t.Errorf("room changed by a non-member: %+v", r.Room)
	}
	if h := alice.history(group.ID, 0); len(h) != 2 {
		t.Errorf("history has %d messages, want alice's 2", len(h))
	}
}

// memberEndpoints returns "METHOD /path" of every row of docs/protocol.md's
// REST table whose auth column is "member".
func memberEndpoints(t *testing.T) []string {
	t.Helper()
	f, err := os.Open("../../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	row := regexp.MustCompile("^\\| `([A-Z]+) (/api/v1/[^`? ]+)[^`]*` \\| member \\|")
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := row.FindStringSubmatch(sc.Text()); m != nil {
			out = append(out, m[1]+" "+m[2])
		}
	}
	return out
}

// TestShutdownEndsUnauthenticatedSockets: a socket still waiting for its
// auth frame does not hold a graceful shutdown for authWait.
func TestShutdownEndsUnauthenticatedSockets(t *testing.T) {
	s := newTestServer(t, t.TempDir()) // the default 10 s authWait
	c, _, err := s.dialQuery("?auth=frame", nil)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // the server is reading the auth frame
	start := time.Now()
	if err := s.m.Close(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("shutdown took %v with an unauthenticated socket open", took)
	}
	if code := c.closeCode(); code != websocket.CloseGoingAway {
		t.Fatalf("unauthenticated socket closed with %d, want 1001", code)
	}
}

// Request headers are bounded: far past maxHeaderBytes the server answers
// 431 without reading further; well under it the request is served.
func TestHeaderSizeLimit(t *testing.T) {
	s := newTestServer(t, t.TempDir())
	for _, tc := range []struct {
		size int
		want int
	}{
		{maxHeaderBytes / 2, http.StatusOK},
		{maxHeaderBytes * 2, http.StatusRequestHeaderFieldsTooLarge},
	} {
		req, err := http.NewRequest("GET", s.url("/healthz"), nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Pad", strings.Repeat("a", tc.size))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("a %d-byte header: status %d, want %d", tc.size, resp.StatusCode, tc.want)
		}
	}
}
