package server

import (
	"context"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/time/rate"

	"github.com/linkwall/linkwall/bot"
	"github.com/linkwall/linkwall/internal/chat"
)

// Request is one message on its way through the chain. Each middleware
// fills in what it learns for the next ones.
type Request struct {
	User        chat.User
	RoomID      string
	Text        string
	ClientMsgID string
	Received    time.Time

	Room    chat.Room    // set by Membership
	Result  bot.Result   // set by LinkBot: the links under the room's era
	Message chat.Message // set by the store step: the stored message
	Dup     bool         // the client_msg_id was already stored: nothing new happened

	// Async, if set, lets the store step return as soon as the message is
	// queued for the store, where the store can do the rest itself (one
	// node): Queued is then set, and Async later gets what Message, Dup
	// and the error would have been. A middleware that needs the stored
	// message after the store step clears Async first.
	Async  func(m chat.Message, dup bool, err error)
	Queued bool
}

// Handler handles a message. An error with a *chat.Error code goes back to
// the sender as an error frame.
type Handler interface {
	Handle(ctx context.Context, r *Request) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, r *Request) error

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, r *Request) error { return f(ctx, r) }

// Middleware wraps a Handler with one concern of the message path.
type Middleware func(next Handler) Handler

// Chain returns h wrapped by mws, the first outermost.
func Chain(h Handler, mws ...Middleware) Handler {
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}

// buildChain is the message path of API v1.
func (s *Server) buildChain() Handler {
	return Chain(HandlerFunc(s.storeAndPublish),
		s.validate,
		s.rateLimit,
		s.membership,
		s.linkBot,
	)
}

// validate refuses malformed messages before they cost anything.
func (s *Server) validate(next Handler) Handler {
	return HandlerFunc(func(ctx context.Context, r *Request) error {
		if r.RoomID == "" {
			return chat.Errorf(chat.EInvalid, "room is required")
		}
		if len(r.ClientMsgID) > maxClientMsgID {
			return chat.Errorf(chat.EInvalid, "client_msg_id is longer than %d bytes", maxClientMsgID)
		}
		if err := checkText(r.Text, s.limits.MaxTextRunes); err != nil {
			return err
		}
		return next.Handle(ctx, r)
	})
}

// checkText accepts non-blank valid UTF-8 of at most max runes with no
// control characters other than tab and newline.
func checkText(text string, max int) error {
	if !utf8.ValidString(text) {
		return chat.Errorf(chat.EInvalid, "text is not valid UTF-8")
	}
	if strings.TrimSpace(text) == "" {
		return chat.Errorf(chat.EInvalid, "text is empty")
	}
	if n := utf8.RuneCountInString(text); n > max {
		return chat.Errorf(chat.ETooLarge, "text has %d characters, the limit is %d", n, max)
	}
	for _, r := range text {
		if r == '\n' || r == '\t' || r == '\r' {
			continue
		}
		if r == utf8.RuneError {
			// Also what JSON decoding makes of an unpaired surrogate (\ud800),
			// which no UTF-8 text can hold.
			return chat.Errorf(chat.EInvalid, "text contains U+FFFD (a replacement character, or an unpaired surrogate escape)")
		}
		if unicode.IsControl(r) {
			return chat.Errorf(chat.EInvalid, "text contains control character %U", r)
		}
	}
	return nil
}

// checkName accepts a trimmed, non-empty name of at most max runes with no
// control or format characters (which could disguise a name).
func checkName(what, name string, max int) (string, error) {
	name = strings.TrimSpace(name)
	if name == "" {
		return "", chat.Errorf(chat.EInvalid, "%s is required", what)
	}
	if !utf8.ValidString(name) {
		return "", chat.Errorf(chat.EInvalid, "%s is not valid UTF-8", what)
	}
	if n := utf8.RuneCountInString(name); n > max {
		return "", chat.Errorf(chat.ETooLarge, "%s has %d characters, the limit is %d", what, n, max)
	}
	for _, r := range name {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == utf8.RuneError {
			return "", chat.Errorf(chat.EInvalid, "%s contains character %U", what, r)
		}
	}
	return name, nil
}

// rateLimit applies the per-user send rate over all of a user's connections.
func (s *Server) rateLimit(next Handler) Handler {
	return HandlerFunc(func(ctx context.Context, r *Request) error {
		if !s.sendLimits.get(r.User.ID).Allow() {
			s.metrics.rateLimited.Inc()
			return chat.Errorf(chat.ERateLimited, "more than %g messages per second; slow down", float64(s.limits.SendRate))
		}
		return next.Handle(ctx, r)
	})
}

// membership lets only a room's members post in it.
func (s *Server) membership(next Handler) Handler {
	return HandlerFunc(func(ctx context.Context, r *Request) error {
		room, err := s.memberRoom(ctx, r.User.ID, r.RoomID)
		if err != nil {
			return err
		}
		r.Room = room
		return next.Handle(ctx, r)
	})
}

// storeAndPublish makes the message durable, then fans it out. The
// sender's copy carries client_msg_id and is the acknowledgement.
func (s *Server) storeAndPublish(ctx context.Context, r *Request) error {
	m := chat.Message{
		Room:        r.Room.ID,
		Sender:      chat.Sender{ID: r.User.ID, Name: r.User.Name},
		Text:        r.Text,
		Links:       r.Result.Links,
		Truncated:   r.Result.Truncated,
		Era:         r.Room.Era,
		ClientMsgID: r.ClientMsgID,
	}
	if r.Async != nil && s.asyncStore != nil {
		received, async := r.Received, r.Async
		err := s.appendAsync(&r.Room, m, func(stored chat.Message, dup bool, err error) {
			if err == nil && !dup {
				s.metrics.sendLatency.Observe(time.Since(received).Seconds())
			}
			async(stored, dup, err)
		})
		r.Queued = err == nil
		return err
	}
	stored, dup, err := s.appendAndPublish(ctx, &r.Room, m)
	if err != nil {
		return err
	}
	r.Message, r.Dup = stored, dup
	if dup {
		return nil
	}
	s.metrics.sendLatency.Observe(time.Since(r.Received).Seconds())
	return nil
}

// limiterMap holds one rate.Limiter per key, created on first use.
type limiterMap struct {
	mu    sync.Mutex
	m     map[string]*rate.Limiter
	limit rate.Limit
	burst int
}

// maxLimiters bounds the map; past it, it starts over (everyone gets a
// fresh burst once, which is harmless).
const maxLimiters = 100_000

func newLimiterMap(limit rate.Limit, burst int) *limiterMap {
	return &limiterMap{m: make(map[string]*rate.Limiter), limit: limit, burst: burst}
}

func (l *limiterMap) get(key string) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, ok := l.m[key]
	if !ok {
		if len(l.m) >= maxLimiters {
			clear(l.m)
		}
		lim = rate.NewLimiter(l.limit, l.burst)
		l.m[key] = lim
	}
	return lim
}
