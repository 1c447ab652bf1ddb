package server

import (
	"container/list"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/linkwall/linkwall/internal/chat"
)

const (
	// seqHoldWait is how long the sequencer holds a room's events behind a
	// seq that has not been published yet. The SQLite store publishes from
	// its sync goroutine in seq order (thenStore); with another store the
	// callers of one group commit wake in any order, so the missing seq
	// normally follows within microseconds, or a few scheduling rounds on a
	// busy machine. It never comes only if a store committed a message
	// without telling its caller (the SQLite store does not); then the
	// connections fill the hole from the store as for any gap.
	seqHoldWait = 500 * time.Millisecond
	// maxSeqEarly bounds the events one room holds behind a missing seq;
	// past it they are published out of order (connections reorder them).
	maxSeqEarly = 4096
	// maxSeqRooms bounds the rooms the sequencer tracks; past it the idle
	// ones are forgotten (a forgotten room starts again at its next event).
	maxSeqRooms = 100_000
	// maxRingEvents and maxRingBytes bound the recent messages a room keeps
	// in memory for catch-ups and resumes; maxRingTotalBytes bounds all
	// rooms together (the least recently active rooms' rings go first).
	// Older messages are read from the store.
	maxRingEvents     = 4096
	maxRingBytes      = 2 << 20
	maxRingTotalBytes = 64 << 20
)

// sequencer publishes each room's messages on this node in seq order, so
// that connections see no gaps and never fall back to the store in steady
// state. It is used with the single-node broker only: with several nodes
// the seqs of a room are spread over the nodes, and the connections order
// the events themselves (Hub.Deliver accepts any order).
type sequencer struct {
	deliver   func(chat.Event, *fanout) // the hub's deliverVia
	ringBytes atomic.Int64              // bytes in every room's ring

	mu    sync.Mutex // guards rooms and lru; taken before any roomSeq.mu
	rooms map[string]*roomSeq
	lru   list.List // of *roomSeq, most recently published first
}

// roomSeq is one room's publishing order.
type roomSeq struct {
	mu       sync.Mutex
	next     int64               // next seq to publish; 0 until the room's first event
	early    map[int64]published // published before next: waiting for it
	ready    [][]chat.Event      // in seq order, for the draining goroutine
	draining bool                // a goroutine is delivering ready
	timer    *time.Timer         // ends a hold after seqHoldWait

	// ring holds the most recently published messages of the room, seqs
	// contiguous and ascending, for catch-ups and resumes.
	ring      []ringEntry
	ringBytes int
	// era is the room's era as of its last change (forgetRing), "" if
	// none was seen: a message rendered under another one, in flight when
	// the era changed, stays out of the ring.
	era  string
	id   string
	elem *list.Element // in sequencer.lru
}

// ringEntry is one published message as its recipients got it.
type ringEntry struct {
	seq           int64
	sender        string
	payload       []byte // what every member but the sender got
	senderPayload []byte // the sender's copy (with client_msg_id)
	era           string // the era its links were decided under; "" if they stay as posted
}

func (e *ringEntry) size() int { return len(e.payload) + len(e.senderPayload) + len(e.sender) + 64 }

// published is one message on its way through the sequencer.
type published struct {
	evs   []chat.Event
	entry ringEntry
}

func newSequencer(h *Hub) *sequencer {
	return &sequencer{deliver: h.deliverVia, rooms: make(map[string]*roomSeq)}
}

func (q *sequencer) room(id string) *roomSeq {
	q.mu.Lock()
	defer q.mu.Unlock()
	rs := q.rooms[id]
	if rs == nil {
		if len(q.rooms) >= maxSeqRooms {
			q.forgetIdleLocked()
		}
		rs = &roomSeq{id: id}
		rs.elem = q.lru.PushFront(rs)
		q.rooms[id] = rs
	} else {
		q.lru.MoveToFront(rs.elem)
	}
	return rs
}

// forgetIdleLocked drops the rooms that hold nothing.
func (q *sequencer) forgetIdleLocked() {
	for id, rs := range q.rooms {
		rs.mu.Lock()
		idle := len(rs.early) == 0 && len(rs.ready) == 0 && !rs.draining
		if idle {
			q.dropRingLocked(rs)
		}
		rs.mu.Unlock()
		if idle {
			q.lru.Remove(rs.elem)
			delete(q.rooms, id)
		}
	}
}

// publish delivers evs, the events of message seq of room, after every
// lower seq of the room published on this node. The calling goroutine
// may deliver other senders' events as well: whoever finds the room idle
// delivers until nothing is ready, so no goroutine waits for another.
func (q *sequencer) publish(room string, p published) {
	q.publishVia(room, p, nil)
}

// publishVia is publish from a fan-out whose flush writes what it
// delivers (the store's sync goroutine); fo is nil otherwise.
func (q *sequencer) publishVia(room string, p published, fo *fanout) {
	seq := p.entry.seq
	rs := q.room(room)
	rs.mu.Lock()
	switch {
	case rs.next == 0 || seq == rs.next:
		q.readyLocked(rs, p)
		rs.next = seq + 1
		q.advanceLocked(rs)
	case seq < rs.next:
		// Published after its hold ended: late, connections reorder it.
		// The ring went on past it, so it stays out of the ring.
		rs.ready = append(rs.ready, p.evs)
	default:
		if rs.early == nil {
			rs.early = make(map[int64]published)
		}
		rs.early[seq] = p
		if len(rs.early) > maxSeqEarly {
			q.skipLocked(rs)
		} else if rs.timer == nil {
			rs.timer = time.AfterFunc(seqHoldWait, func() { q.expire(rs) })
		}
	}
	q.drainLocked(rs, fo)
	if q.ringBytes.Load() > maxRingTotalBytes {
		q.evict(rs)
	}
}

