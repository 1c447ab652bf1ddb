package chat

import (
	"context"
	"time"

	"github.com/linkwall/linkwall/bot"
)

// Room kinds. The strings are part of API v1.
const (
	Direct = "direct" // one-to-one: exactly two members, one room per pair
	Group  = "group"
)

// LinkBotID is the fixed user id of LinkBot, the bot participant present in
// every room. It is not listed among a room's members.
const LinkBotID = "00000000-0000-0000-0000-00000000b07a"

// SessionTTL is how long a session token is valid after it was created;
// then the person joins again. A session is created per browser tab and
// never refreshed, so this also bounds how many stale tokens a store keeps.
const SessionTTL = 30 * 24 * time.Hour

// User is a person (or LinkBot) who chats.
type User struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Bot       bool      `json:"bot"`
	CreatedAt time.Time `json:"created_at"`
}

// Room is a one-to-one or group conversation.
type Room struct {
	ID        string    `json:"id"`
	Kind      string    `json:"kind"` // Direct or Group
	Name      string    `json:"name"`
	Members   []string  `json:"members"` // user ids, LinkBot excluded
	Era       string    `json:"era"`     // era id the room's links are shown under
	Lang      string    `json:"lang"`    // "en" or "zh": the language LinkBot answers in
	CreatedAt time.Time `json:"created_at"`
}

// HasMember reports whether user id is a member of r.
func (r *Room) HasMember(id string) bool {
	for _, m := range r.Members {
		if m == id {
			return true
		}
	}
	return false
}

// Sender is how a message names who sent it.
type Sender struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Bot  bool   `json:"bot"`
}

// Message is one chat message. Text is stored exactly as sent and never
// changes; Links hold the bot's decisions under Era, and are decided again
// for display when the room's era differs.
type Message struct {
	ID     string `json:"id"`
	Room   string `json:"room"`
	Seq    int64  `json:"seq"` // 1, 2, 3… per room, assigned by the Store
	Sender Sender `json:"sender"`
	Text   string `json:"text"`
	// System marks LinkBot's greyed notices (e.g. "link blocked").
	System bool       `json:"system,omitempty"`
	Links  []bot.Link `json:"links"`
	// Truncated is set when the message held more links than the bot handles.
	Truncated   bool      `json:"links_truncated,omitempty"`
	Era         string    `json:"era"`
	SentAt      time.Time `json:"sent_at"`
	ClientMsgID string    `json:"-"`
}

// Store keeps users, sessions, rooms and messages. Implementations are safe
// for concurrent use. Errors that a client should see are *Error values.
type Store interface {
	// CreateUser stores u with a session whose token hashes to tokenHash.
	CreateUser(ctx context.Context, u User, tokenHash []byte) error
	// UserBySession returns the user owning the session token that hashes to
	// tokenHash, or EUnauthorized.
	UserBySession(ctx context.Context, tokenHash []byte) (User, error)
	// User returns one user, or ENotFound.
	User(ctx context.Context, id string) (User, error)
	// Users returns up to limit users, newest first: the people a demo
	// visitor looks for have just joined.
	Users(ctx context.Context, limit int) ([]User, error)

	// CreateRoom stores r. For a Direct room it is idempotent on the pair of
	// members: if the pair already has a room, that room is returned instead
	// and r is discarded. Members must exist (else ENotFound).
	CreateRoom(ctx context.Context, r Room) (Room, error)
	// Room returns one room, or ENotFound.
	Room(ctx context.Context, id string) (Room, error)
	// Rooms returns the rooms user id is a member of, oldest first.
	Rooms(ctx context.Context, userID string) ([]Room, error)
	// RoomCounts returns how many rooms each of userIDs is a member of;
	// unknown users count 0.
	RoomCounts(ctx context.Context, userIDs []string) (map[string]int, error)
	// SetRoomEra changes a room's era and returns the updated room.
	SetRoomEra(ctx context.Context, roomID, era string) (Room, error)
	// SetRoomLang changes the language LinkBot answers in.
	SetRoomLang(ctx context.Context, roomID, lang string) (Room, error)

	// Append assigns m the room's next Seq and stores it durably before it
	// returns. If m.ClientMsgID is non-empty and the same sender already
	// appended a message with it in that room, the stored message is returned
	// with dup=true and nothing is written. A store may bound how far back it
	// looks (SQLite: the room's last 10,000 messages; Redis: the retained ones).
	Append(ctx context.Context, m Message) (stored Message, dup bool, err error)
	// Messages returns up to limit messages of a room with Seq > after, in Seq order.
	Messages(ctx context.Context, roomID string, after int64, limit int) ([]Message, error)

	// Ping reports whether the store can serve requests (for /readyz).
	Ping(ctx context.Context) error
	// Close flushes and releases the store.
	Close() error
}

// Event is one thing to deliver to the connections of some users: a
// message, or a room created or changed. Payload is the encoded WebSocket
// text (one or more JSON objects separated by '\n'), encoded once for all
// recipients.
type Event struct {
	Room    string
	Seq     int64    // the message's Seq; 0 for room events
	Members []string // user ids to deliver to; shared, never modified
	// Except is a member of Members who does not get this event (the
	// sender, who gets its own copy), so a message's event can share the
	// room's member list. Only the local hub reads it: events that cross
	// processes list their recipients in Members alone.
	Except  string
	Payload []byte
}

// Broker fans events out to every node's connections. The in-process
// broker delivers straight to the local hub; the Redis one goes through
// Redis so that members connected to other nodes get them too.
type Broker interface {
	Publish(ctx context.Context, ev Event) error
}

// CheckPage validates the paging arguments of Store.Messages, so every
// store refuses the same input with the same error.
func CheckPage(after int64, limit int) error {
	if limit <= 0 {
		return Errorf(EInvalid, "limit must be positive")
	}
	if after < 0 {
		return Errorf(EInvalid, "after must not be negative")
	}
	return nil
}
