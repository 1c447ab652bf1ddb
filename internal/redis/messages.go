package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	goredis "github.com/redis/go-redis/v9"

	"github.com/linkwall/linkwall/bot"
	"github.com/linkwall/linkwall/internal/chat"
)

// trimBatch is how far a room's stream may grow past its retention before
// Append trims it: trimming a batch at once keeps the per-append cost flat.
const trimBatch = 100

// record is how a message is stored in its room's stream. The room and the
// seq are not repeated: they are the stream's key and the entry's id.
type record struct {
	ID          string      `json:"id"`
	Sender      chat.Sender `json:"from"`
	Text        string      `json:"text"`
	System      bool        `json:"sys,omitempty"`
	Links       []bot.Link  `json:"links,omitempty"`
	Truncated   bool        `json:"trunc,omitempty"`
	Era         string      `json:"era"`
	SentAt      int64       `json:"at"` // Unix nanoseconds
	ClientMsgID string      `json:"cmid,omitempty"`
}

func encodeRecord(m *chat.Message) ([]byte, error) {
	return json.Marshal(record{
		ID: m.ID, Sender: m.Sender, Text: m.Text, System: m.System, Links: m.Links,
		Truncated: m.Truncated, Era: m.Era, SentAt: m.SentAt.UnixNano(), ClientMsgID: m.ClientMsgID,
	})
}

func decodeRecord(room string, seq int64, b string) (chat.Message, error) {
	var r record
	if err := json.Unmarshal([]byte(b), &r); err != nil {
		return chat.Message{}, fmt.Errorf("redis: decode message %s/%d: %w", room, seq, err)
	}
	return chat.Message{
		ID: r.ID, Room: room, Seq: seq, Sender: r.Sender, Text: r.Text, System: r.System,
		Links: r.Links, Truncated: r.Truncated, Era: r.Era, SentAt: time.Unix(0, r.SentAt).UTC(),
		ClientMsgID: r.ClientMsgID,
	}, nil
}

// dedupField names a (sender, client_msg_id) pair within a room. The
// length prefix keeps any sender id and client_msg_id apart.
func dedupField(sender, clientMsgID string) string {
	return strconv.Itoa(len(sender)) + ":" + sender + clientMsgID
}

// streamID is the stream entry id of seq.
func streamID(seq int64) string { return strconv.FormatInt(seq, 10) + "-0" }

// seqOf parses the seq out of a stream entry id.
func seqOf(id string) (int64, error) {
	ms, _, _ := strings.Cut(id, "-")
	return strconv.ParseInt(ms, 10, 64)
}

// appendScript appends one message to a room, atomically:
//  1. refuse a room that does not exist;
//  2. return the retained message sent earlier with the same client_msg_id;
//  3. take the room's next seq and add the message to the stream as SEQ-0;
//  4. remember the client_msg_id;
//  5. past max+batch entries, trim to max and forget their client_msg_ids.
//
// KEYS: room, stream, dedup. ARGV: dedup field or "", record, max, batch.
// Returns {1, seq} (new), {0, seq, record} (duplicate) or {-1} (no room).
var appendScript = goredis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1} end
local d = ARGV[1]
if d ~= '' then
  local old = redis.call('HGET', KEYS[3], d)
  if old then
    local e = redis.call('XRANGE', KEYS[2], old .. '-0', old .. '-0')
    if #e > 0 then return {0, tonumber(old), e[1][2][2]} end
  end
end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
local id = string.format('%d-0', seq)
redis.call('XADD', KEYS[2], id, 'm', ARGV[2], 'd', d)
if d ~= '' then redis.call('HSET', KEYS[3], d, seq) end
local max = tonumber(ARGV[3])
local n = redis.call('XLEN', KEYS[2])
if n > max + tonumber(ARGV[4]) then
  local gone = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', n - max)
  for _, e in ipairs(gone) do
    local f = e[2]
    for i = 1, #f, 2 do
      if f[i] == 'd' and f[i + 1] ~= '' then redis.call('HDEL', KEYS[3], f[i + 1]) end
    end
  end
  redis.call('XTRIM', KEYS[2], 'MINID', string.format('%d-0', seq - max + 1))