// readyLocked queues p, the room's next message, for delivery and keeps
// it in the ring.
func (q *sequencer) readyLocked(rs *roomSeq, p published) {
	rs.ready = append(rs.ready, p.evs)
	if p.entry.era != "" && rs.era != "" && p.entry.era != rs.era {
		// Decided before the era changed: history shows it under the new
		// era, so the ring starts again after it, as after a hole.
		q.dropRingLocked(rs)
		return
	}
	if n := len(rs.ring); n > 0 && rs.ring[n-1].seq != p.entry.seq-1 {
		q.dropRingLocked(rs) // a hole was skipped: the ring starts again
	}
	rs.ring = append(rs.ring, p.entry)
	sz := p.entry.size()
	rs.ringBytes += sz
	added := sz
	for len(rs.ring) > maxRingEvents || (rs.ringBytes > maxRingBytes && len(rs.ring) > 1) {
		sz := rs.ring[0].size()
		rs.ring[0] = ringEntry{}
		rs.ring = rs.ring[1:]
		rs.ringBytes -= sz
		added -= sz
	}
	q.ringBytes.Add(int64(added))
}

// dropRingLocked empties the room's ring.
func (q *sequencer) dropRingLocked(rs *roomSeq) {
	q.ringBytes.Add(-int64(rs.ringBytes))
	rs.ring, rs.ringBytes = nil, 0
}

// evict empties the rings of the least recently active rooms other than
// keep until all rings fit in maxRingTotalBytes again.
func (q *sequencer) evict(keep *roomSeq) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for e := q.lru.Back(); e != nil && q.ringBytes.Load() > maxRingTotalBytes*9/10; e = e.Prev() {
		rs := e.Value.(*roomSeq)
		if rs == keep {
			continue
		}
		rs.mu.Lock()
		q.dropRingLocked(rs)
		rs.mu.Unlock()
	}
}

// recent returns up to limit of the room's messages after seq `after`
// from the ring, and whether the ring holds every message after `after`
// that this node has published (otherwise the store must be read).
func (q *sequencer) recent(room string, after int64, limit int) ([]ringEntry, bool) {
	q.mu.Lock()
	rs := q.rooms[room]
	q.mu.Unlock()
	if rs == nil {
		return nil, false
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if len(rs.ring) == 0 || rs.ring[0].seq > after+1 {
		return nil, false
	}
	i := int(max(after+1-rs.ring[0].seq, 0))
	if i >= len(rs.ring) {
		return nil, true
	}
	out := rs.ring[i:min(len(rs.ring), i+limit)]
	return slices.Clone(out), true
}

// forgetRing empties a room's ring: its messages may have been encoded
// under an era other than era, the room's now, and history is rendered
// under the current one. Messages still on their way under another era
// are kept out of the ring as they arrive.
func (q *sequencer) forgetRing(room, era string) {
	rs := q.room(room)
	rs.mu.Lock()
	q.dropRingLocked(rs)
	rs.era = era
	rs.mu.Unlock()
}

// advanceLocked moves the early events that now continue the sequence to ready.
func (q *sequencer) advanceLocked(rs *roomSeq) {
	for len(rs.early) > 0 {
		p, ok := rs.early[rs.next]
		if !ok {
			break
		}
		delete(rs.early, rs.next)
		q.readyLocked(rs, p)
		rs.next++
	}
	if len(rs.early) == 0 && rs.timer != nil {
		rs.timer.Stop()
		rs.timer = nil
	}
}

// skipLocked gives up on the missing seq: the sequence goes on at the
// lowest early event.
func (q *sequencer) skipLocked(rs *roomSeq) {
	if len(rs.early) == 0 {
		return
	}
	seqs := make([]int64, 0, len(rs.early))
	for s := range rs.early {
		seqs = append(seqs, s)
	}
	rs.next = slices.Min(seqs)
	q.advanceLocked(rs)
}

// expire ends a hold that lasted seqHoldWait.
func (q *sequencer) expire(rs *roomSeq) {
	rs.mu.Lock()
	rs.timer = nil
	q.skipLocked(rs)
	if len(rs.early) > 0 && rs.timer == nil {
		rs.timer = time.AfterFunc(seqHoldWait, func() { q.expire(rs) })
	}
	q.drainLocked(rs, nil)
}

// drainLocked delivers ready events in order unless another goroutine is
// already doing so. It is called with rs.mu held and releases it. fo, if
// not nil, is the caller's fan-out (publishVia).
func (q *sequencer) drainLocked(rs *roomSeq, fo *fanout) {
	if rs.draining || len(rs.ready) == 0 {
		rs.mu.Unlock()
		return
	}
	rs.draining = true
	for len(rs.ready) > 0 {
		batch := rs.ready
		rs.ready = nil
		rs.mu.Unlock()
		for _, evs := range batch {
			for _, ev := range evs {
				q.deliver(ev, fo)
			}
		}
		rs.mu.Lock()
	}
	rs.draining = false
	rs.mu.Unlock()
}
