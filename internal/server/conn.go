package server

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/linkwall/linkwall/internal/chat"
)

const (
	// resumeWait is how long live events of the rooms listed in hello are
	// held back right after connecting, so that a client which resumes
	// first sees history and live messages as one gapless sequence. Rooms
	// the client sends to or resumes are released at once.
	resumeWait = 500 * time.Millisecond
	// maxGapTries bounds the store reads spent on one gap before the
	// connection gives up on it (the store must have every seq below a
	// delivered one, so this only trips on a broken store).
	maxGapTries = 5
	// maxPooledBuf and maxPooledQueue bound what the pools keep: about one
	// full queue. The pools are shared, so idle connections hold nothing.
	maxPooledBuf   = 2 << 20
	maxPooledQueue = 4096
	// maxEarlyEvents bounds the events kept while a new connection's hello
	// is prepared (one store read).
	maxEarlyEvents = 10_000
)

// bufPool recycles the writers' frame buffers; queuePool the queues.
// Idle connections hold neither.
var (
	bufPool   = sync.Pool{New: func() any { return new([]byte) }}
	queuePool = sync.Pool{New: func() any { return new([][]byte) }}
)

func getBuf() []byte { return (*bufPool.Get().(*[]byte))[:0] }

func putBuf(b []byte) {
	if cap(b) == 0 || cap(b) > maxPooledBuf {
		return
	}
	b = b[:0]
	bufPool.Put(&b)
}

func getQueue() [][]byte { return (*queuePool.Get().(*[][]byte))[:0] }

func putQueue(q [][]byte) {
	if cap(q) == 0 || cap(q) > maxPooledQueue {
		return
	}
	clear(q) // drop the payloads
	q = q[:0]
	queuePool.Put(&q)
}

// conn is one WebSocket connection: a reader goroutine that runs the
// client's frames through the server, and a writer goroutine that writes
// to the socket. Everything else only appends to its queue; the one other
// writer is the fan-out of a large group commit (direct.go), whose writes
// never wait and leave to the writer what the socket does not take.
type conn struct {
	srv    *Server
	ws     *websocket.Conn
	user   chat.User
	log    *zap.Logger     // shared: a per-connection With would cost a copy of the encoder
	ctx    context.Context // canceled when the reader has ended (its last message is finished)
	cancel context.CancelFunc

	wake chan struct{} // capacity 1: the writer has something to do
	// raw is the socket, for the fan-out's writes that never wait (direct.go);
	// nil: the writer goroutine writes everything.
	raw *rawWriter
	// wroteAt is when the writer last wrote messages; writer goroutine only.
	wroteAt time.Time

	mu           sync.Mutex
	writerOn     bool      // a writer goroutine runs; it exits after writerIdle with nothing to do
	writerGone   bool      // the writer has ended the connection: never start another
	pingDue      bool      // the hub's ping sweep asks for a ping
	pongDue      []byte    // non-nil: the client pinged; the writer answers
	writing      bool      // the writer goroutine is in a pass: only it may write to the socket
	partial      []byte    // a frame a direct write began (pooled); the writer writes the rest first
	partialOff   int       // how much of partial was written
	fo           *fanout   // set while a fan-out delivers: new messages wait for its flush
	direct       bool      // a flush goroutine is writing to the socket (without c.mu)
	passWaits    bool      // the writer wanted a pass during that write: signal it after
	dirty        bool      // in fo's list
	queue        [][]byte  // encoded objects, shared with other connections; written as one frame
	queueBytes   int       // bytes in queue, counted against the bound
	queuedAt     time.Time // when the oldest object in queue was queued
	pendingBytes int       // bytes held in roomState.pending, bounded separately
	closing      bool
	code         int
	text         string
	rooms        map[string]*roomState
	work         map[string]struct{} // rooms with a resume or a gap to fetch
	holdUntil    time.Time           // rooms still held are released then
	starting     bool                // hello not queued yet: events wait in early
	early        []chat.Event

	strikes  int           // rate-limited sends in a row; reader goroutine only
	inflight chan struct{} // sends queued for the store; made by the reader on its first send
	resumes  *rate.Limiter // made by the reader on its first resume
}

// roomState is what one connection knows about one room's sequence.
type roomState struct {
	last     int64  // every seq ≤ last (from base, or from the resume point) was delivered, in order
	base     int64  // > 0: delivery began live at base; older late events pass through
	held     bool   // just connected: waiting for the client's resume
	resuming bool   // reading history from the store: live events wait in pending
	cause    string // why resuming: causeResume or causeOverflow (metrics)
	gapSince time.Time
	pending  []chat.Event // live events waiting behind a hold, a resume or a gap
}

