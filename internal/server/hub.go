package server

import (
	"bytes"
	"context"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/linkwall/linkwall/internal/chat"
)

// hubShards spreads the user → connections map over independent locks so
// that fan-outs to different users rarely contend.
const hubShards = 32

// Hub knows the live connections of every user on this node and delivers
// events to them. Deliver never blocks on a connection: it appends
// pre-encoded bytes to each recipient's bounded queue.
type Hub struct {
	seed    maphash.Seed
	shards  [hubShards]hubShard
	metrics *metrics
	// roomChanged is told of every room event (creation, era, lang), from
	// this node or another, before it is delivered.
	roomChanged func(roomID string)
	// signOuts counts the sign-outs delivered here. A socket whose session
	// was checked before one of them may have been registered after it
	// closed the user's sockets: startConn then checks the session again.
	signOuts atomic.Uint64
}

type hubShard struct {
	mu    sync.RWMutex
	conns map[string][]*conn // user id → connections
}

func newHub(m *metrics) *Hub {
	h := &Hub{seed: maphash.MakeSeed(), metrics: m}
	for i := range h.shards {
		h.shards[i].conns = make(map[string][]*conn)
	}
	return h
}

func (h *Hub) shard(userID string) *hubShard {
	return &h.shards[maphash.String(h.seed, userID)%hubShards]
}

// Deliver hands ev to the connections of ev.Members on this node. A
// multi-node Broker calls it for events published by any node, this one
// included. Events of a room may arrive out of seq order or more than once:
// each connection orders them, drops duplicates and fills gaps from the
// store, which must make a seq readable only after every lower seq.
func (h *Hub) Deliver(ev chat.Event) {
	h.deliverVia(ev, nil)
}

// deliverVia is Deliver from a fan-out that writes what it delivers when
// it is done (fo.flush), or from anywhere else with a nil fo.
func (h *Hub) deliverVia(ev chat.Event, fo *fanout) {
	if ev.Room == "" && bytes.Equal(ev.Payload, signedOut) {
		h.signOuts.Add(1) // before closeUser takes the shards' locks: see startConn
		for _, uid := range ev.Members {
			h.closeUser(uid, CloseUnauthorized, "signed out")
		}
		return
	}
	if ev.Seq == 0 && ev.Room != "" && h.roomChanged != nil {
		h.roomChanged(ev.Room)
	}
	n := 0
	for _, uid := range ev.Members {
		if uid == ev.Except {
			continue
		}
		sh := h.shard(uid)
		sh.mu.RLock()
		for _, c := range sh.conns[uid] {
			if c.deliverVia(ev, fo) {
				n++
			}
		}
		sh.mu.RUnlock()
	}
	if n > 0 {
		h.metrics.deliveries.Add(float64(n))
	}
}

// add registers c; it reports false, registering nothing, when c's user
// already has MaxConnsPerUser connections.
func (h *Hub) add(c *conn) bool {
	sh := h.shard(c.user.ID)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if len(sh.conns[c.user.ID]) >= MaxConnsPerUser {
		return false
	}
	sh.conns[c.user.ID] = append(sh.conns[c.user.ID], c)
	h.metrics.connections.Inc()
	return true
}

func (h *Hub) remove(c *conn) {
	sh := h.shard(c.user.ID)
	sh.mu.Lock()
	cs := sh.conns[c.user.ID]
	for i, x := range cs {
		if x == c {
			cs[i] = cs[len(cs)-1]
			cs[len(cs)-1] = nil
			cs = cs[:len(cs)-1]
			h.metrics.connections.Dec()
			break
		}
	}
	if len(cs) == 0 {
		delete(sh.conns, c.user.ID)
	} else {
		sh.conns[c.user.ID] = cs
	}
	sh.mu.Unlock()
}

// pingAll asks every connection's writer for a ping: one sweep instead
// of a ticker per connection, so an idle connection holds no timer and no
// writer goroutine between pings.
func (h *Hub) pingAll() {
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.RLock()
		for _, cs := range sh.conns {
			for _, c := range cs {
				c.ping()
			}
		}
		sh.mu.RUnlock()
	}
}

// pingLoop sweeps every period until ctx ends.
func (h *Hub) pingLoop(ctx context.Context, period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			h.pingAll()
		}
	}
}

// closeAll asks every connection to close with code and text.
func (h *Hub) closeAll(code int, text string) {
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.RLock()
		for _, cs := range sh.conns {
			for _, c := range cs {
				c.closeWith(code, text)
			}
		}
		sh.mu.RUnlock()
	}
}

// signedOut is the payload of the event, in no room, that ends its
// members' sockets on every node: they signed out (DELETE /api/v1/session).
var signedOut = []byte(`{"type":"signed_out"}`)

// closeUser closes every connection of one user (after logout).
func (h *Hub) closeUser(userID string, code int, text string) {
	sh := h.shard(userID)
	sh.mu.RLock()
	for _, c := range sh.conns[userID] {
		c.closeWith(code, text)
	}
	sh.mu.RUnlock()
}

// localBroker is the single-node Broker: it delivers straight to the hub.
type localBroker struct{ hub *Hub }

func (b localBroker) Publish(_ context.Context, ev chat.Event) error {
	b.hub.Deliver(ev)
	return nil
}
