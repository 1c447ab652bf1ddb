package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"github.com/linkwall/linkwall/bot"
	"github.com/linkwall/linkwall/internal/chat"
)

// nopStore satisfies chat.Store for tests that never reach the store;
// calling it panics, which fails the test.
type nopStore struct{ chat.Store }

func newTestServer(t testing.TB, limits Limits) *Server {
	t.Helper()
	s, err := New(Config{Store: nopStore{}, Bot: bot.New(nil, nil), Limits: limits})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// loopbackConn serves one WebSocket of user "u" on a loopback test server
// and returns the server's side (started, no hello) and the dialed client;
// both end with the test.
func loopbackConn(t testing.TB, s *Server) (*conn, *websocket.Conn) {
	t.Helper()
	return loopbackConnAs(t, s, chat.User{ID: "u"})
}

// loopbackConnAs is loopbackConn for user u.
func loopbackConnAs(t testing.TB, s *Server, u chat.User) (*conn, *websocket.Conn) {
	t.Helper()
	accepted := make(chan *conn, 1)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := s.upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		c := newConn(s, ws, u)
		c.start(nil, nil)
		accepted <- c // the first message starts its writer
	}))
	t.Cleanup(ts.Close)
	client, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(ts.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	return <-accepted, client
}

func ev(room string, seq int64) chat.Event {
	return chat.Event{Room: room, Seq: seq, Payload: []byte(fmt.Sprintf(`{"seq":%d}`, seq))}
}

// queued returns the seqs in c's queue, and empties it.
func queued(t *testing.T, c *conn) []int64 {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []int64
	for _, line := range c.queue {
		var v struct{ Seq int64 }
		if err := json.Unmarshal(line, &v); err != nil {
			t.Fatalf("queue holds %q: %v", c.queue, err)
		}
		out = append(out, v.Seq)
	}
	c.queue, c.queueBytes = nil, 0
	return out
}

func TestConnSequence(t *testing.T) {
	tests := []struct {
		name string
		in   []int64
		want []int64
	}{
		{"in order", []int64{1, 2, 3}, []int64{1, 2, 3}},
		{"duplicates skipped", []int64{1, 2, 2, 1, 3}, []int64{1, 2, 3}},
		{"overtaken before tracking: passed through once", []int64{5, 4, 6, 4}, []int64{5, 4, 6}},
		{"gap filled live, in order", []int64{1, 3, 4, 2, 5}, []int64{1, 2, 3, 4, 5}},
		{"room events always delivered", []int64{1, 0, 0, 2}, []int64{1, 0, 0, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestServer(t, Limits{})
			c := newConn(s, nil, chat.User{ID: "u"})
			c.start([]byte(`{"seq":-1}`), nil)
			for _, seq := range tt.in {
				c.deliver(ev("r", seq))
			}
			got := queued(t, c)[1:] // after the hello
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("delivered %v, want %v", got, tt.want)
			}
		})
	}
}

func TestConnHoldUntilResumeOrSend(t *testing.T) {
	s := newTestServer(t, Limits{})
	c := newConn(s, nil, chat.User{ID: "u"})
	// Events that arrive while the hello is prepared come after it.
	c.deliver(ev("a", 7))
	c.start([]byte(`{"seq":-1}`), []chat.Room{{ID: "a"}, {ID: "b"}})
	c.deliver(ev("a", 8))
	c.deliver(ev("b", 3))
	if got := queued(t, c); fmt.Sprint(got) != "[-1]" {
		t.Fatalf("held rooms delivered %v", got)
	}
	c.release("a") // the client sent to room a
	if got := queued(t, c); fmt.Sprint(got) != "[7 8]" {
		t.Fatalf("after release: %v", got)
	}
	c.resume("b", 1) // events wait until the store catch-up ran
	c.deliver(ev("b", 4))
	if got := queued(t, c); len(got) != 0 {
		t.Fatalf("resuming room delivered %v", got)
	}
}

