package server

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/linkwall/linkwall/bot"
	"github.com/linkwall/linkwall/internal/chat"
)

// Frame types of API v1.
const (
	typeAuth    = "auth"
	typeSend    = "send"
	typeResume  = "resume"
	typePing    = "ping"
	typePong    = "pong"
	typeHello   = "hello"
	typeMessage = "message"
	typeRoom    = "room"
	typeError   = "error"
)

// inFrame is any client → server object. Unused fields stay zero.
type inFrame struct {
	Type        string `json:"type"`
	Room        string `json:"room"`
	Text        string `json:"text"`
	ClientMsgID string `json:"client_msg_id"`
	After       int64  `json:"after"`
	Token       string `json:"token"`

	bad error // a field had the wrong type (decodeFrames): refused with this error
}

// check refuses a frame of an unknown type or with a field out of range,
// before it costs a store read. Membership and text rules are the message
// path's (validate, membership).
func (f *inFrame) check() error {
	switch f.Type {
	case typeSend:
		if f.Room == "" {
			return chat.Errorf(chat.EInvalid, "room is required")
		}
		if len(f.ClientMsgID) > maxClientMsgID {
			return chat.Errorf(chat.EInvalid, "client_msg_id is longer than %d bytes", maxClientMsgID)
		}
	case typeResume:
		if f.Room == "" {
			return chat.Errorf(chat.EInvalid, "room is required")
		}
		if f.After < 0 {
			return chat.Errorf(chat.EInvalid, "after must be ≥ 0")
		}
	case typePing:
	case typeAuth:
		// Only the first frame of a connection that authenticates by
		// frame; afterwards it is a client bug, not a re-authentication.
		return chat.Errorf(chat.EInvalid, "already authenticated")
	default:
		return chat.Errorf(chat.EInvalid, "unknown frame type")
	}
	return nil
}

type messageFrame struct {
	Type        string        `json:"type"`
	Message     *chat.Message `json:"message"`
	ClientMsgID string        `json:"client_msg_id,omitempty"`
}

type roomFrame struct {
	Type string     `json:"type"`
	Room *chat.Room `json:"room"`
}

type helloFrame struct {
	Type  string      `json:"type"`
	User  chat.User   `json:"user"`
	Rooms []chat.Room `json:"rooms"`
}

type errorFrame struct {
	Type    string `json:"type"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Ref     string `json:"ref,omitempty"`
	Room    string `json:"room,omitempty"` // the refused send's or resume's room, so a client knows which to retry
}

// encodeMessage returns the message frame of m without client_msg_id: the
// payload shared by every recipient.
func encodeMessage(m *chat.Message) []byte {
	if m.Links == nil {
		m.Links = []bot.Link{} // API v1: links is never null
	}
	b, err := json.Marshal(messageFrame{Type: typeMessage, Message: m})
	if err != nil {
		// Every field is a string, number, bool or time: cannot fail.
		panic("server: encoding a message: " + err.Error())
	}
	return b
}

// preparedMessage is a message frame encoded before the store has given
// the message its seq: the bytes before and after the seq's digits. The
// reader that takes a send encodes it, so that the store's sync
// goroutine, which fans out every message in turn, only splices the seq
// in (BenchmarkPreparedMessage) instead of encoding it (BenchmarkEncodeMessage).
type preparedMessage struct{ head, tail []byte }

// seqMark is the seq field with a placeholder value. Inside a JSON string
// a quote is escaped, so only the field itself can match.
var seqMark = []byte(`"seq":` + strconv.FormatInt(math.MaxInt64, 10))

// prepareMessage encodes m with its seq left open. m must be final but
// for its seq: ID, SentAt (UTC) and links as the store will return them.
// ok is false if the field could not be found once (it always is; the
// caller then encodes the stored message instead).
func prepareMessage(m *chat.Message) (p preparedMessage, ok bool) {
	c := *m
	c.Seq = math.MaxInt64
	b := encodeMessage(&c)
	i := bytes.Index(b, seqMark)
	if i < 0 || bytes.Contains(b[i+len(seqMark):], seqMark) {
		return preparedMessage{}, false
	}
	i += len(`"seq":`)
	return preparedMessage{head: b[:i], tail: b[i+len(seqMark)-len(`"seq":`):]}, true
}

// frame returns the frame of the message with seq.
func (p preparedMessage) frame(seq int64) []byte {
	b := make([]byte, 0, len(p.head)+20+len(p.tail))
	b = append(b, p.head...)
	b = strconv.AppendInt(b, seq, 10)
	return append(b, p.tail...)
}

// withClientMsgID returns the sender's copy of an encoded message frame:
// the same object with client_msg_id added, spliced in instead of encoding
// the message a second time.
func withClientMsgID(payload []byte, id string) []byte {
	if id == "" {
		return payload
	}
	q, _ := json.Marshal(id) // a string always encodes
	b := make([]byte, 0, len(payload)+len(q)+18)
	b = append(b, payload[:len(payload)-1]...) // drop the closing '}'
	b = append(b, `,"client_msg_id":`...)
	b = append(b, q...)
	return append(b, '}')
}

func encodeRoom(r *chat.Room) []byte {
	b, _ := json.Marshal(roomFrame{Type: typeRoom, Room: r}) // cannot fail
	return b
}

func encodeError(code, msg, ref string) []byte {
	b, _ := json.Marshal(errorFrame{Type: typeError, Code: code, Message: msg, Ref: ref})
	return b
}

func encodeErr(err error, ref string) []byte {
	return encodeError(chat.ErrorCode(err), chat.ErrorMessage(err), ref)
}

// encodeRoomErr is encodeErr for a refused send or resume of room. The
// room is echoed only if it could be a room ID (no longer than any ID,
// valid UTF-8), so an error frame never carries more than the client's
// own bounded input back.
func encodeRoomErr(err error, ref, room string) []byte {
	if len(room) > maxRoomID || !utf8.ValidString(room) {
		room = ""
	}
	b, _ := json.Marshal(errorFrame{Type: typeError, Code: chat.ErrorCode(err), Message: chat.ErrorMessage(err), Ref: ref, Room: room})
	return b
}

var pongPayload = []byte(`{"type":"pong"}`)

// mustJSON encodes values whose encoding cannot fail (no channels,
// functions or cyclic data).
func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("server: encoding " + err.Error())
	}
	return b
}
