package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/linkwall/linkwall/internal/chat"
)

// slowSync is how long a WAL sync may take before the syncer warns: every
// append waits for it, so a disk that flushes slowly shows in the
// delivery tail (0.1-0.9 s episodes on one VM, docs/benchmarks.md runs Y)
// while the usual sync takes about 1 ms.
const slowSync = 100 * time.Millisecond

// slowSyncLogInterval spaces the warnings: a disk in trouble would
// otherwise log hundreds of lines a second.
const slowSyncLogInterval = 10 * time.Second

// committed is one batch the writer has committed (synchronous=NORMAL: in
// the WAL, not yet on stable storage), waiting for the syncer.
type committed struct {
	reqs  []*appendReq
	res   []appendRes
	rooms []roomLast // the last seq written per room
}

type roomLast struct {
	room string
	last int64
}

// syncLoop makes committed batches durable and only then runs their
// requests' then and answers their callers: one fsync of the WAL covers
// every batch committed before it began. While it runs, what arrives waits
// to be committed as one batch when the syncer is free (writer.waitSyncer),
// or at once under heavy load. s.syncs is unbuffered: the writer runs at
// most one batch ahead of the fsync, and what arrives meanwhile waits to
// form one larger batch, as it did behind a synchronous commit (smaller batches would rewrite the same pages in
// more WAL frames: BenchmarkAppendParallel took 28-36 µs per append with
// a buffered channel, 21-26 µs without). It ends when the writer closes s.syncs.
func (s *Store) syncLoop() {
	defer close(s.syncDone)
	var items []committed
	for {
		s.syncWait.Store(true) // before the token: see writer.waitSyncer
		select {
		case s.syncIdle <- struct{}{}:
		default:
		}
		it, ok := <-s.syncs
		s.syncWait.Store(false)
		if !ok {
			return
		}
		items = append(items[:0], it)
	more:
		for {
			select {
			case it, ok := <-s.syncs:
				if !ok {
					break more
				}
				items = append(items, it)
			default:
				break more
			}
		}
		start := time.Now()
		err := s.wal.sync()
		took := time.Since(start)
		s.metrics.sync.Observe(took.Seconds())
		if took >= slowSync {
			s.slowSyncLog.Do(func() {
				s.log.Warn("slow WAL sync: every append waited for the disk",
					zap.Duration("took", took), zap.Int("batches", len(items)))
			})
		}
		if err != nil {
			s.log.Error("sync of committed messages failed; appends refused until restart", zap.Error(err))
			err = fmt.Errorf("%w: %w", chat.Errorf(chat.EUnavailable, "storage unavailable, retry later"), err)
		}
		for i := range items {
			it := &items[i]
			if err == nil {
				for _, r := range it.rooms {
					s.vis.synced(r.room, r.last)
				}
			}
			for j, req := range it.reqs {
				if err != nil && it.res[j].err == nil {
					it.res[j] = appendRes{err: err}
				}
				if r := it.res[j]; r.err == nil && !r.dup && req.then != nil {
					req.then(r.m)
				}
			}
		}
		if f := s.afterThens.Load(); f != nil {
			(*f)()
		}
		for i := range items {
			it := &items[i]
			for j, req := range it.reqs {
				req.answer(it.res[j])
			}
			items[i] = committed{}
		}
	}
}

// AfterThens makes f run on the syncer after the then functions of each
// sync's messages (AppendThen, AppendAsync), before their callers are
// answered: whatever those functions gathered for one sync can be
// finished at once, such as one socket write per recipient for the whole
// group commit. Set it before the first append.
func (s *Store) AfterThens(f func()) {
	s.afterThens.Store(&f)
}

// walFile fsyncs the database's WAL. The write connection commits with
// synchronous=NORMAL, which writes a transaction's frames to the WAL
// without syncing them; an fsync of the WAL after the commit makes the
// transaction as durable as synchronous=FULL would have (WAL recovery
// replays every checksummed frame up to the last commit record), and
// SQLite itself syncs the WAL before every checkpoint and its header when
// the file is reused.
type walFile struct {
	path   string // the WAL
	dbPath string // synced instead when there is no WAL (SQLite removed it after a full checkpoint)
	noSync bool   // benchmarks only: measure the store without the disk
	// hook, in tests, runs before each fsync; an error from it fails the sync.
	hook func() error

	mu sync.Mutex // held during the fsync
	f  *os.File
	// dirSynced says the directory entry of f is durable. SQLite deletes
	// the WAL on a clean close and creates it again on the next open; a
	// new file's name is only as durable as its directory, which POSIX
	// does not sync with the file, and SQLite's own directory sync waits
	// for the first checkpoint.
	dirSynced bool
	// syncDir, if set, replaces syncDirectory (tests count its calls).
	syncDir func(dir string) error
	// err is sticky: after a failed fsync the kernel may have dropped the
	// pages it could not write, so nothing more is acknowledged. Atomic:
	// the writer asks without waiting for an fsync in progress.
	err atomic.Pointer[error]
}

