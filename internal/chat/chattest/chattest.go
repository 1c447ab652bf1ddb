// Package chattest is the conformance suite every chat.Store implementation
// runs, so that the SQLite and Redis stores behave the same to the server.
//
//	func TestConformance(t *testing.T) {
//		chattest.TestStore(t, func(t *testing.T) chat.Store { … a new, empty store … })
//	}
//
// Beyond the chat.Store comments, the suite pins down what the server
// relies on:
//   - a bot user (LinkBot) may be created with no session (nil token hash);
//   - Users includes bot users and orders by CreatedAt, newest first;
//   - empty ID (room, message) and zero CreatedAt/SentAt are filled in;
//     given ones are kept;
//   - Room.Members keep their order; a direct room needs two distinct members
//     (EInvalid), and a second CreateRoom of the pair returns the first room
//     unchanged, whatever else the request says;
//   - Rooms of an unknown user, Messages and Append to an unknown room are
//     ENotFound; limit <= 0 and after < 0, and a message without room or
//     sender id, are EInvalid;
//   - a duplicate client_msg_id returns the first stored message, which
//     carries ClientMsgID; dedup is per (room, sender);
//   - DeleteSession, when a store has it, is idempotent.
package chattest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/linkwall/linkwall/bot"
	"github.com/linkwall/linkwall/internal/chat"
)

// TestStore runs the conformance suite. open must return a new, empty,
// open store for each call; TestStore closes it when the subtest ends (so
// open must not register its own Close).
func TestStore(t *testing.T, open func(t *testing.T) chat.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s chat.Store)
	}{
		{"Users", testUsers},
		{"Sessions", testSessions},
		{"DeleteSession", testDeleteSession},
		{"GroupRooms", testGroupRooms},
		{"DirectRoomIdempotent", testDirectRoom},
		{"DirectRoomConcurrent", testDirectRoomConcurrent},
		{"RoomsOfUser", testRoomsOfUser},
		{"SetRoomEraLang", testSetRoom},
		{"AppendAndRead", testAppend},
		{"MessagesPaging", testPaging},
		{"Dedup", testDedup},
		{"DedupConcurrent", testDedupConcurrent},
		{"ConcurrentSeq", testConcurrentSeq},
		{"NotFound", testNotFound},
		{"Ping", testPing},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.fn(t, s)
		})
	}
}

// base is a fixed creation time with a precision every store keeps.
var base = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// NewUser creates a user with a session whose hash is "tok-"+name and
// CreatedAt base+n seconds.
func NewUser(t testing.TB, s chat.Store, name string, n int) chat.User {
	t.Helper()
	u := chat.User{ID: uuid.NewString(), Name: name, CreatedAt: base.Add(time.Duration(n) * time.Second)}
	if err := s.CreateUser(context.Background(), u, []byte("tok-"+name)); err != nil {
		t.Fatalf("CreateUser(%s): %v", name, err)
	}
	return u
}

// NewGroup creates a group room of members.
func NewGroup(t testing.TB, s chat.Store, name string, members ...string) chat.Room {
	t.Helper()
	r, err := s.CreateRoom(context.Background(), chat.Room{Kind: chat.Group, Name: name, Members: members, Era: "group-ecommerce", Lang: "en"})
	if err != nil {
		t.Fatalf("CreateRoom(%s): %v", name, err)
	}
	return r
}

// Msg is a message from u in room.
func Msg(room string, u chat.User, text string) chat.Message {
	return chat.Message{Room: room, Sender: chat.Sender{ID: u.ID, Name: u.Name}, Text: text, Era: "group-ecommerce", SentAt: base}
}

func wantCode(t *testing.T, what string, err error, code string) {
	t.Helper()
	if got := chat.ErrorCode(err); got != code {
		t.Errorf("%s: error %v (code %q), want code %q", what, err, got, code)
	}
}

func sameUser(t *testing.T, got, want chat.User) {
	t.Helper()
	if got.ID != want.ID || got.Name != want.Name || got.Bot != want.Bot || !got.CreatedAt.Equal(want.CreatedAt) {
		t.Errorf("user = %+v, want %+v", got, want)
	}
}

