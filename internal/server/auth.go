package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/linkwall/linkwall/internal/chat"
)

const (
	// sessionCookie carries the session token for the browser page.
	sessionCookie = "linkwall_session"
	// signedInCookie tells the page, whose scripts cannot read the HttpOnly
	// session cookie, that there is a session to look up: a first visit
	// goes to the join screen without a request that can only fail. It is
	// not a credential.
	signedInCookie = "linkwall_signed_in"
	// tokenBytes of crypto/rand make a token nobody can guess.
	tokenBytes = 32
	// maxTokenLen bounds what is hashed for a lookup.
	maxTokenLen = 128
)

// newToken returns a random session token and the hash the store keeps.
// Only the hash is stored, so a leaked database holds no usable token; the
// lookup by hash also keeps the comparison out of the request's timing.
func newToken() (string, []byte) {
	b := make([]byte, tokenBytes)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	tok := base64.RawURLEncoding.EncodeToString(b)
	return tok, hashToken(tok)
}

func hashToken(tok string) []byte {
	h := sha256.Sum256([]byte(tok))
	return h[:]
}

// requestToken returns the bearer token or the session cookie's value.
func requestToken(r *http.Request) string {
	if a := r.Header.Get("Authorization"); a != "" {
		if scheme, tok, ok := strings.Cut(a, " "); ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(tok)
		}
		return ""
	}
	if c, err := r.Cookie(sessionCookie); err == nil {
		return c.Value
	}
	return ""
}

// authenticate returns the user of the request's session, or EUnauthorized.
func (s *Server) authenticate(r *http.Request) (chat.User, error) {
	return s.userByToken(r.Context(), requestToken(r))
}

// userByToken returns the user of a session token, or EUnauthorized. The
// store is searched by the token's SHA-256, never by the token: no code
// compares secret bytes, so there is no early-exit comparison whose timing
// could reveal a prefix of a valid token, and a leaked database holds no
// usable token.
func (s *Server) userByToken(ctx context.Context, tok string) (chat.User, error) {
	if tok == "" || len(tok) > maxTokenLen {
		return chat.User{}, chat.Errorf(chat.EUnauthorized, "a session is required: POST /api/v1/session")
	}
	u, err := s.store.UserBySession(ctx, hashToken(tok))
	if err != nil {
		if chat.ErrorCode(err) == chat.ENotFound {
			err = chat.Errorf(chat.EUnauthorized, "unknown or expired session")
		}
		return chat.User{}, err
	}
	return u, nil
}

// authed wraps a handler that needs the caller's user.
func (s *Server) authed(h func(http.ResponseWriter, *http.Request, chat.User)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, err := s.authenticate(r)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		h(w, r, u)
	})
}

// sendBudget makes h draw one token from the user's send limiter, the one
// messages sent over WebSocket draw on; past it h is answered 429.
func (s *Server) sendBudget(h func(http.ResponseWriter, *http.Request, chat.User)) func(http.ResponseWriter, *http.Request, chat.User) {
	return func(w http.ResponseWriter, r *http.Request, u chat.User) {
		if !s.sendLimits.get(u.ID).Allow() {
			s.metrics.rateLimited.Inc()
			s.writeError(w, r, chat.Errorf(chat.ERateLimited, "more than %g requests and messages per second; slow down", float64(s.limits.SendRate)))
			return
		}
		h(w, r, u)
	}
}

type sessionRequest struct {
	Name string `json:"name"`
}

type sessionResponse struct {
	Token string    `json:"token"`
	User  chat.User `json:"user"`
}

func (s *Server) createSession(w http.ResponseWriter, r *http.Request) {
	if !s.sessionLimits.get(s.clientIP(r)).Allow() {
		s.writeError(w, r, chat.Errorf(chat.ERateLimited, "too many new sessions from your address; try again later"))
		return
	}
	var req sessionRequest
	if err := decodeBody(r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	name, err := checkName("name", req.Name, s.limits.MaxNameRunes)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	u := chat.User{ID: uuid.NewString(), Name: name, CreatedAt: time.Now().UTC().Truncate(time.Millisecond)}
	tok, hash := newToken()
	if err := s.store.CreateUser(r.Context(), u, hash); err != nil {
		s.writeError(w, r, err)
		return
	}
	setSessionCookies(w, r, tok)
	writeJSON(w, http.StatusCreated, sessionResponse{Token: tok, User: u})
}

// setSessionCookies sets the session cookie to tok and signedInCookie
// beside it, or clears both when tok is "".
func setSessionCookies(w http.ResponseWriter, r *http.Request, tok string) {
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: tok, Path: "/", MaxAge: clearIfEmpty(tok),
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: r.TLS != nil,
	})
	setSignedInCookie(w, r, tok != "")
}

func setSignedInCookie(w http.ResponseWriter, r *http.Request, on bool) {
	v := ""
	if on {
		v = "1"
	}
	http.SetCookie(w, &http.Cookie{
		Name: signedInCookie, Value: v, Path: "/", MaxAge: clearIfEmpty(v),
		SameSite: http.SameSiteLaxMode, Secure: r.TLS != nil,
	})
}

// clearIfEmpty is a cookie's MaxAge: -1 (delete it now) for an empty
// value, 0 (a session cookie) otherwise.
func clearIfEmpty(v string) int {
	if v == "" {
		return -1
	}
	return 0
}

// markSignedIn sets signedInCookie on the page for a browser that has a
// session cookie without it (one made before the page read it), so that
// the page looks its session up instead of asking for a name again.
func markSignedIn(w http.ResponseWriter, r *http.Request) {
	if _, err := r.Cookie(sessionCookie); err != nil {
		return
	}
	if _, err := r.Cookie(signedInCookie); err == nil {
		return
	}
	setSignedInCookie(w, r, true)
}

// sessionDeleter is implemented by stores that can revoke a session.
type sessionDeleter interface {
	DeleteSession(ctx context.Context, tokenHash []byte) error
}

func (s *Server) deleteSession(w http.ResponseWriter, r *http.Request, u chat.User) {
	if d, ok := s.store.(sessionDeleter); ok {
		if err := d.DeleteSession(r.Context(), hashToken(requestToken(r))); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	// A session is a user here, so the user's sockets end with it, on
	// every node.
	s.publish(r.Context(), chat.Event{Members: []string{u.ID}, Payload: signedOut})
	setSessionCookies(w, r, "")
	w.Header().Set("Cache-Control", "no-store") // as writeJSON sets it on every other API response
	w.WriteHeader(http.StatusNoContent)
}
