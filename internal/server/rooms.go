package server

import (
	"context"
	"sync"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/linkwall/linkwall/bot"
	"github.com/linkwall/linkwall/internal/chat"
)

// linkBotSender is how LinkBot signs its messages.
var linkBotSender = chat.Sender{ID: chat.LinkBotID, Name: "LinkBot", Bot: true}

// maxCachedRooms bounds the room cache; past it, it starts over.
const maxCachedRooms = 100_000

// roomCache keeps rooms for roomCacheTTL so that the message path does not
// read the store for every message. Changes made on this node update it at
// once; a change made on another node drops the entry when its room event
// arrives (Hub.Deliver), and the TTL bounds staleness if that event is lost.
type roomCache struct {
	mu sync.Mutex
	m  map[string]cachedRoom
}

type cachedRoom struct {
	room chat.Room
	at   time.Time
}

func newRoomCache() *roomCache { return &roomCache{m: make(map[string]cachedRoom)} }

func (c *roomCache) get(id string) (chat.Room, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[id]
	if !ok || time.Since(e.at) > roomCacheTTL {
		return chat.Room{}, false
	}
	return e.room, true
}

func (c *roomCache) put(r chat.Room) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= maxCachedRooms {
		clear(c.m)
	}
	c.m[r.ID] = cachedRoom{r, time.Now()}
}

// forget drops a room, so the next use reads it from the store.
func (c *roomCache) forget(id string) {
	c.mu.Lock()
	delete(c.m, id)
	c.mu.Unlock()
}

// room returns a room from the cache or the store.
func (s *Server) room(ctx context.Context, id string) (chat.Room, error) {
	if r, ok := s.rooms.get(id); ok {
		return r, nil
	}
	r, err := s.store.Room(ctx, id)
	if err != nil {
		return chat.Room{}, err
	}
	s.rooms.put(r)
	return r, nil
}

// memberRoom returns the room if userID is a member: ENotFound for a room
// that does not exist, EForbidden for one the user is not in.
func (s *Server) memberRoom(ctx context.Context, userID, roomID string) (chat.Room, error) {
	if roomID == "" || len(roomID) > maxRoomID {
		return chat.Room{}, chat.Errorf(chat.ENotFound, "no such room")
	}
	r, err := s.room(ctx, roomID)
	if err != nil {
		return chat.Room{}, err
	}
	if !r.HasMember(userID) {
		return chat.Room{}, chat.Errorf(chat.EForbidden, "you are not a member of this room")
	}
	return r, nil
}

// history returns up to limit messages of a room after seq `after`, with
// their links decided under the room's current era.
func (s *Server) history(ctx context.Context, userID, roomID string, after int64, limit int) ([]chat.Message, error) {
	room, err := s.memberRoom(ctx, userID, roomID)
	if err != nil {
		return nil, err
	}
	msgs, err := s.store.Messages(ctx, roomID, after, limit)
	if err != nil {
		return nil, err
	}
	for i := range msgs {
		s.render(ctx, &room, &msgs[i])
	}
	return msgs, nil
}

// recent returns the room's messages after seq `after` from the
// sequencer's ring, when it holds every one this node published after it.
func (s *Server) recent(roomID string, after int64, limit int) ([]ringEntry, bool) {
	if s.seq == nil {
		return nil, false
	}
	return s.seq.recent(roomID, after, limit)
}

// keepsLinks reports whether m's links stay as posted whatever the room's
// era: LinkBot's messages, whose replies have no links and whose
// walkthrough samples show the era they illustrate.
func keepsLinks(m *chat.Message) bool { return m.System || m.Sender.Bot }

// render decides m's links again when the room's era differs from the one
// m was stored under; the stored text never changes.
func (s *Server) render(ctx context.Context, room *chat.Room, m *chat.Message) {
	if m.Links == nil {
		m.Links = []bot.Link{}
	}
	if m.Era == room.Era || keepsLinks(m) {
		return
	}
	res := s.bot.Decide(ctx, m.Text, bot.Chat(room.Kind), room.Era)
	m.Links, m.Truncated, m.Era = res.Links, res.Truncated, room.Era
	if m.Links == nil {
		m.Links = []bot.Link{}
	}
}

// appendAndPublish stores m durably, counts it, and fans it out to room's
// members unless it was a duplicate.
func (s *Server) appendAndPublish(ctx context.Context, room *chat.Room, m chat.Message) (chat.Message, bool, error) {
	withDefaults(&m)
	start := time.Now()
	var (
		stored chat.Message
		dup    bool
		err    error
	)
	fromStore := s.thenStore != nil // the store publishes once the message is durable
	if fromStore {
		publish := s.preparedPublish(ctx, room, &m) // fills in m's ID first
		stored, dup, err = s.thenStore.AppendThen(ctx, m, publish)
	} else {
		stored, dup, err = s.store.Append(ctx, m)
	}
	s.countAppend(start, stored, dup, err)
	if err != nil {
		return chat.Message{}, false, err
	}
	if !fromStore {
		// A duplicate is published again too: its first try may have been
		// stored without being published (the store's client gave up on a
		// timeout the store did not see, the publish failed, or the node
		// died in between), and without a later message in the room its
		// members would never notice. Connections that have it drop the
		// copy by its seq; the resending one may get its acknowledgement
		// twice, which the protocol allows for a resend. The SQLite store
		// (fromStore) publishes whatever it makes durable.
		s.publishMessage(ctx, room, &stored)
	}
	return stored, dup, nil
}