func sameRoom(t *testing.T, got, want chat.Room) {
	t.Helper()
	if got.ID != want.ID || got.Kind != want.Kind || got.Name != want.Name || got.Era != want.Era ||
		got.Lang != want.Lang || !slices.Equal(got.Members, want.Members) || !got.CreatedAt.Equal(want.CreatedAt) {
		t.Errorf("room = %+v, want %+v", got, want)
	}
}

// sameMessage compares everything a client sees; nil and empty Links are alike.
func sameMessage(t *testing.T, got, want chat.Message) {
	t.Helper()
	links := func(ls []bot.Link) []bot.Link {
		if len(ls) == 0 {
			return nil
		}
		return ls
	}
	if got.ID != want.ID || got.Room != want.Room || got.Seq != want.Seq || got.Sender != want.Sender ||
		got.Text != want.Text || got.System != want.System || got.Truncated != want.Truncated ||
		got.Era != want.Era || !got.SentAt.Equal(want.SentAt) || got.ClientMsgID != want.ClientMsgID ||
		!reflect.DeepEqual(links(got.Links), links(want.Links)) {
		t.Errorf("message =\n%+v\nwant\n%+v", got, want)
	}
}

func testUsers(t *testing.T, s chat.Store) {
	ctx := context.Background()
	alice := NewUser(t, s, "alice", 0)
	bob := NewUser(t, s, "bob", 1)
	linkBot := chat.User{ID: chat.LinkBotID, Name: "LinkBot", Bot: true, CreatedAt: base.Add(2 * time.Second)}
	if err := s.CreateUser(ctx, linkBot, nil); err != nil {
		t.Fatalf("CreateUser(LinkBot, no session): %v", err)
	}
	carol := NewUser(t, s, "carol", 3)

	got, err := s.User(ctx, bob.ID)
	if err != nil {
		t.Fatalf("User: %v", err)
	}
	sameUser(t, got, bob)
	got, err = s.User(ctx, chat.LinkBotID)
	if err != nil {
		t.Fatalf("User(LinkBot): %v", err)
	}
	sameUser(t, got, linkBot)

	all := []chat.User{carol, linkBot, bob, alice} // newest first
	for _, limit := range []int{1, 2, 4, 100} {
		us, err := s.Users(ctx, limit)
		if err != nil {
			t.Fatalf("Users(%d): %v", limit, err)
		}
		want := all[:min(limit, len(all))]
		if len(us) != len(want) {
			t.Fatalf("Users(%d) = %d users, want %d", limit, len(us), len(want))
		}
		for i := range us {
			sameUser(t, us[i], want[i])
		}
	}

	err = s.CreateUser(ctx, chat.User{ID: alice.ID, Name: "again", CreatedAt: base}, []byte("other"))
	wantCode(t, "CreateUser(existing id)", err, chat.EConflict)
	if got, err := s.User(ctx, alice.ID); err != nil || got.Name != "alice" {
		t.Errorf("after a refused duplicate: User = %+v, %v; want alice unchanged", got, err)
	}
}

func testSessions(t *testing.T, s chat.Store) {
	ctx := context.Background()
	alice := NewUser(t, s, "alice", 0)
	bob := NewUser(t, s, "bob", 1)
	for _, u := range []chat.User{alice, bob} {
		got, err := s.UserBySession(ctx, []byte("tok-"+u.Name))
		if err != nil {
			t.Fatalf("UserBySession(%s): %v", u.Name, err)
		}
		sameUser(t, got, u)
	}
	_, err := s.UserBySession(ctx, []byte("tok-nobody"))
	wantCode(t, "UserBySession(unknown)", err, chat.EUnauthorized)
	_, err = s.UserBySession(ctx, nil)
	wantCode(t, "UserBySession(nil)", err, chat.EUnauthorized)

	// A second user may not take over an existing session.
	err = s.CreateUser(ctx, chat.User{ID: uuid.NewString(), Name: "mallory", CreatedAt: base}, []byte("tok-alice"))
	if err == nil {
		t.Errorf("CreateUser with another user's token hash succeeded")
	}
	got, err := s.UserBySession(ctx, []byte("tok-alice"))
	if err != nil || got.ID != alice.ID {
		t.Errorf("UserBySession(tok-alice) = %+v, %v after a clashing CreateUser; want alice", got, err)
	}
}

