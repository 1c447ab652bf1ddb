package server

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"math/bits"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/linkwall/linkwall/bot"
	"github.com/linkwall/linkwall/internal/chat"
)

func TestTokensAreRandom(t *testing.T) {
	const n = 2000
	seen := make(map[string]bool, n)
	ones := 0
	for range n {
		tok, hash := newToken()
		raw, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil || len(raw) != tokenBytes || len(tok) != 43 {
			t.Fatalf("token %q: %d bytes, %v; want %d bytes in 43 characters", tok, len(raw), err, tokenBytes)
		}
		if sum := sha256.Sum256([]byte(tok)); string(hash) != string(sum[:]) {
			t.Fatal("the stored hash is not the token's SHA-256")
		}
		if seen[tok] {
			t.Fatalf("token %q repeated", tok)
		}
		seen[tok] = true
		for _, b := range raw {
			ones += bits.OnesCount8(b)
		}
	}
	// Half the bits are set, within 6 standard deviations (sqrt(n·256)/2 ≈ 358):
	// a constant, counting or low-entropy source fails this.
	total := n * tokenBytes * 8
	if d := ones - total/2; d > 6*358 || d < -6*358 {
		t.Fatalf("%d of %d bits set", ones, total)
	}
}

// hashStore records the keys of session lookups.
type hashStore struct {
	chat.Store
	keys [][]byte
}

func (s *hashStore) UserBySession(_ context.Context, hash []byte) (chat.User, error) {
	s.keys = append(s.keys, hash)
	return chat.User{}, chat.Errorf(chat.ENotFound, "no such session")
}

// TestSessionLookupByHash: the token itself is never compared or stored;
// the store looks up its SHA-256, so comparison timing reveals nothing
// about a valid token.
func TestSessionLookupByHash(t *testing.T) {
	st := &hashStore{}
	s := newTestServer(t, Limits{})
	s.store = st
	for _, tc := range []struct {
		header   string
		lookedUp bool
	}{
		{"Bearer abc", true},
		{"bearer abc", true}, // the scheme is case-insensitive (RFC 9110, 11.1)
		{"BEARER  abc", true},
		{"Bearer " + strings.Repeat("a", maxTokenLen+1), false}, // never hashed
		{"Bearerabc", false},
		{"Basic YWxhZGRpbjpvcGVu", false},
		{"", false},
	} {
		st.keys = nil
		r := httptest.NewRequest("GET", "/api/v1/me", nil)
		if tc.header != "" {
			r.Header.Set("Authorization", tc.header)
		}
		_, err := s.authenticate(r)
		if chat.ErrorCode(err) != chat.EUnauthorized {
			t.Errorf("%q: %v, want unauthorized", tc.header, err)
		}
		if got := len(st.keys) == 1; got != tc.lookedUp {
			t.Fatalf("%q: looked up %d times", tc.header, len(st.keys))
		}
		if tc.lookedUp {
			tok := strings.TrimSpace(tc.header[len("Bearer "):])
			if sum := sha256.Sum256([]byte(tok)); string(st.keys[0]) != string(sum[:]) {
				t.Errorf("%q: looked up %x, want the token's SHA-256", tc.header, st.keys[0])
			}
		}
	}
}

// TestUnauthenticatedSocketsBounded: past maxUnauthenticated sockets
// waiting for their auth frame, /ws refuses before upgrading, and the
// refusal does not leak a slot.
func TestUnauthenticatedSocketsBounded(t *testing.T) {
	s := newTestServer(t, Limits{})
	s.authPending.Store(maxUnauthenticated)
	w := httptest.NewRecorder()
	r := httptest.NewRequest("GET", "/ws", nil)
	r.Header.Set("Connection", "Upgrade")
	r.Header.Set("Upgrade", "websocket")
	s.Handler().ServeHTTP(w, r)
	if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), `"unavailable"`) {
		t.Fatalf("status %d %s, want 503 unavailable", w.Code, w.Body)
	}
	if n := s.authPending.Load(); n != maxUnauthenticated {
		t.Fatalf("pending = %d after a refusal, want %d", n, maxUnauthenticated)
	}
}

// TestSignOutNotCached: DELETE /api/v1/session answers 204 with
// Cache-Control: no-store like every API response (docs/protocol.md); its
// answer, which clears the cookie, was the one without it.
func TestSignOutNotCached(t *testing.T) {
	s, err := New(Config{Store: longRoomStore{user: chat.User{ID: "u"}}, Bot: bot.New(nil, nil)})
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodDelete, "/api/v1/session", nil)
	r.Header.Set("Authorization", "Bearer t")
	s.Handler().ServeHTTP(w, r)
	if w.Code != http.StatusNoContent || w.Header().Get("Cache-Control") != "no-store" {
		t.Fatalf("status %d, Cache-Control %q; want 204 and no-store", w.Code, w.Header().Get("Cache-Control"))
	}
}

// The page gets the readable signed-in cookie whenever the browser has a
// session cookie without it (a session from before the page read it), so
// that it looks the session up instead of asking for a name again.
func TestPageMarksSessionCookie(t *testing.T) {
	s := newTestServer(t, Limits{})
	for _, tc := range []struct {
		cookies string
		want    bool
	}{
		{"", false},
		{"linkwall_session=abc", true},
		{"linkwall_session=abc; linkwall_signed_in=1", false},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		if tc.cookies != "" {
			r.Header.Set("Cookie", tc.cookies)
		}
		w := httptest.NewRecorder()
		s.Handler().ServeHTTP(w, r)
		got := false
		for _, c := range w.Result().Cookies() {
			got = got || (c.Name == signedInCookie && c.Value == "1" && !c.HttpOnly)
		}
		if got != tc.want || w.Code != http.StatusOK {
			t.Errorf("GET / with cookies %q: %d, sets %s: %v, want %v", tc.cookies, w.Code, signedInCookie, got, tc.want)
		}
	}
}