// withDefaults fills in what a new message lacks: API v1 never sends
// null links, and the server's clock dates it.
func withDefaults(m *chat.Message) {
	if m.Links == nil {
		m.Links = []bot.Link{}
	}
	if m.SentAt.IsZero() {
		m.SentAt = time.Now().UTC()
	}
}

// countAppend records an append that started at start: its latency and,
// for a new message, the message and its links.
func (s *Server) countAppend(start time.Time, stored chat.Message, dup bool, err error) {
	s.metrics.appendLatency.Observe(time.Since(start).Seconds())
	if err == nil && !dup {
		s.metrics.messages.Inc()
		s.metrics.countLinks(stored.Links)
	}
}

// appendAsync queues m for the store and returns: the store fans it out
// once it is durable, then calls done. The server's own context, not the
// connection's: a message read from a client is stored even if the
// client leaves right after sending it, as it would be had the reader
// waited. Shutdown waits for done (s.wg).
func (s *Server) appendAsync(room *chat.Room, m chat.Message, done func(chat.Message, bool, error)) error {
	withDefaults(&m)
	start := time.Now()
	rm := *room // the caller's request is gone by the time the store publishes
	publish := s.preparedPublish(s.ctx, &rm, &m)
	s.wg.Add(1) // the caller, a live reader, holds a count: no reuse
	err := s.asyncStore.AppendAsync(s.ctx, m, publish, func(stored chat.Message, dup bool, err error) {
		defer s.wg.Done()
		s.countAppend(start, stored, dup, err)
		done(stored, dup, err)
	})
	if err != nil {
		s.wg.Done()
	}
	return err
}

// preparedPublish fills in what the store would (ID, SentAt in UTC
// nanoseconds) and encodes m's frame, here, on the caller's goroutine; the
// function it returns, run by the store's sync goroutine once m is
// durable, only adds the seq and publishes. If the stored message is not
// the one prepared, it encodes that instead.
func (s *Server) preparedPublish(ctx context.Context, room *chat.Room, m *chat.Message) func(chat.Message) {
	if m.ID == "" {
		m.ID = uuid.NewString()
	}
	m.SentAt = time.Unix(0, m.SentAt.UnixNano()).UTC()
	prepared, ok := prepareMessage(m)
	id, at := m.ID, m.SentAt
	return func(stored chat.Message) {
		if !ok || stored.ID != id || !stored.SentAt.Equal(at) {
			s.publishFrame(ctx, room, &stored, encodeMessage(&stored), s.fo)
			return
		}
		s.publishFrame(ctx, room, &stored, prepared.frame(stored.Seq), s.fo)
	}
}

// asyncStore is a store that can also take a message without making its
// caller wait for it (the SQLite store).
type asyncStore interface {
	AppendAsync(ctx context.Context, m chat.Message, then func(chat.Message), done func(chat.Message, bool, error)) error
}

// thenStore is a store that can run the fan-out itself as soon as a
// message is durable (the SQLite store). On one node the server lets it:
// the callers of one group commit would otherwise each wait for a core to
// wake up, one after the other, before the members see anything.
type thenStore interface {
	AppendThen(ctx context.Context, m chat.Message, then func(chat.Message)) (chat.Message, bool, error)
	// AfterThens sets what runs on the same goroutine after the then
	// functions of each sync: the flush of their fan-out.
	AfterThens(f func())
}

// publishMessage fans a stored message out: one encoding for every member
// but the sender, and the sender's copy with client_msg_id.
func (s *Server) publishMessage(ctx context.Context, room *chat.Room, m *chat.Message) {
	s.publishFrame(ctx, room, m, encodeMessage(m), nil)
}