// SessionDeleter is the optional logout method a store may have.
type SessionDeleter interface {
	DeleteSession(ctx context.Context, tokenHash []byte) error
}

func testDeleteSession(t *testing.T, s chat.Store) {
	d, ok := s.(SessionDeleter)
	if !ok {
		t.Skip("store has no DeleteSession")
	}
	ctx := context.Background()
	alice := NewUser(t, s, "alice", 0)
	bob := NewUser(t, s, "bob", 1)
	if err := d.DeleteSession(ctx, []byte("tok-alice")); err != nil {
		t.Fatalf("DeleteSession: %v", err)
	}
	_, err := s.UserBySession(ctx, []byte("tok-alice"))
	wantCode(t, "UserBySession after DeleteSession", err, chat.EUnauthorized)
	if err := d.DeleteSession(ctx, []byte("tok-alice")); err != nil {
		t.Errorf("DeleteSession again: %v, want nil", err)
	}
	if u, err := s.User(ctx, alice.ID); err != nil || u.ID != alice.ID {
		t.Errorf("User after logout = %+v, %v; the user must stay", u, err)
	}
	if u, err := s.UserBySession(ctx, []byte("tok-bob")); err != nil || u.ID != bob.ID {
		t.Errorf("other session after a logout = %+v, %v", u, err)
	}
}

func testGroupRooms(t *testing.T, s chat.Store) {
	ctx := context.Background()
	alice := NewUser(t, s, "alice", 0)
	bob := NewUser(t, s, "bob", 1)
	in := chat.Room{Kind: chat.Group, Name: "class 3b", Members: []string{alice.ID, bob.ID}, Era: "walled", Lang: "zh", CreatedAt: base}
	r, err := s.CreateRoom(ctx, in)
	if err != nil {
		t.Fatalf("CreateRoom: %v", err)
	}
	if r.ID == "" {
		t.Fatalf("CreateRoom returned no id")
	}
	in.ID = r.ID
	sameRoom(t, r, in)
	got, err := s.Room(ctx, r.ID)
	if err != nil {
		t.Fatalf("Room: %v", err)
	}
	sameRoom(t, got, in)

	// Two groups with the same members are two rooms.
	r2 := NewGroup(t, s, "class 3b", alice.ID, bob.ID)
	if r2.ID == r.ID {
		t.Errorf("second group got the first one's id")
	}

	_, err = s.CreateRoom(ctx, chat.Room{Kind: chat.Group, Name: "ghosts", Members: []string{alice.ID, uuid.NewString()}, Era: "walled", Lang: "en"})
	wantCode(t, "CreateRoom(unknown member)", err, chat.ENotFound)
	_, err = s.CreateRoom(ctx, chat.Room{Kind: "channel", Name: "x", Members: []string{alice.ID}, Era: "walled", Lang: "en"})
	wantCode(t, "CreateRoom(bad kind)", err, chat.EInvalid)
	rooms, err := s.Rooms(ctx, alice.ID)
	if err != nil {
		t.Fatalf("Rooms: %v", err)
	}
	if len(rooms) != 2 {
		t.Errorf("alice is in %d rooms after two refused CreateRoom, want 2", len(rooms))
	}
}