func (w *walFile) sync() error {
	if w.noSync {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.failed(); err != nil {
		return err
	}
	path, f, err := w.open()
	if err == nil && w.hook != nil {
		err = w.hook()
	}
	if err == nil {
		err = datasync(f)
	}
	if err == nil && !w.dirSynced {
		syncDir := w.syncDir
		if syncDir == nil {
			syncDir = syncDirectory
		}
		if err = syncDir(filepath.Dir(path)); err == nil {
			w.dirSynced = true
		}
	}
	if err != nil {
		err = fmt.Errorf("sqlite: sync %s: %w", path, err)
		w.err.Store(&err)
		w.close()
	}
	return err
}

// open returns the WAL, or the database file if there is no WAL. The file
// is opened once, and again only if its path names another file than the
// one held.
func (w *walFile) open() (string, *os.File, error) {
	path := w.path
	st, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		path = w.dbPath
		st, err = os.Stat(path)
	}
	if err != nil {
		return path, nil, err
	}
	if w.f != nil {
		if held, err := w.f.Stat(); err == nil && os.SameFile(st, held) {
			return path, w.f, nil
		}
		w.close()
	}
	// Read-write: some systems refuse to sync a read-only descriptor.
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return path, nil, err
	}
	w.f = f
	w.dirSynced = false
	return path, f, nil
}

func (w *walFile) close() {
	if w.f != nil {
		w.f.Close()
		w.f = nil
	}
}

// failed returns the sticky error of a failed sync.
func (w *walFile) failed() error {
	if p := w.err.Load(); p != nil {
		return *p
	}
	return nil
}

// visibility hides committed messages from readers until they are synced,
// so that no one sees a seq that a power loss could take back: history
// and catch-up reads stop below a room's first unsynced seq.
type visibility struct {
	mu    sync.Mutex
	rooms map[string]*roomVis // only rooms with unsynced messages
}

type roomVis struct {
	synced    int64 // every seq ≤ synced is durable
	committed int64 // the last seq committed
}

// committed records that room's seqs first..last are committed, not synced.
func (v *visibility) committed(room string, first, last int64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.rooms == nil {
		v.rooms = make(map[string]*roomVis)
	}
	rv := v.rooms[room]
	if rv == nil {
		rv = &roomVis{synced: first - 1}
		v.rooms[room] = rv
	}
	rv.committed = max(rv.committed, last)
}

// synced records that room's seqs up to last are durable.
func (v *visibility) synced(room string, last int64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	rv := v.rooms[room]
	if rv == nil {
		return
	}
	rv.synced = max(rv.synced, last)
	if rv.synced >= rv.committed {
		delete(v.rooms, room)
	}
}

// limit returns the highest seq of room a reader may see, and whether
// there is such a limit.
func (v *visibility) limit(room string) (int64, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if rv := v.rooms[room]; rv != nil {
		return rv.synced, true
	}
	return 0, false
}

// checkpointEvery is how many appended messages make the writer ask for a
// checkpoint: about 1-3 WAL pages each, near SQLite's own 1,000 pages.
const checkpointEvery = 500

// walRestartFrames is how long the WAL may grow, in frames (a 4 KiB page
// each: 32 MiB), before the writer finishes a checkpoint so that the WAL
// restarts. Finishing one stops appends for 1-3 ms (the WAL's fsync, the
// copy, the database file's fsync); after every checkpoint that was 4 %
// of the time at 9,200 msgs/s. At this size it is once every 1.8 s at
// 2,000 msgs/s and not at all at 9,200 msgs/s, where the writer's waits
// for the syncer let the WAL restart by itself; and the WAL stays under
// walSizeLimit, past which SQLite would truncate it in the writer.
const walRestartFrames = 8192

// checkpointLoop copies the WAL's frames into the database file when the
// writer asks, off the writer's path. With SQLite's automatic checkpoint
// the commit that crossed 1,000 pages did it, and every append behind it
// waited: at 2,883 msgs/s about 35 commits in 10 s took 3-15 ms, half of
// all commits over 3 ms. PASSIVE waits for no reader and no writer; the
// connection's synchronous=FULL makes SQLite sync the WAL before copying
// and the database file after, so a checkpoint never carries unsynced
// frames into the file.
//
// The WAL restarts from its beginning only when a write transaction
// begins with every frame copied. Under steady load the writer commits
// while the checkpoint runs, so that moment never came: the WAL grew by
// about 20 MB/s at 2,000 msgs/s, every fdatasync also wrote its size, and
// the first pause truncated it back to walSizeLimit in the writer, 40 ms
// during which no append went through. So once the WAL holds
// walRestartFrames, when a checkpoint got as far as it began, the writer
// copies what was committed meanwhile (finishCheckpoint) and its next
// transaction restarts the WAL.
func (s *Store) checkpointLoop() {
	defer close(s.ckptDone)
	for {
		select {
		case <-s.quit:
			return
		case <-s.ckptKick:
		}
		frames, copied, ok := s.checkpoint(s.ckpt, "checkpointer")
		if ok && frames >= s.restartFrames && copied == frames {
			s.ckptFinish.Store(true)
		}
	}
}

// checkpoint runs a PASSIVE checkpoint on db, one of the store's
// connections, and returns the WAL's frames and how many of them are now
// in the database file. ok is false if it failed (logged) or found
// another checkpoint running (the writer's and the checkpointer's can
// meet; the next one will do). Every checkpoint that ran sets the
// linkwall_store_wal_frames gauge; each one is timed under by, the name of
// who ran it ("checkpointer" or "writer").
func (s *Store) checkpoint(db *sql.DB, by string) (frames, copied int, ok bool) {
	var busy int
	start := time.Now()
	err := db.QueryRowContext(context.Background(), "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &frames, &copied)
	s.metrics.checkpoint.WithLabelValues(by).Observe(time.Since(start).Seconds())
	if err != nil {
		s.log.Warn("checkpoint failed; the WAL grows until the next one", zap.Error(err))
		return 0, 0, false
	}
	if busy != 0 {
		return frames, copied, false
	}
	s.metrics.walFrames.Set(float64(frames))
	return frames, copied, true
}
