package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/linkwall/linkwall/internal/chat"
	"github.com/linkwall/linkwall/internal/chat/chattest"
)

// openHooked opens a store whose WAL syncs first call hook, with a user
// and a group room of hers.
func openHooked(t *testing.T, hook func() error) (*Store, chat.User, string) {
	t.Helper()
	s, err := open(context.Background(), t.TempDir(), zaptest.NewLogger(t), options{sync: defaultSync, syncHook: hook})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	alice := chattest.NewUser(t, s, "alice", 0)
	return s, alice, chattest.NewGroup(t, s, "g", alice.ID).ID
}

// syncHold makes the store's WAL syncs wait while on is set: each such
// sync signals entered, then waits until release is closed.
type syncHold struct {
	on      atomic.Bool
	entered chan struct{}
	release chan struct{}
}

// openHeld is openHooked with a syncHold as the hook.
func openHeld(t *testing.T) (*Store, chat.User, string, *syncHold) {
	h := &syncHold{entered: make(chan struct{}, 16), release: make(chan struct{})}
	s, alice, room := openHooked(t, func() error {
		if h.on.Load() {
			h.entered <- struct{}{}
			<-h.release
		}
		return nil
	})
	return s, alice, room, h
}

// TestAppendWaitsForSync holds the WAL's fsync: the message is committed,
// but Append must not return and no reader may see it until the sync is
// done, since a power loss before it could take the message back.
func TestAppendWaitsForSync(t *testing.T) {
	ctx := context.Background()
	s, alice, room, h := openHeld(t)
	if _, _, err := s.Append(ctx, chattest.Msg(room, alice, "first")); err != nil {
		t.Fatal(err)
	}

	h.on.Store(true)
	type result struct {
		m   chat.Message
		err error
	}
	done := make(chan result, 1)
	go func() {
		m, _, err := s.Append(ctx, chattest.Msg(room, alice, "second"))
		done <- result{m, err}
	}()
	select {
	case <-h.entered: // committed; the syncer is in its fsync
	case <-time.After(5 * time.Second):
		t.Fatal("no sync after an append")
	}
	h.on.Store(false)

	// Enough appends waiting make the writer go on while the sync is held:
	// they are committed, neither answered nor readable.
	more := make(chan result, commitAheadMin)
	for i := range commitAheadMin {
		go func() {
			m, _, err := s.Append(ctx, chattest.Msg(room, alice, fmt.Sprintf("more %02d", i)))
			more <- result{m, err}
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		var n int
		if err := s.r.QueryRowContext(ctx, "SELECT COUNT(*) FROM messages WHERE room_id = ?", room).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 2+commitAheadMin {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d messages committed while a sync was held, want %d", n, 2+commitAheadMin)
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case r := <-done:
		t.Fatalf("Append returned before its sync: %+v", r)
	case r := <-more:
		t.Fatalf("Append returned before its sync: %+v", r)
	default:
	}
	ms, err := s.Messages(ctx, room, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 || ms[0].Text != "first" {
		t.Fatalf("Messages during the sync = %d messages, want only the synced one", len(ms))
	}
	if ms, err := s.Messages(ctx, room, 1, 10); err != nil || len(ms) != 0 {
		t.Fatalf("Messages after 1 during the sync = %d, %v; want none", len(ms), err)
	}

	close(h.release)
	if r := <-done; r.err != nil {
		t.Fatal(r.err)
	}
	for range commitAheadMin {
		if r := <-more; r.err != nil {
			t.Fatal(r.err)
		}
	}
	ms, err = s.Messages(ctx, room, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2+commitAheadMin || ms[1].Text != "second" {
		t.Fatalf("Messages after the sync = %d, want all %d", len(ms), 2+commitAheadMin)
	}
}

// TestSyncFailure: a failed fsync fails the appends waiting on it, keeps
// their messages hidden, and refuses every later append, because after a
// failed fsync the kernel may have dropped the pages it could not write.
func TestSyncFailure(t *testing.T) {
	ctx := context.Background()
	var fail atomic.Bool
	s, alice, room := openHooked(t, func() error {
		if fail.Load() {
			return errors.New("injected EIO")
		}
		return nil
	})
	if _, _, err := s.Append(ctx, chattest.Msg(room, alice, "kept")); err != nil {
		t.Fatal(err)
	}
	fail.Store(true)
	if _, _, err := s.Append(ctx, chattest.Msg(room, alice, "lost")); chat.ErrorCode(err) != chat.EUnavailable {
		t.Fatalf("Append with a failing sync: %v, want %s", err, chat.EUnavailable)
	}
	fail.Store(false)
	_, _, err := s.Append(ctx, chattest.Msg(room, alice, "after"))
	if chat.ErrorCode(err) != chat.EUnavailable {
		t.Fatalf("Append after a failed sync: %v, want %s", err, chat.EUnavailable)
	}
	if msg := chat.ErrorMessage(err); strings.Contains(msg, "wal") || strings.Contains(msg, "EIO") {
		t.Errorf("a client would read %q: the cause belongs in the logs", msg)
	}
	ms, err := s.Messages(ctx, room, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 || ms[0].Text != "kept" {
		t.Fatalf("Messages after a failed sync = %+v, want only the acknowledged one", ms)
	}
	// Nothing is acknowledged until a restart: /readyz must say so.
	if err := s.Ping(ctx); chat.ErrorCode(err) != chat.EUnavailable {
		t.Errorf("Ping after a failed sync: %v, want %s", err, chat.EUnavailable)
	}
}

// TestSlowSyncWarns: a WAL sync that takes slowSync or longer is logged
// as a warning, with how long it took, and a second one soon after is not,
// so that a disk in trouble does not flood the log; quick syncs log nothing.
func TestSlowSyncWarns(t *testing.T) {
	ctx := context.Background()
	core, logs := observer.New(zap.WarnLevel)
	var slow atomic.Bool
	s, err := open(ctx, t.TempDir(), zap.New(core), options{sync: defaultSync, syncHook: func() error {
		if slow.Load() {
			time.Sleep(slowSync + 20*time.Millisecond)
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	alice := chattest.NewUser(t, s, "alice", 0)
	room := chattest.NewGroup(t, s, "g", alice.ID).ID

	for i := range 3 {
		if _, _, err := s.Append(ctx, chattest.Msg(room, alice, fmt.Sprint("quick ", i))); err != nil {
			t.Fatal(err)
		}
	}
	if n := logs.FilterMessageSnippet("slow WAL sync").Len(); n != 0 {
		t.Fatalf("%d slow-sync warnings after quick syncs, want 0", n)
	}

	slow.Store(true)
	for i := range 2 {
		if _, _, err := s.Append(ctx, chattest.Msg(room, alice, fmt.Sprint("slow ", i))); err != nil {
			t.Fatal(err)
		}
	}
	warned := logs.FilterMessageSnippet("slow WAL sync").All()
	if len(warned) != 1 {
		t.Fatalf("%d slow-sync warnings after two slow syncs within %v, want 1", len(warned), slowSyncLogInterval)
	}
	took, ok := warned[0].ContextMap()["took"].(time.Duration)
	if !ok || took < slowSync {
		t.Fatalf("warning's took = %v (%T), want at least %v", warned[0].ContextMap()["took"], warned[0].ContextMap()["took"], slowSync)
	}
}

// TestDurableWritesLeaveNormal: users, rooms and sessions commit with
// synchronous=FULL and give the write connection back at NORMAL, where
// message batches rely on the syncer.
func TestDurableWritesLeaveNormal(t *testing.T) {
	ctx := context.Background()
	var syncs atomic.Int64
	s, alice, room := openHooked(t, func() error { syncs.Add(1); return nil }) // a user and a room: durable writes
	var level int
	if err := s.w.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&level); err != nil {
		t.Fatal(err)
	}
	if level != 1 { // NORMAL
		t.Fatalf("PRAGMA synchronous = %d after durable writes, want 1 (NORMAL)", level)
	}
	before := syncs.Load()
	if _, _, err := s.Append(ctx, chattest.Msg(room, alice, "hi")); err != nil {
		t.Fatal(err)
	}
	if syncs.Load() == before {
		t.Fatal("an append was acknowledged without a sync of the WAL")
	}
}

// TestWALFileFollowsTheFile: with no WAL the database file is synced; a
// WAL that appears, or is replaced by another file, is opened anew.
func TestWALFileFollowsTheFile(t *testing.T) {
	dir := t.TempDir()
	db, wal := filepath.Join(dir, "x.db"), filepath.Join(dir, "x.db-wal")
	if err := os.WriteFile(db, []byte("db"), 0o600); err != nil {
		t.Fatal(err)
	}
	w := &walFile{path: wal, dbPath: db}
	defer w.close()
	synced := func(want string) {
		t.Helper()
		path, f, err := w.open()
		if err != nil || path != want {
			t.Fatalf("open = %s, %v; want %s", path, err, want)
		}
		st, _ := os.Stat(want)
		held, _ := f.Stat()
		if !os.SameFile(st, held) {
			t.Fatalf("holding another file than %s", want)
		}
		if err := w.sync(); err != nil {
			t.Fatal(err)
		}
	}
	synced(db)
	if err := os.WriteFile(wal, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	synced(wal)
	if err := os.Remove(wal); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(wal, []byte("two"), 0o600); err != nil {
		t.Fatal(err)
	}
	synced(wal)
}

// TestAppendThen: then runs once per stored message, after its sync and
// before AppendThen returns, in seq order per room even when many callers
// append at once; never for a duplicate or a message whose sync failed.
func TestAppendThen(t *testing.T) {
	ctx := context.Background()
	var hold, fail atomic.Bool
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	s, alice, room := openHooked(t, func() error {
		if hold.Load() {
			entered <- struct{}{}
			<-release
		}
		if fail.Load() {
			return errors.New("injected EIO")
		}
		return nil
	})
	other := chattest.NewGroup(t, s, "h", alice.ID).ID

	// Not before the sync.
	hold.Store(true)
	var ran atomic.Int64
	done := make(chan error, 1)
	go func() {
		_, _, err := s.AppendThen(ctx, chattest.Msg(room, alice, "held"), func(chat.Message) { ran.Add(1) })
		done <- err
	}()
	<-entered
	hold.Store(false)
	time.Sleep(20 * time.Millisecond) // time enough for a then that does not wait
	if ran.Load() != 0 {
		t.Fatal("then ran before the sync was done")
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if ran.Load() != 1 {
		t.Fatalf("then ran %d times for one message, want once before AppendThen returned", ran.Load())
	}

	// In seq order per room, once each, with the stored message.
	var mu sync.Mutex
	seen := map[string][]chat.Message{}
	then := func(m chat.Message) {
		mu.Lock()
		seen[m.Room] = append(seen[m.Room], m)
		mu.Unlock()
	}
	const callers, each = 8, 40
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for c := range callers {
		wg.Go(func() {
			for i := range each {
				r := []string{room, other}[(c+i)%2]
				m := chattest.Msg(r, alice, fmt.Sprintf("c%d-%d", c, i))
				m.ClientMsgID = fmt.Sprintf("c%d-%d", c, i)
				stored, dup, err := s.AppendThen(ctx, m, then)
				if err != nil || dup {
					errs <- fmt.Errorf("append: dup=%v err=%v", dup, err)
					return
				}
				mu.Lock()
				got := seen[r]
				ok := len(got) > 0 && slices.ContainsFunc(got, func(x chat.Message) bool { return x.ID == stored.ID && x.Seq == stored.Seq })
				mu.Unlock()
				if !ok {
					errs <- fmt.Errorf("AppendThen returned seq %d before its then ran", stored.Seq)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for r, first := range map[string]int64{room: 2, other: 1} {
		got := seen[r]
		if len(got) != callers*each/2 {
			t.Fatalf("then ran %d times in a room that got %d messages", len(got), callers*each/2)
		}
		for i, m := range got {
			if m.Seq != first+int64(i) {
				t.Fatalf("then's %dth message in a room has seq %d, want %d (in order, no gaps)", i, m.Seq, first+int64(i))
			}
		}
	}

	// Not for a duplicate, nor for a failed sync.
	m := chattest.Msg(room, alice, "again")
	m.ClientMsgID = "c0-0"
	if _, dup, err := s.AppendThen(ctx, m, func(chat.Message) { t.Error("then ran for a duplicate") }); err != nil || !dup {
		t.Fatalf("resend: dup=%v err=%v, want a duplicate", dup, err)
	}
	fail.Store(true)
	if _, _, err := s.AppendThen(ctx, chattest.Msg(room, alice, "lost"), func(chat.Message) { t.Error("then ran for a message whose sync failed") }); err == nil {
		t.Fatal("append with a failing sync succeeded")
	}
}

// TestCheckpointOffWriter: the write connection never checkpoints (a
// commit that did would hold up every append behind it); the checkpointer
// copies the WAL into the database file once enough messages were
// appended, while the store stays open.
func TestCheckpointOffWriter(t *testing.T) {
	ctx := context.Background()
	s, alice, room := openHooked(t, nil)
	var auto int
	if err := s.w.QueryRowContext(ctx, "PRAGMA wal_autocheckpoint").Scan(&auto); err != nil {
		t.Fatal(err)
	}
	if auto != 0 {
		t.Fatalf("write connection: wal_autocheckpoint = %d, want 0", auto)
	}
	db := filepath.Join(filepath.Dir(s.wal.path), FileName)
	size := func() int64 {
		st, err := os.Stat(db)
		if err != nil {
			t.Fatal(err)
		}
		return st.Size()
	}
	before := size()
	for i := range 2 * checkpointEvery {
		if _, _, err := s.Append(ctx, chattest.Msg(room, alice, fmt.Sprintf("message %d with some text to fill pages", i))); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for size() <= before {
		if time.Now().After(deadline) {
			t.Fatalf("database file still %d bytes after %d appends: nothing was checkpointed", size(), 2*checkpointEvery)
		}
		time.Sleep(10 * time.Millisecond)
	}
	ms, err := s.Messages(ctx, room, 0, MaxPage)
	if err != nil || len(ms) != 2*checkpointEvery {
		t.Fatalf("Messages after checkpoints = %d, %v; want %d", len(ms), err, 2*checkpointEvery)
	}
}

// TestAfterThens: the hook runs once per sync, after the then functions
// of every message that sync made durable and before any of their callers
// is answered.
func TestAfterThens(t *testing.T) {
	ctx := context.Background()
	s, alice, room, h := openHeld(t)
	var (
		thens    atomic.Int64
		hooks    atomic.Int64
		answered atomic.Int64
		seenAt   []int64 // thens done at each hook, and answers: written by the syncer only
		answerAt []int64
	)
	s.AfterThens(func() {
		seenAt = append(seenAt, thens.Load())
		answerAt = append(answerAt, answered.Load())
		hooks.Add(1)
	})
	// One sync held while the writer commits more behind it: the messages
	// after the first are made durable together by the next sync.
	h.on.Store(true)
	const n = 6
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		// done runs on the syncer as it answers: the count is exact at each hook.
		err := s.AppendAsync(ctx, chattest.Msg(room, alice, fmt.Sprintf("m%d", i)), func(chat.Message) { thens.Add(1) },
			func(_ chat.Message, _ bool, err error) {
				if err != nil {
					t.Error(err)
				}
				answered.Add(1)
				wg.Done()
			})
		if err != nil {
			t.Fatal(err)
		}
	}
	<-h.entered
	h.on.Store(false)
	time.Sleep(20 * time.Millisecond) // the other appends queue behind the held sync
	close(h.release)
	wg.Wait()
	if thens.Load() != n {
		t.Fatalf("%d thens for %d messages", thens.Load(), n)
	}
	if h := hooks.Load(); h < 1 || h > n {
		t.Fatalf("the hook ran %d times for %d messages in at most %d syncs", h, n, n)
	}
	if last := seenAt[len(seenAt)-1]; last != n {
		t.Fatalf("the last hook saw %d thens done, want all %d", last, n)
	}
	prev := int64(0)
	for i := range seenAt {
		if seenAt[i] <= prev || answerAt[i] > prev {
			t.Fatalf("hook %d: %d thens done (%d before it), %d callers answered: want only the earlier syncs' answered (thens per hook %v, answers %v)",
				i, seenAt[i], prev, answerAt[i], seenAt, answerAt)
		}
		prev = seenAt[i]
	}
}

// TestWriterWaitsForTheSyncer: appends that arrive while a sync is in
// progress are committed together once the syncer can take them, not the
// first of them alone at once (its batch would wait for the sync anyway,
// and the others for the batch after it).
func TestWriterWaitsForTheSyncer(t *testing.T) {
	ctx := context.Background()
	s, alice, room, h := openHeld(t)
	commits := func() uint64 {
		var m dto.Metric
		if err := s.metrics.batch.Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetHistogram().GetSampleCount()
	}
	before := commits()
	h.on.Store(true)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if _, _, err := s.Append(ctx, chattest.Msg(room, alice, "first")); err != nil {
			t.Error(err)
		}
	}()
	<-h.entered // its sync is held
	h.on.Store(false)
	released := false
	defer func() {
		if !released { // a failed check must not leave the store's Close waiting
			close(h.release)
		}
	}()
	const n = 5 // fewer than commitAheadMin
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, _, err := s.Append(ctx, chattest.Msg(room, alice, fmt.Sprintf("m%d", i))); err != nil {
				t.Error(err)
			}
		}()
		time.Sleep(5 * time.Millisecond) // one by one, as they would arrive
	}
	time.Sleep(20 * time.Millisecond)
	if got := commits() - before; got != 1 {
		t.Fatalf("%d commits while the first sync was held, want only the first message's", got)
	}
	close(h.release)
	released = true
	wg.Wait()
	if got := commits() - before; got != 2 {
		t.Fatalf("%d commits in all, want 2: the first message, then the %d that came during its sync", got, n)
	}
}

// TestWALRestartsUnderSteadyLoad: with appends arriving all the time, the
// WAL still restarts from its beginning once it holds restartFrames. (It
// used to grow until the first pause, by some 20 MB/s under load, and the
// writer then truncated it while every append waited.) The WAL file's
// size is its high-water mark: after 20 checkpoints it must be about
// restartFrames and what a few checkpoints' worth of appends wrote, not
// all 20.
func TestWALRestartsUnderSteadyLoad(t *testing.T) {
	ctx := context.Background()
	const restartFrames = 1000 // about 4 MB
	s, err := open(ctx, t.TempDir(), zaptest.NewLogger(t), options{sync: defaultSync, restartFrames: restartFrames})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	alice := chattest.NewUser(t, s, "alice", 0)
	room := chattest.NewGroup(t, s, "g", alice.ID).ID
	walSize := func() int64 {
		st, err := os.Stat(s.wal.path)
		if err != nil {
			t.Fatal(err)
		}
		return st.Size()
	}
	const senders = 16
	var next atomic.Int64
	appendUpTo := func(total int64) {
		var wg sync.WaitGroup
		for range senders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := next.Add(1); n <= total; n = next.Add(1) {
					m := chattest.Msg(room, alice, fmt.Sprintf("message %d with some text to fill pages", n))
					if _, _, err := s.Append(ctx, m); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		next.Store(total)
	}
	appendUpTo(checkpointEvery)
	one := walSize() // no restart can have happened yet
	appendUpTo(20 * checkpointEvery)
	const frame = 24 + 4096 // frame header and page
	if got, most := walSize(), restartFrames*frame+3*one; got > most {
		t.Errorf("WAL grew to %d bytes over 20 checkpoints (%d after the first %d appends, restart at %d frames): it does not restart",
			got, one, checkpointEvery, restartFrames)
	}
	var finishes, frames dto.Metric
	if err := s.metrics.finishes.Write(&finishes); err != nil {
		t.Fatal(err)
	}
	if err := s.metrics.walFrames.Write(&frames); err != nil {
		t.Fatal(err)
	}
	if n := finishes.GetCounter().GetValue(); n < 1 {
		t.Errorf("linkwall_store_checkpoint_finishes_total = %v, want ≥ 1", n)
	}
	if n := frames.GetGauge().GetValue(); n <= 0 || n > float64(restartFrames)+float64(3*one)/frame {
		t.Errorf("linkwall_store_wal_frames = %v, want 1 to about %d", n, restartFrames)
	}
	// Both kinds of checkpoint are timed: the finishes above are the
	// writer's, and the checkpointer ran before each could.
	for _, by := range []string{"checkpointer", "writer"} {
		var h dto.Metric
		if err := s.metrics.checkpoint.WithLabelValues(by).(prometheus.Histogram).Write(&h); err != nil {
			t.Fatal(err)
		}
		if n := h.GetHistogram().GetSampleCount(); n < 1 {
			t.Errorf("linkwall_store_checkpoint_seconds{by=%q} has %d samples, want ≥ 1", by, n)
		}
	}
	// The writer's checkpoint (finishCheckpoint's) sets the gauge too, not
	// only the checkpointer's. With no appends in flight the WAL holds
	// still, so a checkpointer run meanwhile reads the same count.
	n, _, ok := s.checkpoint(s.w, "writer")
	if !ok {
		t.Fatal("checkpoint on the writer's connection did not run")
	}
	if err := s.metrics.walFrames.Write(&frames); err != nil {
		t.Fatal(err)
	}
	if got := frames.GetGauge().GetValue(); got != float64(n) {
		t.Errorf("linkwall_store_wal_frames = %v after the writer's checkpoint, want its %d frames", got, n)
	}
}

// TestReadInFlightHidesUnsynced: a Messages call that began before a
// batch was committed, and reads after the commit, must not show the
// batch until it is synced. (It looked at the unsynced seqs before its
// query, and the writer marked them only after its commit, so such a
// read showed a seq that a power loss could take back.)
func TestReadInFlightHidesUnsynced(t *testing.T) {
	ctx := context.Background()
	s, alice, room, h := openHeld(t)
	if _, _, err := s.Append(ctx, chattest.Msg(room, alice, "first")); err != nil {
		t.Fatal(err)
	}
	// With every read connection taken, Messages waits for one.
	var conns []*sql.Conn
	for range readConns {
		c, err := s.r.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	type result struct {
		ms  []chat.Message
		err error
	}
	read := make(chan result, 1)
	go func() {
		ms, err := s.Messages(ctx, room, 0, 10)
		read <- result{ms, err}
	}()
	for deadline := time.Now().Add(5 * time.Second); s.r.Stats().WaitCount == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("Messages did not wait for a connection")
		}
	}

	h.on.Store(true)
	appended := make(chan error, 1)
	go func() {
		_, _, err := s.Append(ctx, chattest.Msg(room, alice, "second"))
		appended <- err
	}()
	<-h.entered // committed; its sync is held
	h.on.Store(false)
	conns[0].Close()
	conns = conns[1:]
	r := <-read
	close(h.release)
	if err := <-appended; err != nil {
		t.Fatal(err)
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	if len(r.ms) != 1 || r.ms[0].Text != "first" {
		t.Fatalf("Messages in flight during the sync = %d messages, want only the synced one", len(r.ms))
	}
}

// TestNewWALDirectorySynced: SQLite removes the WAL on a clean close and
// makes a new one on the next open, so the first sync of the reopened
// store must also sync the directory that names the new WAL, and only the
// first.
func TestNewWALDirectorySynced(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := open(ctx, dir, zaptest.NewLogger(t), options{sync: defaultSync})
	if err != nil {
		t.Fatal(err)
	}
	alice := chattest.NewUser(t, s, "alice", 0)
	room := chattest.NewGroup(t, s, "g", alice.ID).ID
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, FileName+"-wal")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("WAL after a clean close: %v, want it removed", err)
	}

	var mu sync.Mutex
	var synced []string
	s, err = open(ctx, dir, zaptest.NewLogger(t), options{sync: defaultSync, syncDir: func(d string) error {
		mu.Lock()
		defer mu.Unlock()
		if _, err := os.Stat(filepath.Join(d, FileName+"-wal")); err != nil {
			t.Errorf("directory synced before the WAL is in it: %v", err)
		}
		synced = append(synced, d)
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 3 {
		if _, _, err := s.Append(ctx, chattest.Msg(room, alice, fmt.Sprint("m", i))); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(synced) != 1 || synced[0] != dir {
		t.Fatalf("directory syncs = %q, want one of %q", synced, dir)
	}
}