func testDirectRoom(t *testing.T, s chat.Store) {
	ctx := context.Background()
	alice := NewUser(t, s, "alice", 0)
	bob := NewUser(t, s, "bob", 1)
	carol := NewUser(t, s, "carol", 2)
	first, err := s.CreateRoom(ctx, chat.Room{Kind: chat.Direct, Members: []string{alice.ID, bob.ID}, Era: "walled", Lang: "en", CreatedAt: base})
	if err != nil {
		t.Fatalf("CreateRoom(direct): %v", err)
	}
	if first.ID == "" || !slices.Equal(first.Members, []string{alice.ID, bob.ID}) {
		t.Fatalf("CreateRoom(direct) = %+v", first)
	}
	// Same pair in either order, other fields ignored: the same room.
	for _, members := range [][]string{{alice.ID, bob.ID}, {bob.ID, alice.ID}} {
		again, err := s.CreateRoom(ctx, chat.Room{ID: uuid.NewString(), Kind: chat.Direct, Members: members, Era: "open", Lang: "zh", CreatedAt: base.Add(time.Hour)})
		if err != nil {
			t.Fatalf("CreateRoom(direct again %v): %v", members, err)
		}
		sameRoom(t, again, first)
	}
	other, err := s.CreateRoom(ctx, chat.Room{Kind: chat.Direct, Members: []string{alice.ID, carol.ID}, Era: "walled", Lang: "en"})
	if err != nil {
		t.Fatalf("CreateRoom(direct alice-carol): %v", err)
	}
	if other.ID == first.ID {
		t.Errorf("alice-carol got the alice-bob room")
	}
	rooms, err := s.Rooms(ctx, alice.ID)
	if err != nil || len(rooms) != 2 {
		t.Errorf("Rooms(alice) = %d rooms, %v; want 2", len(rooms), err)
	}
	for _, tc := range []struct {
		name    string
		members []string
		code    string
	}{
		{"one member", []string{alice.ID}, chat.EInvalid},
		{"self", []string{alice.ID, alice.ID}, chat.EInvalid},
		{"three members", []string{alice.ID, bob.ID, carol.ID}, chat.EInvalid},
		{"unknown member", []string{alice.ID, uuid.NewString()}, chat.ENotFound},
	} {
		_, err := s.CreateRoom(ctx, chat.Room{Kind: chat.Direct, Members: tc.members, Era: "walled", Lang: "en"})
		wantCode(t, "CreateRoom(direct, "+tc.name+")", err, tc.code)
	}
}

func testDirectRoomConcurrent(t *testing.T, s chat.Store) {
	ctx := context.Background()
	alice := NewUser(t, s, "alice", 0)
	bob := NewUser(t, s, "bob", 1)
	const n = 20
	ids := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			members := []string{alice.ID, bob.ID}
			if i%2 == 1 {
				members = []string{bob.ID, alice.ID}
			}
			r, err := s.CreateRoom(ctx, chat.Room{Kind: chat.Direct, Members: members, Era: "walled", Lang: "en"})
			ids[i], errs[i] = r.ID, err
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("CreateRoom #%d: %v", i, errs[i])
		}
		if ids[i] != ids[0] {
			t.Fatalf("concurrent CreateRoom of one pair gave rooms %s and %s", ids[0], ids[i])
		}
	}
	rooms, err := s.Rooms(ctx, bob.ID)
	if err != nil || len(rooms) != 1 {
		t.Errorf("Rooms(bob) = %d rooms, %v; want 1", len(rooms), err)
	}
}

func testRoomsOfUser(t *testing.T, s chat.Store) {
	ctx := context.Background()
	alice := NewUser(t, s, "alice", 0)
	bob := NewUser(t, s, "bob", 1)
	carol := NewUser(t, s, "carol", 2)
	var want []chat.Room
	for i, members := range [][]string{{alice.ID, bob.ID}, {bob.ID, carol.ID}, {carol.ID, alice.ID, bob.ID}} {
		r, err := s.CreateRoom(ctx, chat.Room{Kind: chat.Group, Name: fmt.Sprint("room ", i), Members: members,
			Era: "walled", Lang: "en", CreatedAt: base.Add(time.Duration(i) * time.Minute)})
		if err != nil {
			t.Fatalf("CreateRoom: %v", err)
		}
		want = append(want, r)
	}
	for _, tc := range []struct {
		user chat.User
		idx  []int
	}{{alice, []int{0, 2}}, {bob, []int{0, 1, 2}}, {carol, []int{1, 2}}} {
		got, err := s.Rooms(ctx, tc.user.ID)
		if err != nil {
			t.Fatalf("Rooms(%s): %v", tc.user.Name, err)
		}
		if len(got) != len(tc.idx) {
			t.Fatalf("Rooms(%s) = %d rooms, want %d", tc.user.Name, len(got), len(tc.idx))
		}
		for i, j := range tc.idx {
			sameRoom(t, got[i], want[j])
		}
	}
	dave := NewUser(t, s, "dave", 3)
	got, err := s.Rooms(ctx, dave.ID)
	if err != nil || len(got) != 0 {
		t.Errorf("Rooms(user in no room) = %v, %v; want none", got, err)
	}
	counts, err := s.RoomCounts(ctx, []string{alice.ID, bob.ID, carol.ID, dave.ID, "no-such-user"})
	if err != nil {
		t.Fatalf("RoomCounts: %v", err)
	}
	for _, tc := range []struct {
		id   string
		want int
	}{{alice.ID, 2}, {bob.ID, 3}, {carol.ID, 2}, {dave.ID, 0}, {"no-such-user", 0}} {
		if counts[tc.id] != tc.want {
			t.Errorf("RoomCounts[%s] = %d, want %d", tc.id, counts[tc.id], tc.want)
		}
	}
	if counts, err := s.RoomCounts(ctx, nil); err != nil || len(counts) != 0 {
		t.Errorf("RoomCounts(nil) = %v, %v; want empty", counts, err)
	}
}

