package redis

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	neturl "net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/linkwall/linkwall/internal/chat"
)

const (
	// DefaultPrefix starts every key the store writes.
	DefaultPrefix = "lw:"
	// DefaultMaxMessages is how many messages each room keeps: the reach
	// of resume and of GET …/messages (see doc.go).
	DefaultMaxMessages = 10_000
	// MaxPage bounds one Users or Messages call so that no request loads an
	// unbounded result; larger limits are clamped (as in the SQLite store).
	MaxPage = 10_000

	// Client timeouts. They are short so that a dead or hung Redis turns
	// into EUnavailable within about a second instead of piling up
	// requests; loopback or LAN round trips are well under a millisecond.
	dialTimeout  = 500 * time.Millisecond
	readTimeout  = time.Second
	writeTimeout = time.Second
	poolTimeout  = time.Second
)

// Store is a chat.Store kept in Redis. It is safe for concurrent use, and
// any number of nodes may share one Redis through it.
type Store struct {
	client *goredis.Client
	opts   *goredis.Options // kept to open the Broker's own connection
	log    *zap.Logger
	prefix string
	max    int64

	once     sync.Once
	closeErr error
}

var _ chat.Store = (*Store)(nil)

// Option changes how Open sets up a Store.
type Option func(*Store)

// WithPrefix makes every key start with prefix instead of DefaultPrefix, so
// several deployments (or parallel tests) can share one Redis database.
func WithPrefix(prefix string) Option { return func(s *Store) { s.prefix = prefix } }

// WithMaxMessages sets how many messages each room keeps (n ≥ 1).
func WithMaxMessages(n int) Option {
	return func(s *Store) {
		if n >= 1 {
			s.max = int64(n)
		}
	}
}

// Open connects to the Redis at url (redis://[user:pass@]HOST:PORT/DB,
// rediss:// for TLS; go-redis URL parameters such as dial_timeout are
// honoured, key_prefix=P sets the key prefix like WithPrefix and
// max_messages=N the retention like WithMaxMessages, which wins over it)
// and checks that it answers.
func Open(ctx context.Context, url string, logger *zap.Logger, options ...Option) (*Store, error) {
	if logger == nil {
		logger = zap.NewNop()
	}
	url, params, err := cutParams(url)
	if err != nil {
		return nil, fmt.Errorf("redis: parse url: %w", err)
	}
	opts, err := goredis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("redis: parse url: %w", err)
	}
	setDefaults(opts)
	s := &Store{opts: opts, log: logger, prefix: params.prefix, max: DefaultMaxMessages}
	if params.max > 0 {
		s.max = params.max
	}
	for _, o := range options {
		o(s)
	}
	s.client = goredis.NewClient(opts)
	if err := s.Ping(ctx); err != nil {
		s.client.Close()
		return nil, fmt.Errorf("redis: connect to %s: %w", opts.Addr, err)
	}
	logger.Info("redis store open", zap.String("addr", opts.Addr), zap.Int("db", opts.DB),
		zap.String("prefix", s.prefix), zap.Int64("max_messages", s.max))
	return s, nil
}

// The URL parameters Open reads itself: go-redis refuses parameters it does
// not know, so Open takes them out first.
const (
	prefixParam = "key_prefix"   // the key prefix, like WithPrefix
	maxParam    = "max_messages" // messages kept per room, like WithMaxMessages
)

// urlParams are the settings cutParams found on a Redis URL.
type urlParams struct {
	prefix string
	max    int64 // 0: not given
}

// cutParams returns rawURL without the parameters Open reads itself, and
// their values (prefix DefaultPrefix when absent).
func cutParams(rawURL string) (string, urlParams, error) {
	p := urlParams{prefix: DefaultPrefix}
	u, err := neturl.Parse(rawURL)
	if err != nil {
		return "", p, err
	}
	q := u.Query()
	if !q.Has(prefixParam) && !q.Has(maxParam) {
		return rawURL, p, nil
	}
	if q.Has(prefixParam) {
		p.prefix = q.Get(prefixParam)
		q.Del(prefixParam)
	}
	if q.Has(maxParam) {
		n, err := strconv.ParseInt(q.Get(maxParam), 10, 64)
		if err != nil || n < 1 {
			return "", p, fmt.Errorf("%s=%q: want a whole number of messages, at least 1", maxParam, q.Get(maxParam))
		}
		p.max = n
		q.Del(maxParam)
	}
	u.RawQuery = q.Encode()
	return u.String(), p, nil
}