func TestConnSlowConsumer(t *testing.T) {
	s := newTestServer(t, Limits{MaxQueueBytes: 100})
	c := newConn(s, nil, chat.User{ID: "u"})
	c.start(nil, nil)
	for seq := int64(1); seq <= 20; seq++ {
		c.deliver(ev("r", seq)) // never blocks
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closing || c.code != CloseSlowConsumer || c.queueBytes > 100 {
		t.Fatalf("closing=%v code=%d queue=%d bytes", c.closing, c.code, c.queueBytes)
	}
}

func TestWithClientMsgID(t *testing.T) {
	m := &chat.Message{ID: "m", Room: "r", Seq: 3, Text: "hi"}
	for _, id := range []string{"", "abc", `quo"te\`, "ünï</script>"} {
		got := withClientMsgID(encodeMessage(m), id)
		want := mustJSON(messageFrame{Type: typeMessage, Message: m, ClientMsgID: id})
		var a, b any
		if json.Unmarshal(got, &a) != nil || json.Unmarshal(want, &b) != nil || fmt.Sprint(a) != fmt.Sprint(b) {
			t.Errorf("id %q: got %s, want %s", id, got, want)
		}
	}
}

func TestCheckText(t *testing.T) {
	tests := []struct {
		text, code string
	}{
		{"hello", ""},
		{"多行\n文本\twith tab\r\n", ""},
		{"", chat.EInvalid},
		{" \n\t", chat.EInvalid},
		{"nul\x00", chat.EInvalid},
		{"esc\x1b[31m", chat.EInvalid},
		{"c1\u0085", chat.EInvalid},
		{"bad \xff utf8", chat.EInvalid},
		{strings.Repeat("汉", 20), ""},
		{strings.Repeat("汉", 21), chat.ETooLarge},
	}
	for _, tt := range tests {
		if got := chat.ErrorCode(checkText(tt.text, 20)); got != tt.code {
			t.Errorf("checkText(%q) = %q, want %q", tt.text, got, tt.code)
		}
	}
	if _, err := checkName("name", "a\u202eb", 32); chat.ErrorCode(err) != chat.EInvalid {
		t.Errorf("a bidi override in a name is accepted")
	}
	if n, err := checkName("name", "  阿丽  ", 32); err != nil || n != "阿丽" {
		t.Errorf("checkName trims: %q %v", n, err)
	}
}

func TestErrorMapping(t *testing.T) {
	tests := []struct {
		code   string
		status int
		close  int
	}{
		{chat.EInvalid, http.StatusBadRequest, websocket.ClosePolicyViolation},
		{chat.EUnauthorized, http.StatusUnauthorized, CloseUnauthorized},
		{chat.EForbidden, http.StatusForbidden, websocket.ClosePolicyViolation},
		{chat.ENotFound, http.StatusNotFound, websocket.ClosePolicyViolation},
		{chat.EConflict, http.StatusConflict, websocket.ClosePolicyViolation},
		{chat.ETooLarge, http.StatusRequestEntityTooLarge, websocket.CloseMessageTooBig},
		{chat.ERateLimited, http.StatusTooManyRequests, CloseRateLimited},
		{chat.EUnavailable, http.StatusServiceUnavailable, websocket.CloseTryAgainLater},
		{chat.EInternal, http.StatusInternalServerError, websocket.CloseInternalServerErr},
	}
	for _, tt := range tests {
		if got := httpStatus(tt.code); got != tt.status {
			t.Errorf("httpStatus(%s) = %d, want %d", tt.code, got, tt.status)
		}
		if got := closeCode(tt.code); got != tt.close {
			t.Errorf("closeCode(%s) = %d, want %d", tt.code, got, tt.close)
		}
	}
}

func TestChainOrder(t *testing.T) {
	var trace []string
	mw := func(name string) Middleware {
		return func(next Handler) Handler {
			return HandlerFunc(func(ctx context.Context, r *Request) error {
				trace = append(trace, name)
				return next.Handle(ctx, r)
			})
		}
	}
	h := Chain(HandlerFunc(func(context.Context, *Request) error {
		trace = append(trace, "end")
		return nil
	}), mw("a"), mw("b"))
	if err := h.Handle(context.Background(), &Request{}); err != nil || strings.Join(trace, ",") != "a,b,end" {
		t.Fatalf("trace %v, err %v", trace, err)
	}
}

func TestValidateStopsBadMessages(t *testing.T) {
	s := newTestServer(t, Limits{})
	reached := false
	h := s.validate(HandlerFunc(func(context.Context, *Request) error { reached = true; return nil }))
	for _, r := range []*Request{
		{RoomID: "", Text: "x"},
		{RoomID: "r", Text: ""},
		{RoomID: "r", Text: "x", ClientMsgID: strings.Repeat("i", maxClientMsgID+1)},
	} {
		if err := h.Handle(context.Background(), r); chat.ErrorCode(err) != chat.EInvalid || reached {
			t.Errorf("%+v: err %v, reached %v", r, err, reached)
		}
	}
}

// chatCodes are the codes of internal/chat: the only ones a client may see.
var chatCodes = map[string]bool{
	chat.EInvalid: true, chat.EUnauthorized: true, chat.EForbidden: true, chat.ENotFound: true,
	chat.EConflict: true, chat.ETooLarge: true, chat.ERateLimited: true, chat.EUnavailable: true,
	chat.EInternal: true,
}

// FuzzDecodeFrames feeds arbitrary inbound text frames through the
// decoding and the per-frame check the reader applies. Invariants: no
// panic; at most maxObjectsPerFrame objects; invalid UTF-8 yields nothing;
// a frame the check accepts has a known type and in-range fields; anything
// refused carries a chat code (invalid, the only one decoding uses) and an
// error frame that is valid JSON with a bounded ref and room.
func FuzzDecodeFrames(f *testing.F) {
	for _, seed := range []string{
		`{"type":"send","room":"r","text":"hi","client_msg_id":"1"}`,
		`{"type":"resume","room":"r","after":5}` + "\n" + `{"type":"ping"}`,
		`{"type":"send","room":5}`,
		`{"type":"resume","room":"r","after":"x"}`,
		`{"type":"resume","room":"r","after":-1}`,
		`{"type":"resume","room":"` + strings.Repeat("r", maxRoomID+1) + `","after":-1}`,
		`{"type":"auth","token":"abc"}`,
		`{"type":"send","room":"r","text":"x","client_msg_id":"` + strings.Repeat("i", maxClientMsgID+1) + `"}`,
		`{"type":"` + strings.Repeat("t", 40) + `"}`,
		`{"type":"send","room":"r","text":"\u0000\ud800"}`,
		`{"type":`,
		"\xff",
		`[1,2]`,
		`null`,
		strings.Repeat(`{"type":"ping"}`, maxObjectsPerFrame+1),
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		frames, err := decodeFrames(data)
		if len(frames) > maxObjectsPerFrame {
			t.Fatalf("%d objects, limit %d", len(frames), maxObjectsPerFrame)
		}
		if err != nil && chat.ErrorCode(err) != chat.EInvalid {
			t.Fatalf("error %v is not EInvalid", err)
		}
		if !bytes.Equal(bytes.ToValidUTF8(data, nil), data) && (err == nil || len(frames) > 0) {
			t.Fatal("invalid UTF-8 accepted")
		}
		for _, fr := range frames {
			if fr.bad != nil {
				if chat.ErrorCode(fr.bad) != chat.EInvalid {
					t.Fatalf("%+v: wrong type refused with %v", fr, fr.bad)
				}
				continue
			}
			// Every decoded object round-trips: nothing is lost or invented.
			again, err := decodeFrames(mustJSON(fr))
			if err != nil || len(again) != 1 || again[0] != fr {
				t.Fatalf("%+v does not round-trip: %+v %v", fr, again, err)
			}
			err = fr.check()
			if err != nil {
				if code := chat.ErrorCode(err); !chatCodes[code] || code == chat.EInternal {
					t.Fatalf("%+v refused with code %q", fr, code)
				}
				var ef errorFrame
				if json.Unmarshal(fr.errFrame(err), &ef) != nil || ef.Type != typeError || len(ef.Ref) > maxClientMsgID || !utf8.ValidString(ef.Ref) {
					t.Fatalf("%+v: bad error frame %+v", fr, ef)
				}
				// The room is echoed when it could be an ID, and only then.
				echo := (fr.Type == typeSend || fr.Type == typeResume) && len(fr.Room) <= maxRoomID && utf8.ValidString(fr.Room)
				if (echo && ef.Room != fr.Room) || (!echo && ef.Room != "") {
					t.Fatalf("%+v: error frame names room %q", fr, ef.Room)
				}
				continue
			}
			switch fr.Type {
			case typeSend:
				if fr.Room == "" || len(fr.ClientMsgID) > maxClientMsgID {
					t.Fatalf("accepted send %+v", fr)
				}
			case typeResume:
				if fr.Room == "" || fr.After < 0 {
					t.Fatalf("accepted resume %+v", fr)
				}
			case typePing:
			default:
				t.Fatalf("accepted frame of type %q", fr.Type)
			}
		}
	})
}

func TestConnHeldOverflowReadsStoreInstead(t *testing.T) {
	s := newTestServer(t, Limits{MaxQueueBytes: 100})
	c := newConn(s, nil, chat.User{ID: "u"})
	c.start(nil, []chat.Room{{ID: "r"}})
	for seq := int64(5); seq <= 30; seq++ {
		c.deliver(ev("r", seq))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.rooms["r"]
	_, queuedWork := c.work["r"]
	if c.closing || st.held || !st.resuming || st.last != 4 || len(st.pending) > 10 || !queuedWork || c.pendingBytes > 100 {
		t.Fatalf("closing=%v held=%v resuming=%v last=%d pending=%d work=%v bytes=%d",
			c.closing, st.held, st.resuming, st.last, len(st.pending), queuedWork, c.pendingBytes)
	}
}

func TestConnResumeAfterCloseIsHarmless(t *testing.T) {
	s := newTestServer(t, Limits{})
	c := newConn(s, nil, chat.User{ID: "u"})
	c.start(nil, nil)
	c.mu.Lock()
	c.closing, c.rooms = true, nil // as the writer leaves them
	c.mu.Unlock()
	c.resume("r", 0)
	c.release("r")
	if c.deliver(ev("r", 1)) {
		t.Fatal("a closed connection accepted an event")
	}
}

// TestConnStartAfterClose: a connection closed while its rooms were being
// read (logout, shutdown) has lost its room states with its writer; start
// must then do nothing rather than write to them.
func TestConnStartAfterClose(t *testing.T) {
	s := newTestServer(t, Limits{})
	accepted := make(chan *conn, 1)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := s.upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		accepted <- newConn(s, ws, chat.User{ID: "u"}) // not started
	}))
	defer ts.Close()
	client, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(ts.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	c := <-accepted
	c.deliver(ev("r", 1)) // waits in early
	c.closeWith(websocket.CloseGoingAway, "bye")
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := client.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseGoingAway) {
		t.Fatalf("client read %v, want close 1001", err)
	}
	for deadline := time.Now().Add(5 * time.Second); !c.ended(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the writer did not end")
		}
	}
	c.start([]byte(`{"type":"hello"}`), []chat.Room{{ID: "r"}, {ID: "s"}}) // panicked on the nil room map
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.starting || c.early != nil || len(c.queue) != 0 {
		t.Fatalf("starting=%v early=%d queue=%d after start on a closed connection", c.starting, len(c.early), len(c.queue))
	}
}

// TestHelloPassesQueueBound: a user in many large groups has a hello
// bigger than the send queue's bound; it is still sent, and the whole
// bound is left for the events after it.
func TestHelloPassesQueueBound(t *testing.T) {
	s := newTestServer(t, Limits{MaxQueueBytes: 100})
	c := newConn(s, nil, chat.User{ID: "u"})
	hello := []byte(`{"type":"hello","rooms":[` + strings.Repeat(`"0123456789",`, 20) + `"x"]}`)
	c.start(hello, nil)
	c.deliver(ev("r", 1))
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing || len(c.queue) != 2 || !bytes.Equal(c.queue[0], hello) {
		t.Fatalf("closing=%v queue=%d frames; want the hello and one event", c.closing, len(c.queue))
	}
}

// historyStore serves one room but fails to read its history.
type historyStore struct {
	nopStore
	room chat.Room
	err  error
}

func (h historyStore) Room(_ context.Context, id string) (chat.Room, error) {
	if id != h.room.ID {
		return chat.Room{}, chat.Errorf(chat.ENotFound, "no such room")
	}
	return h.room, nil
}

func (h historyStore) Messages(context.Context, string, int64, int) ([]chat.Message, error) {
	return nil, h.err
}

// TestResumeStoreFailure: when the history cannot be read, going on live
// would leave a gap, so the connection is closed for the client to resume
// later; a resume the client may not make gets an error frame instead.
func TestResumeStoreFailure(t *testing.T) {
	for _, tc := range []struct {
		name      string
		room      string
		closeCode int // 0: an error frame, the connection stays open
	}{
		{"store down", "r", websocket.CloseTryAgainLater},
		{"no such room", "gone", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := historyStore{
				room: chat.Room{ID: "r", Kind: chat.Group, Members: []string{"u"}, Era: "walled", Lang: "en"},
				err:  chat.Errorf(chat.EUnavailable, "store unavailable"),
			}
			s, err := New(Config{Store: st, Bot: bot.New(nil, nil)})
			if err != nil {
				t.Fatal(err)
			}
			c, client := loopbackConn(t, s)
			c.resume(tc.room, 0)
			_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, data, err := client.ReadMessage()
			if tc.closeCode != 0 {
				if !websocket.IsCloseError(err, tc.closeCode) {
					t.Fatalf("read %q, %v; want close %d", data, err, tc.closeCode)
				}
				return
			}
			if err != nil || !bytes.Contains(data, []byte(`"type":"error"`)) || !bytes.Contains(data, []byte(`"ref":"resume"`)) {
				t.Fatalf("read %q, %v; want an error frame for the resume", data, err)
			}
		})
	}
}

// An object with a field of the wrong type is refused alone, with its own
// ref; the objects after it in the same text frame still count. Malformed
// JSON ends the frame.
func TestDecodeFramesGoesOnAfterAWrongType(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // per object: type, or "bad:" and the error, then the frame's error
	}{
		{`{"type":"send","text":"one","client_msg_id":"x1"}{"type":"send","text":2,"client_msg_id":"x2"}{"type":"send","text":"three","client_msg_id":"x3"}`,
			"send | bad x2: malformed frame: text must be a string, not a number | send | <nil>"},
		{`{"type":"resume","room":"r","after":"7"}` + "\n" + `{"type":"ping"}`,
			"bad resume: malformed frame: after must be a whole number, not a string | ping | <nil>"},
		{`{"type":"resume","room":"r","after":1.5}`, "bad resume: malformed frame: after must be a whole number, not a number 1.5 | <nil>"},
		{`{"type":"resume","room":"r","after":99999999999999999999}`, "bad resume: malformed frame: after must be a whole number, not a number 99999999999999999999 | <nil>"},
		{`[1] {"type":"ping"}`, "bad : malformed frame: a JSON object expected, not an array | ping | <nil>"},
		{`{"type":"ping"} garbage {"type":"ping"}`, "ping | invalid: malformed frame: invalid character 'g' looking for beginning of value"},
	} {
		frames, err := decodeFrames([]byte(tc.in))
		var got []string
		for _, f := range frames {
			if f.bad != nil {
				got = append(got, "bad "+f.ref()+": "+chat.ErrorMessage(f.bad))
			} else {
				got = append(got, f.Type)
			}
		}
		if err != nil {
			got = append(got, chat.ErrorCode(err)+": "+chat.ErrorMessage(err))
		} else {
			got = append(got, "<nil>")
		}
		if g := strings.Join(got, " | "); g != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.in, g, tc.want)
		}
	}
}

// ctxBroker records whether the context of each publish was already done.
type ctxBroker struct{ done []bool }

func (b *ctxBroker) Publish(ctx context.Context, _ chat.Event) error {
	b.done = append(b.done, ctx.Err() != nil)
	return nil
}

// A change already stored is published even when the request or the
// connection that made it has gone: other nodes' members must hear of it.
func TestPublishOutlivesItsRequest(t *testing.T) {
	b := &ctxBroker{}
	s, err := New(Config{Store: nopStore{}, Bot: bot.New(nil, nil), Broker: b})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s.publishRoom(ctx, &chat.Room{ID: "r", Members: []string{"u"}})
	if len(b.done) != 1 || b.done[0] {
		t.Fatalf("publishes with a done context: %v, want one with a live context", b.done)
	}
}