func testSetRoom(t *testing.T, s chat.Store) {
	ctx := context.Background()
	alice := NewUser(t, s, "alice", 0)
	r := NewGroup(t, s, "g", alice.ID)
	got, err := s.SetRoomEra(ctx, r.ID, "walled")
	if err != nil {
		t.Fatalf("SetRoomEra: %v", err)
	}
	r.Era = "walled"
	sameRoom(t, got, r)
	got, err = s.SetRoomLang(ctx, r.ID, "zh")
	if err != nil {
		t.Fatalf("SetRoomLang: %v", err)
	}
	r.Lang = "zh"
	sameRoom(t, got, r)
	got, err = s.Room(ctx, r.ID)
	if err != nil {
		t.Fatalf("Room: %v", err)
	}
	sameRoom(t, got, r)
}

func testAppend(t *testing.T, s chat.Store) {
	ctx := context.Background()
	alice := NewUser(t, s, "alice", 0)
	bob := NewUser(t, s, "bob", 1)
	r := NewGroup(t, s, "g", alice.ID, bob.ID)
	other := NewGroup(t, s, "h", alice.ID)

	rich := Msg(r.ID, alice, "buy it ￥AbCd1234￥ https://item.jd.com/1.html <script>alert(1)</script>")
	rich.ClientMsgID = "c-1"
	rich.Truncated = true
	rich.Links = []bot.Link{
		{URL: "https://m.tb.cn/AbCd1234", Kind: "token", Platform: "taobao", Outcome: bot.Blocked, Rule: "r1", Reason: "blocked", ReasonZh: "已屏蔽", Since: "2013-11-01"},
		{URL: "https://item.jd.com/1.html", Kind: "url", Platform: "jd", Outcome: bot.CardView, Card: &bot.Card{Title: "Phone", Price: "¥1999", URL: "https://item.jd.com/1.html"}},
	}
	notice := chat.Message{Room: r.ID, Sender: chat.Sender{ID: chat.LinkBotID, Name: "LinkBot", Bot: true},
		Text: "链接已屏蔽", System: true, Era: "walled", SentAt: base.Add(time.Second)}
	plain := Msg(r.ID, bob, "")
	elsewhere := Msg(other.ID, alice, "first in another room")

	var stored []chat.Message
	for i, m := range []chat.Message{rich, notice, plain} {
		got, dup, err := s.Append(ctx, m)
		if err != nil || dup {
			t.Fatalf("Append #%d: dup=%v err=%v", i, dup, err)
		}
		if got.Seq != int64(i+1) || got.ID == "" {
			t.Fatalf("Append #%d: seq=%d id=%q, want seq %d and an id", i, got.Seq, got.ID, i+1)
		}
		m.Seq, m.ID = got.Seq, got.ID
		sameMessage(t, got, m)
		stored = append(stored, got)
	}
	// Seq is per room.
	got, _, err := s.Append(ctx, elsewhere)
	if err != nil || got.Seq != 1 {
		t.Fatalf("Append to a second room: seq=%d err=%v, want seq 1", got.Seq, err)
	}
	// A caller-chosen id is kept.
	withID := Msg(r.ID, alice, "mine")
	withID.ID = uuid.NewString()
	got, _, err = s.Append(ctx, withID)
	if err != nil || got.ID != withID.ID || got.Seq != 4 {
		t.Fatalf("Append with an id: %+v, %v; want id %s seq 4", got, err, withID.ID)
	}
	stored = append(stored, got)

	ms, err := s.Messages(ctx, r.ID, 0, 100)
	if err != nil {
		t.Fatalf("Messages: %v", err)
	}
	if len(ms) != len(stored) {
		t.Fatalf("Messages = %d messages, want %d", len(ms), len(stored))
	}
	for i := range ms {
		sameMessage(t, ms[i], stored[i])
	}
	empty, err := s.Messages(ctx, NewGroup(t, s, "quiet", alice.ID).ID, 0, 10)
	if err != nil || len(empty) != 0 {
		t.Errorf("Messages(empty room) = %v, %v; want none", empty, err)
	}
}