func newConn(s *Server, ws *websocket.Conn, u chat.User) *conn {
	ctx, cancel := context.WithCancel(s.ctx)
	c := &conn{
		srv: s, ws: ws, user: u, ctx: ctx, cancel: cancel,
		log:      s.log,
		wake:     make(chan struct{}, 1),
		rooms:    make(map[string]*roomState),
		starting: true,
		work:     make(map[string]struct{}),
	}
	if ws != nil {
		c.raw = rawConn(ws.NetConn())
		// Control frames are answered by the writer: gorilla's default
		// handlers would write from the reader, past the direct writes.
		ws.SetPingHandler(func(data string) error {
			c.mu.Lock()
			if !c.closing {
				c.pongDue = []byte(data)
				c.signal()
			}
			c.mu.Unlock()
			return nil
		})
		ws.SetCloseHandler(func(code int, _ string) error {
			if code == websocket.CloseNoStatusReceived {
				code = websocket.CloseNormalClosure
			}
			c.closeWith(code, "")
			return nil
		})
	}
	return c
}

// signal wakes the writer, starting one if none runs. c.mu must be held.
// Idle connections have no writer goroutine (and no stack for it).
func (c *conn) signal() {
	if !c.writerOn {
		if c.writerGone || c.ws == nil { // no socket: a unit test's connection
			return
		}
		c.writerOn = true
		c.srv.wg.Add(1) // a live reader (or serveWS) holds a count, so this is no reuse
		go func() {
			defer c.srv.wg.Done()
			c.writeLoop()
		}()
		return // a new writer looks at everything once before it waits
	}
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// start queues the hello frame first, then holds the rooms it lists until
// the client resumes them or resumeWait passes, then delivers the events
// that arrived while the hello was being prepared.
func (c *conn) start(hello []byte, rooms []chat.Room) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.starting = false
	if c.closing {
		// Closed while the rooms were read (logout, shutdown, too many
		// early events): the writer may be gone, and with it c.rooms.
		c.early = nil
		return
	}
	if hello != nil {
		c.enqueueHelloLocked(hello)
	}
	for _, r := range rooms {
		c.rooms[r.ID] = &roomState{held: true}
	}
	if len(rooms) > 0 {
		c.holdUntil = time.Now().Add(c.srv.limits.ResumeWait)
		c.signal()
	}
	for _, ev := range c.early {
		c.deliverLocked(ev)
	}
	c.early = nil
}

// closeWith asks the writer to close the connection with code; it never blocks.
func (c *conn) closeWith(code int, text string) {
	c.mu.Lock()
	c.closeLocked(code, text)
	c.mu.Unlock()
}

func (c *conn) closeLocked(code int, text string) {
	if c.closing {
		return
	}
	c.closing, c.code, c.text = true, code, text
	c.signal()
}

// send enqueues b outside the sequence logic (errors, pongs, acks of duplicates).
func (c *conn) send(b []byte) {
	c.mu.Lock()
	c.enqueueLocked(b)
	c.mu.Unlock()
}

// enqueueHelloLocked queues the hello, the connection's first frame,
// outside the queue's bound: a client cannot start without it, and its size
// is bounded by the rooms a user may be in (MaxRoomsPerUser) and their
// members. Not counting it leaves the whole bound to the events after it.
func (c *conn) enqueueHelloLocked(b []byte) {
	c.appendQueueLocked(b)
	c.signal()
}

// appendQueueLocked adds b to the queue, noting when a queue starts.
func (c *conn) appendQueueLocked(b []byte) {
	if c.queue == nil {
		c.queue = getQueue()
	}
	if len(c.queue) == 0 {
		c.queuedAt = time.Now()
	}
	c.queue = append(c.queue, b) // the payload is immutable once published
}

// enqueueLocked appends b to the queue, or drops the connection as a slow
// consumer if the queue would pass its bound. It never waits.
func (c *conn) enqueueLocked(b []byte) bool {
	if c.closing {
		return false
	}
	if c.queueBytes+len(b)+1 > c.srv.limits.MaxQueueBytes {
		c.dropSlowLocked()
		return false
	}
	c.appendQueueLocked(b)
	c.queueBytes += len(b) + 1
	if c.fo != nil && c.raw != nil && !c.writing && c.partial == nil {
		c.fo.add(c) // written by the fan-out when it is done
		return true
	}
	c.signal()
	return true
}

func (c *conn) dropSlowLocked() {
	if !c.closing {
		c.srv.metrics.slowConsumers.Inc()
		c.closeLocked(CloseSlowConsumer, "slow consumer, reconnect and resume")
	}
}

// deliver applies the per-room sequence logic to ev and enqueues it when
// it is next: duplicates (seq ≤ last) are skipped, events after a gap wait
// until the gap is filled live or from the store. Called by the hub.
func (c *conn) deliver(ev chat.Event) bool {
	return c.deliverVia(ev, nil)
}

// deliverVia is deliver from a fan-out that writes what it queued when it
// is done (fo.flush); nil: the writer goroutine writes it.
func (c *conn) deliverVia(ev chat.Event, fo *fanout) bool {
	c.mu.Lock()
	var ok bool
	switch {
	case !c.starting:
		c.fo = fo
		ok = c.deliverLocked(ev)
		c.fo = nil
	case len(c.early) >= maxEarlyEvents:
		c.dropSlowLocked()
	default:
		c.early = append(c.early, ev)
		ok = true
	}
	c.mu.Unlock()
	return ok
}