// setDefaults fills in what the URL did not set.
func setDefaults(o *goredis.Options) {
	if o.DialTimeout == 0 {
		o.DialTimeout = dialTimeout
	}
	if o.ReadTimeout == 0 {
		o.ReadTimeout = readTimeout
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = writeTimeout
	}
	if o.PoolTimeout == 0 {
		o.PoolTimeout = poolTimeout
	}
	if o.DialerRetries == 0 {
		// One dial per attempt: go-redis's default of five with backoff
		// would hold a request for seconds while Redis is down.
		o.DialerRetries = 1
	}
	if o.MaxRetries == 0 {
		// No automatic retries: a retried Append whose first try did
		// reach Redis would store the message twice. Clients resend with
		// the same client_msg_id instead, which is deduplicated.
		o.MaxRetries = -1
	}
	o.ContextTimeoutEnabled = true
	o.DisableIdentity = true // CLIENT SETINFO costs a round trip per dial and needs Redis ≥ 7.2
}

// RouteLibraryLogs sends go-redis's own log lines (dial failures, which it
// prints to stderr by default) to logger. It sets a process-wide logger of
// go-redis, so only main calls it.
func RouteLibraryLogs(logger *zap.Logger) {
	goredis.SetLogger(libraryLogger{logger.Named("go-redis").WithOptions(zap.AddCallerSkip(2))})
}

type libraryLogger struct{ log *zap.Logger }

func (l libraryLogger) Printf(_ context.Context, format string, v ...any) {
	l.log.Warn(fmt.Sprintf(format, v...))
}

// Close releases the connections. It is safe to call more than once.
func (s *Store) Close() error {
	s.once.Do(func() {
		s.closeErr = s.client.Close()
	})
	return s.closeErr
}

// Ping reports whether Redis answers.
func (s *Store) Ping(ctx context.Context) error {
	return storeErr(ctx, "ping", s.client.Ping(ctx).Err())
}

// errUnavailable is what every failure to reach Redis wraps.
var errUnavailable = chat.Errorf(chat.EUnavailable, "storage unavailable, retry later")

// storeErr turns a go-redis error into one a client may see. Anything that
// means Redis cannot be reached or cannot serve now is EUnavailable; a
// cancelled or expired caller context stays as it is; any other reply
// error (a bug in a script) is internal. The cause stays in the chain for
// the logs.
func storeErr(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := errors.AsType[*chat.Error](err); ok {
		return err
	}
	if ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return fmt.Errorf("redis: %s: %w", op, err)
	}
	if _, ok := errors.AsType[goredis.Error](err); ok && !transientReply(err) {
		return fmt.Errorf("redis: %s: %w", op, err)
	}
	return fmt.Errorf("%w: redis: %s: %w", errUnavailable, op, err)
}

// transientReply reports a reply error that means "not now" rather than a
// bug: Redis loading its data, busy with a script, out of memory, a replica
// or a primary that lost its replicas.
func transientReply(err error) bool {
	for _, p := range []string{"LOADING", "BUSY", "MASTERDOWN", "READONLY", "OOM", "TRYAGAIN", "NOREPLICAS", "MISCONF", "CLUSTERDOWN"} {
		if goredis.HasErrorPrefix(err, p) {
			return true
		}
	}
	return false
}

// --- keys ---

func (s *Store) userKey(id string) string      { return s.prefix + "u:" + id }
func (s *Store) sessionKey(h []byte) string    { return s.prefix + "s:" + hex.EncodeToString(h) }
func (s *Store) usersKey() string              { return s.prefix + "users" }
func (s *Store) userRoomsKey(id string) string { return s.prefix + "ur:" + id }
func (s *Store) roomKey(id string) string      { return s.prefix + "r:" + id }
func (s *Store) msgsKey(room string) string    { return s.prefix + "r:" + room + ":m" }
func (s *Store) dedupKey(room string) string   { return s.prefix + "r:" + room + ":d" }
func (s *Store) orderKey() string              { return s.prefix + "order" }
func (s *Store) eventsKey() string             { return s.prefix + "events" }

// directKey names the pair of a direct room independently of member order.
func (s *Store) directKey(a, b string) string {
	if a > b {
		a, b = b, a
	}
	return s.prefix + "dm:" + a + "|" + b
}

// orderPrefix is the start of a lexically sorted set member that orders by
// creation time: t as 20 fixed-width digits. The scripts append a counter
// (insertion order among equal times) and "|ID".
func orderPrefix(t time.Time) string {
	return fmt.Sprintf("%020d", uint64(t.UnixNano())+1<<63)
}