func testPaging(t *testing.T, s chat.Store) {
	ctx := context.Background()
	alice := NewUser(t, s, "alice", 0)
	r := NewGroup(t, s, "g", alice.ID)
	const n = 25
	for i := range n {
		if _, _, err := s.Append(ctx, Msg(r.ID, alice, fmt.Sprint("m", i+1))); err != nil {
			t.Fatalf("Append: %v", err)
		}
	}
	for _, tc := range []struct {
		after          int64
		limit          int
		wantFirst, cnt int64
	}{
		{0, 10, 1, 10},
		{10, 10, 11, 10},
		{20, 10, 21, 5},
		{24, 1, 25, 1},
		{25, 10, 0, 0},
		{100, 10, 0, 0},
		{0, 1000, 1, 25},
	} {
		ms, err := s.Messages(ctx, r.ID, tc.after, tc.limit)
		if err != nil {
			t.Fatalf("Messages(after %d, limit %d): %v", tc.after, tc.limit, err)
		}
		if int64(len(ms)) != tc.cnt {
			t.Errorf("Messages(after %d, limit %d) = %d messages, want %d", tc.after, tc.limit, len(ms), tc.cnt)
			continue
		}
		for i, m := range ms {
			if want := tc.wantFirst + int64(i); m.Seq != want || m.Text != fmt.Sprint("m", want) {
				t.Errorf("Messages(after %d, limit %d)[%d] = seq %d %q, want seq %d", tc.after, tc.limit, i, m.Seq, m.Text, want)
			}
		}
	}
	// Walking pages covers every message exactly once.
	var seen []int64
	for after := int64(0); ; {
		ms, err := s.Messages(ctx, r.ID, after, 7)
		if err != nil {
			t.Fatalf("Messages: %v", err)
		}
		if len(ms) == 0 {
			break
		}
		for _, m := range ms {
			seen = append(seen, m.Seq)
		}
		after = ms[len(ms)-1].Seq
	}
	if len(seen) != n || seen[0] != 1 || seen[n-1] != n {
		t.Errorf("paging saw %v", seen)
	}
	for _, tc := range []struct {
		after int64
		limit int
	}{{0, 0}, {0, -1}, {-1, 10}} {
		_, err := s.Messages(ctx, r.ID, tc.after, tc.limit)
		wantCode(t, fmt.Sprintf("Messages(after %d, limit %d)", tc.after, tc.limit), err, chat.EInvalid)
	}
}