func (c *conn) deliverLocked(ev chat.Event) bool {
	if c.closing {
		return false
	}
	if ev.Seq == 0 {
		return c.enqueueLocked(ev.Payload)
	}
	st := c.rooms[ev.Room]
	switch {
	case st == nil:
		c.rooms[ev.Room] = &roomState{last: ev.Seq, base: ev.Seq}
		return c.enqueueLocked(ev.Payload)
	case st.held || st.resuming:
		return c.bufferLocked(ev.Room, st, ev)
	case ev.Seq <= st.last:
		if ev.Seq < st.base {
			// Overtaken by a later event before this connection started
			// tracking the room: never delivered here, so not a duplicate.
			// Extending the tracked range down makes a repeat a duplicate.
			if ev.Seq == st.base-1 {
				st.base--
			}
			return c.enqueueLocked(ev.Payload)
		}
		return false
	case ev.Seq == st.last+1 && len(st.pending) == 0:
		st.last = ev.Seq
		return c.enqueueLocked(ev.Payload)
	}
	ok := c.bufferLocked(ev.Room, st, ev)
	c.flushPendingLocked(st)
	c.checkGapLocked(ev.Room, st)
	return ok
}

func (c *conn) bufferLocked(room string, st *roomState, ev chat.Event) bool {
	if c.pendingBytes+len(ev.Payload) > c.srv.limits.MaxQueueBytes {
		// Waiting events are only a shortcut: they are all in the store.
		// Rather than hold more, drop them and read the room from the store.
		c.overflowLocked(room, st, ev.Seq)
		return true
	}
	st.pending = append(st.pending, ev)
	c.pendingBytes += len(ev.Payload)
	return true
}

// overflowLocked drops a room's waiting events and makes the writer read
// them from the store instead. seq is the event that did not fit.
func (c *conn) overflowLocked(room string, st *roomState, seq int64) {
	if st.held {
		// Deliver from the oldest waiting event on, as a release would.
		first := seq
		for _, p := range st.pending {
			first = min(first, p.Seq)
		}
		st.held = false
		st.base, st.last = first, first-1
	}
	for _, p := range st.pending {
		c.pendingBytes -= len(p.Payload)
	}
	clear(st.pending)
	st.pending = nil
	st.resuming, st.gapSince, st.cause = true, time.Time{}, causeOverflow
	c.work[room] = struct{}{}
	c.signal()
}

// flushPendingLocked enqueues the pending events that continue the
// sequence and drops those already delivered.
func (c *conn) flushPendingLocked(st *roomState) {
	if len(st.pending) == 0 {
		return
	}
	sortEvents(st.pending)
	i := 0
	for ; i < len(st.pending); i++ {
		ev := st.pending[i]
		if ev.Seq > st.last+1 {
			break
		}
		c.pendingBytes -= len(ev.Payload)
		if ev.Seq == st.last+1 {
			st.last = ev.Seq
			c.enqueueLocked(ev.Payload)
		}
	}
	n := copy(st.pending, st.pending[i:])
	clear(st.pending[n:]) // drop references to delivered payloads
	st.pending = st.pending[:n]
	if n == 0 {
		st.pending = nil
	}
}

// checkGapLocked starts the gap timer when events wait behind a missing seq.
func (c *conn) checkGapLocked(room string, st *roomState) {
	if len(st.pending) == 0 {
		st.gapSince = time.Time{}
		return
	}
	if st.gapSince.IsZero() {
		st.gapSince = time.Now()
		c.work[room] = struct{}{}
		c.signal()
	}
}

// releaseLocked ends a hold: the waiting live events are delivered in order
// as if the connection had started tracking the room with the first of them.
func (c *conn) releaseLocked(room string, st *roomState) {
	st.held = false
	if len(st.pending) == 0 {
		delete(c.rooms, room) // untracked until the next event
		return
	}
	sortEvents(st.pending)
	st.base = st.pending[0].Seq
	st.last = st.base - 1
	c.flushPendingLocked(st)
	c.checkGapLocked(room, st)
}

// release ends the hold of one room (the client sent to it).
func (c *conn) release(room string) {
	c.mu.Lock()
	if st := c.rooms[room]; st != nil && st.held {
		c.releaseLocked(room, st)
	}
	c.mu.Unlock()
}

// resume makes the writer send every message of room after seq `after`,
// then the live ones, without gap or duplicate.
func (c *conn) resume(room string, after int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return // the writer may be gone, and with it the room states
	}
	st := c.rooms[room]
	if st == nil {
		st = &roomState{}
		c.rooms[room] = st
	}
	st.held, st.resuming, st.cause = false, true, causeResume
	st.base, st.last = 0, after
	st.gapSince = time.Time{}
	c.work[room] = struct{}{}
	c.signal()
}

