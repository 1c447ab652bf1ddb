package sqlite

import (
	"context"
	"database/sql"
	"fmt"
)

// migrations are applied in order; migrations[i] brings the schema from
// PRAGMA user_version i to i+1. Never edit a released entry: append a new one.
//
// Times are INTEGER Unix nanoseconds (UTC) so that ordering and round trips
// are exact and cheap.
var migrations = []string{
	// 1: initial schema.
	`
CREATE TABLE users (
	id         TEXT PRIMARY KEY,
	name       TEXT NOT NULL,
	bot        INTEGER NOT NULL DEFAULT 0,
	created_at INTEGER NOT NULL
);
CREATE INDEX users_by_created ON users(created_at);
CREATE TABLE sessions (
	token_hash BLOB PRIMARY KEY,
	user_id    TEXT NOT NULL REFERENCES users(id)
);
CREATE TABLE rooms (
	id         TEXT PRIMARY KEY,
	kind       TEXT NOT NULL CHECK (kind IN ('direct', 'group')),
	name       TEXT NOT NULL,
	era        TEXT NOT NULL,
	lang       TEXT NOT NULL,
	direct_key TEXT UNIQUE, -- sorted member pair of a direct room; NULL for groups
	created_at INTEGER NOT NULL
);
CREATE TABLE members (
	room_id TEXT NOT NULL REFERENCES rooms(id),
	user_id TEXT NOT NULL REFERENCES users(id),
	PRIMARY KEY (room_id, user_id)
);
CREATE INDEX members_by_user ON members(user_id);
CREATE TABLE messages (
	room_id       TEXT NOT NULL REFERENCES rooms(id),
	seq           INTEGER NOT NULL,
	id            TEXT NOT NULL,
	sender_id     TEXT NOT NULL,
	sender_name   TEXT NOT NULL,
	sender_bot    INTEGER NOT NULL,
	text          TEXT NOT NULL,
	system        INTEGER NOT NULL,
	links         TEXT NOT NULL, -- JSON array of bot.Link, or null
	truncated     INTEGER NOT NULL,
	era           TEXT NOT NULL,
	sent_at       INTEGER NOT NULL,
	client_msg_id TEXT NOT NULL DEFAULT '',
	PRIMARY KEY (room_id, seq)
);
CREATE UNIQUE INDEX messages_client_msg_id
	ON messages(room_id, sender_id, client_msg_id) WHERE client_msg_id <> '';
`,
	// 2: repeated client_msg_ids are found in the writer's per-room window
	// of recent messages; the index cost a random page write per append.
	`
DROP INDEX messages_client_msg_id;
`,
	// 3: sessions expire chat.SessionTTL (30 days) after creation; the
	// ones created before get 30 days from the upgrade.
	`
ALTER TABLE sessions ADD COLUMN expires_at INTEGER NOT NULL DEFAULT 0;
UPDATE sessions SET expires_at = (unixepoch() + 30*86400) * 1000000000;
CREATE INDEX sessions_by_expiry ON sessions(expires_at);
`,
}

// migrate brings the schema up to date in one transaction. It always writes
// user_version, even when nothing is to migrate, so that a database that can
// be read but not written fails here, at Open, instead of on the first Append.
func migrate(ctx context.Context, db *sql.DB) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin schema transaction: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit

	var v int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if v > len(migrations) {
		return fmt.Errorf("schema version %d is newer than this binary knows (%d)", v, len(migrations))
	}
	for i := v; i < len(migrations); i++ {
		if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
			return fmt.Errorf("migration %d: %w", i+1, err)
		}
	}
	// PRAGMA takes no bind parameters; the value is our own integer.
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", len(migrations))); err != nil {
		return fmt.Errorf("write schema version: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}
