package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"
	"golang.org/x/time/rate"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/linkwall/linkwall/bot"
	"github.com/linkwall/linkwall/internal/chat"
)

// FileName is the database file Open creates inside its directory.
const FileName = "linkwall.db"

const (
	// busyTimeout is how long a connection waits for a lock held by another
	// connection (a checkpoint, or another process on the same file) before
	// giving up with SQLITE_BUSY.
	busyTimeout = 5 * time.Second
	// readConns bounds the read pool. WAL readers never block the writer or
	// each other; a few cover the 2-core target without piling up memory.
	readConns = 4
	// walSizeLimit is the size the WAL file is truncated back to after a
	// checkpoint, so that one burst does not leave a huge file behind.
	walSizeLimit = 64 << 20
	// MaxPage bounds one Users or Messages call so that no request can load
	// an unbounded result into memory; larger limits are clamped.
	MaxPage = 10000
)

// Sync modes. The write connection always commits with
// synchronous=NORMAL; in syncFull the syncer fsyncs the WAL before
// anything committed is acknowledged, in syncNormal (benchmarks only) it
// never does, which is what synchronous=NORMAL alone would give.
const (
	syncNormal = "NORMAL"
	syncFull   = "FULL"
)

// defaultSync is the durability level Open uses; see doc.go for why.
const defaultSync = syncFull

// Store is a chat.Store kept in one SQLite file. It is safe for concurrent
// use. Close it to flush pending appends and release the file.
type Store struct {
	log *zap.Logger
	w   *sql.DB // one connection: every write goes through it
	r   *sql.DB // read pool: never waits for the writer (WAL)

	msgsStmt *sql.Stmt // on r: Messages, the hot read path

	in       intake         // appends waiting for the writer
	syncs    chan committed // unbuffered: see syncLoop
	syncDone chan struct{}  // closed by the syncer when it has answered everything
	syncIdle chan struct{}  // capacity 1: the syncer has begun to wait for a batch (writer.waitSyncer)
	syncWait atomic.Bool    // the syncer waits for a batch
	ckpt     *sql.DB        // one connection: the checkpointer's
	ckptKick chan struct{}  // capacity 1: the writer asks for a checkpoint
	ckptDone chan struct{}  // closed by the checkpointer when it has stopped
	// ckptFinish: the checkpointer copied a WAL of restartFrames or more
	// as far as it reached when it began; the writer copies the rest
	// (finishCheckpoint).
	ckptFinish    atomic.Bool
	restartFrames int
	wal           *walFile
	slowSyncLog   rate.Sometimes // spaces the syncer's slow-sync warnings
	// afterThens runs on the syncer after each sync's then functions.
	afterThens atomic.Pointer[func()]
	vis        visibility
	metrics    storeMetrics
	dedup      *dedupWindows // the writer's; tests look at it between appends
	quit       chan struct{} // closed by Close to stop the writer
	done       chan struct{} // closed by the writer when it has stopped
	once       sync.Once
	closeErr   error
	lock       *os.File // held until Close: one process per data dir (nil where unsupported)
}

var _ chat.Store = (*Store)(nil)

// Open opens or creates dir/linkwall.db, brings its schema up to date and
// starts the group-commit writer. dir is created if missing.
func Open(ctx context.Context, dir string, logger *zap.Logger) (*Store, error) {
	return open(ctx, dir, logger, options{sync: defaultSync})
}

// options are knobs for tests and benchmarks; Open uses the defaults.
type options struct {
	sync string // syncNormal or syncFull
	// maxPageCount, if > 0, caps the database size (PRAGMA max_page_count)
	// on the write connection, so tests can make the "disk" full.
	maxPageCount int
	// syncHook, if set, runs before every fsync of the WAL (walFile.hook).
	syncHook func() error
	// dedupWindow and maxDedupEntries, if > 0, replace the constants.
	dedupWindow     int64
	maxDedupEntries int
	// restartFrames, if > 0, replaces walRestartFrames.
	restartFrames int
	// syncDir, if set, replaces syncDirectory (walFile.syncDir).
	syncDir func(dir string) error
}