// writeLoop writes to the socket while no direct write runs: it writes the queue
// coalesced into one text frame, pings when the hub's sweep asks, runs
// catch-ups and closes. With nothing to do for writerIdle it exits; the
// next signal starts a new one.
//
// It waits on c.wake alone. Its timer (idle exit, holds, gap grace) only
// signals c.wake, and is re-armed only when it must fire earlier than it
// is set to: a busy writer passes hundreds of times a second, and a select
// over a timer's channel plus a Reset on every pass showed as 6 % of the
// server's CPU profile at 384k deliveries/s (deliveries per CPU second,
// 4 interleaved runs: 317-329k before, 331-341k after). A tick that comes
// too early (the connection was busy meanwhile) just re-arms the timer.
func (c *conn) writeLoop() {
	var ticked atomic.Bool
	timer := time.AfterFunc(time.Hour, func() {
		ticked.Store(true)
		select {
		case c.wake <- struct{}{}:
		default:
		}
	})
	timer.Stop()
	var armedAt time.Time // when timer fires; zero: not armed
	ended := true         // the connection ends with this writer unless it exits idle
	defer func() {
		timer.Stop()
		if !ended {
			return
		}
		c.srv.hub.remove(c)
		_ = c.ws.Close()
		c.mu.Lock()
		c.closing, c.writerGone, c.writerOn = true, true, false
		putQueue(c.queue)
		putBuf(c.partial)
		c.queue, c.queueBytes, c.rooms, c.pendingBytes = nil, 0, nil, 0
		c.partial, c.pongDue = nil, nil
		c.mu.Unlock()
	}()
	active := time.Now() // the last wake-up with something to do
	for {
		next, err := c.pass()
		if err != nil || c.ended() {
			return
		}
		due := active.Add(writerIdle)
		if !next.IsZero() && next.Before(due) {
			due = next
		}
		if armedAt.IsZero() || due.Before(armedAt) {
			timer.Reset(time.Until(due))
			armedAt = due
		}
		<-c.wake
		if ticked.Swap(false) {
			armedAt = time.Time{}
			now := time.Now()
			if next.IsZero() && now.Sub(active) >= writerIdle {
				if c.exitIdle() {
					ended = false
					return
				}
				active = now // something is pending: look again a full period on
			}
			continue // pass does what is due; a message that came with the tick goes at once
		}
		c.linger()
		active = time.Now()
	}
}

// writerIdle is how long a writer with nothing to do waits before it exits.
const writerIdle = time.Second

// exitIdle reports whether the writer may exit, and if so marks it gone
// under the lock, so that the next signal starts a new one.
func (c *conn) exitIdle() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.queue) > 0 || c.closing || len(c.work) > 0 || c.pingDue || c.pongDue != nil ||
		c.partial != nil || !c.holdUntil.IsZero() {
		return false
	}
	for _, st := range c.rooms {
		if !st.gapSince.IsZero() || st.resuming {
			return false
		}
	}
	c.writerOn = false
	return true
}

// ended reports whether the connection was closed by pass.
func (c *conn) ended() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writerGone
}

// pass does everything due once: the rest of a direct write, a pong, a
// ping, the queue, a close, holds and catch-ups. It returns when it next
// needs to run (zero: when woken). While it runs, only it writes to the
// socket.
func (c *conn) pass() (time.Time, error) {
	c.mu.Lock()
	if c.direct {
		// A flush goroutine is writing; it signals when it is done.
		c.passWaits = true
		c.mu.Unlock()
		return time.Time{}, nil
	}
	c.writing = true
	part, off := c.partial, c.partialOff
	c.partial, c.partialOff = nil, 0
	closing, code, text, ping, pong := c.closing, c.code, c.text, c.pingDue, c.pongDue
	c.pingDue, c.pongDue = false, nil
	if closing && code == CloseSlowConsumer {
		// It could not keep up: it resumes after reconnecting.
		putQueue(c.queue)
		c.queue, c.queueBytes = nil, 0
	}
	c.mu.Unlock()
	defer c.endPass()
	if part != nil {
		// The frame a direct write began: nothing else may come between.
		if err := c.writePartial(part, off); err != nil {
			return time.Time{}, err
		}
	}
	if pong != nil {
		if err := c.ws.WriteControl(websocket.PongMessage, pong, time.Now().Add(writeWait)); err != nil {
			return time.Time{}, err
		}
	}
	if ping {
		if err := c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(writeWait)); err != nil {
			return time.Time{}, err
		}
	}
	if err := c.flush(); err != nil {
		return time.Time{}, err
	}
	if closing {
		msg := websocket.FormatCloseMessage(code, text)
		_ = c.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(writeWait))
		c.mu.Lock()
		c.writerGone = true
		c.mu.Unlock()
		return time.Time{}, nil
	}
	return c.doWork()
}

// endPass hands the socket back to direct writes. Every write of the pass
// set a write deadline, which would fail the next direct write once it
// passes: it is cleared first.
func (c *conn) endPass() {
	if c.raw != nil && c.srv.foFree != nil {
		_ = c.ws.NetConn().SetWriteDeadline(time.Time{})
	}
	c.mu.Lock()
	c.writing = false
	c.mu.Unlock()
}

// ping asks the writer for a ping (the hub's sweep).
func (c *conn) ping() {
	c.mu.Lock()
	if !c.closing {
		c.pingDue = true
		c.signal()
	}
	c.mu.Unlock()
}

