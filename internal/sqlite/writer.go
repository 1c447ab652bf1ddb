package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/linkwall/linkwall/internal/chat"
)

// maxBatch bounds how many appends one transaction carries, so that one
// commit (and the callers waiting on it) stays short under a flood.
const maxBatch = 256

// appendReq is one caller's Append waiting for the writer.
type appendReq struct {
	ctx   context.Context
	m     chat.Message
	links []byte                          // m.Links encoded, done by the caller off the writer
	res   chan appendRes                  // buffered 1: the writer never blocks on a caller; nil with done
	done  func(chat.Message, bool, error) // AppendAsync's callback, instead of res
	then  func(chat.Message)              // run by the syncer once m is durable; may be nil
}

// answer hands r to the request's caller, without waiting.
func (req *appendReq) answer(r appendRes) {
	if req.done != nil {
		req.done(r.m, r.dup, r.err)
		return
	}
	req.res <- r
}

type appendRes struct {
	m   chat.Message
	dup bool
	err error
}

// intake holds the appends the writer has not taken yet. A request is
// queued without waiting for the writer, so a caller that does not need
// the answer at once (AppendAsync) goes on; what is queued while the
// writer commits forms its next batch.
type intake struct {
	mu     sync.Mutex
	q      []*appendReq
	closed bool          // set by the writer when it stops: nothing more is queued
	kick   chan struct{} // capacity 1: the queue is not empty
}

// put queues req, or reports errClosed once the writer has stopped.
func (in *intake) put(req *appendReq) error {
	in.mu.Lock()
	if in.closed {
		in.mu.Unlock()
		return errClosed
	}
	in.q = append(in.q, req)
	in.mu.Unlock()
	select {
	case in.kick <- struct{}{}:
	default: // the writer has been told already
	}
	return nil
}

// size is the number of queued requests.
func (in *intake) size() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return len(in.q)
}

// take moves up to maxBatch queued requests into batch. With stop set it
// also closes the queue, so that nothing is queued after the writer's
// last look.
func (in *intake) take(batch []*appendReq, stop bool) []*appendReq {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.closed = in.closed || stop
	n := min(len(in.q), maxBatch)
	batch = append(batch, in.q[:n]...)
	rest := copy(in.q, in.q[n:])
	clear(in.q[rest:])
	in.q = in.q[:rest]
	return batch
}

// Append assigns m the room's next Seq and returns once it is committed
// and the WAL synced. Concurrent appends are committed together (group
// commit): one transaction for everything that arrived while the previous
// one was committed, and one sync for every batch committed before it
// (see syncLoop).
//
// Once queued, a message is answered whatever ctx does: the writer skips
// requests whose ctx has ended before it writes them (and answers with
// the context error), so a message is never committed without its caller
// knowing its seq. Retrying with the same ClientMsgID is safe: it returns
// the stored message with dup=true.
func (s *Store) Append(ctx context.Context, m chat.Message) (chat.Message, bool, error) {
	return s.AppendThen(ctx, m, nil)
}

// AppendThen is Append that also runs then(stored) as soon as the message
// is durable, before AppendThen returns, unless it was a duplicate or was
// not stored. then runs on the store's sync goroutine, in commit order:
// a room's messages come in ascending seq order, and whatever a sync made
// durable comes in one run, so the work then does for one group commit
// (a fan-out) is done together and at once, instead of by each caller
// when it next gets a core. then must be quick and must not call the
// store: every append waits for it.
func (s *Store) AppendThen(ctx context.Context, m chat.Message, then func(chat.Message)) (chat.Message, bool, error) {
	req, err := s.newReq(ctx, m, then)
	if err != nil {
		return chat.Message{}, false, err
	}
	req.res = make(chan appendRes, 1)
	if err := s.in.put(req); err != nil {
		return chat.Message{}, false, err
	}
	r := <-req.res
	return r.m, r.dup, r.err
}

// AppendAsync is AppendThen that returns once the message is queued:
// done(stored, dup, err) reports what Append would have returned, right
// after then, on one of the store's goroutines (so it must be quick and
// must not call the store). Appends queued one after the other by one
// goroutine are committed in that order. An error returned by AppendAsync
// itself means nothing was queued and done will not run.
func (s *Store) AppendAsync(ctx context.Context, m chat.Message, then func(chat.Message), done func(chat.Message, bool, error)) error {
	req, err := s.newReq(ctx, m, then)
	if err != nil {
		return err
	}
	req.done = done
	return s.in.put(req)
}

