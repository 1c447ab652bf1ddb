package sqlite

import (
	"context"
	"fmt"
	"testing"

	"go.uber.org/zap/zaptest"

	"github.com/linkwall/linkwall/internal/chat"
	"github.com/linkwall/linkwall/internal/chat/chattest"
)

func openOpts(t *testing.T, dir string, o options) *Store {
	t.Helper()
	o.sync = defaultSync
	s, err := open(context.Background(), dir, zaptest.NewLogger(t), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// appendCMID appends text with a client_msg_id ("" for none) and returns
// the stored message and whether it was a duplicate.
func appendCMID(t *testing.T, s *Store, room string, u chat.User, cmid, text string) (chat.Message, bool) {
	t.Helper()
	m := chattest.Msg(room, u, text)
	m.ClientMsgID = cmid
	got, dup, err := s.Append(context.Background(), m)
	if err != nil {
		t.Fatalf("Append(%s): %v", cmid, err)
	}
	return got, dup
}

// A client that resends after the server restarted gets its first message
// back: the window is read from the database.
func TestDedupAfterRestart(t *testing.T) {
	dir := t.TempDir()
	s := openOpts(t, dir, options{})
	alice := chattest.NewUser(t, s, "alice", 0)
	r := chattest.NewGroup(t, s, "g", alice.ID)
	first, _ := appendCMID(t, s, r.ID, alice, "c-1", "hello")
	appendCMID(t, s, r.ID, alice, "c-2", "more")
	s.Close()

	s = openOpts(t, dir, options{})
	got, dup := appendCMID(t, s, r.ID, alice, "c-1", "hello again")
	if !dup || got.Seq != first.Seq || got.ID != first.ID || got.Text != "hello" {
		t.Fatalf("resend after restart = seq %d %q dup=%v; want seq %d %q dup", got.Seq, got.Text, dup, first.Seq, first.Text)
	}
	if next, dup := appendCMID(t, s, r.ID, alice, "c-3", "new"); dup || next.Seq != 3 {
		t.Fatalf("new message after restart = seq %d dup=%v; want seq 3", next.Seq, dup)
	}
}

// The window is the room's last dedupWindow messages, counted by seq: a
// client_msg_id older than that is a new message (documented limit).
func TestDedupWindowBound(t *testing.T) {
	s := openOpts(t, t.TempDir(), options{dedupWindow: 5})
	alice := chattest.NewUser(t, s, "alice", 0)
	bob := chattest.NewUser(t, s, "bob", 1)
	r := chattest.NewGroup(t, s, "g", alice.ID, bob.ID)
	appendCMID(t, s, r.ID, alice, "old", "seq 1")
	for i := range 4 { // seqs 2–5, bob, without client_msg_id
		appendCMID(t, s, r.ID, bob, "", fmt.Sprint("filler ", i))
	}
	if got, dup := appendCMID(t, s, r.ID, alice, "old", "resend"); !dup || got.Seq != 1 {
		t.Fatalf("resend 4 messages later = seq %d dup=%v; want seq 1 dup", got.Seq, dup)
	}
	appendCMID(t, s, r.ID, bob, "", "seq 6")
	if got, dup := appendCMID(t, s, r.ID, alice, "old", "resend"); dup || got.Seq != 7 {
		t.Fatalf("resend 5 messages later = seq %d dup=%v; want a new message, seq 7", got.Seq, dup)
	}
	// The new one is now the message the id points to.
	if got, dup := appendCMID(t, s, r.ID, alice, "old", "again"); !dup || got.Seq != 7 {
		t.Fatalf("resend of the new one = seq %d dup=%v; want seq 7 dup", got.Seq, dup)
	}
}

// With more rooms than maxDedupEntries allows, windows are dropped and
// read again on demand: every resend is still recognised.
func TestDedupWindowsEvictedAndReloaded(t *testing.T) {
	s := openOpts(t, t.TempDir(), options{maxDedupEntries: 4})
	alice := chattest.NewUser(t, s, "alice", 0)
	const rooms, perRoom = 6, 3
	ids := make([]string, rooms)
	stored := map[string]chat.Message{}
	for i := range rooms {
		ids[i] = chattest.NewGroup(t, s, fmt.Sprint("g", i), alice.ID).ID
		for j := range perRoom {
			cmid := fmt.Sprintf("r%d-m%d", i, j)
			stored[cmid], _ = appendCMID(t, s, ids[i], alice, cmid, cmid)
		}
	}
	w := s.writerForTest()
	if w.entries > 4+perRoom {
		t.Errorf("%d client_msg_ids in memory; want about 4", w.entries)
	}
	if len(w.rooms) >= rooms {
		t.Errorf("%d rooms' windows in memory; want fewer than %d", len(w.rooms), rooms)
	}
	for i := range rooms {
		for j := range perRoom {
			cmid := fmt.Sprintf("r%d-m%d", i, j)
			got, dup := appendCMID(t, s, ids[i], alice, cmid, "resend")
			if !dup || got.Seq != stored[cmid].Seq || got.Text != cmid {
				t.Errorf("resend %s = seq %d %q dup=%v; want seq %d dup", cmid, got.Seq, got.Text, dup, stored[cmid].Seq)
			}
		}
	}
}

// A window entry is only a hint: a hit is checked against the stored row,
// so an id that points at someone else's message (a hash collision, made
// here by hand) costs a read and stores the new message.
func TestDedupHitIsConfirmed(t *testing.T) {
	s := openOpts(t, t.TempDir(), options{})
	alice := chattest.NewUser(t, s, "alice", 0)
	bob := chattest.NewUser(t, s, "bob", 1)
	r := chattest.NewGroup(t, s, "g", alice.ID, bob.ID)
	first, _ := appendCMID(t, s, r.ID, alice, "a", "alice's")

	w := s.writerForTest()
	bobKey := w.key(bob.ID, "b")
	w.add(w.rooms[r.ID], bobKey, first.Seq) // bob's key now points at alice's message

	got, dup := appendCMID(t, s, r.ID, bob, "b", "bob's")
	if dup || got.Seq != 2 || got.Text != "bob's" {
		t.Fatalf("append after a false hit = seq %d %q dup=%v; want bob's message stored as seq 2", got.Seq, got.Text, dup)
	}
	if again, dup := appendCMID(t, s, r.ID, bob, "b", "bob's again"); !dup || again.Seq != 2 {
		t.Fatalf("resend = seq %d dup=%v; want seq 2 dup", again.Seq, dup)
	}
}

// writerForTest returns the writer's windows. Between appends the writer
// is waiting for the next request, and Append's answer orders its writes
// before the caller's reads.
func (s *Store) writerForTest() *dedupWindows { return s.dedup }