// linger lets more messages join a short queue before it is written: a
// wake-up usually comes with the first messages of a group commit, and
// every write(2) costs about as much as a few messages' bytes. Measured at
// 3,500 msgs/s into 2 × 100 members: 27 % fewer write syscalls and 8 %
// less server CPU, p99 unchanged (fewer runnable goroutines).
func (c *conn) linger() {
	sinceWrote := time.Since(c.wroteAt)
	c.mu.Lock()
	wait := lingerFor(sinceWrote, time.Since(c.queuedAt), len(c.queue), c.closing)
	c.mu.Unlock()
	if wait > 0 {
		time.Sleep(wait)
	}
}

// lingerFor is how long a writer lingers before it writes queued objects,
// sinceQueued after the oldest of them was queued and sinceWrote after its
// last write. The wait counts from the oldest queued message, not from the
// wake-up: on a busy machine a writer is often scheduled milliseconds
// late, and its queue has had its time to fill already. A connection that
// has not written for lingerQuiet writes at once: nothing is likely to
// join the first message within lingerWait, and waiting would only delay
// it. An empty queue (a wake-up for a ping or a resume) has nothing to
// wait for.
func lingerFor(sinceWrote, sinceQueued time.Duration, queued int, closing bool) time.Duration {
	if sinceWrote >= lingerQuiet || queued == 0 || queued >= lingerBelow || closing {
		return 0
	}
	return max(lingerWait-sinceQueued, 0)
}

const (
	// lingerWait is how long a short queue may wait for more after its
	// oldest message was queued; it adds at most this to a message's
	// latency.
	lingerWait = 2 * time.Millisecond
	// lingerBelow is the queue length (objects) from which a writer
	// writes at once.
	lingerBelow = 8
	// lingerQuiet is how long after its last write a connection counts as
	// quiet. A member who got something less than 3 ms ago likely gets
	// more within lingerWait; one who got a message every ~9 ms (100
	// msgs/s into a room of 100 and LinkBot's notices) saved a write only
	// now and then but waited 2 ms each time. 3 ms instead of 10, at 200
	// and 400 msgs/s into 2 × 100 members: p50 1.5 and 2.2 ms instead of
	// 3.6 and 4.2, server CPU within 0.07 cores; from 1,500 msgs/s on,
	// where members get a message every millisecond or two, no change.
	lingerQuiet = 3 * time.Millisecond
)

// flush writes everything queued as one text frame.
func (c *conn) flush() error {
	c.mu.Lock()
	q := c.queue
	c.queue, c.queueBytes = nil, 0
	c.mu.Unlock()
	return c.write(q)
}

// write sends the objects of q as one text frame, separated by '\n'. The
// copy into one buffer happens here, in this connection's writer, not in
// the fan-out.
func (c *conn) write(q [][]byte) error {
	if len(q) == 0 {
		return nil
	}
	var err error
	_ = c.ws.SetWriteDeadline(time.Now().Add(writeWait))
	if len(q) == 1 {
		err = c.ws.WriteMessage(websocket.TextMessage, q[0])
	} else {
		n := len(q) - 1
		for _, p := range q {
			n += len(p)
		}
		buf := slices.Grow(getBuf(), n)
		for i, p := range q {
			if i > 0 {
				buf = append(buf, '\n')
			}
			buf = append(buf, p...)
		}
		err = c.ws.WriteMessage(websocket.TextMessage, buf)
		putBuf(buf)
	}
	putQueue(q)
	c.wroteAt = time.Now()
	if err != nil {
		c.log.Debug("write failed", zap.String("user", c.user.ID), zap.Error(err))
	}
	return err
}

// doWork releases expired holds and runs due catch-ups. It returns when it
// next needs to run (zero: only when woken).
func (c *conn) doWork() (time.Time, error) {
	now := time.Now()
	var next time.Time
	soon := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	var todo []string
	c.mu.Lock()
	if !c.holdUntil.IsZero() {
		if now.Before(c.holdUntil) {
			soon(c.holdUntil)
		} else {
			c.holdUntil = time.Time{}
			for id, st := range c.rooms {
				if st.held {
					c.releaseLocked(id, st)
				}
			}
		}
	}
	for room := range c.work {
		st := c.rooms[room]
		switch {
		case st == nil:
		case st.resuming:
			c.srv.metrics.catchUp(st.cause)
			todo = append(todo, room)
		case !st.gapSince.IsZero():
			if due := st.gapSince.Add(gapGrace); now.Before(due) {
				soon(due)
				continue
			}
			st.resuming = true // live events wait while the gap is read
			c.srv.metrics.catchUp(causeGap)
			todo = append(todo, room)
		}
		delete(c.work, room)
	}
	c.mu.Unlock()
	for _, room := range todo {
		if err := c.catchUp(room); err != nil {
			return next, err
		}
	}
	return next, nil
}

