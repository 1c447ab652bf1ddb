package server

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/linkwall/linkwall/bot"
	"github.com/linkwall/linkwall/internal/chat"
)

// revocableStore has one session, which DeleteSession ends.
type revocableStore struct {
	nopStore
	user    chat.User
	mu      sync.Mutex
	revoked bool
}

func (s *revocableStore) UserBySession(context.Context, []byte) (chat.User, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.revoked {
		return chat.User{}, chat.Errorf(chat.ENotFound, "no such session")
	}
	return s.user, nil
}

func (s *revocableStore) DeleteSession(context.Context, []byte) error {
	s.mu.Lock()
	s.revoked = true
	s.mu.Unlock()
	return nil
}

func (s *revocableStore) Rooms(context.Context, string) ([]chat.Room, error) { return nil, nil }

// TestSignOutDuringUpgrade: a sign-out that lands between a socket's
// session check and its registration in the hub must still end it.
func TestSignOutDuringUpgrade(t *testing.T) {
	st := &revocableStore{user: chat.User{ID: "11111111-1111-1111-1111-111111111111", Name: "alice"}}
	s, err := New(Config{Store: st, Bot: bot.New(nil, nil)})
	if err != nil {
		t.Fatal(err)
	}
	// The upgrader's origin check runs after the session check and before
	// the hub knows the socket: hold the upgrade there until the sign-out.
	upgrading, signedOut := make(chan struct{}), make(chan struct{})
	s.upgrader.CheckOrigin = func(*http.Request) bool {
		close(upgrading)
		<-signedOut
		return true
	}
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	dialed := make(chan *websocket.Conn, 1)
	go func() {
		c, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(ts.URL, "http")+"/ws",
			http.Header{"Authorization": {"Bearer t"}})
		if err != nil {
			t.Error(err)
		}
		dialed <- c
	}()
	<-upgrading
	req, _ := http.NewRequest(http.MethodDelete, ts.URL+"/api/v1/session", nil)
	req.Header.Set("Authorization", "Bearer t")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("sign-out: status %d, want 204", resp.StatusCode)
	}
	close(signedOut)
	c := <-dialed
	if c == nil {
		return
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, data, err := c.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != CloseUnauthorized {
		t.Fatalf("socket upgraded during the sign-out: got %q, %v; want close %d", data, err, CloseUnauthorized)
	}
}