// idOfMember returns the id after the last '|' of a sorted set member.
func idOfMember(m string) string { return m[strings.LastIndexByte(m, '|')+1:] }

func now() time.Time { return time.Now().UTC() }

// --- users and sessions ---

// createUserScript stores a user and, when a fourth key is given, its
// session, refusing an existing user id or session.
//
// KEYS: user, users, order, [session]. ARGV: user JSON, order prefix, id,
// session lifetime in milliseconds (Redis deletes the session then).
var createUserScript = goredis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 'user' end
if KEYS[4] and redis.call('EXISTS', KEYS[4]) == 1 then return 'session' end
local n = redis.call('INCR', KEYS[3])
redis.call('SET', KEYS[1], ARGV[1])
if KEYS[4] then redis.call('SET', KEYS[4], ARGV[1], 'PX', ARGV[4]) end
redis.call('ZADD', KEYS[2], 0, ARGV[2] .. string.format('%012d', n) .. '|' .. ARGV[3])
return 'ok'
`)

// CreateUser stores u and, if tokenHash is non-empty, a session for it.
// The session holds a copy of the user (users never change), so
// authenticating a request costs one GET.
func (s *Store) CreateUser(ctx context.Context, u chat.User, tokenHash []byte) error {
	if u.ID == "" || u.Name == "" {
		return chat.Errorf(chat.EInvalid, "user id and name are required")
	}
	if u.CreatedAt.IsZero() {
		u.CreatedAt = now()
	}
	u.CreatedAt = u.CreatedAt.UTC()
	b, err := json.Marshal(u)
	if err != nil {
		return fmt.Errorf("redis: encode user: %w", err)
	}
	keys := []string{s.userKey(u.ID), s.usersKey(), s.orderKey()}
	if len(tokenHash) > 0 {
		keys = append(keys, s.sessionKey(tokenHash))
	}
	res, err := createUserScript.Run(ctx, s.client, keys, b, orderPrefix(u.CreatedAt), u.ID,
		chat.SessionTTL.Milliseconds()).Text()
	if err != nil {
		return storeErr(ctx, "create user", err)
	}
	switch res {
	case "user":
		return chat.Errorf(chat.EConflict, "user %s already exists", u.ID)
	case "session":
		return chat.Errorf(chat.EConflict, "session already exists")
	}
	return nil
}

func decodeUser(b []byte) (chat.User, error) {
	var u chat.User
	if err := json.Unmarshal(b, &u); err != nil {
		return chat.User{}, fmt.Errorf("redis: decode user: %w", err)
	}
	return u, nil
}

// UserBySession returns the owner of the session, or EUnauthorized.
func (s *Store) UserBySession(ctx context.Context, tokenHash []byte) (chat.User, error) {
	if len(tokenHash) == 0 {
		return chat.User{}, chat.Errorf(chat.EUnauthorized, "no session")
	}
	b, err := s.client.Get(ctx, s.sessionKey(tokenHash)).Bytes()
	if errors.Is(err, goredis.Nil) {
		return chat.User{}, chat.Errorf(chat.EUnauthorized, "unknown session")
	}
	if err != nil {
		return chat.User{}, storeErr(ctx, "user by session", err)
	}
	return decodeUser(b)
}

// DeleteSession revokes a session (logout). Revoking an unknown session is
// not an error, so a repeated logout is harmless.
func (s *Store) DeleteSession(ctx context.Context, tokenHash []byte) error {
	if len(tokenHash) == 0 {
		return nil
	}
	return storeErr(ctx, "delete session", s.client.Del(ctx, s.sessionKey(tokenHash)).Err())
}

// User returns one user, or ENotFound.
func (s *Store) User(ctx context.Context, id string) (chat.User, error) {
	b, err := s.client.Get(ctx, s.userKey(id)).Bytes()
	if errors.Is(err, goredis.Nil) {
		return chat.User{}, chat.Errorf(chat.ENotFound, "no user %s", id)
	}
	if err != nil {
		return chat.User{}, storeErr(ctx, "user", err)
	}
	return decodeUser(b)
}

// Users returns up to limit users, newest first (limit is clamped to MaxPage).
func (s *Store) Users(ctx context.Context, limit int) ([]chat.User, error) {
	if limit <= 0 {
		return nil, chat.Errorf(chat.EInvalid, "limit must be positive")
	}
	limit = min(limit, MaxPage)
	members, err := s.client.ZRangeArgs(ctx, goredis.ZRangeArgs{Key: s.usersKey(), Start: 0, Stop: int64(limit - 1), Rev: true}).Result()
	if err != nil {
		return nil, storeErr(ctx, "users", err)
	}
	if len(members) == 0 {
		return []chat.User{}, nil
	}
	keys := make([]string, len(members))
	for i, m := range members {
		keys[i] = s.userKey(idOfMember(m))
	}
	vals, err := s.client.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, storeErr(ctx, "users", err)
	}
	us := make([]chat.User, 0, len(vals))
	for _, v := range vals {
		str, ok := v.(string)
		if !ok {
			continue // users are never deleted; tolerate it anyway
		}
		u, err := decodeUser([]byte(str))
		if err != nil {
			return nil, err
		}
		us = append(us, u)
	}
	return us, nil
}

// --- rooms ---

// createRoomScript stores a room unless the pair of a direct room has one
// already. Redis runs it atomically, so two nodes creating the same direct
// room at once get the same room.
//
// KEYS: room, order, user₁…userₙ, userRooms₁…userRoomsₙ, [direct].
// ARGV: n, id, order prefix, kind, name, era, lang, created, members JSON.
// Returns {status, detail}: {"ok"}, {"exists", room id},
// {"nouser", index}, {"conflict"}.
var createRoomScript = goredis.NewScript(`
local n = tonumber(ARGV[1])
local dk = KEYS[3 + 2 * n]
if dk then
  local id = redis.call('GET', dk)
  if id then return {'exists', id} end