// catchUp sends the room's messages after the last delivered seq from the
// store, page by page, then the live events that waited meanwhile.
func (c *conn) catchUp(room string) error {
	for tries := 0; ; {
		c.mu.Lock()
		st := c.rooms[room]
		if st == nil || c.closing {
			c.mu.Unlock()
			return nil
		}
		after, asked := st.last, st.cause == causeResume && tries == 0
		c.mu.Unlock()

		// Recent messages come from the ring of what this node published;
		// the store only serves older ones (or every one with several nodes).
		var msgs []chat.Message
		ring, fromRing := c.srv.recent(room, after, maxPageSize)
		_, err := c.srv.memberRoom(c.ctx, c.user.ID, room)
		if err == nil && !fromRing {
			msgs, err = c.srv.history(c.ctx, c.user.ID, room, after, maxPageSize)
		}
		n := len(msgs)
		if fromRing {
			n = len(ring)
		}
		if err == nil && n == 0 && asked && after > 0 {
			err = c.checkResumePoint(room, after)
		}

		c.mu.Lock()
		if st = c.rooms[room]; st == nil || c.closing {
			c.mu.Unlock()
			return nil
		}
		if err == nil && st.last != after {
			// A resume moved the starting point while the store was read.
			c.mu.Unlock()
			continue
		}
		// Live events that overflowed the waiting bound during the read were
		// dropped (overflowLocked) and must be read too: no finishing yet.
		_, overflowed := c.work[room]
		if overflowed {
			delete(c.work, room)
		}
		if err != nil {
			if c.ctx.Err() == nil {
				c.log.Warn("resume failed", zap.String("user", c.user.ID), zap.String("room", room), zap.Error(err))
			}
			switch chat.ErrorCode(err) {
			case chat.EForbidden, chat.ENotFound, chat.EInvalid:
			default:
				// The store failed: going on live would skip what was not
				// read. The client reconnects and resumes from its last seq.
				c.closeLocked(closeCode(chat.ErrorCode(err)), "cannot read history; reconnect and resume")
				c.mu.Unlock()
				return nil
			}
			c.enqueueLocked(encodeRoomErr(err, typeResume, room))
			st.resuming, st.gapSince = false, time.Time{}
			c.releaseLocked(room, st)
			c.mu.Unlock()
			return nil
		}
		// Everything queued so far is older than this page: write it first.
		q := c.queue
		c.queue, c.queueBytes = nil, 0
		for i := range ring {
			e := &ring[i]
			if e.seq <= st.last {
				continue
			}
			p := e.payload
			if e.sender == c.user.ID && e.senderPayload != nil {
				p = e.senderPayload
			}
			q = append(q, p)
			st.last = e.seq
		}
		if len(msgs) > 0 {
			sortEvents(st.pending) // for pageEntryLocked's search
		}
		for i := range msgs {
			m := &msgs[i]
			if m.Seq <= st.last {
				continue
			}
			q = append(q, c.pageEntryLocked(st, m))
			st.last = m.Seq
		}
		c.srv.metrics.catchUpRead(fromRing, n)
		finished := false
		if n < maxPageSize && !overflowed {
			c.flushPendingLocked(st)
			if len(st.pending) > 0 && tries >= maxGapTries {
				c.log.Warn("giving up on a gap", zap.String("user", c.user.ID), zap.String("room", room),
					zap.Int64("last", st.last), zap.Int64("next", st.pending[0].Seq))
				st.last = st.pending[0].Seq - 1
				c.flushPendingLocked(st)
			}
			if len(st.pending) == 0 {
				st.resuming, st.gapSince = false, time.Time{}
				finished = true
			}
			tries++
		}
		c.mu.Unlock()
		if err := c.write(q); err != nil {
			return err
		}
		if finished {
			return nil
		}
		if n < maxPageSize && !overflowed {
			// Events overtook a message that is not readable yet: wait a little.
			select {
			case <-time.After(gapGrace):
			case <-c.ctx.Done():
				return c.ctx.Err()
			}
		}
	}
}

// checkResumePoint refuses a resume from past the room's last message:
// every live message up to that seq would count as delivered and be
// skipped. It runs only when nothing follows after, so an up-to-date
// client's resume costs one more read of one message (from the store
// directly: membership was checked, and nothing is shown).
func (c *conn) checkResumePoint(room string, after int64) error {
	msgs, err := c.srv.store.Messages(c.ctx, room, after-1, 1)
	if err != nil || len(msgs) > 0 {
		return err
	}
	return chat.Errorf(chat.EInvalid, "after %d is past the room's last message", after)
}

// pageEntryLocked encodes one message read from the store. The live event
// waiting for the same seq is used instead when there is one, so the
// sender's copy keeps its client_msg_id.
func (c *conn) pageEntryLocked(st *roomState, m *chat.Message) []byte {
	// st.pending is sorted by seq (catchUp sorts it before the page).
	if i, ok := slices.BinarySearchFunc(st.pending, m.Seq, func(ev chat.Event, seq int64) int {
		return cmp.Compare(ev.Seq, seq)
	}); ok {
		return st.pending[i].Payload
	}
	b := encodeMessage(m)
	if m.Sender.ID == c.user.ID {
		b = withClientMsgID(b, m.ClientMsgID)
	}
	return b
}

