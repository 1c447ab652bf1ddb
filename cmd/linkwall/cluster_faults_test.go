package main

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	goredis "github.com/redis/go-redis/v9"

	"github.com/linkwall/linkwall/internal/chat"
	"github.com/linkwall/linkwall/internal/redis/redistest"
	"github.com/linkwall/linkwall/internal/server"
)

// A send whose store call timed out on a stalled Redis is stored all the
// same once Redis wakes, but was never published. The client resends it,
// as the protocol says; the other members must get it then, not only
// when a later message in the room shows them a gap.
func TestResendReachesMembersAfterATimeout(t *testing.T) {
	srv := redistest.Start(t) // its own server: the stall must not touch others' tests
	node := startClusterNode(t, srv.URL)
	base := "http://" + node.Addr()
	alice, bob := newClusterUser(t, base, "alice"), newClusterUser(t, base, "bob")
	room := clusterGroup(t, base, alice, bob)
	wa, wb := dialCluster(t, node.Addr(), alice), dialCluster(t, node.Addr(), bob)
	wb.write(t, map[string]any{"type": "resume", "room": room.ID, "after": 0})
	wa.sendWait(t, room.ID, "one", "c-1")
	wb.messageWait(t, "seq 1", func(m *chat.Message) bool { return m.Seq == 1 })

	// A script that keeps Redis busy for longer than the store's read timeout (1 s).
	opts, err := goredis.ParseURL(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	opts.ReadTimeout = 5 * time.Second
	busy := goredis.NewClient(opts)
	defer busy.Close()
	stalled := make(chan error, 1)
	go func() {
		stalled <- busy.Eval(context.Background(), `
local s = redis.call('TIME'); local t0 = s[1]*1000000 + s[2]
while true do local n = redis.call('TIME'); if n[1]*1000000 + n[2] - t0 > 1500000 then break end end
return 1`, nil).Err()
	}()
	time.Sleep(100 * time.Millisecond) // the script has begun

	wa.write(t, map[string]any{"type": "send", "room": room.ID, "text": "two", "client_msg_id": "c-2"})
	f := wa.until(t, "the answer to c-2", func(f clusterFrame) bool {
		return (f.Type == "error" && f.Ref == "c-2") || (f.Type == "message" && f.ClientMsgID == "c-2")
	})
	if f.Type != "error" || f.Code != "unavailable" {
		t.Fatalf("first try of c-2 during the stall: %s %s, want error unavailable", f.Type, f.Code)
	}
	if err := <-stalled; err != nil {
		t.Fatal(err)
	}
	var hist struct{ Messages []chat.Message }
	callAPI(t, base, bob.token, "GET", "/api/v1/rooms/"+room.ID+"/messages?after=0", nil, http.StatusOK, &hist)
	if len(hist.Messages) != 2 {
		t.Fatalf("history holds %d messages, want 2: the timed-out try must have been stored for this test", len(hist.Messages))
	}

	wa.sendWait(t, room.ID, "two", "c-2")
	wb.messageWait(t, "seq 2 after the resend", func(m *chat.Message) bool { return m.Seq == 2 && m.Text == "two" })

	// A third message: bob gets seq 3 next, not a second copy of seq 2.
	wa.sendWait(t, room.ID, "three", "c-3")
	f = wb.until(t, "the next message", func(f clusterFrame) bool { return f.Type == "message" })
	if f.Message == nil || f.Message.Seq != 3 {
		t.Fatalf("after seq 2 bob got %+v, want seq 3", f.Message)
	}
}

// Signing out on one node ends the user's sockets on every node.
func TestClusterSignOutEndsSocketsOnEveryNode(t *testing.T) {
	redisURL := clusterRedisURL(t)
	a, b := startClusterNode(t, redisURL), startClusterNode(t, redisURL)
	alice := newClusterUser(t, "http://"+a.Addr(), "alice")
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+b.Addr()+"/ws", http.Header{"Authorization": {"Bearer " + alice.token}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	_ = ws.SetReadDeadline(time.Now().Add(clusterWait))
	if _, data, err := ws.ReadMessage(); err != nil || !strings.Contains(string(data), `"type":"hello"`) {
		t.Fatalf("first frame on node b: %q, %v", data, err)
	}
	callAPI(t, "http://"+a.Addr(), alice.token, "DELETE", "/api/v1/session", nil, http.StatusNoContent, nil)
	for {
		_, data, err := ws.ReadMessage()
		if err == nil {
			continue // anything queued before the sign-out
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != server.CloseUnauthorized {
			t.Fatalf("node b's socket after signing out on node a: %q, %v; want close %d", data, err, server.CloseUnauthorized)
		}
		return
	}
}