// publishFrame is publishMessage with m's frame encoded already. fo is
// the store's fan-out when called on its sync goroutine (then), else nil.
func (s *Server) publishFrame(ctx context.Context, room *chat.Room, m *chat.Message, payload []byte, fo *fanout) {
	sender := room.HasMember(m.Sender.ID)
	evs := make([]chat.Event, 0, 2)
	others := len(room.Members)
	if sender {
		others--
	}
	if others > 0 {
		ev := chat.Event{Room: room.ID, Seq: m.Seq, Members: room.Members, Payload: payload}
		if sender {
			if s.seq != nil {
				ev.Except = m.Sender.ID // the local hub: share the room's list
			} else {
				ev.Members = without(room.Members, m.Sender.ID)
			}
		}
		evs = append(evs, ev)
	}
	if sender {
		evs = append(evs, chat.Event{Room: room.ID, Seq: m.Seq, Members: []string{m.Sender.ID},
			Payload: withClientMsgID(payload, m.ClientMsgID)})
	}
	if fo != nil {
		fo.msgs++
	}
	if s.seq != nil {
		p := published{evs: evs, entry: ringEntry{seq: m.Seq, sender: m.Sender.ID, payload: payload}}
		if !keepsLinks(m) {
			p.entry.era = m.Era
		}
		if sender {
			p.entry.senderPayload = evs[len(evs)-1].Payload
		}
		s.seq.publishVia(room.ID, p, fo)
		return
	}
	for _, ev := range evs {
		s.publish(ctx, ev)
	}
}

// without returns ids without id, in a new slice.
func without(ids []string, id string) []string {
	out := make([]string, 0, len(ids))
	for _, x := range ids {
		if x != id {
			out = append(out, x)
		}
	}
	return out
}

// publishRoom tells every member about a created or changed room.
func (s *Server) publishRoom(ctx context.Context, r *chat.Room) {
	if s.seq != nil {
		s.seq.forgetRing(r.ID, r.Era) // its messages may be under another era now
	}
	s.publish(ctx, chat.Event{Room: r.ID, Members: r.Members, Payload: encodeRoom(r)})
}

// publish hands ev to the broker. A failure is logged, not returned: the
// message is durable already and members get it when they resume. The
// store has the change already, so the publish outlives the request or
// connection that made it (a client that leaves right after must not keep
// other nodes' members from hearing of it); the broker bounds its own wait.
func (s *Server) publish(ctx context.Context, ev chat.Event) {
	if len(ev.Members) == 0 {
		return
	}
	if err := s.broker.Publish(context.WithoutCancel(ctx), ev); err != nil {
		s.log.Warn("publish failed; members will get it on resume",
			zap.String("room", ev.Room), zap.Int64("seq", ev.Seq), zap.Error(err))
	}
}

// botPost stores and publishes a LinkBot message in room: a reply or a
// greyed notice (system), plain text whose addresses are not decided.
func (s *Server) botPost(ctx context.Context, room *chat.Room, text string, system bool) error {
	m := chat.Message{Room: room.ID, Sender: linkBotSender, Text: text, System: system, Era: room.Era}
	_, _, err := s.appendAndPublish(ctx, room, m)
	return err
}

// botSample stores and publishes a LinkBot message whose links are decided
// for a chat of kind under the room's era, and kept so (see render).
func (s *Server) botSample(ctx context.Context, room *chat.Room, text string, kind bot.Chat) (chat.Message, error) {
	res := s.bot.Decide(ctx, text, kind, room.Era)
	m := chat.Message{Room: room.ID, Sender: linkBotSender, Text: text, Era: room.Era, Links: res.Links, Truncated: res.Truncated}
	stored, _, err := s.appendAndPublish(ctx, room, m)
	return stored, err
}

// moveRoomEra stores a room's new era and tells its members (a room frame).
func (s *Server) moveRoomEra(ctx context.Context, roomID, eraID string) (chat.Room, error) {
	// One change at a time: two at once could leave the room's cached
	// entry and its ring's era stamp at the one stored first.
	s.eraMu.Lock()
	defer s.eraMu.Unlock()
	updated, err := s.store.SetRoomEra(ctx, roomID, eraID)
	if err != nil {
		return chat.Room{}, err
	}
	s.rooms.put(updated)
	s.publishRoom(ctx, &updated)
	return updated, nil
}

// setEra changes a room's era (an id or a date), tells every member with a
// room frame and a LinkBot message, and returns the updated room.
func (s *Server) setEra(ctx context.Context, by chat.User, room chat.Room, idOrDate string) (chat.Room, error) {
	era, err := s.bot.Policy().ResolveEra(idOrDate)
	if err != nil {
		return chat.Room{}, chat.Errorf(chat.ENotFound, "%v", err)
	}
	// A walkthrough sets the era itself, step by step: a change by a
	// member would show the class another era's rules midway.
	s.mu.Lock()
	walking := s.walking[room.ID]
	s.mu.Unlock()
	if walking {
		return chat.Room{}, chat.Errorf(chat.EConflict, "a walkthrough is running in this room; change the era when it is done")
	}
	updated, err := s.moveRoomEra(ctx, room.ID, era.ID)
	if err != nil {
		return chat.Room{}, err
	}
	if err := s.botPost(ctx, &updated, eraChangedText(updated.Lang, by.Name, era), false); err != nil {
		s.log.Warn("LinkBot could not announce an era change", zap.Error(err))
	}
	return updated, nil
}