// readLoop reads the client's frames until the connection ends.
func (c *conn) readLoop() {
	defer c.closeWith(websocket.CloseNormalClosure, "")
	// The frame limit is enforced here, not by gorilla's SetReadLimit: past
	// it, gorilla writes a close frame from this goroutine, which could land
	// inside a frame a direct write has begun. The writer closes instead.
	c.ws.SetReadLimit(0)
	wait := c.srv.limits.PongWait
	_ = c.ws.SetReadDeadline(time.Now().Add(wait))
	c.ws.SetPongHandler(func(string) error {
		return c.ws.SetReadDeadline(time.Now().Add(wait))
	})
	for {
		mt, data, err := c.readMessage()
		if err != nil {
			var ne net.Error
			if errors.Is(err, websocket.ErrReadLimit) {
				c.closeWith(websocket.CloseMessageTooBig, "frame too large")
			} else if errors.As(err, &ne) && ne.Timeout() {
				c.closeWith(CloseIdle, "nothing received, not even a pong, in time")
			} else if websocket.IsUnexpectedCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway, websocket.CloseNoStatusReceived) {
				c.log.Debug("read failed", zap.String("user", c.user.ID), zap.Error(err))
			}
			return
		}
		_ = c.ws.SetReadDeadline(time.Now().Add(wait))
		if mt != websocket.TextMessage {
			c.closeWith(websocket.CloseUnsupportedData, "text frames only")
			return
		}
		if !c.handleFrame(data) {
			return
		}
	}
}

// readMessage is websocket.Conn.ReadMessage bounded by the frame limit:
// a message past it is not read further and ends in ErrReadLimit.
func (c *conn) readMessage() (int, []byte, error) {
	mt, r, err := c.ws.NextReader()
	if err != nil {
		return mt, nil, err
	}
	max := c.srv.limits.MaxFrameBytes
	data, err := io.ReadAll(io.LimitReader(r, max+1))
	if err == nil && int64(len(data)) > max {
		err = websocket.ErrReadLimit
	}
	return mt, data, err
}

// handleFrame runs every JSON object of one text frame. It reports false
// when the connection must end.
func (c *conn) handleFrame(data []byte) bool {
	frames, err := decodeFrames(data)
	for i := range frames {
		if !c.handle(&frames[i]) {
			return false
		}
	}
	if err != nil {
		c.send(encodeErr(err, ""))
	}
	return true
}

// maxObjectsPerFrame bounds the objects of one inbound text frame; each
// send among them still counts against the rate limit.
const maxObjectsPerFrame = 100

// decodeFrames parses the JSON objects of one inbound text frame (one or
// more, separated by whitespace such as '\n'). An object with a field of
// the wrong type is read whole, so it is returned with bad set and the
// objects after it still count. Malformed JSON ends the frame: it returns
// the objects before it and an EInvalid error describing it.
func decodeFrames(data []byte) ([]inFrame, error) {
	if !utf8.Valid(data) {
		return nil, chat.Errorf(chat.EInvalid, "frame is not valid UTF-8")
	}
	var out []inFrame
	dec := json.NewDecoder(bytes.NewReader(data))
	for {
		var f inFrame
		err := dec.Decode(&f)
		if err == io.EOF {
			return out, nil
		}
		te, wrongType := errors.AsType[*json.UnmarshalTypeError](err)
		if err != nil && !wrongType {
			return out, chat.Errorf(chat.EInvalid, "malformed frame: %v", err)
		}
		if len(out) == maxObjectsPerFrame {
			return out, chat.Errorf(chat.EInvalid, "more than %d objects in one frame", maxObjectsPerFrame)
		}
		if wrongType {
			if te.Field != "" {
				f.bad = chat.Errorf(chat.EInvalid, "malformed frame: %s must be a %s, not %s", te.Field, jsonKind(te.Type.Kind().String()), withArticle(te.Value))
			} else {
				f.bad = chat.Errorf(chat.EInvalid, "malformed frame: a JSON object expected, not %s", withArticle(te.Value))
			}
		}
		out = append(out, f)
	}
}

// withArticle puts "a" or "an" before a JSON value's kind.
func withArticle(kind string) string {
	if strings.HasPrefix(kind, "a") || strings.HasPrefix(kind, "o") {
		return "an " + kind
	}
	return "a " + kind
}

// jsonKind names a Go kind of inFrame's fields as JSON does; the integer
// fields take whole numbers only ("after": 1.5 is a number, but not one).
func jsonKind(goKind string) string {
	if goKind == "string" {
		return "string"
	}
	return "whole number"
}