func (s *Store) newReq(ctx context.Context, m chat.Message, then func(chat.Message)) (*appendReq, error) {
	if m.Room == "" || m.Sender.ID == "" {
		return nil, chat.Errorf(chat.EInvalid, "message room and sender are required")
	}
	if m.ID == "" {
		m.ID = uuid.NewString()
	}
	if m.SentAt.IsZero() {
		m.SentAt = now()
	}
	// Normalise to what reads return: UTC, no monotonic reading.
	m.SentAt = fromNanos(nanos(m.SentAt))
	m.Seq = 0
	links, err := encodeLinks(m.Links)
	if err != nil {
		return nil, chat.Errorf(chat.EInvalid, "links: %v", err)
	}
	return &appendReq{ctx: ctx, m: m, links: links, then: then}, nil
}

// writer is the one goroutine that appends messages. It alone touches next
// and dedup.
type writer struct {
	s     *Store
	next  map[string]int64 // room id → next seq, loaded from MAX(seq) on first use
	dedup *dedupWindows    // recent client_msg_ids per room

	sinceCheckpoint int // messages appended since the last checkpoint was asked for

	ins    *sql.Stmt // prepared on s.w
	bySeq  *sql.Stmt // the stored message a client_msg_id points to
	head   *sql.Stmt // room exists, and its MAX(seq)
	recent *sql.Stmt // a room's (seq, sender, client_msg_id) in a seq range, to fill its window
}

func newWriter(ctx context.Context, s *Store, window int64, maxEntries int) (*writer, error) {
	w := &writer{s: s, next: map[string]int64{}, dedup: newDedupWindows(window, maxEntries)}
	var err error
	if w.ins, err = s.w.PrepareContext(ctx, "INSERT INTO messages ("+messageCols+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"); err != nil {
		return nil, err
	}
	if w.bySeq, err = s.w.PrepareContext(ctx, "SELECT "+messageCols+" FROM messages WHERE room_id = ? AND seq = ?"); err != nil {
		w.closeStmts()
		return nil, err
	}
	if w.head, err = s.w.PrepareContext(ctx, "SELECT EXISTS (SELECT 1 FROM rooms WHERE id = ?), "+
		"COALESCE((SELECT MAX(seq) FROM messages WHERE room_id = ?), 0)"); err != nil {
		w.closeStmts()
		return nil, err
	}
	if w.recent, err = s.w.PrepareContext(ctx, "SELECT seq, sender_id, client_msg_id FROM messages "+
		"WHERE room_id = ? AND seq > ? AND seq <= ? AND client_msg_id <> '' ORDER BY seq"); err != nil {
		w.closeStmts()
		return nil, err
	}
	return w, nil
}

func (w *writer) closeStmts() {
	for _, st := range []*sql.Stmt{w.ins, w.bySeq, w.head, w.recent} {
		if st != nil {
			st.Close()
		}
	}
}

// run commits batches until Close; then it stops the intake, commits
// everything queued before that, and returns.
func (w *writer) run() {
	defer close(w.s.done)
	defer close(w.s.syncs) // the syncer answers what it holds, then ends
	defer w.closeStmts()
	batch := make([]*appendReq, 0, maxBatch)
	for {
		stop := false
		select {
		case <-w.s.in.kick:
		case <-w.s.quit:
			stop = true
		}
		// Whatever was queued while the previous batch was committed is
		// the next batch (up to maxBatch; the rest comes right after).
		for {
			if !stop {
				w.waitSyncer()
			}
			if batch = w.s.in.take(batch[:0], stop); len(batch) == 0 {
				break
			}
			w.commit(batch)
			clear(batch) // drop references to answered requests
		}
		if stop {
			return
		}
	}
}

// commitAheadMin is how many appends must be waiting for the writer to
// commit them while the syncer is still busy with the batch before.
const commitAheadMin = 32

