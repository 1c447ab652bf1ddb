package server

import (
	"slices"
	"sync"
	"time"

	"github.com/linkwall/linkwall/internal/chat"
)

const (
	// seqHoldWait is how long the sequencer holds a room's events behind a
	// seq that has not been published yet. The store commits appends in
	// groups and the callers of one group wake in any order, so the missing
	// seq normally follows within microseconds; it never comes when its
	// sender went away between the commit and the publish, and then the
	// connections fill the hole from the store as for any gap.
	seqHoldWait = 20 * time.Millisecond
	// maxSeqEarly bounds the events one room holds behind a missing seq;
	// past it they are published out of order (connections reorder them).
	maxSeqEarly = 4096
	// maxSeqRooms bounds the rooms the sequencer tracks; past it the idle
	// ones are forgotten (a forgotten room starts again at its next event).
	maxSeqRooms = 100_000
)

// sequencer publishes each room's messages on this node in seq order, so
// that connections see no gaps and never fall back to the store in steady
// state. It is used with the single-node broker only: with several nodes
// the seqs of a room are spread over the nodes, and the connections order
// the events themselves (Hub.Deliver accepts any order).
type sequencer struct {
	deliver func(chat.Event) // the hub's Deliver
	mu      sync.Mutex
	rooms   map[string]*roomSeq
}

// roomSeq is one room's publishing order.
type roomSeq struct {
	mu       sync.Mutex
	next     int64                  // next seq to publish; 0 until the room's first event
	early    map[int64][]chat.Event // published before next: waiting for it
	ready    [][]chat.Event         // in seq order, for the draining goroutine
	draining bool                   // a goroutine is delivering ready
	timer    *time.Timer            // ends a hold after seqHoldWait
}

func newSequencer(h *Hub) *sequencer {
	return &sequencer{deliver: h.Deliver, rooms: make(map[string]*roomSeq)}
}

func (q *sequencer) room(id string) *roomSeq {
	q.mu.Lock()
	defer q.mu.Unlock()
	rs := q.rooms[id]
	if rs == nil {
		if len(q.rooms) >= maxSeqRooms {
			q.forgetIdleLocked()
		}
		rs = &roomSeq{}
		q.rooms[id] = rs
	}
	return rs
}

// forgetIdleLocked drops the rooms that hold nothing.
func (q *sequencer) forgetIdleLocked() {
	for id, rs := range q.rooms {
		rs.mu.Lock()
		idle := len(rs.early) == 0 && len(rs.ready) == 0 && !rs.draining
		rs.mu.Unlock()
		if idle {
			delete(q.rooms, id)
		}
	}
}

// publish delivers evs, the events of message seq of room, after every
// lower seq of the room published on this node. The calling goroutine
// may deliver other senders' events as well: whoever finds the room idle
// delivers until nothing is ready, so no goroutine waits for another.
func (q *sequencer) publish(room string, seq int64, evs []chat.Event) {
	rs := q.room(room)
	rs.mu.Lock()
	switch {
	case rs.next == 0 || seq == rs.next:
		rs.ready = append(rs.ready, evs)
		rs.next = seq + 1
		rs.advanceLocked()
	case seq < rs.next:
		// Published after its hold ended: late, connections reorder it.
		rs.ready = append(rs.ready, evs)
	default:
		if rs.early == nil {
			rs.early = make(map[int64][]chat.Event)
		}
		rs.early[seq] = evs
		if len(rs.early) > maxSeqEarly {
			rs.skipLocked()
		} else if rs.timer == nil {
			rs.timer = time.AfterFunc(seqHoldWait, func() { q.expire(rs) })
		}
	}
	q.drainLocked(rs)
}

// advanceLocked moves the early events that now continue the sequence to ready.
func (rs *roomSeq) advanceLocked() {
	for len(rs.early) > 0 {
		evs, ok := rs.early[rs.next]
		if !ok {
			return
		}
		delete(rs.early, rs.next)
		rs.ready = append(rs.ready, evs)
		rs.next++
	}
	if rs.timer != nil {
		rs.timer.Stop()
		rs.timer = nil
	}
}

// skipLocked gives up on the missing seq: the sequence goes on at the
// lowest early event.
func (rs *roomSeq) skipLocked() {
	if len(rs.early) == 0 {
		return
	}
	seqs := make([]int64, 0, len(rs.early))
	for s := range rs.early {
		seqs = append(seqs, s)
	}
	rs.next = slices.Min(seqs)
	rs.advanceLocked()
}

// expire ends a hold that lasted seqHoldWait.
func (q *sequencer) expire(rs *roomSeq) {
	rs.mu.Lock()
	rs.timer = nil
	rs.skipLocked()
	if len(rs.early) > 0 && rs.timer == nil {
		rs.timer = time.AfterFunc(seqHoldWait, func() { q.expire(rs) })
	}
	q.drainLocked(rs)
}

// drainLocked delivers ready events in order unless another goroutine is
// already doing so. It is called with rs.mu held and releases it.
func (q *sequencer) drainLocked(rs *roomSeq) {
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
				q.deliver(ev)
			}
		}
		rs.mu.Lock()
	}
	rs.draining = false
	rs.mu.Unlock()
}