func testDedup(t *testing.T, s chat.Store) {
	ctx := context.Background()
	alice := NewUser(t, s, "alice", 0)
	bob := NewUser(t, s, "bob", 1)
	r := NewGroup(t, s, "g", alice.ID, bob.ID)
	r2 := NewGroup(t, s, "h", alice.ID, bob.ID)

	m := Msg(r.ID, alice, "hello")
	m.ClientMsgID = "abc"
	first, dup, err := s.Append(ctx, m)
	if err != nil || dup {
		t.Fatalf("Append: dup=%v err=%v", dup, err)
	}
	retry := m
	retry.Text = "hello (resent, must be ignored)"
	again, dup, err := s.Append(ctx, retry)
	if err != nil || !dup {
		t.Fatalf("Append(same client_msg_id): dup=%v err=%v, want dup", dup, err)
	}
	sameMessage(t, again, first)

	// Same id from another sender, or in another room: a different message.
	fromBob := Msg(r.ID, bob, "hello from bob")
	fromBob.ClientMsgID = "abc"
	b, dup, err := s.Append(ctx, fromBob)
	if err != nil || dup || b.Seq != 2 {
		t.Fatalf("Append(bob, same client_msg_id): seq=%d dup=%v err=%v; want new message seq 2", b.Seq, dup, err)
	}
	inR2 := m
	inR2.Room = r2.ID
	c, dup, err := s.Append(ctx, inR2)
	if err != nil || dup || c.Seq != 1 {
		t.Fatalf("Append(other room, same client_msg_id): seq=%d dup=%v err=%v; want new message seq 1", c.Seq, dup, err)
	}
	// No client_msg_id: never deduplicated.
	for i := range 2 {
		got, dup, err := s.Append(ctx, Msg(r.ID, alice, "no id"))
		if err != nil || dup || got.Seq != int64(3+i) {
			t.Fatalf("Append(no client_msg_id) #%d: seq=%d dup=%v err=%v", i, got.Seq, dup, err)
		}
	}
	ms, err := s.Messages(ctx, r.ID, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 4 || ms[0].Text != "hello" || ms[1].Sender.ID != bob.ID {
		t.Errorf("room holds %d messages (%+v), want 4: alice's, bob's and two without id", len(ms), ms)
	}
}

func testDedupConcurrent(t *testing.T, s chat.Store) {
	ctx := context.Background()
	alice := NewUser(t, s, "alice", 0)
	r := NewGroup(t, s, "g", alice.ID)
	const n = 20
	res := make([]chat.Message, n)
	dups := make([]bool, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			m := Msg(r.ID, alice, "double click")
			m.ClientMsgID = "same"
			res[i], dups[i], errs[i] = s.Append(ctx, m)
		})
	}
	wg.Wait()
	fresh := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Append #%d: %v", i, errs[i])
		}
		if !dups[i] {
			fresh++
		}
		if res[i].ID != res[0].ID || res[i].Seq != 1 {
			t.Errorf("Append #%d returned %s seq %d, want %s seq 1", i, res[i].ID, res[i].Seq, res[0].ID)
		}
	}
	if fresh != 1 {
		t.Errorf("%d appends reported a new message, want exactly 1", fresh)
	}
	ms, err := s.Messages(ctx, r.ID, 0, 100)
	if err != nil || len(ms) != 1 {
		t.Errorf("Messages = %d, %v; want exactly 1", len(ms), err)
	}
}