// waitSyncer waits, before the writer takes the next batch, until the
// syncer is free to take it, unless commitAheadMin appends are waiting.
// A batch committed while the syncer is busy would wait for it anyway, and
// what arrives meanwhile would wait for the batch after: a message would
// wait for the sync in progress, then a whole sync for the batch ahead of
// it, then its own. Committed just before the hand-off, the batch holds
// everything that arrived during the sync before it. Under heavy load the
// writer still commits ahead, so that the commit and the fsync overlap.
func (w *writer) waitSyncer() {
	// The state is read after every wake-up: a token may be stale (the
	// syncer has taken a batch since), but the syncer sets the state
	// before it leaves a token, so none is missed.
	for !w.s.syncWait.Load() && w.s.in.size() < commitAheadMin {
		select {
		case <-w.s.syncIdle: // look again: the token may be stale
		case <-w.s.in.kick: // more waiting: look again
		case <-w.s.quit:
			return
		}
	}
}

// commit writes batch in one transaction and hands it to the syncer,
// which answers every request once the commit is on stable storage. A
// batch that failed is answered at once: nothing of it was written.
func (w *writer) commit(batch []*appendReq) {
	res, rooms, err := w.write(batch)
	if err != nil {
		w.s.log.Error("append batch failed", zap.Int("batch", len(batch)), zap.Error(err))
		if len(batch) > 1 && chat.ErrorCode(err) != chat.EUnavailable {
			// Not the disk: maybe one message is at fault. Isolate it
			// instead of failing its neighbours.
			for i := range batch {
				w.commit(batch[i : i+1])
			}
			return
		}
		for i := range res {
			if res[i].err == nil {
				res[i] = appendRes{err: err}
			}
		}
	}
	if err != nil {
		for i, req := range batch {
			req.answer(res[i])
		}
		return
	}
	w.s.metrics.batch.Observe(float64(len(batch)))
	if w.sinceCheckpoint += len(batch); w.sinceCheckpoint >= checkpointEvery {
		w.sinceCheckpoint = 0
		select {
		case w.s.ckptKick <- struct{}{}:
		default: // one is asked for already
		}
	}
	// batch is reused by run: the syncer gets its own copy.
	w.s.syncs <- committed{reqs: slices.Clone(batch), res: res, rooms: rooms}
	if w.s.ckptFinish.CompareAndSwap(true, false) {
		w.finishCheckpoint()
	}
}

// finishCheckpoint copies into the database file the frames committed
// while the checkpointer ran, so that the next transaction starts the WAL
// from its beginning (see checkpointLoop). The bulk is copied already:
// this is the pages of a few batches, and the syncs SQLite does around a
// checkpoint (synchronous=NORMAL: the WAL before, the database file
// after). It runs while the syncer syncs the batch just committed; what
// arrives meanwhile joins the next batch.
func (w *writer) finishCheckpoint() {
	if _, _, ok := w.s.checkpoint(w.s.w, "writer"); ok {
		w.s.metrics.finishes.Inc()
	}
}

// batchKey finds a repeated client_msg_id within one batch.
type batchKey struct{ room, sender, cmid string }

// windowAdd is a committed message's client_msg_id, for its room's window.
type windowAdd struct {
	room string
	key  dedupKey
	seq  int64
}

