package sqlite

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/linkwall/linkwall/internal/chat"
	"github.com/linkwall/linkwall/internal/chat/chattest"
)

func openT(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := Open(context.Background(), dir, zaptest.NewLogger(t))
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	return s
}

func TestConformance(t *testing.T) {
	chattest.TestStore(t, func(t *testing.T) chat.Store { return openT(t, t.TempDir()) })
}

func TestReopenKeepsHistory(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openT(t, dir)
	alice := chattest.NewUser(t, s, "alice", 0)
	bob := chattest.NewUser(t, s, "bob", 1)
	g := chattest.NewGroup(t, s, "g", alice.ID, bob.ID)
	d, err := s.CreateRoom(ctx, chat.Room{Kind: chat.Direct, Members: []string{alice.ID, bob.ID}, Era: "walled", Lang: "en"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetRoomEra(ctx, g.ID, "open"); err != nil {
		t.Fatal(err)
	}
	var sent []chat.Message
	for i := range 5 {
		m := chattest.Msg(g.ID, alice, fmt.Sprint("m", i))
		m.ClientMsgID = fmt.Sprint("c", i)
		got, _, err := s.Append(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		sent = append(sent, got)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, _, err := s.Append(ctx, chattest.Msg(g.ID, alice, "after close")); chat.ErrorCode(err) != chat.EUnavailable {
		t.Errorf("Append after Close: %v, want %s", err, chat.EUnavailable)
	}

	s = openT(t, dir)
	defer s.Close()
	if u, err := s.UserBySession(ctx, []byte("tok-bob")); err != nil || u.ID != bob.ID {
		t.Errorf("UserBySession after reopen = %+v, %v", u, err)
	}
	if r, err := s.Room(ctx, g.ID); err != nil || r.Era != "open" || len(r.Members) != 2 {
		t.Errorf("Room after reopen = %+v, %v", r, err)
	}
	if r, err := s.CreateRoom(ctx, chat.Room{Kind: chat.Direct, Members: []string{bob.ID, alice.ID}, Era: "x", Lang: "en"}); err != nil || r.ID != d.ID {
		t.Errorf("direct room after reopen = %s, %v; want %s", r.ID, err, d.ID)
	}
	ms, err := s.Messages(ctx, g.ID, 0, 100)
	if err != nil || len(ms) != len(sent) {
		t.Fatalf("Messages after reopen = %d, %v; want %d", len(ms), err, len(sent))
	}
	for i := range ms {
		if ms[i].ID != sent[i].ID || ms[i].Seq != sent[i].Seq {
			t.Errorf("message %d after reopen = %s/%d, want %s/%d", i, ms[i].ID, ms[i].Seq, sent[i].ID, sent[i].Seq)
		}
	}
	// Dedup survives the restart, and seq continues.
	if got, dup, err := s.Append(ctx, chat.Message{Room: g.ID, Sender: chat.Sender{ID: alice.ID, Name: "alice"}, Text: "again", ClientMsgID: "c2"}); err != nil || !dup || got.ID != sent[2].ID {
		t.Errorf("resent c2 after reopen: %s dup=%v %v; want dup of %s", got.ID, dup, err, sent[2].ID)
	}
	if got, _, err := s.Append(ctx, chattest.Msg(g.ID, alice, "next")); err != nil || got.Seq != 6 {
		t.Errorf("Append after reopen: seq=%d %v; want 6", got.Seq, err)
	}
}

// TestOpenErrors covers data directories that cannot hold the database.
// Tests usually run as root here, which ignores permission bits, so the
// unwritable cases are built from things root cannot get past either: a
// regular file where a directory must be, and a directory where the
// database file must be. chmod-based cases run only as non-root.
func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	type setup func(t *testing.T) string
	cases := []struct {
		name  string
		setup setup
	}{
		{"dir is a regular file", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "data")
			writeFile(t, p, "not a dir")
			return p
		}},
		{"dir under a regular file", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "file")
			writeFile(t, p, "x")
			return filepath.Join(p, "data")
		}},
		{"db path is a directory", func(t *testing.T) string {
			dir := t.TempDir()
			if err := os.Mkdir(filepath.Join(dir, FileName), 0o700); err != nil {
				t.Fatal(err)
			}
			return dir
		}},
		{"corrupt db file", func(t *testing.T) string {
			dir := t.TempDir()
			junk := make([]byte, 8192)
			for i := range junk {
				junk[i] = byte(i * 7)
			}
			writeFile(t, filepath.Join(dir, FileName), string(junk))
			return dir
		}},
		{"read-only dir (non-root)", func(t *testing.T) string {
			if os.Geteuid() == 0 {
				t.Skip("running as root, which ignores permission bits; covered by the cases above")
			}
			dir := t.TempDir()
			if err := os.Chmod(dir, 0o500); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Chmod(dir, 0o700) })
			return dir
		}},
		{"read-only db file (non-root)", func(t *testing.T) string {
			if os.Geteuid() == 0 {
				t.Skip("running as root, which ignores permission bits")
			}
			dir := t.TempDir()
			s := openT(t, dir)
			s.Close()
			if err := os.Chmod(filepath.Join(dir, FileName), 0o400); err != nil {
				t.Fatal(err)
			}
			return dir
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := tc.setup(t)
			s, err := Open(ctx, dir, zaptest.NewLogger(t))
			if err == nil {
				s.Close()
				t.Fatalf("Open(%s) succeeded", dir)
			}
			t.Logf("Open: %v", err)
			if errors.Unwrap(err) == nil {
				t.Errorf("Open error %q wraps no cause", err)
			}
		})
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestDiskFull fills the database up to a page limit (how SQLite reports a
// full disk: SQLITE_FULL) and checks that Append says EUnavailable, that
// everything acknowledged before is intact, and that appends resume with no
// seq gap once there is room again.
func TestDiskFull(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openT(t, dir)
	alice := chattest.NewUser(t, s, "alice", 0)
	r := chattest.NewGroup(t, s, "g", alice.ID)
	s.Close()

	var pages int
	s, err := open(ctx, dir, zaptest.NewLogger(t), options{sync: defaultSync})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.w.QueryRowContext(ctx, "PRAGMA page_count").Scan(&pages); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s, err = open(ctx, dir, zaptest.NewLogger(t), options{sync: defaultSync, maxPageCount: pages + 4})
	if err != nil {
		t.Fatal(err)
	}
	text := string(make([]byte, 1000))
	var acked []chat.Message
	var fullErr error
	for i := range 1000 {
		m, _, err := s.Append(ctx, chattest.Msg(r.ID, alice, fmt.Sprint(i, text)))
		if err != nil {
			fullErr = err
			break
		}
		acked = append(acked, m)
	}
	if fullErr == nil {
		t.Fatal("1000 appends of 1 KB fitted in 4 pages")
	}
	if code := chat.ErrorCode(fullErr); code != chat.EUnavailable {
		t.Fatalf("Append on a full disk: %v (code %s), want %s", fullErr, code, chat.EUnavailable)
	}
	t.Logf("full after %d appends: %v", len(acked), fullErr)
	if len(acked) == 0 {
		t.Fatal("not one append fitted; the test proves nothing")
	}
	// Still full: refused again, and reads keep working.
	if _, _, err := s.Append(ctx, chattest.Msg(r.ID, alice, text)); chat.ErrorCode(err) != chat.EUnavailable {
		t.Errorf("second Append on a full disk: %v", err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Errorf("Ping on a full disk: %v", err)
	}
	s.Close()

	s = openT(t, dir) // no page limit: the disk has room again
	defer s.Close()
	ms, err := s.Messages(ctx, r.ID, 0, MaxPage)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != len(acked) {
		t.Fatalf("%d messages stored, %d acknowledged", len(ms), len(acked))
	}
	for i := range ms {
		if ms[i].ID != acked[i].ID || ms[i].Seq != int64(i+1) {
			t.Fatalf("message %d = %s/%d, want %s/%d", i, ms[i].ID, ms[i].Seq, acked[i].ID, i+1)
		}
	}
	m, _, err := s.Append(ctx, chattest.Msg(r.ID, alice, "room again"))
	if err != nil || m.Seq != int64(len(acked)+1) {
		t.Errorf("Append with room again: seq=%d %v; want %d", m.Seq, err, len(acked)+1)
	}
}

// TestCloseWhileAppending closes the store under a stream of appends: every
// Append must return (no caller stranded), either acknowledged or with
// EUnavailable, and every acknowledged message must be there on reopen.
func TestCloseWhileAppending(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openT(t, dir)
	alice := chattest.NewUser(t, s, "alice", 0)
	room := chattest.NewGroup(t, s, "g", alice.ID).ID

	const appenders = 20
	acked := make(chan chat.Message, 100000)
	errc := make(chan error, appenders)
	var wg sync.WaitGroup
	for a := range appenders {
		wg.Go(func() {
			for i := 0; ; i++ {
				m, _, err := s.Append(ctx, chattest.Msg(room, alice, fmt.Sprint(a, "/", i)))
				if err != nil {
					if chat.ErrorCode(err) != chat.EUnavailable {
						errc <- err
					}
					return
				}
				acked <- m
			}
		})
	}
	for start := time.Now(); len(acked) < 200; runtime.Gosched() {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("only %d appends in 10s", len(acked))
		}
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	wg.Wait() // hangs (test timeout) if Close stranded a caller
	close(acked)
	close(errc)
	for err := range errc {
		t.Errorf("Append during Close: %v, want %s", err, chat.EUnavailable)
	}

	s = openT(t, dir)
	defer s.Close()
	ms, err := s.Messages(ctx, room, 0, MaxPage)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for m := range acked {
		n++
		if m.Seq > int64(len(ms)) || ms[m.Seq-1].ID != m.ID {
			t.Fatalf("acknowledged seq %d (%s) not stored (%d stored)", m.Seq, m.ID, len(ms))
		}
	}
	if len(ms) != n {
		t.Errorf("%d stored, %d acknowledged: Close wrote messages nobody was told about", len(ms), n)
	}
	t.Logf("%d appends acknowledged before Close", n)
}

// TestOpenTwice: the seq counters live in the writer's memory, so a second
// store on the same data dir must be refused until the first is closed.
func TestOpenTwice(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s1, err := Open(ctx, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s2, err := Open(ctx, dir, nil); err == nil {
		s2.Close()
		t.Fatal("a second Open on a data dir in use succeeded")
	} else if !strings.Contains(err.Error(), "in use") {
		t.Errorf("second Open: %v, want an error saying the dir is in use", err)
	}
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	s3, err := Open(ctx, dir, nil)
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	s3.Close()
}