end
return {1, seq}
`)

// Append assigns m the room's next Seq and stores it in Redis before it
// returns; see the package documentation for what that means for
// durability. A repeated client_msg_id of the same sender in the same room
// returns the stored message with dup=true while that message is retained.
func (s *Store) Append(ctx context.Context, m chat.Message) (chat.Message, bool, error) {
	// go-redis would only notice a cancelled context once it holds a
	// connection; an append the caller gave up on must not happen.
	if err := ctx.Err(); err != nil {
		return chat.Message{}, false, fmt.Errorf("redis: append: %w", err)
	}
	// As the SQLite store: a message with no sender would be stored.
	if m.Room == "" || m.Sender.ID == "" {
		return chat.Message{}, false, chat.Errorf(chat.EInvalid, "message room and sender are required")
	}
	if m.ID == "" {
		m.ID = uuid.NewString()
	}
	if m.SentAt.IsZero() {
		m.SentAt = now()
	}
	m.SentAt = m.SentAt.UTC()
	rec, err := encodeRecord(&m)
	if err != nil {
		return chat.Message{}, false, fmt.Errorf("redis: encode message: %w", err)
	}
	var dedup string
	if m.ClientMsgID != "" {
		dedup = dedupField(m.Sender.ID, m.ClientMsgID)
	}
	res, err := appendScript.Run(ctx, s.client,
		[]string{s.roomKey(m.Room), s.msgsKey(m.Room), s.dedupKey(m.Room)},
		dedup, rec, s.max, trimBatch).Slice()
	if err != nil {
		return chat.Message{}, false, storeErr(ctx, "append", err)
	}
	status, _ := at[int64](res, 0)
	seq, _ := at[int64](res, 1)
	switch {
	case status == -1:
		return chat.Message{}, false, chat.Errorf(chat.ENotFound, "no room %s", m.Room)
	case status == 1 && seq > 0:
		m.Seq = seq
		return m, false, nil
	case status == 0 && seq > 0:
		if b, ok := at[string](res, 2); ok {
			stored, err := decodeRecord(m.Room, seq, b)
			return stored, true, err
		}
	}
	return chat.Message{}, false, fmt.Errorf("redis: append: unexpected reply %v", res)
}

// at returns res[i] as a T.
func at[T any](res []any, i int) (T, bool) {
	var zero T
	if i >= len(res) {
		return zero, false
	}
	v, ok := res[i].(T)
	return v, ok
}

// Messages returns up to limit messages of a room with Seq > after, in Seq
// order (limit is clamped to MaxPage); ENotFound if there is no such room.
// Messages trimmed away are skipped: the page starts at the oldest one
// retained.
func (s *Store) Messages(ctx context.Context, roomID string, after int64, limit int) ([]chat.Message, error) {
	if err := chat.CheckPage(after, limit); err != nil {
		return nil, err
	}
	limit = min(limit, MaxPage)
	// One round trip: the page and whether the room exists.
	var xr *goredis.XMessageSliceCmd
	var ex *goredis.IntCmd
	_, err := s.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
		// "(" makes the start exclusive: seq > after, for any after.
		xr = p.XRangeN(ctx, s.msgsKey(roomID), "("+streamID(after), "+", int64(limit))
		ex = p.Exists(ctx, s.roomKey(roomID))
		return nil
	})
	if err != nil && !errors.Is(err, goredis.Nil) {
		return nil, storeErr(ctx, "messages", err)
	}
	entries := xr.Val()
	if len(entries) == 0 && ex.Val() == 0 {
		return nil, chat.Errorf(chat.ENotFound, "no room %s", roomID)
	}
	ms := make([]chat.Message, 0, len(entries))
	for _, e := range entries {
		seq, err := seqOf(e.ID)
		if err != nil {
			return nil, fmt.Errorf("redis: messages: entry id %q: %w", e.ID, err)
		}
		b, _ := e.Values["m"].(string)
		m, err := decodeRecord(roomID, seq, b)
		if err != nil {
			return nil, err
		}
		ms = append(ms, m)
	}
	return ms, nil
}