end
for i = 1, n do
  if redis.call('EXISTS', KEYS[2 + i]) == 0 then return {'nouser', tostring(i)} end
end
if redis.call('EXISTS', KEYS[1]) == 1 then return {'conflict', ''} end
local c = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], 'kind', ARGV[4], 'name', ARGV[5], 'era', ARGV[6], 'lang', ARGV[7],
  'created', ARGV[8], 'members', ARGV[9], 'seq', 0)
local member = ARGV[3] .. string.format('%012d', c) .. '|' .. ARGV[2]
for i = 1, n do redis.call('ZADD', KEYS[2 + n + i], 0, member) end
if dk then redis.call('SET', dk, ARGV[2]) end
return {'ok', ''}
`)

// CreateRoom stores r, or for a direct room returns the pair's existing
// room. An empty r.ID or r.CreatedAt is filled in.
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
	var direct string
	switch r.Kind {
	case chat.Direct:
		if len(members) != 2 {
			return chat.Room{}, chat.Errorf(chat.EInvalid, "a direct room has exactly two distinct members")
		}
		direct = s.directKey(members[0], members[1])
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
	mj, err := json.Marshal(members)
	if err != nil {
		return chat.Room{}, fmt.Errorf("redis: encode members: %w", err)
	}

	n := len(members)
	keys := make([]string, 2, 3+2*n)
	keys[0], keys[1] = s.roomKey(r.ID), s.orderKey()
	for _, m := range members {
		keys = append(keys, s.userKey(m))
	}
	for _, m := range members {
		keys = append(keys, s.userRoomsKey(m))
	}
	if direct != "" {
		keys = append(keys, direct)
	}
	res, err := createRoomScript.Run(ctx, s.client, keys, n, r.ID, orderPrefix(r.CreatedAt),
		r.Kind, r.Name, r.Era, r.Lang, r.CreatedAt.UnixNano(), mj).StringSlice()
	if err != nil {
		return chat.Room{}, storeErr(ctx, "create room", err)
	}
	if len(res) != 2 {
		return chat.Room{}, fmt.Errorf("redis: create room: unexpected reply %q", res)
	}
	switch res[0] {
	case "ok":
		return r, nil
	case "exists":
		return s.Room(ctx, res[1])
	case "nouser":
		i, _ := strconv.Atoi(res[1])
		if i < 1 || i > n {
			return chat.Room{}, fmt.Errorf("redis: create room: unexpected reply %q", res)
		}
		return chat.Room{}, chat.Errorf(chat.ENotFound, "no user %s", members[i-1])
	case "conflict":
		return chat.Room{}, chat.Errorf(chat.EConflict, "room %s already exists", r.ID)
	}
	return chat.Room{}, fmt.Errorf("redis: create room: unexpected reply %q", res)
}

// roomFromHash decodes a room hash; ok is false for an empty (missing) one.
func roomFromHash(id string, h map[string]string) (r chat.Room, ok bool, err error) {
	if len(h) == 0 {
		return chat.Room{}, false, nil
	}
	r = chat.Room{ID: id, Kind: h["kind"], Name: h["name"], Era: h["era"], Lang: h["lang"]}
	created, err := strconv.ParseInt(h["created"], 10, 64)
	if err != nil {
		return chat.Room{}, false, fmt.Errorf("redis: decode room %s: created: %w", id, err)
	}
	r.CreatedAt = time.Unix(0, created).UTC()
	if err := json.Unmarshal([]byte(h["members"]), &r.Members); err != nil {
		return chat.Room{}, false, fmt.Errorf("redis: decode room %s: members: %w", id, err)
	}
	if r.Members == nil {
		r.Members = []string{}
	}
	return r, true, nil
}

// Room returns one room, or ENotFound.
func (s *Store) Room(ctx context.Context, id string) (chat.Room, error) {
	h, err := s.client.HGetAll(ctx, s.roomKey(id)).Result()
	if err != nil {
		return chat.Room{}, storeErr(ctx, "room", err)
	}
	r, ok, err := roomFromHash(id, h)
	if err != nil {
		return chat.Room{}, err
	}
	if !ok {
		return chat.Room{}, chat.Errorf(chat.ENotFound, "no room %s", id)
	}
	return r, nil
}

// RoomCounts returns how many rooms each of userIDs is a member of.
func (s *Store) RoomCounts(ctx context.Context, userIDs []string) (map[string]int, error) {
	cmds := make([]*goredis.IntCmd, len(userIDs))
	_, err := s.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, id := range userIDs {
			cmds[i] = p.ZCard(ctx, s.userRoomsKey(id))
		}
		return nil
	})
	if err != nil {
		return nil, storeErr(ctx, "room counts", err)
	}
	counts := make(map[string]int, len(userIDs))
	for i, c := range cmds {
		if n := c.Val(); n > 0 {
			counts[userIDs[i]] = int(n)
		}
	}
	return counts, nil
}

// Rooms returns the rooms userID is a member of, oldest first; ENotFound if
// there is no such user. Two round trips: the user's room list, then all
// rooms (and the user's existence) in one pipeline.
func (s *Store) Rooms(ctx context.Context, userID string) ([]chat.Room, error) {
	members, err := s.client.ZRange(ctx, s.userRoomsKey(userID), 0, -1).Result()
	if err != nil {
		return nil, storeErr(ctx, "rooms", err)
	}
	if len(members) == 0 {
		n, err := s.client.Exists(ctx, s.userKey(userID)).Result()
		if err != nil {
			return nil, storeErr(ctx, "rooms", err)
		}
		if n == 0 {
			return nil, chat.Errorf(chat.ENotFound, "no user %s", userID)
		}
		return []chat.Room{}, nil
	}
	ids := make([]string, len(members))
	cmds := make([]*goredis.MapStringStringCmd, len(members))
	_, err = s.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, m := range members {
			ids[i] = idOfMember(m)
			cmds[i] = p.HGetAll(ctx, s.roomKey(ids[i]))
		}
		return nil
	})
	if err != nil {
		return nil, storeErr(ctx, "rooms", err)
	}
	rooms := make([]chat.Room, 0, len(members))
	for i, c := range cmds {
		r, ok, err := roomFromHash(ids[i], c.Val())
		if err != nil {
			return nil, err
		}
		if ok {
			rooms = append(rooms, r)
		}
	}
	return rooms, nil
}

// setRoomScript sets one field of an existing room and returns the room's
// hash, or nil when there is no such room.
//
// KEYS: room. ARGV: field, value.
var setRoomScript = goredis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return redis.call('HGETALL', KEYS[1])
`)

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

// setRoom updates one field (a constant from this file, never user input)
// and returns the room as written.
func (s *Store) setRoom(ctx context.Context, field, roomID, val string) (chat.Room, error) {
	flat, err := setRoomScript.Run(ctx, s.client, []string{s.roomKey(roomID)}, field, val).StringSlice()
	if errors.Is(err, goredis.Nil) {
		return chat.Room{}, chat.Errorf(chat.ENotFound, "no room %s", roomID)
	}
	if err != nil {
		return chat.Room{}, storeErr(ctx, "set room "+field, err)
	}
	h := make(map[string]string, len(flat)/2)
	for i := 0; i+1 < len(flat); i += 2 {
		h[flat[i]] = flat[i+1]
	}
	r, ok, err := roomFromHash(roomID, h)
	if err != nil {
		return chat.Room{}, err
	}
	if !ok {
		return chat.Room{}, chat.Errorf(chat.ENotFound, "no room %s", roomID)
	}
	return r, nil
}