func open(ctx context.Context, dir string, logger *zap.Logger, o options) (*Store, error) {
	if logger == nil {
		logger = zap.NewNop()
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("sqlite: create data dir: %w", err)
	}
	// SQLite's own report of an unwritable directory is a bare "unable to
	// open database file"; a probe names the real cause.
	if err := probeWritable(dir); err != nil {
		return nil, fmt.Errorf("sqlite: data dir %s is not writable: %w", dir, err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok && lock != nil {
			lock.Close()
		}
	}()
	path := filepath.Join(dir, FileName)
	// The driver splits its own parameters off at the first '?'.
	if strings.ContainsRune(path, '?') {
		return nil, fmt.Errorf("sqlite: data dir %q must not contain '?'", dir)
	}
	common := fmt.Sprintf("_pragma=busy_timeout(%d)&_pragma=foreign_keys(1)", busyTimeout.Milliseconds())

	// IMMEDIATE takes the write lock at BEGIN, so a transaction never fails
	// half-way on a lock upgrade.
	// NORMAL: a commit does not sync; the syncer does, before anything
	// committed is acknowledged or shown (see doc.go).
	// wal_autocheckpoint(0): the checkpointer does it (checkpointLoop).
	w, err := sql.Open("sqlite", path+"?"+common+"&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)"+
		fmt.Sprintf("&_pragma=journal_size_limit(%d)", walSizeLimit)+"&_pragma=wal_autocheckpoint(0)&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)

	wal := &walFile{path: path + "-wal", dbPath: path, noSync: o.sync == syncNormal, hook: o.syncHook, syncDir: o.syncDir}
	if err := migrate(ctx, w); err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	if err := wal.sync(); err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	if o.maxPageCount > 0 {
		if _, err := w.ExecContext(ctx, fmt.Sprintf("PRAGMA max_page_count = %d", o.maxPageCount)); err != nil {
			w.Close()
			return nil, fmt.Errorf("sqlite: set max_page_count: %w", err)
		}
	}

	r, err := sql.Open("sqlite", path+"?"+common+"&_pragma=query_only(1)")
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	r.SetMaxOpenConns(readConns)
	r.SetMaxIdleConns(readConns)
	// synchronous=FULL: a checkpoint syncs the WAL before it copies frames
	// into the database file, and the file after.
	ck, err := sql.Open("sqlite", path+"?"+common+"&_pragma=synchronous(FULL)")
	if err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	ck.SetMaxOpenConns(1)
	ck.SetMaxIdleConns(1)

	s := &Store{
		log:      logger,
		w:        w,
		r:        r,
		in:       intake{kick: make(chan struct{}, 1)},
		syncs:    make(chan committed),
		syncDone: make(chan struct{}),
		syncIdle: make(chan struct{}, 1),
		ckpt:     ck,
		ckptKick: make(chan struct{}, 1),
		ckptDone: make(chan struct{}),
		wal:      wal,
		metrics:  newStoreMetrics(),
		quit:     make(chan struct{}),
		done:     make(chan struct{}),
		lock:     lock,

		restartFrames: walRestartFrames,
		slowSyncLog:   rate.Sometimes{Interval: slowSyncLogInterval},
	}
	if o.restartFrames > 0 {
		s.restartFrames = o.restartFrames
	}
	if s.msgsStmt, err = r.PrepareContext(ctx, "SELECT "+messageCols+" FROM messages WHERE room_id = ? AND seq > ? ORDER BY seq LIMIT ?"); err != nil {
		ck.Close()
		r.Close()
		w.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	window, maxEntries := int64(dedupWindow), maxDedupEntries
	if o.dedupWindow > 0 {
		window = o.dedupWindow
	}
	if o.maxDedupEntries > 0 {
		maxEntries = o.maxDedupEntries
	}
	wr, err := newWriter(ctx, s, window, maxEntries)
	if err != nil {
		s.msgsStmt.Close()
		ck.Close()
		r.Close()
		w.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	s.dedup = wr.dedup
	go wr.run()
	go s.syncLoop()
	go s.checkpointLoop()
	ok = true
	logger.Info("sqlite store open", zap.String("path", path), zap.Bool("fsync", !wal.noSync))
	return s, nil
}

// beginDurable starts a transaction on the write connection with
// synchronous=FULL, so that its commit is on stable storage before Commit
// returns, as an acknowledged message is. Users, sessions and rooms are
// written this way: they are few, and unlike messages nothing hides them
// from readers until the syncer has run. done rolls back if Commit was not
// called and gives the connection back at NORMAL.
func (s *Store) beginDurable(ctx context.Context) (tx *sql.Tx, done func(), err error) {
	c, err := s.w.Conn(ctx)
	if err != nil {
		return nil, nil, err
	}
	if _, err := c.ExecContext(ctx, "PRAGMA synchronous = FULL"); err != nil {
		c.Close()
		return nil, nil, err
	}
	reset := func() {
		if _, err := c.ExecContext(context.Background(), "PRAGMA synchronous = NORMAL"); err != nil {
			// Left at FULL, commits sync twice: slower, not less safe.
			s.log.Warn("resetting synchronous on the write connection", zap.Error(err))
		}
		c.Close()
	}
	tx, err = c.BeginTx(ctx, nil)
	if err != nil {
		reset()
		return nil, nil, err
	}
	return tx, func() {
		tx.Rollback() //nolint:errcheck // no-op after Commit
		reset()
	}, nil
}

// probeWritable creates and removes a file in dir.
func probeWritable(dir string) error {
	f, err := os.CreateTemp(dir, ".linkwall-probe-*")
	if err != nil {
		return err
	}
	return errors.Join(f.Close(), os.Remove(f.Name()))
}

// Close stops accepting appends, commits the ones already queued for the
// writer, and closes the database. It is safe to call more than once.
func (s *Store) Close() error {
	s.once.Do(func() {
		close(s.quit)
		<-s.syncDone
		<-s.ckptDone
		s.wal.mu.Lock()
		s.wal.close()
		s.wal.mu.Unlock()
		s.closeErr = errors.Join(s.msgsStmt.Close(), s.r.Close(), s.ckpt.Close(), s.w.Close())
		if s.lock != nil {
			s.closeErr = errors.Join(s.closeErr, s.lock.Close())
		}
	})
	return s.closeErr
}

// Ping reports whether the store can serve requests.
func (s *Store) Ping(ctx context.Context) error {
	select {
	case <-s.done:
		return errClosed
	default:
	}
	// After a failed sync every append is refused until a restart.
	if err := s.wal.failed(); err != nil {
		return fmt.Errorf("%w: %w", chat.Errorf(chat.EUnavailable, "storage unavailable, retry later"), err)
	}
	var one int
	if err := s.r.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return storeErr("ping", err)
	}
	return nil
}

var errClosed = chat.Errorf(chat.EUnavailable, "store closed")

// storeErr turns a database error into one a client may see: I/O trouble,
// a full disk and lock timeouts are EUnavailable (retry later); anything
// else is internal. The cause stays in the chain for the logs.
func storeErr(op string, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := errors.AsType[*chat.Error](err); ok {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("sqlite: %s: %w", op, err)
	}
	if se, ok := errors.AsType[*sqlite.Error](err); ok {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED,
			sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_NOMEM, sqlite3.SQLITE_PROTOCOL:
			return fmt.Errorf("%w: sqlite: %s: %w", chat.Errorf(chat.EUnavailable, "storage unavailable, retry later"), op, err)
		}
	}
	return fmt.Errorf("sqlite: %s: %w", op, err)
}

func isUnique(err error) bool {
	se, ok := errors.AsType[*sqlite.Error](err)
	return ok && (se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY)
}

func nanos(t time.Time) int64 { return t.UnixNano() }

func fromNanos(n int64) time.Time { return time.Unix(0, n).UTC() }

// now is the creation time given to records that come without one.
func now() time.Time { return time.Now().UTC() }

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// --- users and sessions ---

// CreateUser stores u and, if tokenHash is non-empty, a session for it.
// A bot user (LinkBot) may have no session.
func (s *Store) CreateUser(ctx context.Context, u chat.User, tokenHash []byte) error {
	if u.ID == "" || u.Name == "" {
		return chat.Errorf(chat.EInvalid, "user id and name are required")
	}
	if u.CreatedAt.IsZero() {
		u.CreatedAt = now()
	}
	tx, done, err := s.beginDurable(ctx)
	if err != nil {
		return storeErr("create user", err)
	}
	defer done()
	if _, err := tx.ExecContext(ctx, "INSERT INTO users (id, name, bot, created_at) VALUES (?, ?, ?, ?)",
		u.ID, u.Name, b2i(u.Bot), nanos(u.CreatedAt)); err != nil {
		if isUnique(err) {
			return chat.Errorf(chat.EConflict, "user %s already exists", u.ID)
		}
		return storeErr("create user", err)
	}
	if len(tokenHash) > 0 {
		t := now()
		// Expired sessions go as new ones come: the table stays bounded
		// without a sweeper (the index makes this a no-op when none is due).
		if _, err := tx.ExecContext(ctx, "DELETE FROM sessions WHERE expires_at <= ?", nanos(t)); err != nil {
			return storeErr("expire sessions", err)
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO sessions (token_hash, user_id, expires_at) VALUES (?, ?, ?)",
			tokenHash, u.ID, nanos(t.Add(chat.SessionTTL))); err != nil {
			if isUnique(err) {
				return chat.Errorf(chat.EConflict, "session already exists")
			}
			return storeErr("create session", err)
		}
	}
	return storeErr("create user", tx.Commit())
}

// DeleteSession revokes a session (logout). Revoking an unknown session is
// not an error: the outcome, no such session, is the same. The server uses
// it through an optional interface; it is not part of chat.Store.
func (s *Store) DeleteSession(ctx context.Context, tokenHash []byte) error {
	tx, done, err := s.beginDurable(ctx)
	if err != nil {
		return storeErr("delete session", err)
	}
	defer done()
	if _, err := tx.ExecContext(ctx, "DELETE FROM sessions WHERE token_hash = ?", tokenHash); err != nil {
		return storeErr("delete session", err)
	}
	return storeErr("delete session", tx.Commit())
}

const userCols = "id, name, bot, created_at"

type scanner interface{ Scan(dest ...any) error }

func scanUser(sc scanner) (chat.User, error) {
	var u chat.User
	var created int64
	err := sc.Scan(&u.ID, &u.Name, &u.Bot, &created)
	u.CreatedAt = fromNanos(created)
	return u, err
}

// UserBySession returns the owner of the session, or EUnauthorized if it
// is unknown or has expired.
func (s *Store) UserBySession(ctx context.Context, tokenHash []byte) (chat.User, error) {
	if len(tokenHash) == 0 {
		return chat.User{}, chat.Errorf(chat.EUnauthorized, "no session")
	}
	u, err := scanUser(s.r.QueryRowContext(ctx,
		"SELECT u.id, u.name, u.bot, u.created_at FROM sessions s JOIN users u ON u.id = s.user_id "+
			"WHERE s.token_hash = ? AND s.expires_at > ?", tokenHash, nanos(now())))
	if errors.Is(err, sql.ErrNoRows) {
		return chat.User{}, chat.Errorf(chat.EUnauthorized, "unknown session")
	}
	return u, storeErr("user by session", err)
}

// User returns one user, or ENotFound.
func (s *Store) User(ctx context.Context, id string) (chat.User, error) {
	u, err := scanUser(s.r.QueryRowContext(ctx, "SELECT "+userCols+" FROM users WHERE id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return chat.User{}, chat.Errorf(chat.ENotFound, "no user %s", id)
	}
	return u, storeErr("user", err)
}

// Users returns up to limit users, newest first (limit is clamped to MaxPage).
func (s *Store) Users(ctx context.Context, limit int) ([]chat.User, error) {
	if limit <= 0 {
		return nil, chat.Errorf(chat.EInvalid, "limit must be positive")
	}
	limit = min(limit, MaxPage)
	rows, err := s.r.QueryContext(ctx, "SELECT "+userCols+" FROM users ORDER BY created_at DESC, rowid DESC LIMIT ?", limit)
	if err != nil {
		return nil, storeErr("users", err)
	}
	defer rows.Close()
	var us []chat.User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, storeErr("users", err)
		}
		us = append(us, u)
	}
	return us, storeErr("users", rows.Err())
}

// --- rooms ---

// directKey names the pair of a direct room independently of member order.
func directKey(a, b string) string {
	if a > b {
		a, b = b, a
	}
	return a + " " + b
}

// CreateRoom stores r, or for a direct room returns the pair's existing room.
// An empty r.ID or r.CreatedAt is filled in.
func (s *Store) CreateRoom(ctx context.Context, r chat.Room) (chat.Room, error) {
	members := make([]string, 0, len(r.Members))
	for _, m := range r.Members {
		if m == "" {
			return chat.Room{}, chat.Errorf(chat.EInvalid, "empty member id")
		}
		if !slices.Contains(members, m) {
			members = append(members, m)
		}
	}
	r.Members = members
	var key any // NULL for groups
	switch r.Kind {
	case chat.Direct:
		if len(members) != 2 {
			return chat.Room{}, chat.Errorf(chat.EInvalid, "a direct room has exactly two distinct members")
		}
		key = directKey(members[0], members[1])
	case chat.Group:
	default:
		return chat.Room{}, chat.Errorf(chat.EInvalid, "room kind must be %q or %q", chat.Direct, chat.Group)
	}
	if r.ID == "" {
		r.ID = uuid.NewString()
	}
	if r.CreatedAt.IsZero() {
		r.CreatedAt = now()
	}
	r.CreatedAt = r.CreatedAt.UTC()

	tx, done, err := s.beginDurable(ctx)
	if err != nil {
		return chat.Room{}, storeErr("create room", err)
	}
	defer done()

	if key != nil {
		// The write connection is the only writer, so look-then-insert
		// inside this IMMEDIATE transaction cannot race.
		var id string
		err := tx.QueryRowContext(ctx, "SELECT id FROM rooms WHERE direct_key = ?", key).Scan(&id)
		if err == nil {
			return roomTx(ctx, tx, id)
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return chat.Room{}, storeErr("create room", err)
		}
	}
	for _, m := range members {
		var ok bool
		if err := tx.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM users WHERE id = ?)", m).Scan(&ok); err != nil {
			return chat.Room{}, storeErr("create room", err)
		}
		if !ok {
			return chat.Room{}, chat.Errorf(chat.ENotFound, "no user %s", m)
		}
	}
	if _, err := tx.ExecContext(ctx,
		"INSERT INTO rooms (id, kind, name, era, lang, direct_key, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
		r.ID, r.Kind, r.Name, r.Era, r.Lang, key, nanos(r.CreatedAt)); err != nil {
		if isUnique(err) {
			return chat.Room{}, chat.Errorf(chat.EConflict, "room %s already exists", r.ID)
		}
		return chat.Room{}, storeErr("create room", err)
	}
	for _, m := range members {
		if _, err := tx.ExecContext(ctx, "INSERT INTO members (room_id, user_id) VALUES (?, ?)", r.ID, m); err != nil {
			return chat.Room{}, storeErr("create room", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return chat.Room{}, storeErr("create room", err)
	}
	return r, nil
}

const roomCols = "id, kind, name, era, lang, created_at"

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func scanRoom(sc scanner) (chat.Room, error) {
	var r chat.Room
	var created int64
	err := sc.Scan(&r.ID, &r.Kind, &r.Name, &r.Era, &r.Lang, &created)
	r.CreatedAt = fromNanos(created)
	return r, err
}

func roomTx(ctx context.Context, q querier, id string) (chat.Room, error) {
	r, err := scanRoom(q.QueryRowContext(ctx, "SELECT "+roomCols+" FROM rooms WHERE id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return chat.Room{}, chat.Errorf(chat.ENotFound, "no room %s", id)
	}
	if err != nil {
		return chat.Room{}, storeErr("room", err)
	}
	rows, err := q.QueryContext(ctx, "SELECT user_id FROM members WHERE room_id = ? ORDER BY rowid", id)
	if err != nil {
		return chat.Room{}, storeErr("room members", err)
	}
	defer rows.Close()
	r.Members = []string{}
	for rows.Next() {
		var m string
		if err := rows.Scan(&m); err != nil {
			return chat.Room{}, storeErr("room members", err)
		}
		r.Members = append(r.Members, m)
	}
	return r, storeErr("room members", rows.Err())
}

// Room returns one room, or ENotFound.
func (s *Store) Room(ctx context.Context, id string) (chat.Room, error) {
	return roomTx(ctx, s.r, id)
}

// RoomCounts returns how many rooms each of userIDs is a member of.
func (s *Store) RoomCounts(ctx context.Context, userIDs []string) (map[string]int, error) {
	counts := make(map[string]int, len(userIDs))
	if len(userIDs) == 0 {
		return counts, nil
	}
	args := make([]any, len(userIDs))
	for i, id := range userIDs {
		args[i] = id
	}
	rows, err := s.r.QueryContext(ctx, "SELECT user_id, COUNT(*) FROM members WHERE user_id IN (?"+
		strings.Repeat(",?", len(userIDs)-1)+") GROUP BY user_id", args...)
	if err != nil {
		return nil, storeErr("room counts", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			return nil, storeErr("room counts", err)
		}
		counts[id] = n
	}
	return counts, storeErr("room counts", rows.Err())
}

// Rooms returns the rooms userID is a member of, oldest first; ENotFound if
// there is no such user.
func (s *Store) Rooms(ctx context.Context, userID string) ([]chat.Room, error) {
	rows, err := s.r.QueryContext(ctx, "SELECT r.id, r.kind, r.name, r.era, r.lang, r.created_at FROM rooms r "+
		"JOIN members m ON m.room_id = r.id WHERE m.user_id = ? ORDER BY r.created_at, r.rowid", userID)
	if err != nil {
		return nil, storeErr("rooms", err)
	}
	var rooms []chat.Room
	idx := map[string]int{}
	for rows.Next() {
		r, err := scanRoom(rows)
		if err != nil {
			rows.Close()
			return nil, storeErr("rooms", err)
		}
		r.Members = []string{}
		idx[r.ID] = len(rooms)
		rooms = append(rooms, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, storeErr("rooms", err)
	}
	if len(rooms) == 0 {
		if _, err := s.User(ctx, userID); err != nil {
			return nil, err
		}
		return []chat.Room{}, nil
	}
	rows, err = s.r.QueryContext(ctx, "SELECT room_id, user_id FROM members "+
		"WHERE room_id IN (SELECT room_id FROM members WHERE user_id = ?) ORDER BY rowid", userID)
	if err != nil {
		return nil, storeErr("rooms", err)
	}
	defer rows.Close()
	for rows.Next() {
		var room, m string
		if err := rows.Scan(&room, &m); err != nil {
			return nil, storeErr("rooms", err)
		}
		// A room created between the two queries is simply not in idx.
		if i, ok := idx[room]; ok {
			rooms[i].Members = append(rooms[i].Members, m)
		}
	}
	return rooms, storeErr("rooms", rows.Err())
}

// SetRoomEra changes a room's era.
func (s *Store) SetRoomEra(ctx context.Context, roomID, era string) (chat.Room, error) {
	if era == "" {
		return chat.Room{}, chat.Errorf(chat.EInvalid, "era is required")
	}
	return s.setRoom(ctx, "era", roomID, era)
}

// SetRoomLang changes the language LinkBot answers in.
func (s *Store) SetRoomLang(ctx context.Context, roomID, lang string) (chat.Room, error) {
	if lang == "" {
		return chat.Room{}, chat.Errorf(chat.EInvalid, "lang is required")
	}
	return s.setRoom(ctx, "lang", roomID, lang)
}

// setRoom updates one column (a constant from this file, never user input)
// and returns the room as written, read in the same transaction.
func (s *Store) setRoom(ctx context.Context, col, roomID, val string) (chat.Room, error) {
	tx, done, err := s.beginDurable(ctx)
	if err != nil {
		return chat.Room{}, storeErr("set room "+col, err)
	}
	defer done()
	res, err := tx.ExecContext(ctx, "UPDATE rooms SET "+col+" = ? WHERE id = ?", val, roomID)
	if err != nil {
		return chat.Room{}, storeErr("set room "+col, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return chat.Room{}, storeErr("set room "+col, err)
	} else if n == 0 {
		return chat.Room{}, chat.Errorf(chat.ENotFound, "no room %s", roomID)
	}
	r, err := roomTx(ctx, tx, roomID)
	if err != nil {
		return chat.Room{}, err
	}
	return r, storeErr("set room "+col, tx.Commit())
}

// --- messages ---

const messageCols = "room_id, seq, id, sender_id, sender_name, sender_bot, text, system, links, truncated, era, sent_at, client_msg_id"

func scanMessage(sc scanner) (chat.Message, error) {
	var m chat.Message
	var links []byte
	var sent int64
	if err := sc.Scan(&m.Room, &m.Seq, &m.ID, &m.Sender.ID, &m.Sender.Name, &m.Sender.Bot, &m.Text,
		&m.System, &links, &m.Truncated, &m.Era, &sent, &m.ClientMsgID); err != nil {
		return m, err
	}
	m.SentAt = fromNanos(sent)
	var err error
	m.Links, err = decodeLinks(links)
	return m, err
}

// encodeLinks keeps nil and empty apart so that a message reads back as it
// was appended.
func encodeLinks(ls []bot.Link) ([]byte, error) {
	switch {
	case ls == nil:
		return []byte("null"), nil
	case len(ls) == 0:
		return []byte("[]"), nil
	}
	return json.Marshal(ls)
}

func decodeLinks(b []byte) ([]bot.Link, error) {
	switch string(b) {
	case "null", "":
		return nil, nil
	case "[]":
		return []bot.Link{}, nil
	}
	var ls []bot.Link
	if err := json.Unmarshal(b, &ls); err != nil {
		return nil, fmt.Errorf("decode links: %w", err)
	}
	return ls, nil
}

// Messages returns up to limit messages of a room with Seq > after, in Seq
// order (limit is clamped to MaxPage); ENotFound if there is no such room.
func (s *Store) Messages(ctx context.Context, roomID string, after int64, limit int) ([]chat.Message, error) {
	if err := chat.CheckPage(after, limit); err != nil {
		return nil, err
	}
	limit = min(limit, MaxPage)
	rows, err := s.msgsStmt.QueryContext(ctx, roomID, after, limit)
	if err != nil {
		return nil, storeErr("messages", err)
	}
	defer rows.Close()
	ms := make([]chat.Message, 0, min(limit, 128))
	for rows.Next() {
		m, err := scanMessage(rows)
		if err != nil {
			return nil, storeErr("messages", err)
		}
		ms = append(ms, m)
	}
	if err := rows.Err(); err != nil {
		return nil, storeErr("messages", err)
	}
	// Messages committed but not yet synced stay hidden (see visibility).
	// The limit is read after the rows: the writer marks a batch before
	// its commit, so every row of the read's snapshot was marked by now.
	if hi, limited := s.vis.limit(roomID); limited {
		for i, m := range ms {
			if m.Seq > hi {
				ms = ms[:i]
				break
			}
		}
	}
	if len(ms) == 0 {
		var ok bool
		if err := s.r.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM rooms WHERE id = ?)", roomID).Scan(&ok); err != nil {
			return nil, storeErr("messages", err)
		}
		if !ok {
			return nil, chat.Errorf(chat.ENotFound, "no room %s", roomID)
		}
	}
	return ms, nil
}
