package sqlite

import (
	"context"
	"database/sql"
	"fmt"

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
	links []byte         // m.Links encoded, done by the caller off the writer
	res   chan appendRes // buffered 1: the writer never blocks on a caller
}

type appendRes struct {
	m   chat.Message
	dup bool
	err error
}

// Append assigns m the room's next Seq and returns once it is committed.
// Concurrent appends are committed together (group commit): one transaction
// and one sync for everything that arrived while the previous commit ran.
//
// If ctx ends before the writer has taken the message, Append returns the
// context error and nothing is written. Once the writer has taken it,
// Append waits for the commit (bounded by busyTimeout and the disk) and
// reports what happened, so a message is never committed without its
// caller knowing its seq; the writer skips requests whose ctx has ended
// before writing them. Retrying with the same ClientMsgID is safe: it
// returns the stored message with dup=true.
func (s *Store) Append(ctx context.Context, m chat.Message) (chat.Message, bool, error) {
	if m.Room == "" || m.Sender.ID == "" {
		return chat.Message{}, false, chat.Errorf(chat.EInvalid, "message room and sender are required")
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
		return chat.Message{}, false, chat.Errorf(chat.EInvalid, "links: %v", err)
	}
	req := &appendReq{ctx: ctx, m: m, links: links, res: make(chan appendRes, 1)}

	// s.appends is unbuffered: a request is either taken by the writer (and
	// then answered) or not sent at all, so Close can never strand one.
	select {
	case s.appends <- req:
	case <-s.quit:
		return chat.Message{}, false, errClosed
	case <-ctx.Done():
		return chat.Message{}, false, fmt.Errorf("sqlite: append: %w", ctx.Err())
	}
	r := <-req.res
	return r.m, r.dup, r.err
}

// writer is the one goroutine that appends messages. It alone touches next.
type writer struct {
	s    *Store
	next map[string]int64 // room id → next seq, loaded from MAX(seq) on first use

	ins  *sql.Stmt // prepared on s.w
	byID *sql.Stmt // dedup: message by (room, sender, client_msg_id)
	head *sql.Stmt // room exists, and its MAX(seq)
}

func newWriter(ctx context.Context, s *Store) (*writer, error) {
	w := &writer{s: s, next: map[string]int64{}}
	var err error
	if w.ins, err = s.w.PrepareContext(ctx, "INSERT INTO messages ("+messageCols+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "+
		"ON CONFLICT (room_id, sender_id, client_msg_id) WHERE client_msg_id <> '' DO NOTHING"); err != nil {
		return nil, err
	}
	if w.byID, err = s.w.PrepareContext(ctx, "SELECT "+messageCols+" FROM messages "+
		// The last term lets SQLite use the partial unique index.
		"WHERE room_id = ? AND sender_id = ? AND client_msg_id = ? AND client_msg_id <> ''"); err != nil {
		w.closeStmts()
		return nil, err
	}
	if w.head, err = s.w.PrepareContext(ctx, "SELECT EXISTS (SELECT 1 FROM rooms WHERE id = ?), "+
		"COALESCE((SELECT MAX(seq) FROM messages WHERE room_id = ?), 0)"); err != nil {
		w.closeStmts()
		return nil, err
	}
	return w, nil
}

func (w *writer) closeStmts() {
	for _, st := range []*sql.Stmt{w.ins, w.byID, w.head} {
		if st != nil {
			st.Close()
		}
	}
}

// run commits batches until Close; then it commits whatever it can still
// take without waiting and returns.
func (w *writer) run() {
	defer close(w.s.done)
	defer w.closeStmts()
	batch := make([]*appendReq, 0, maxBatch)
	for {
		select {
		case req := <-w.s.appends:
			batch = w.collect(append(batch[:0], req))
		case <-w.s.quit:
			if batch = w.collect(batch[:0]); len(batch) > 0 {
				w.commit(batch)
			}
			return
		}
		w.commit(batch)
		clear(batch) // drop references to answered requests
	}
}

// collect adds every request that is already waiting, up to maxBatch.
// Callers that arrived during the previous commit are blocked on the
// unbuffered send, so they are all taken here.
func (w *writer) collect(batch []*appendReq) []*appendReq {
	for len(batch) < maxBatch {
		select {
		case req := <-w.s.appends:
			batch = append(batch, req)
		default:
			return batch
		}
	}
	return batch
}

// commit writes batch in one transaction and answers every request.
func (w *writer) commit(batch []*appendReq) {
	res, err := w.write(batch)
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
	for i, req := range batch {
		req.res <- res[i]
	}
}

type dedupKey struct{ room, sender, cmid string }

// write runs one transaction for batch. It returns one result per request;
// if it returns an error, nothing of the batch was written and every result
// without its own error must be answered with it.
func (w *writer) write(batch []*appendReq) (res []appendRes, err error) {
	res = make([]appendRes, len(batch))
	dupOf := map[int]int{} // request index → index of the same message earlier in batch
	next := map[string]int64{}
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
		return res, err
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	ins, byID, head := tx.StmtContext(ctx, w.ins), tx.StmtContext(ctx, w.byID), tx.StmtContext(ctx, w.head)
	seen := map[dedupKey]int{}

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
					return res, err
				}
				if !exists {
					res[i].err = chat.Errorf(chat.ENotFound, "no room %s", m.Room)
					continue
				}
				seq = last + 1
			}
			next[m.Room] = seq
		}
		if m.ClientMsgID != "" {
			k := dedupKey{m.Room, m.Sender.ID, m.ClientMsgID}
			if j, ok := seen[k]; ok {
				dupOf[i] = j
				continue
			}
			seen[k] = i
		}
		m.Seq = seq
		// The insert itself is the dedup check (ON CONFLICT … DO NOTHING):
		// one statement for the common, new message.
		r, err := ins.ExecContext(ctx, m.Room, m.Seq, m.ID, m.Sender.ID, m.Sender.Name, b2i(m.Sender.Bot), m.Text,
			b2i(m.System), req.links, b2i(m.Truncated), m.Era, nanos(m.SentAt), m.ClientMsgID)
		if err != nil {
			return res, err
		}
		if n, err := r.RowsAffected(); err != nil {
			return res, err
		} else if n == 0 {
			stored, err := scanMessage(byID.QueryRowContext(ctx, m.Room, m.Sender.ID, m.ClientMsgID))
			if err != nil {
				return res, fmt.Errorf("load duplicate: %w", err)
			}
			res[i] = appendRes{m: stored, dup: true}
			continue
		}
		next[m.Room] = seq + 1
		res[i].m = m
	}
	if err := tx.Commit(); err != nil {
		return res, err
	}
	for room, seq := range next {
		w.next[room] = seq
	}
	for i, j := range dupOf {
		res[i] = appendRes{m: res[j].m, dup: true}
	}
	return res, nil
}