// write runs one transaction for batch. It returns one result per request
// and the last seq it wrote in each room; if it returns an error, nothing
// of the batch was written and every result without its own error must be
// answered with it.
func (w *writer) write(batch []*appendReq) (res []appendRes, rooms []roomLast, err error) {
	res = make([]appendRes, len(batch))
	if err := w.s.wal.failed(); err != nil {
		// The client sees the code and message; the cause (a path) stays in the chain for the logs.
		return res, nil, fmt.Errorf("%w: %w", chat.Errorf(chat.EUnavailable, "storage unavailable, retry later"), err)
	}
	dupOf := map[int]int{}      // request index → index of the same message earlier in batch
	next := map[string]int64{}  // room → its next seq in this batch
	first := map[string]int64{} // room → its first seq in this batch
	defer func() {
		if err != nil {
			// The rollback may have lost seqs we had cached as used; reload
			// them from the database on next use.
			for room := range next {
				delete(w.next, room)
			}
			err = storeErr("append", err)
		}
	}()

	ctx := context.Background() // one caller's cancellation must not abort the others' commit
	tx, err := w.s.w.BeginTx(ctx, nil)
	if err != nil {
		return res, nil, err
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	ins, bySeq, head := tx.StmtContext(ctx, w.ins), tx.StmtContext(ctx, w.bySeq), tx.StmtContext(ctx, w.head)
	seen := map[batchKey]int{}
	var adds []windowAdd

	for i, req := range batch {
		if err := req.ctx.Err(); err != nil {
			res[i].err = fmt.Errorf("sqlite: append: %w", err) // not written; the caller has gone
			continue
		}
		m := req.m
		seq, ok := next[m.Room]
		if !ok {
			if seq, ok = w.next[m.Room]; !ok {
				var exists bool
				var last int64
				if err := head.QueryRowContext(ctx, m.Room, m.Room).Scan(&exists, &last); err != nil {
					return res, nil, err
				}
				if !exists {
					res[i].err = chat.Errorf(chat.ENotFound, "no room %s", m.Room)
					continue
				}
				seq = last + 1
			}
			next[m.Room] = seq
			first[m.Room] = seq
		}
		var key dedupKey
		if m.ClientMsgID != "" {
			k := batchKey{m.Room, m.Sender.ID, m.ClientMsgID}
			if j, ok := seen[k]; ok {
				dupOf[i] = j
				continue
			}
			seen[k] = i
			key = w.dedup.key(m.Sender.ID, m.ClientMsgID)
			// The window holds committed messages only (those before the
			// room's first seq in this batch); seen covers the batch.
			rw := w.dedup.get(m.Room)
			if rw == nil {
				if rw, err = w.loadWindow(ctx, tx, m.Room, first[m.Room]-1); err != nil {
					return res, nil, err
				}
			}
			if old, ok := w.dedup.lookup(rw, key, seq); ok {
				stored, err := scanMessage(bySeq.QueryRowContext(ctx, m.Room, old))
				switch {
				case err == nil && stored.Sender.ID == m.Sender.ID && stored.ClientMsgID == m.ClientMsgID:
					res[i] = appendRes{m: stored, dup: true}
					continue
				case err != nil && !errors.Is(err, sql.ErrNoRows):
					return res, nil, fmt.Errorf("load duplicate: %w", err)
				}
				// A hash collision: a new message after all.
			}
		}
		m.Seq = seq
		if _, err := ins.ExecContext(ctx, m.Room, m.Seq, m.ID, m.Sender.ID, m.Sender.Name, b2i(m.Sender.Bot), m.Text,
			b2i(m.System), req.links, b2i(m.Truncated), m.Era, nanos(m.SentAt), m.ClientMsgID); err != nil {
			return res, nil, err
		}
		if m.ClientMsgID != "" {
			adds = append(adds, windowAdd{m.Room, key, seq})
		}
		next[m.Room] = seq + 1
		res[i].m = m
	}
	// Hidden before the commit, not after: a reader whose snapshot holds
	// these rows then finds them hidden (see Messages). If the commit
	// fails, the mark only hides seqs that no row has.
	for room, seq := range next {
		if f := first[room]; seq > f {
			w.s.vis.committed(room, f, seq-1)
			rooms = append(rooms, roomLast{room, seq - 1})
		}
	}
	if err := tx.Commit(); err != nil {
		return res, nil, err
	}
	for room, seq := range next {
		w.next[room] = seq
	}
	for _, a := range adds {
		// A window dropped meanwhile is read again, these rows included.
		if rw := w.dedup.get(a.room); rw != nil {
			w.dedup.add(rw, a.key, a.seq)
		}
	}
	for i, j := range dupOf {
		res[i] = appendRes{m: res[j].m, dup: true}
	}
	return res, rooms, nil
}

// loadWindow reads the client_msg_ids of room's messages up to seq last
// that are within the window, after a start or after the window was
// dropped to save memory.
func (w *writer) loadWindow(ctx context.Context, tx *sql.Tx, room string, last int64) (*roomWindow, error) {
	rows, err := tx.StmtContext(ctx, w.recent).QueryContext(ctx, room, last-w.dedup.window, last)
	if err != nil {
		return nil, fmt.Errorf("load recent client_msg_ids: %w", err)
	}
	defer rows.Close()
	rw := w.dedup.load(room)
	for rows.Next() {
		var seq int64
		var sender, cmid string
		if err := rows.Scan(&seq, &sender, &cmid); err != nil {
			w.dedup.drop(rw)
			return nil, fmt.Errorf("load recent client_msg_ids: %w", err)
		}
		w.dedup.add(rw, w.dedup.key(sender, cmid), seq)
	}
	if err := rows.Err(); err != nil {
		w.dedup.drop(rw)
		return nil, fmt.Errorf("load recent client_msg_ids: %w", err)
	}
	return rw, nil
}