func (c *conn) handle(f *inFrame) bool {
	if f.bad != nil {
		c.send(f.errFrame(f.bad))
		return true
	}
	if err := f.check(); err != nil {
		c.send(f.errFrame(err))
		return true
	}
	switch f.Type {
	case typeSend:
		return c.handleSend(f)
	case typeResume:
		if c.resumes == nil {
			c.resumes = rate.NewLimiter(resumeRate, c.srv.limits.MaxRoomsPerUser)
		}
		if !c.resumes.Allow() {
			c.srv.metrics.rateLimited.Inc()
			c.send(f.errFrame(chat.Errorf(chat.ERateLimited, "more than %g resumes per second; slow down", float64(resumeRate))))
			return true
		}
		if _, err := c.srv.memberRoom(c.ctx, c.user.ID, f.Room); err != nil {
			c.send(f.errFrame(err))
			return true
		}
		c.resume(f.Room, f.After)
	case typePing:
		c.send(pongPayload)
	}
	return true
}

// errFrame is the error frame refusing f: with its ref and, for a send or
// a resume, its room.
func (f *inFrame) errFrame(err error) []byte {
	switch f.Type {
	case typeSend, typeResume:
		return encodeRoomErr(err, f.ref(), f.Room)
	}
	return encodeErr(err, f.ref())
}

// ref is what an error frame about f refers to: the client_msg_id of a
// send (or "send"), "resume", or the frame's type, cut short.
func (f *inFrame) ref() string {
	switch f.Type {
	case typeSend:
		if f.ClientMsgID != "" && len(f.ClientMsgID) <= maxClientMsgID {
			return f.ClientMsgID
		}
		return typeSend
	case typeResume:
		return typeResume
	}
	ref := f.Type
	if len(ref) > 32 {
		ref = strings.ToValidUTF8(ref[:32], "")
	}
	return ref
}

func (c *conn) handleSend(f *inFrame) bool {
	c.release(f.Room)
	req := &Request{
		User:        c.user,
		RoomID:      f.Room,
		Text:        f.Text,
		ClientMsgID: f.ClientMsgID,
		Received:    time.Now(),
	}
	ref := f.ref()
	// The reader goes on to the client's next frame while this message is
	// made durable: a message that arrives behind one waiting for its
	// fsync would wait too (at 6,000 msgs/s into 2 × 100 members, 3 % of
	// sends did, 24 ms on average). The store keeps one connection's sends
	// in order; inflight bounds how many wait.
	if c.inflight == nil {
		c.inflight = make(chan struct{}, maxInflightSends)
	}
	c.inflight <- struct{}{}
	req.Async = c.sent(ref, f.Room, f.ClientMsgID)
	err := c.srv.chain.Handle(c.ctx, req)
	if !req.Queued {
		<-c.inflight
	}
	if err != nil {
		if chat.ErrorCode(err) == chat.ERateLimited {
			c.strikes++
			if c.strikes >= c.srv.limits.RateStrikes {
				c.send(f.errFrame(err))
				c.closeWith(CloseRateLimited, "rate limit exceeded")
				return false
			}
		}
		if !isChatError(err) && c.ctx.Err() == nil {
			c.log.Error("send failed", zap.String("user", c.user.ID), zap.String("room", f.Room), zap.Error(err))
		}
		c.send(f.errFrame(err))
		return true
	}
	c.strikes = 0
	if req.Dup {
		c.ackDuplicate(&req.Message, req.ClientMsgID)
	}
	return true
}

// maxInflightSends bounds one connection's sends queued for the store
// and not yet answered; the reader waits (and TCP pushes back on the
// client) beyond it.
const maxInflightSends = 32

// sent returns what a send queued for the store runs once it is
// answered, on the store's goroutine: the fan-out (the sender's copy is
// its acknowledgement) has run already; errors and duplicates are
// answered here, as handleSend answers them for a send it waited for.
func (c *conn) sent(ref, room, clientMsgID string) func(chat.Message, bool, error) {
	return func(m chat.Message, dup bool, err error) {
		<-c.inflight
		switch {
		case err != nil:
			if !isChatError(err) && c.srv.ctx.Err() == nil {
				c.log.Error("send failed", zap.String("user", c.user.ID), zap.String("room", room), zap.Error(err))
			}
			c.send(encodeRoomErr(err, ref, room))
		case dup:
			c.ackDuplicate(&m, clientMsgID)
		}
	}
}

// ackDuplicate acknowledges a repeated send, to this connection only. If
// the connection has already delivered that seq, the client asked again
// and gets the acknowledgement at once. Otherwise it goes through the
// room's sequence like any event: a resend right after a resume must not
// overtake the history it is part of (the history's copy carries the
// client_msg_id too, so the client sees the seq once, in order).
func (c *conn) ackDuplicate(m *chat.Message, clientMsgID string) {
	ack := withClientMsgID(encodeMessage(m), clientMsgID)
	c.mu.Lock()
	st := c.rooms[m.Room]
	delivered := !c.starting && st != nil && !st.held && !st.resuming && m.Seq >= st.base && m.Seq <= st.last
	c.mu.Unlock()
	if delivered {
		c.send(ack)
		return
	}
	c.deliver(chat.Event{Room: m.Room, Seq: m.Seq, Payload: ack})
}

func sortEvents(evs []chat.Event) {
	slices.SortFunc(evs, func(a, b chat.Event) int { return cmp.Compare(a.Seq, b.Seq) })
}