// testConcurrentSeq: 50 appenders over 3 rooms; every room's seqs are
// exactly 1..N, each returned to exactly one caller, and Messages agrees.
func testConcurrentSeq(t *testing.T, s chat.Store) {
	ctx := context.Background()
	const appenders, perAppender, nRooms = 50, 20, 3
	users := make([]chat.User, appenders)
	for i := range users {
		users[i] = NewUser(t, s, fmt.Sprint("u", i), i)
	}
	ids := make([]string, appenders)
	for i, u := range users {
		ids[i] = u.ID
	}
	rooms := make([]chat.Room, nRooms)
	for i := range rooms {
		rooms[i] = NewGroup(t, s, fmt.Sprint("room", i), ids...)
	}
	type ack struct {
		room string
		seq  int64
		id   string
	}
	acks := make(chan ack, appenders*perAppender)
	errc := make(chan error, appenders)
	var wg sync.WaitGroup
	for a := range appenders {
		wg.Go(func() {
			for j := range perAppender {
				room := rooms[(a+j)%nRooms].ID
				m := Msg(room, users[a], fmt.Sprintf("%d/%d", a, j))
				if j%2 == 0 {
					m.ClientMsgID = fmt.Sprint("c", j)
				}
				got, dup, err := s.Append(ctx, m)
				if err != nil || dup {
					errc <- fmt.Errorf("appender %d #%d: dup=%v err=%w", a, j, dup, err)
					return
				}
				acks <- ack{room, got.Seq, got.ID}
			}
		})
	}
	wg.Wait()
	close(acks)
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	byRoom := map[string]map[int64]string{}
	for a := range acks {
		if byRoom[a.room] == nil {
			byRoom[a.room] = map[int64]string{}
		}
		if prev, ok := byRoom[a.room][a.seq]; ok {
			t.Fatalf("room %s seq %d given to two messages: %s and %s", a.room, a.seq, prev, a.id)
		}
		byRoom[a.room][a.seq] = a.id
	}
	total := 0
	for _, r := range rooms {
		seqs := byRoom[r.ID]
		total += len(seqs)
		ms, err := s.Messages(ctx, r.ID, 0, appenders*perAppender)
		if err != nil {
			t.Fatalf("Messages: %v", err)
		}
		if len(ms) != len(seqs) {
			t.Fatalf("room %s: %d acknowledged, %d stored", r.Name, len(seqs), len(ms))
		}
		for i, m := range ms {
			if m.Seq != int64(i+1) {
				t.Fatalf("room %s: message %d has seq %d: gap or duplicate", r.Name, i, m.Seq)
			}
			if seqs[m.Seq] != m.ID {
				t.Fatalf("room %s seq %d: stored %s, acknowledged %s", r.Name, m.Seq, m.ID, seqs[m.Seq])
			}
		}
	}
	if total != appenders*perAppender {
		t.Fatalf("%d acknowledged, want %d", total, appenders*perAppender)
	}
}

func testNotFound(t *testing.T, s chat.Store) {
	ctx := context.Background()
	alice := NewUser(t, s, "alice", 0)
	nobody := uuid.NewString()
	_, err := s.User(ctx, nobody)
	wantCode(t, "User", err, chat.ENotFound)
	_, err = s.Room(ctx, nobody)
	wantCode(t, "Room", err, chat.ENotFound)
	_, err = s.Rooms(ctx, nobody)
	wantCode(t, "Rooms", err, chat.ENotFound)
	_, err = s.SetRoomEra(ctx, nobody, "walled")
	wantCode(t, "SetRoomEra", err, chat.ENotFound)
	_, err = s.SetRoomLang(ctx, nobody, "zh")
	wantCode(t, "SetRoomLang", err, chat.ENotFound)
	_, _, err = s.Append(ctx, Msg(nobody, alice, "into the void"))
	wantCode(t, "Append", err, chat.ENotFound)
	_, err = s.Messages(ctx, nobody, 0, 10)
	wantCode(t, "Messages", err, chat.ENotFound)

	// A refused append does not disturb the next good one.
	r := NewGroup(t, s, "g", alice.ID)
	_, _, err = s.Append(ctx, Msg("", alice, "nowhere"))
	wantCode(t, "Append(no room)", err, chat.EInvalid)
	_, _, err = s.Append(ctx, Msg(r.ID, chat.User{}, "from no one"))
	wantCode(t, "Append(no sender)", err, chat.EInvalid)
	got, _, err := s.Append(ctx, Msg(r.ID, alice, "hi"))
	if err != nil || got.Seq != 1 {
		t.Errorf("Append after a refused one: seq=%d err=%v", got.Seq, err)
	}
}

func testPing(t *testing.T, s chat.Store) {
	if err := s.Ping(context.Background()); err != nil {
		t.Errorf("Ping: %v", err)
	}
	alice := NewUser(t, s, "alice", 0)
	r := NewGroup(t, s, "g", alice.ID)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, err := s.Append(ctx, Msg(r.ID, alice, "late"))
	if err == nil {
		t.Errorf("Append with a cancelled context succeeded")
	} else if !errors.Is(err, context.Canceled) && chat.ErrorCode(err) == chat.EInternal {
		t.Errorf("Append with a cancelled context: %v, want context.Canceled", err)
	}
}
