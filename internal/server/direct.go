package server

import (
	"runtime"
	"slices"
	"sync"
	"time"
)

// fanout collects the connections that the messages of one sync (a group
// commit made durable) were queued for, so that each connection gets one
// write for all of them, made right after the sync by a flush goroutine
// (flushFanout), not by the connection's writer goroutine.
//
// Waking a writer per recipient, which then waits for a core and lingers
// up to lingerWait for more, was most of a delivery's latency on a busy
// machine. A big sync coalesces as well: it holds every message that
// arrived during the fsync before it. A small one does not (a few
// messages): its connections' writers are woken as before, and linger.
//
// A direct write never waits. What the socket does not take at once (its
// buffer is full: a slow reader), and everything for a connection whose
// writer is in a pass or that is closing, is left to the writer goroutine,
// which writes it in order and may wait for the socket.
//
// A fanout is filled by the store's sync goroutine only (publishFrame,
// through deliverVia); flushFanout hands it to the flush goroutine.
type fanout struct {
	conns []*conn
	msgs  int // messages published into it
}

// directMinBatch is the number of messages from which a sync's fan-out is
// written directly; below it the writers write it. At 2,000 msgs/s into
// 2 × 100 members a sync holds about 2 messages, and direct writes of one
// message each cost 15 % more server CPU than the writers' coalesced ones.
const directMinBatch = 4

// add marks c as having queued messages for this fan-out. c.mu is held.
func (f *fanout) add(c *conn) {
	if !c.dirty {
		c.dirty = true
		f.conns = append(f.conns, c)
	}
}

// flushFanout runs on the store's sync goroutine after the fan-out of a
// sync. A big fan-out is written by flush goroutines, so that the sync
// goroutine goes on to the next fsync meanwhile; it waits only for the
// flush before (one runs at a time: a connection's queue is written in
// order). A small one wakes the writers.
func (s *Server) flushFanout() {
	f := s.fo
	if len(f.conns) == 0 {
		f.msgs = 0
		return
	}
	if f.msgs < directMinBatch {
		for _, c := range f.conns {
			c.wakeWriter()
		}
		f.reset()
		return
	}
	s.fo = <-s.foFree
	go func() {
		f.flush()
		s.foFree <- f
	}()
}

// flush writes each connection's queue, spread over as many goroutines as
// there are Ps: the writes are most of the fan-out's CPU.
func (f *fanout) flush() {
	parts := min(runtime.GOMAXPROCS(0), (len(f.conns)+flushPartMin-1)/flushPartMin)
	var wg sync.WaitGroup
	for i := 1; i < parts; i++ {
		wg.Add(1)
		go func(cs []*conn) {
			defer wg.Done()
			for _, c := range cs {
				c.flushDirect()
			}
		}(f.conns[i*len(f.conns)/parts : (i+1)*len(f.conns)/parts])
	}
	for _, c := range f.conns[:len(f.conns)/parts] {
		c.flushDirect()
	}
	wg.Wait()
	f.reset()
}

// flushPartMin is the fewest connections worth a flush goroutine.
const flushPartMin = 32

func (f *fanout) reset() {
	clear(f.conns)
	f.conns, f.msgs = f.conns[:0], 0
}

// wakeWriter leaves what the fan-out queued to the writer goroutine.
func (c *conn) wakeWriter() {
	c.mu.Lock()
	c.dirty = false
	if len(c.queue) > 0 {
		c.signal()
	}
	c.mu.Unlock()
}

// flushDirect writes the queue as one text frame straight to the socket,
// as much as it takes without waiting; the writer goroutine writes the
// rest, and everything when it is busy. The write is made without c.mu:
// the store's sync goroutine queues the next sync's messages to the same
// connections meanwhile, and must not wait for a socket.
func (c *conn) flushDirect() {
	c.mu.Lock()
	c.dirty = false
	if len(c.queue) == 0 {
		c.mu.Unlock()
		return
	}
	if c.closing || c.writing || c.partial != nil || c.raw == nil {
		c.signal()
		c.mu.Unlock()
		return
	}
	q := c.queue
	c.queue, c.queueBytes = nil, 0
	c.direct = true // the writer's passes wait for the end of this write
	c.mu.Unlock()

	buf := appendTextFrame(getBuf(), q)
	putQueue(q)
	n, err := c.raw.writeNonBlocking(buf)

	c.mu.Lock()
	c.direct = false
	switch {
	case n == len(buf) && err == nil:
		putBuf(buf)
		c.srv.metrics.directWhole.Inc()
		if c.passWaits {
			c.passWaits = false
			c.signal()
		}
	default:
		// The socket took part of the frame or none of it (a full buffer,
		// an expired write deadline, a broken socket): the writer writes
		// the rest before anything else, or finds the error.
		c.partial, c.partialOff = buf, n
		if n == 0 {
			c.srv.metrics.directNone.Inc()
		} else {
			c.srv.metrics.directPart.Inc()
		}
		c.passWaits = false
		c.signal()
	}
	c.mu.Unlock()
}

// writePartial writes the rest of a frame that a direct write began,
// waiting for the socket up to writeWait. Writer goroutine only, with
// c.writing set.
func (c *conn) writePartial(buf []byte, off int) error {
	nc := c.ws.NetConn()
	_ = nc.SetWriteDeadline(time.Now().Add(writeWait))
	_, err := nc.Write(buf[off:])
	putBuf(buf)
	return err
}

// appendTextFrame appends to buf one unmasked, final WebSocket text frame
// (RFC 6455, section 5.2) whose payload is q's objects separated by '\n':
// what the writer sends through gorilla/websocket for the same queue.
func appendTextFrame(buf []byte, q [][]byte) []byte {
	n := len(q) - 1
	for _, p := range q {
		n += len(p)
	}
	buf = slices.Grow(buf, n+10)
	buf = append(buf, 0x81) // FIN, text
	switch {
	case n < 126:
		buf = append(buf, byte(n))
	case n <= 0xffff:
		buf = append(buf, 126, byte(n>>8), byte(n))
	default:
		buf = append(buf, 127, byte(n>>56), byte(n>>48), byte(n>>40), byte(n>>32),
			byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	for i, p := range q {
		if i > 0 {
			buf = append(buf, '\n')
		}
		buf = append(buf, p...)
	}
	return buf
}
