package sqlite

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/linkwall/linkwall/internal/chat"
)

func expiresAt(t *testing.T, db *sql.DB, hash []byte) time.Time {
	t.Helper()
	var ns int64
	if err := db.QueryRow("SELECT expires_at FROM sessions WHERE token_hash = ?", hash).Scan(&ns); err != nil {
		t.Fatal(err)
	}
	return fromNanos(ns)
}

func nearly(a, b time.Time) bool { return a.Sub(b).Abs() < time.Minute }

// A session is valid for chat.SessionTTL; an expired one is refused, and
// removed when the next session is created.
func TestSessionExpires(t *testing.T) {
	s := openOpts(t, t.TempDir(), options{})
	ctx := context.Background()
	hash := []byte("hash-alice")
	if err := s.CreateUser(ctx, chat.User{ID: "alice", Name: "alice"}, hash); err != nil {
		t.Fatal(err)
	}
	if got := expiresAt(t, s.w, hash); !nearly(got, time.Now().Add(chat.SessionTTL)) {
		t.Fatalf("expires_at %v, want about now + %v", got, chat.SessionTTL)
	}
	if _, err := s.UserBySession(ctx, hash); err != nil {
		t.Fatalf("fresh session: %v", err)
	}
	if _, err := s.w.Exec("UPDATE sessions SET expires_at = ? WHERE token_hash = ?", nanos(time.Now().Add(-time.Second)), hash); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UserBySession(ctx, hash); chat.ErrorCode(err) != chat.EUnauthorized {
		t.Fatalf("expired session: %v, want unauthorized", err)
	}
	if err := s.CreateUser(ctx, chat.User{ID: "bob", Name: "bob"}, []byte("hash-bob")); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := s.w.QueryRow("SELECT COUNT(*) FROM sessions").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("%d sessions after the next sign-up, want 1 (the expired one deleted)", n)
	}
	if _, err := s.User(ctx, "alice"); err != nil {
		t.Fatalf("the user outlives the session: %v", err)
	}
}

// Upgrading a schema 2 database gives its sessions 30 days from then.
func TestMigrationGivesOldSessionsATTL(t *testing.T) {
	dir := t.TempDir()
	db, err := sql.Open("sqlite", filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range migrations[:2] {
		if _, err := db.Exec(m); err != nil {
			t.Fatal(err)
		}
	}
	for _, q := range []string{
		"PRAGMA user_version = 2",
		"INSERT INTO users (id, name, bot, created_at) VALUES ('old', 'old', 0, 0)",
		"INSERT INTO sessions (token_hash, user_id) VALUES (X'01', 'old')",
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	db.Close()

	s := openOpts(t, dir, options{})
	if u, err := s.UserBySession(context.Background(), []byte{1}); err != nil || u.ID != "old" {
		t.Fatalf("old session after the upgrade: %v %v", u.ID, err)
	}
	if got := expiresAt(t, s.w, []byte{1}); !nearly(got, time.Now().Add(30*24*time.Hour)) {
		t.Fatalf("old session expires_at %v, want about 30 days from now", got)
	}
}
